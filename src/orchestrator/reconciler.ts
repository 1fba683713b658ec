import type { BootInstruction } from '../domain/boot.js';
import type { WorkflowEvent } from '../domain/events.js';
import { type HostAction, hostMacs, type StoredHost, type StoredMachine } from '../domain/resources.js';
import type { Logger } from '../log.js';
import type { RedfishClient } from '../redfish/client.js';
import { newAttemptId, type SecretBox } from '../store/secrets.js';
import type { BatchOp, Store } from '../store/store.js';
import {
  type ActionResult,
  attemptFailed,
  type BmcFacts,
  booted,
  claim,
  claimable,
  enrolment,
  machineDeleted,
  nextStep,
  type Policy,
  powerObserved,
  releaseFailed,
  type Step,
  shouldEnroll,
  startAttempt,
} from './transitions.js';

export type BmcDriver = Pick<
  RedfishClient,
  | 'getSystem'
  | 'macs'
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
}

/** The shortest time between two reconcile passes. */
const PASS_GAP_MS = 25;

/** Reasons that end an attempt whose report is in. */
const AFTER_REPORT = new Set(['DeploymentTimedOut', 'CredentialConflict']);

/** Drives machines and hosts through the workflow; state is in the store, so a restart simply reconciles again. */
export class Orchestrator {
  private readonly bmcs = new Map<string, { driver: BmcDriver; spec: string }>();
  private readonly busy = new Set<string>();
  private readonly inflight = new Set<Promise<void>>();
  private timer?: NodeJS.Timeout;
  private pass?: Promise<void>;
  private again = false;
  private stopped = false;
  private soon?: NodeJS.Timeout;
  private lastPassEnd = 0;

