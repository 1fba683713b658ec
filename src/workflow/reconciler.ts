import type { BootInstruction } from '../domain/boot.js';
import type { Effect } from '../domain/effect.js';
import type { WorkflowEvent } from '../domain/events.js';
import {
  type HostAction,
  hostMacs,
  keyOf,
  objectKey,
  type StoredHost,
  type StoredMachine,
} from '../domain/resources.js';
import type { Logger } from '../log.js';
import type { RedfishClient } from '../redfish/client.js';
import { newAttemptId, type SecretBox } from '../store/secrets.js';
import type { BatchOp, Store } from '../store/store.js';
import { type Decision, Pipeline, type Plan } from './pipeline.js';
import {
  type ActionResult,
  type BmcFacts,
  booted,
  claim,
  claimable,
  cleaningDone,
  deletionPowerOff,
  endAttempt,
  enrolment,
  hostActed,
  machineDeleted,
  nextStep,
  type Policy,
  powerObserved,
  releaseFailed,
  settled,
  shouldEnroll,
  startAttempt,
  startCleaning,
  targetDigest,
  targetPinned,
} from './transitions.js';

export type BmcDriver = Pick<
  RedfishClient,
  | 'getSystem'
  | 'macs'
  | 'secureBoot'
  | 'setOneTimePxe'
  | 'powerOnOrRestart'
  | 'waitPowerState'
  | 'powerOff'
  | 'powerOn'
  | 'reset'
  | 'clearBootOverride'
  | 'close'
>;
export type BmcFactory = (host: StoredHost, password: string) => BmcDriver;

export interface OrchestratorOptions extends Policy {
  tickMs: number;
  powerDeadlineMs: number;
  /** the workflow's clock (deadlines, backoff, timestamps); tests give one they move by hand */
  clock?: () => number;
  /** told when a reconcile pass has ended (a metric: the reconciler is alive) */
  onPass?: () => void;
  /** the digest of a target a machine pins none for (target-digest.ts); without it such targets go unpinned */
  targetDigest?: (url: string) => Promise<string>;
}

/** Writes of one commit of claims: under etcd's default of 128 operations per transaction. */
const CLAIM_OPS_PER_COMMIT = 100;
/** What one claim writes: the machine, the host, a boot instruction per MAC, two events and the boot effect. */
const claimOps = (h: StoredHost) => 5 + hostMacs(h).length;

/** A machine and the host this pass chose for it. */
interface Claim {
  m: StoredMachine;
  h: StoredHost;
}

/** A BMC's client is closed after this long without a call, and made again for its next one. */
const BMC_IDLE_MS = 15_000;

/** The shortest time between two reconcile passes. */
const PASS_GAP_MS = 25;

const INSPECT: BootInstruction = { script: 'inspect', cmdline: '', localDiskMethod: 'exit' };

/**
 * Drives machines and hosts through the workflow. A pass decides each machine's next step as a plan and commits
 * it through the pipeline; the BMC work those plans stored (effects) is carried out here, one host's effects one
 * at a time and in order, each outcome committed as a plan that also deletes the effect. State is all in the
 * store, so a restart (or a new leader) simply reconciles again and carries out what is still stored.
 */
export class Orchestrator {
  private readonly bmcs = new Map<string, { driver: BmcDriver; spec: string; used: number }>();
  /** hosts (store keys) whose BMC work is under way */
  private readonly busy = new Set<string>();
  private lastIdleSweep = 0;
  /** attempts whose boot this orchestrator stored and has not carried out yet */
  private readonly ownBoots = new Set<string>();
  private readonly inflight = new Set<Promise<void>>();
  private timer?: NodeJS.Timeout;
  private pass?: Promise<void>;
  private again = false;
  private stopped = false;
  private soon?: NodeJS.Timeout;
  private lastPassEnd = 0;

  private readonly p: Pipeline;