  constructor(
    private readonly store: Store,
    private readonly secrets: SecretBox,
    private readonly makeBmc: BmcFactory,
    private readonly opts: OrchestratorOptions,
    private readonly log: Logger,
  ) {}

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
   * storm every report and claim kicks; back-to-back passes over every machine made the reconciler the
   * appliance's largest CPU cost, and a pass 25 ms later sees all of those changes at once.
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
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
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
    const cached = this.bmcs.get(h.name);
    if (cached?.spec === spec) return cached.driver;
    if (cached) void cached.driver.close().catch(() => undefined);
    const driver = this.makeBmc(h, this.secrets.open(h.spec.redfish.passwordEnc));
    this.bmcs.set(h.name, { driver, spec });
    return driver;
  }

  /** An operator's power or boot action on a host's BMC (troubleshooting); the power state it leaves. */
  async hostAction(h: StoredHost, a: HostAction): Promise<ActionResult> {
    const b = this.bmc(h);
    try {
      if (a.action === 'reset') await b.reset(a.resetType);
      else if (a.action === 'powerOn') await b.powerOn();
      else if (a.action === 'powerOff') await b.powerOff(this.opts.powerDeadlineMs);
      else await b.setOneTimePxe();
      return { ok: true, powerState: (await b.getSystem()).powerState };
    } catch (e) {
      return { ok: false, message: (e as Error).message };
    }
  }

  async forgetBmc(name: string): Promise<void> {
    const b = this.bmcs.get(name);
    this.bmcs.delete(name);
    await b?.driver.close().catch(() => undefined);
  }

  private async reconcileAll(): Promise<void> {
    for (const [key, r] of await this.store.requests.entries()) {
      if (this.busy.has(`request/${key}`)) continue;
      this.guard(`request/${key}`, async () => {
        if (r.kind === 'failAttempt') await this.failAttemptOf(r.host, r.attempt, r.reason, r.message);
        else {
          const h = await this.store.hosts.get(r.host);
          if (h) await this.powerDown(h);
        }
        if (!this.stopped) await this.store.batch([this.store.requests.del(key)]);
      });
    }
    const hosts = await this.store.hosts.all();
    const now = Date.now();
    for (const h of hosts) {
      if (shouldEnroll(h, now) && !this.busy.has(`host/${h.name}`)) this.guard(`host/${h.name}`, () => this.enroll(h));
    }
    const byName = new Map(hosts.map((h) => [h.name, h]));
    // oldest first, and claims shrink it as the pass goes: a machine without a selector takes the first host
    const available = claimable(hosts);
    for (const m of await this.store.machines.all()) {
      if (this.busy.has(`machine/${m.name}`)) continue;
      const step = nextStep(m, m.status.hostId ? byName.get(m.status.hostId) : undefined, available, now);
      if (step.kind === 'claim') {
        // claims run one at a time, in this loop, against the list they update: no host is claimed twice
        const c = await this.claim(m, step.host);
        if (!c) continue;
        available.splice(available.indexOf(step.host), 1);
        this.guard(`machine/${m.name}`, () => this.bootHost(c.machine, c.host));
      } else if (step.kind !== 'wait' && step.kind !== 'done' && step.kind !== 'noHost') {
        this.guard(`machine/${m.name}`, () => this.act(step, m));
      }
    }
  }

  /**
   * Starts one machine's (or host's) step without waiting for it: a slow BMC holds up only its own host, and
   * the next pass skips keys still busy.
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

  private act(step: Exclude<Step, { kind: 'wait' | 'done' | 'noHost' | 'claim' }>, m: StoredMachine): Promise<void> {
    switch (step.kind) {
      case 'boot':
        return this.bootHost(m, step.host);
      case 'timeout': {
        const deploying = step.reason === 'DeploymentTimedOut';
        const ms = deploying ? this.opts.deploymentTimeoutMs : this.opts.inspectionTimeoutMs;
        const what = deploying ? 'no provisioned callback' : 'no inspection report';
        const msg = `${what} within ${Math.round(ms / 1000)} s`;
        return this.failAttempt(m, step.host, step.reason, msg, 'Timeout');
      }
      case 'release':
        return this.releaseMachine(m, step.host);
    }
  }

  private bootOps(h: StoredHost, instr: BootInstruction | undefined): BatchOp[] {
    const boot = this.store.bootInstructions;
    return hostMacs(h).map((mac) => (instr ? boot.put(mac, instr) : boot.del(mac)));
  }

  /** Machine and host records with their event, committed only while both are still as read. */
  private commitPair(
    seen: { machine?: StoredMachine; host?: StoredHost },
    next: { machine?: StoredMachine; host?: StoredHost; event: WorkflowEvent },
    extra: BatchOp[] = [],
  ): Promise<boolean> {
    return this.store.commitIf(seen, [
      ...(next.machine ? [this.store.machines.put(next.machine.name, next.machine)] : []),
      ...(next.host ? [this.store.hosts.put(next.host.name, next.host)] : []),
      ...extra,
      this.store.event(next.event),
    ]);
  }

  private async claim(
    m: StoredMachine,
    h: StoredHost,
  ): Promise<{ machine: StoredMachine; host: StoredHost } | undefined> {
    const c = claim(m, h, Date.now());
    if (!(await this.commitPair({ machine: m, host: h }, c))) {
      this.again = true; // the host or machine changed since this pass read them
      return undefined;
    }
    this.log.info({ machine: m.name, host: h.name }, 'host claimed');
    return c;
  }

  private async enroll(h: StoredHost): Promise<void> {
    let r: { ok: true; facts: BmcFacts } | { ok: false; message: string };
    try {
      const b = this.bmc(h);
      const sys = await b.getSystem();
      const hw = { manufacturer: sys.manufacturer, model: sys.model, serialNumber: sys.serialNumber };
      r = {
        ok: true,
        facts: { powerState: sys.powerState, uuid: sys.uuid, hardwareDetails: hw, macs: await b.macs() },
      };
    } catch (e) {
      r = { ok: false, message: (e as Error).message };
    }
    if (this.stopped) return;
    const next = enrolment(h, r, Date.now(), this.opts);
    if (!(await this.commitPair({ host: h }, next))) return;
    const s = next.host.status;
    if (s.state === 'Error') {
      this.log.warn(
        { host: h.name, error: s.errorMessage, failures: s.errorCount, nextRetryAt: s.nextRetryAt },
        'host enrolment failed',
      );
    } else this.log.info({ host: h.name, state: s.state }, 'host enrolled');
    this.kick();
  }

  /** Commits `fn`'s result on the host as it is now (under the store lock), while `still` holds for it. */
  private updateHost(
    name: string,
    fn: (cur: StoredHost) => { host: StoredHost; event?: WorkflowEvent },
    still: (cur: StoredHost) => boolean = () => true,
  ): Promise<void> {
    return this.store.transact(async () => {
      const cur = await this.store.hosts.get(name);
      if (!cur || !still(cur)) return;
      const n = fn(cur);
      await this.store.batch([this.store.hosts.put(name, n.host), ...(n.event ? [this.store.event(n.event)] : [])]);
    });
  }

  /** Commits `fn`'s result on the host only while it is still in this attempt. */
  private onAttempt(h: StoredHost, fn: (cur: StoredHost) => { host: StoredHost; event?: WorkflowEvent }) {
    return this.updateHost(h.name, fn, (cur) => cur.bootstrap?.attempt === h.bootstrap?.attempt);
  }

  /**
   * New attempt: persist Inspecting/Pending with fresh credentials and the inspect script, then PXE + power.
   * The script by MAC carries only the boot nonce; the token comes with the nonce's one claim.
   */
  private async bootHost(m: StoredMachine, h: StoredHost): Promise<void> {
    // fresh credentials also when a restart came between persisting and powering
    const a = startAttempt(m, h, newAttemptId(), Date.now(), this.opts);
    const instr: BootInstruction = { script: 'inspect', host: h.name, cmdline: '', localDiskMethod: 'exit' };
    const ops = [
      this.store.machines.put(m.name, a.machine),
      this.store.hosts.put(h.name, a.host),
      ...this.bootOps(a.host, instr),
      this.store.event(a.event),
    ];
    if (!(await this.store.commitIf({ machine: m, host: h }, ops))) return this.kick();
    const { machine, host } = a;
    let action: string;
    try {
      const b = this.bmc(host);
      action = await b.powerOnOrRestart(await b.setOneTimePxe());
    } catch (e) {
      return this.failAttempt(machine, host, 'BMCError', `BMC: ${(e as Error).message}`, 'Failed');
    }
    // the attempt may have ended while the BMC was busy (a report that failed the requirements, contested
    // credentials): a host let go meanwhile must not stay powered on by this step
    const now = await this.store.hosts.get(h.name);
    if (now && !now.status.consumer && now.bootstrap?.attempt !== host.bootstrap?.attempt) return this.powerDown(now);
    // Booting is written as soon as the BMC took the reset: a restart after this waits for the report (or the
    // inspection timeout) instead of resetting the machine again
    await this.onAttempt(host, (cur) => booted(cur, m.name, action));
    this.log.info(
      { machine: m.name, host: h.name, action, attempt: machine.status.attempts },
      'inspection boot started',
    );
    // a machine that claimed its credentials is running, whatever its BMC shows (the claim recorded it On)
    const running = async () => {
      const phase = (await this.store.hosts.get(h.name))?.status.inspectionPhase;
      return phase === 'InProgress' || phase === 'Complete';
    };
    try {
      if (!(await this.bmc(host).waitPowerState('On', this.opts.powerDeadlineMs, 1000, running))) return;
    } catch (e) {
      if (this.stopped) return;
      if (await running()) {
        this.log.warn(
          { machine: m.name, host: h.name, err: (e as Error).message },
          'BMC never showed the power on; the machine is booting anyway',
        );
        return;
      }
      return this.failAttempt(machine, host, 'BMCError', `BMC: ${(e as Error).message}`, 'Failed');
    }
    await this.onAttempt(host, (cur) => ({ host: powerObserved(cur, 'On') }));
  }

  /** The workflow's side of a contested claim: ends that attempt, if it is still the host's. */
  async failAttemptOf(hostName: string, attempt: string, reason: string, message: string): Promise<void> {
    const h = await this.store.hosts.get(hostName);
    const m = h?.status.consumer ? await this.store.machines.get(h.status.consumer) : undefined;
    if (!h || !m || h.bootstrap?.attempt !== attempt) return;
    await this.failAttempt(m, h, reason, message, 'Failed');
  }

  /** Powers a released host off in the background (a step of its own, so shutdown waits for it). */
  powerDownLater(hostName: string): void {
    this.guard(`power/${hostName}`, async () => {
      const h = await this.store.hosts.get(hostName);
      if (h) await this.powerDown(h);
    });
  }

  /** Ends this attempt (re-read under the store lock: a report may have come in meanwhile). */
  private async failAttempt(
    m: StoredMachine,
    h: StoredHost,
    reason: string,
    message: string,
    phase: 'Timeout' | 'Failed',
  ): Promise<void> {
    // a call cut short by shutdown is no failure of the machine: the next start picks the attempt up again
    if (this.stopped) return;
    const r = await this.store.transact(async () => {
      const [curM, curH] = [await this.store.machines.get(m.name), await this.store.hosts.get(h.name)];
      if (!curM || !curH || curH.bootstrap?.attempt !== h.bootstrap?.attempt) return undefined;
      // a host that reported is judged already: only a deployment timeout or contested credentials end it now
      if (curH.status.inspectionPhase === 'Complete' && !AFTER_REPORT.has(reason)) return undefined;
      const out = attemptFailed(curM, curH, reason, message, Date.now(), this.opts, phase);
      await this.store.batch([
        this.store.machines.put(m.name, out.machine),
        this.store.hosts.put(out.host.name, out.host),
        ...this.bootOps(out.host, undefined),
        this.store.event(out.event),
      ]);
      return out;
    });
    if (!r) return this.kick();
    const fields = { machine: m.name, host: r.host.name, final: r.final, reason: r.machine.status.failureMessage };
    this.log.warn(fields, r.final ? 'machine failed' : 'inspection attempt failed');
    if (r.final) await this.powerDown(r.host);
  }

  /** Delete: power off, clear the override, release the host, then forget the machine. */
  private async releaseMachine(m: StoredMachine, host: StoredHost | undefined): Promise<void> {
    const ours = host && host.status.consumer === m.name ? host : undefined;
    if (ours) await this.powerDown(ours);
    if (this.stopped) return;
    await this.store.transact(async () => {
      // powerDown recorded the power state (and any error) on the host: release the record as it is now
      const cur = ours ? await this.store.hosts.get(ours.name) : host;
      const d = machineDeleted(m, cur);
      await this.store.batch([
        this.store.machines.del(m.name),
        this.store.event(d.event),
        ...(d.host ? [this.store.hosts.put(d.host.name, d.host), ...this.bootOps(d.host, undefined)] : []),
      ]);
    });
    this.log.info({ machine: m.name, host: ours?.name }, 'machine deleted, host released');
    this.kick();
  }

  /**
   * Best effort: power off and clear the override. The host shows the power state the BMC last reported,
   * and a failure is recorded on it; the release goes on either way.
   */
  private async powerDown(h: StoredHost): Promise<void> {
    if (this.stopped) return;
    const b = this.bmc(h);
    let failure: string | undefined;
    try {
      await b.powerOff(this.opts.powerDeadlineMs);
      await b.clearBootOverride();
    } catch (e) {
      failure = (e as Error).message;
      this.log.warn({ host: h.name, err: failure }, 'power off / clear override failed');
    }
    if (this.stopped) return;
    const power = await b.getSystem().then(
      (s) => s.powerState,
      () => undefined,
    );
    await this.updateHost(h.name, (cur) =>
      failure === undefined ? { host: powerObserved(cur, power) } : releaseFailed(cur, failure, power),
    );
  }
}