  constructor(
    private readonly store: Store,
    private readonly secrets: SecretBox,
    private readonly makeBmc: BmcFactory,
    private readonly opts: OrchestratorOptions,
    private readonly log: Logger,
  ) {
    this.p = new Pipeline(store, () => this.kick());
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.opts.tickMs);
    this.kick();
  }

  /** Closing the BMC clients first aborts their calls and retry waits, so the steps in flight end at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.soon);
    await Promise.all([...this.bmcs.values()].map((b) => b.driver.close().catch(() => undefined)));
    await this.idle();
  }

  /**
   * Run a reconcile pass soon: now, or right after the one in progress, but at most one per PASS_GAP_MS. Under a
   * storm every report and claim kicks, and one pass a little later sees all of those changes at once.
   */
  kick(): void {
    if (this.stopped) return;
    if (this.pass) {
      this.again = true;
      return;
    }
    if (this.soon) return;
    const wait = this.lastPassEnd + PASS_GAP_MS - Date.now();
    if (wait > 0) {
      this.soon = setTimeout(() => {
        this.soon = undefined;
        this.kick();
      }, wait);
      return;
    }
    // as the leader: on etcd, every commit of the pass and of the steps it starts compares the election key
    this.pass = this.store
      .fenced(() => this.reconcileAll())
      .catch((e: Error) => this.log.error({ err: e.message }, 'reconcile pass failed'))
      .finally(() => {
        this.pass = undefined;
        this.lastPassEnd = Date.now();
        this.opts.onPass?.();
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private now(): number {
    return this.opts.clock?.() ?? Date.now();
  }

  /** One reconcile pass now, without the timer: the BMC work it starts runs on (`settle` waits for it). */
  async passOnce(): Promise<void> {
    await this.store.fenced(() => this.reconcileAll());
  }

  /** Resolves when no pass and no BMC work is running. */
  settle(): Promise<void> {
    return this.idle();
  }

  /** Resolves when no pass and no step is running (shutdown). */
  private async idle(): Promise<void> {
    while (this.pass || this.inflight.size) await Promise.all([this.pass, ...this.inflight]);
  }

  /** The host's BMC client; a new one when its address or credentials changed (maybe on another appliance). */
  private bmc(h: StoredHost): BmcDriver {
    // a stopped orchestrator (shut down, or no longer the leader) starts no BMC call, even from a step in flight
    if (this.stopped) throw new Error('orchestrator stopped');
    const spec = JSON.stringify(h.spec.redfish);
    const cached = this.bmcs.get(keyOf(h));
    if (cached?.spec === spec) {
      cached.used = this.now();
      return cached.driver;
    }
    if (cached) void cached.driver.close().catch(() => undefined);
    const driver = this.makeBmc(h, this.secrets.open(h.spec.redfish.passwordEnc));
    this.bmcs.set(keyOf(h), { driver, spec, used: this.now() });
    return driver;
  }

  /**
   * Closes the clients of BMCs with no work for a while (their sessions logged out): each holds its connection
   * pool (undici preallocates 16 KiB of queue per pool), and 3000 hosts provisioned kept 49 MiB of them.
   */
  private closeIdleBmcs(now: number): void {
    // once a second is often enough to close what was idle for 15 s, and a pass runs up to 40 times a second
    if (now - this.lastIdleSweep < 1000) return;
    this.lastIdleSweep = now;
    for (const [key, b] of this.bmcs) {
      if (now - b.used < BMC_IDLE_MS || this.busy.has(key)) continue;
      this.bmcs.delete(key);
      void b.driver.close().catch(() => undefined);
    }
  }

  async forgetBmc(hostKey: string): Promise<void> {
    const b = this.bmcs.get(hostKey);
    this.bmcs.delete(hostKey);
    await b?.driver.close().catch(() => undefined);
  }

  private async reconcileAll(): Promise<void> {
    // the store's keys, not keyOf: a pass looks up every host several times, and a stored key's hash is computed once
    const entries = await this.store.hosts.entries();
    const now = this.now();
    this.closeIdleBmcs(now);
    // a host with BMC work still stored is not claimed, booted or released until that work is done
    const owed = new Set((await this.store.effects.all()).map((e) => e.host));
    for (const [key, h] of entries) {
      const enrol = shouldEnroll(h, now);
      if ((!enrol && h.status.state !== 'Cleaning') || owed.has(key) || this.busy.has(key)) continue;
      if (enrol) this.guard(key, () => this.enroll(h));
      else await this.clean(h, now);
    }
    const byKey = new Map(entries);
    const machines = await this.store.machines.all();
    // oldest first, and claims shrink it as the pass goes: a machine without a selector takes the first host
    const available = machines.some((m) => m.status.phase === 'Pending')
      ? claimable(entries.filter(([key]) => !owed.has(key)).map(([, h]) => h))
      : [];
    // claims are decided in this loop against that list, so no host is claimed twice, and committed in groups
    let claims: Claim[] = [];
    for (const m of machines) {
      if (settled(m)) continue;
      const hostKey = m.status.hostName ? objectKey(m.namespace, m.status.hostName) : undefined;
      const host = hostKey ? byKey.get(hostKey) : undefined;
      if (host && hostKey && owed.has(hostKey) && m.status.phase !== 'Pending') continue;
      const step = nextStep(m, host, available, now);
      if (step.kind === 'wait' || step.kind === 'done' || step.kind === 'noHost') continue;
      try {
        if (step.kind === 'claim') {
          available.splice(available.indexOf(step.host), 1);
          if (claims.reduce((n, c) => n + claimOps(c.h), claimOps(step.host)) > CLAIM_OPS_PER_COMMIT) {
            const group = claims;
            claims = [];
            await this.commitClaims(group);
          }
          claims.push({ m, h: step.host });
        } else if (step.kind === 'boot') await this.commitBoot(m, step.host);
        else if (step.kind === 'timeout') {
          const deploying = step.reason === 'DeploymentTimedOut';
          const ms = deploying ? this.opts.deploymentTimeoutMs : this.opts.inspectionTimeoutMs;
          const what = deploying ? 'no provisioned callback' : 'no inspection report';
          const why = {
            reason: step.reason,
            message: `${what} within ${Math.round(ms / 1000)} s`,
            phase: 'Timeout' as const,
          };
          await this.commitEnd(keyOf(m), keyOf(step.host), step.host.attempt?.id, why);
        } else await this.commitRelease(m, step.host);
      } catch (e) {
        this.log.error({ machine: m.name, err: (e as Error).message }, 'reconcile step failed');
      }
    }
    await this.commitClaims(claims);
    // the effects stored so far, this pass's among them
    for (const e of await this.store.effects.all()) {
      if (!this.busy.has(e.host)) this.guard(e.host, () => this.carryOutAll(e.host));
    }
  }

  /**
   * Starts one host's BMC work without waiting for it: a slow BMC holds up only its own host, and the next pass
   * skips hosts still busy.
   */
  private guard(key: string, fn: () => Promise<void>): void {
    this.busy.add(key);
    const run = fn()
      .catch((e: Error) => this.log.error({ key, err: e.message }, 'reconcile step failed'))
      .finally(() => {
        this.busy.delete(key);
        this.inflight.delete(run);
      });
    this.inflight.add(run);
  }

  /** Commits `decide`'s plan while the records read in this pass are still as they were. */
  private commitIfSame<T>(
    seen: { machine?: StoredMachine; host?: StoredHost },
    decide: () => Decision<T>,
  ): Promise<T | undefined> {
    return this.p
      .run<T | undefined>(async () => {
        const m = seen.machine && (await this.store.machines.get(keyOf(seen.machine)));
        const h = seen.host && (await this.store.hosts.get(keyOf(seen.host)));
        if (!Pipeline.same(seen.machine, m) || !Pipeline.same(seen.host, h)) {
          this.again = true; // changed since this pass read them: look again
          return { value: undefined };
        }
        return decide();
      })
      .then((r) => (r.ok ? r.value : undefined));
  }

  /**
   * Each machine claims its host and its first attempt starts, all in one commit: a storm's machines are claimed
   * in a few writes, not two each, one after the other. Pairs whose records changed since the pass read them
   * are left to the next pass; a failed commit is logged, and the next pass decides again.
   */
  private async commitClaims(claims: Claim[]): Promise<void> {
    if (!claims.length) return;
    const decided = claims.map(({ m, h }) => {
      const c = claim(m, h, this.now());
      const { plan, attempt } = this.newAttempt(c.machine, c.host);
      return { m, h, attempt, plan: { ...plan, events: [c.event, ...(plan.events ?? [])] } };
    });
    const claimed = new Set<string>();
    try {
      const done = await this.p.run(async () => {
        const fresh: typeof decided = [];
        for (const d of decided) {
          const [m, h] = [await this.store.machines.get(keyOf(d.m)), await this.store.hosts.get(keyOf(d.h))];
          if (Pipeline.same(d.m, m) && Pipeline.same(d.h, h)) fresh.push(d);
          else this.again = true; // changed since this pass read them: look again
        }
        const plan: Plan = {
          writes: fresh.flatMap((d) => d.plan.writes ?? []),
          events: fresh.flatMap((d) => d.plan.events ?? []),
          effects: fresh.flatMap((d) => d.plan.effects ?? []),
        };
        return { plan, value: fresh };
      });
      if (done.ok) for (const d of done.value) claimed.add(d.attempt);
    } catch (e) {
      this.log.error({ machines: claims.map((c) => c.m.name), err: (e as Error).message }, 'reconcile step failed');
    } finally {
      for (const d of decided) {
        if (claimed.has(d.attempt)) this.log.info({ machine: d.m.name, host: d.h.name }, 'host claimed');
        else this.ownBoots.delete(d.attempt);
      }
    }
  }

  /**
   * A new attempt: Inspecting/Pending with fresh credentials, the inspect script for the host's MACs, and the
   * boot itself (one-time PXE + power) as a stored effect. The script by MAC carries only the boot nonce; the
   * token comes with the nonce's one claim.
   */
  private async commitBoot(m: StoredMachine, h: StoredHost): Promise<void> {
    const { plan, attempt } = this.newAttempt(m, h);
    if (!(await this.commitIfSame({ machine: m, host: h }, () => ({ plan, value: true }))))
      this.ownBoots.delete(attempt);
  }

  /** An attempt with fresh credentials (startAttempt) as a plan; its boot is one this orchestrator stored. */
  private newAttempt(m: StoredMachine, h: StoredHost): { plan: Plan; attempt: string } {
    const a = startAttempt(m, h, newAttemptId(), this.now(), this.opts);
    this.ownBoots.add(a.effect.attempt);
    const inspect = this.p.boot(a.host, { ...INSPECT, host: keyOf(h) });
    const plan = {
      writes: [this.p.machine(a.machine), this.p.host(a.host), ...inspect],
      events: [a.event],
      effects: [a.effect],
    };
    return { plan, attempt: a.effect.attempt };
  }

  /** Ends the host's attempt, if it is still `attempt`, with the records as they are now; `also` is written either way. */
  private commitEnd(
    machine: string,
    host: string,
    attempt: string | undefined,
    why: Parameters<typeof endAttempt>[3],
    also: BatchOp[] = [],
  ): Promise<unknown> {
    return this.p.run(async () => {
      const [m, h] = [await this.store.machines.get(machine), await this.store.hosts.get(host)];
      const out = endAttempt(m, h, attempt, why, this.now(), this.opts);
      if (!out) return { plan: { writes: also }, value: undefined };
      const fields = { machine, host, final: out.final, reason: out.machine.status.failureMessage };
      this.log.warn(fields, out.final ? 'machine failed' : 'inspection attempt failed');
      const ended = this.p.attemptEnded(out);
      return { plan: { ...ended, writes: [...also, ...(ended.writes ?? [])] }, value: undefined };
    });
  }

  /**
   * Delete: a host the machine holds is powered off first (a stored effect whose outcome releases it and drops
   * the machine); a machine without one goes at once.
   */
  private commitRelease(m: StoredMachine, host: StoredHost | undefined): Promise<unknown> {
    return this.p.run(async () => {
      const cur = await this.store.machines.get(keyOf(m));
      if (cur?.status.phase !== 'Deleting') return { value: undefined };
      const h = host && (await this.store.hosts.get(keyOf(host)));
      if (h && h.status.consumer === cur.name)
        return { plan: { effects: [deletionPowerOff(cur, h)] }, value: undefined };
      return { plan: this.deletion(cur, h), value: undefined };
    });
  }

  /** The machine goes; its host, if it still holds it, is released. */
  private deletion(m: StoredMachine, h: StoredHost | undefined): Plan {
    const d = machineDeleted(m, h);
    this.log.info({ machine: m.name, host: d.host?.name }, 'machine deleted, host released');
    const writes = [
      this.store.machines.del(keyOf(m)),
      ...(d.host ? [this.p.host(d.host), ...this.p.boot(d.host, undefined)] : []),
    ];
    return { writes, events: [d.event] };
  }

  private async enroll(h: StoredHost): Promise<void> {
    let r: { ok: true; facts: BmcFacts } | { ok: false; message: string };
    try {
      const b = this.bmc(h);
      const sys = await b.getSystem();
      const hw = { manufacturer: sys.manufacturer, model: sys.model, serialNumber: sys.serialNumber };
      r = {
        ok: true,
        facts: {
          powerState: sys.powerState,
          uuid: sys.uuid,
          hardwareDetails: hw,
          macs: await b.macs(),
          secureBoot: await b.secureBoot(sys),
        },
      };
    } catch (e) {
      r = { ok: false, message: (e as Error).message };
    }
    if (this.stopped) return;
    const next = enrolment(h, r, this.now(), this.opts);
    const plan: Plan = { writes: [this.p.host(next.host)], events: [next.event] };
    if (!(await this.commitIfSame({ host: h }, () => ({ plan, value: true })))) return;
    const s = next.host.status;
    if (s.state === 'Error') {
      this.log.warn(
        { host: h.name, error: s.errorMessage, failures: s.errorCount, nextRetryAt: s.nextRetryAt },
        'host enrolment failed',
      );
    } else this.log.info({ host: h.name, state: s.state }, 'host enrolled');
  }

  /** Carries out the host's stored effects, oldest first, until none is left (or this orchestrator stops). */
  private async carryOutAll(host: string): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const [next] = await this.store.effectsOf(host);
      if (!next) return;
      const [key, e] = next;
      await this.carryOut(key, e);
      // still stored: its outcome could not be committed (store unreachable, no longer leading); a later pass tries
      if (await this.store.effects.get(key)) return;
    }
  }

  /** One effect through the host's BMC; its outcome and the effect's deletion are one plan. */
  private async carryOut(key: string, e: Effect): Promise<void> {
    const h = await this.store.hosts.get(e.host);
    const drop = this.store.effects.del(key);
    if (!h) {
      await this.p.run(() => ({ plan: { writes: [drop] }, value: undefined }));
      return;
    }
    if (e.kind === 'bootInspector') return this.bootInspector(h, e, drop);
    if (e.kind === 'bootCleaner') return this.bootCleaner(h, e, drop);
    if (e.kind === 'powerOff') return this.powerOff(h, e, drop);
    const r = await this.act(h, e.action);
    // a call cut short by shutdown is no outcome: the effect stays for the next start
    if (!r.ok && this.stopped) return;
    await this.onHost(keyOf(h), drop, (cur) => hostActed(cur, e.action, r, e.id));
  }

  /** Commits the effect's deletion with `fn`'s change of the host as it is now. */
  private onHost(
    hostKey: string,
    drop: BatchOp,
    fn?: (cur: StoredHost) => { host: StoredHost; event?: WorkflowEvent },
  ): Promise<unknown> {
    return this.p.run(async () => {
      const cur = await this.store.hosts.get(hostKey);
      const n = cur && fn?.(cur);
      return {
        plan: { writes: [drop, ...(n ? [this.p.host(n.host)] : [])], events: n?.event ? [n.event] : [] },
        value: undefined,
      };
    });
  }

  /** An operator's power or boot action on a host's BMC; the power state it leaves. */
  private async act(h: StoredHost, a: HostAction): Promise<ActionResult> {
    try {
      const b = this.bmc(h);
      if (a.action === 'reset') await b.reset(a.resetType);
      else if (a.action === 'powerOn') await b.powerOn();
      else if (a.action === 'powerOff') await b.powerOff(this.opts.powerDeadlineMs);
      else if (a.action === 'pxeOnce') await b.setOneTimePxe();
      else throw new Error(`${a.action} is not a BMC action`);
      return { ok: true, powerState: (await b.getSystem()).powerState };
    } catch (e) {
      return { ok: false, message: (e as Error).message };
    }
  }

  /**
   * A host to clean: its cleaning attempt starts (fresh credentials, the inspector booted to erase its disks),
   * or ends when its deadline passed without an answer.
   */
  private clean(h: StoredHost, now: number): Promise<unknown> {
    return this.p.run(async () => {
      const cur = await this.store.hosts.get(keyOf(h));
      if (cur?.status.state !== 'Cleaning') return { value: undefined };
      const b = cur.attempt;
      if (b?.purpose === 'clean') {
        if (Date.parse(b.expiresAt) > now) return { value: undefined };
        const secs = Math.round(this.opts.inspectionTimeoutMs / 1000);
        const d = cleaningDone(cur, { ok: false, message: `no answer from the cleaner within ${secs} s` });
        return { plan: this.p.cleaningEnded(d), value: undefined };
      }
      const c = startCleaning(cur, newAttemptId(), now, this.opts);
      this.ownBoots.add(c.effect.attempt);
      const writes = [this.p.host(c.host), ...this.p.boot(c.host, { ...INSPECT, host: keyOf(h) })];
      return { plan: { writes, events: [c.event], effects: [c.effect] }, value: undefined };
    });
  }

  /** The cleaning boot; a boot stored by an earlier orchestrator gets fresh credentials first, as inspection does. */
  private async bootCleaner(h: StoredHost, e: Extract<Effect, { kind: 'bootCleaner' }>, drop: BatchOp): Promise<void> {
    if (h.attempt?.id !== e.attempt || !this.ownBoots.has(e.attempt)) {
      this.ownBoots.delete(e.attempt);
      // not ours to boot: the next pass starts the cleaning again with new credentials
      await this.onHost(keyOf(h), drop, (cur) => {
        if (cur.attempt?.id !== e.attempt) return { host: cur };
        const { attempt: _, ...rest } = cur;
        return { host: rest };
      });
      return;
    }
    this.ownBoots.delete(e.attempt);
    let failure: string | undefined;
    try {
      const b = this.bmc(h);
      await b.powerOnOrRestart(await b.setOneTimePxe());
    } catch (err) {
      if (this.stopped) return;
      failure = `BMC: ${(err as Error).message}`;
    }
    await this.p.run(async () => {
      const cur = await this.store.hosts.get(keyOf(h));
      if (!cur || cur.attempt?.id !== e.attempt || failure === undefined)
        return { plan: { writes: [drop] }, value: undefined };
      const plan = this.p.cleaningEnded(cleaningDone(cur, { ok: false, message: failure }));
      return { plan: { ...plan, writes: [drop, ...(plan.writes ?? [])] }, value: undefined };
    });
  }

  /**
   * The attempt's inspection boot: one-time PXE, then power on or restart. Booting is committed with the effect's
   * deletion as soon as the BMC took the reset, so a restart after it waits for the report (or the inspection
   * timeout) instead of resetting the machine again; a restart before it carries the boot out again.
   */
  private async bootInspector(
    h: StoredHost,
    e: Extract<Effect, { kind: 'bootInspector' }>,
    drop: BatchOp,
  ): Promise<void> {
    // the attempt ended before its boot (a released host, a deleted machine): nothing to boot
    if (h.attempt?.id !== e.attempt) {
      this.ownBoots.delete(e.attempt);
      await this.onHost(keyOf(h), drop);
      return;
    }
    // stored by an orchestrator before this one (a restart, a new leader), which may have reached the BMC: the
    // machine may be booting with these credentials already, so this boot gets fresh ones (no attempt boots twice)
    if (!this.ownBoots.has(e.attempt)) {
      await this.p.run(async () => {
        const [m, cur] = [
          await this.store.machines.get(objectKey(h.namespace, e.machine)),
          await this.store.hosts.get(keyOf(h)),
        ];
        if (!m || cur?.attempt?.id !== e.attempt) return { plan: { writes: [drop] }, value: undefined };
        const { plan } = this.newAttempt(m, cur);
        return { plan: { ...plan, writes: [drop, ...(plan.writes ?? [])] }, value: undefined };
      });
      return;
    }
    this.ownBoots.delete(e.attempt);
    if (!(await this.pinTarget(h, e, drop))) return;
    let action: string;
    try {
      const b = this.bmc(h);
      action = await b.powerOnOrRestart(await b.setOneTimePxe());
    } catch (err) {
      if (this.stopped) return;
      const why = { reason: 'BMCError', message: `BMC: ${(err as Error).message}`, phase: 'Failed' as const };
      await this.commitEnd(objectKey(h.namespace, e.machine), keyOf(h), e.attempt, why, [drop]);
      return;
    }
    await this.onHost(keyOf(h), drop, (cur) =>
      cur.attempt?.id === e.attempt ? booted(cur, e.machine, action) : { host: cur },
    );
    this.log.info({ machine: e.machine, host: h.name, action }, 'inspection boot started');
    // a machine that claimed its credentials is running, whatever its BMC shows (the claim recorded it On);
    // an attempt that ended meanwhile is no longer watched
    const running = async () => {
      const cur = await this.store.hosts.get(keyOf(h));
      const phase = cur?.status.inspectionPhase;
      return cur?.attempt?.id !== e.attempt || phase === 'InProgress' || phase === 'Complete';
    };
    try {
      if (!(await this.bmc(h).waitPowerState('On', this.opts.powerDeadlineMs, 1000, running))) return;
    } catch (err) {
      if (this.stopped) return;
      if (await running()) {
        this.log.warn(
          { machine: e.machine, host: h.name, err: (err as Error).message },
          'BMC never showed the power on; the machine is booting anyway',
        );
        return;
      }
      const why = { reason: 'BMCError', message: `BMC: ${(err as Error).message}`, phase: 'Failed' as const };
      await this.commitEnd(objectKey(h.namespace, e.machine), keyOf(h), e.attempt, why);
      return;
    }
    await this.p.run(async () => {
      const cur = await this.store.hosts.get(keyOf(h));
      const same = cur?.attempt?.id === e.attempt;
      return { plan: same && cur ? { writes: [this.p.host(powerObserved(cur, 'On'))] } : {}, value: undefined };
    });
  }

  /**
   * Before the first boot of a machine whose target has no digest: the appliance computes one and records it, so
   * the inspector always gets beskar7.target-digest. A target that cannot be read ends the attempt.
   */
  private async pinTarget(
    h: StoredHost,
    e: Extract<Effect, { kind: 'bootInspector' }>,
    drop: BatchOp,
  ): Promise<boolean> {
    const m = await this.store.machines.get(objectKey(h.namespace, e.machine));
    if (!m || targetDigest(m) || !this.opts.targetDigest) return true;
    const url = m.spec.targetImageURL;
    let digest: string;
    try {
      digest = await this.opts.targetDigest(url);
    } catch (err) {
      if (this.stopped) return false;
      const message = `the target's digest could not be computed: ${(err as Error).message}`;
      await this.commitEnd(
        objectKey(h.namespace, e.machine),
        keyOf(h),
        e.attempt,
        { reason: 'TargetUnavailable', message, phase: 'Failed' },
        [drop],
      );
      return false;
    }
    await this.p.run(async () => {
      const cur = await this.store.machines.get(objectKey(h.namespace, e.machine));
      if (cur?.spec.targetImageURL !== url) return { value: undefined };
      const pinned = targetPinned(cur, digest, this.now());
      return { plan: { writes: [this.p.machine(pinned.machine)], events: [pinned.event] }, value: undefined };
    });
    return true;
  }

  /**
   * Best effort: power off and clear the override. The host shows the power state the BMC last reported, and a
   * failure is recorded on it; either way the effect is done, a machine being deleted goes, and the host may be
   * claimed again.
   */
  private async powerOff(h: StoredHost, e: Extract<Effect, { kind: 'powerOff' }>, drop: BatchOp): Promise<void> {
    let failure: string | undefined;
    let power: string | undefined;
    try {
      const b = this.bmc(h);
      try {
        await b.powerOff(this.opts.powerDeadlineMs);
        await b.clearBootOverride();
      } catch (err) {
        failure = (err as Error).message;
      }
      power = await b.getSystem().then(
        (s) => s.powerState,
        () => undefined,
      );
    } catch (err) {
      failure = (err as Error).message;
    }
    // a call cut short by shutdown is no outcome: the effect stays for the next start
    if (this.stopped) return;
    if (failure) this.log.warn({ host: h.name, err: failure }, 'power off / clear override failed');
    await this.p.run(async () => {
      const cur = await this.store.hosts.get(keyOf(h));
      if (!cur) return { plan: { writes: [drop] }, value: undefined };
      const n = failure === undefined ? { host: powerObserved(cur, power) } : releaseFailed(cur, failure, power);
      const plan: Plan = { writes: [drop, this.p.host(n.host)], events: 'event' in n ? [n.event] : [] };
      const m = e.release ? await this.store.machines.get(objectKey(h.namespace, e.release)) : undefined;
      if (m?.status.phase !== 'Deleting') return { plan, value: undefined };
      const d = this.deletion(m, n.host);
      return {
        plan: { writes: [drop, ...(d.writes ?? [])], events: [...(plan.events ?? []), ...(d.events ?? [])] },
        value: undefined,
      };
    });
  }
}
