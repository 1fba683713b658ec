import type { BootInstruction } from '../config.js';
import { type InspectionReport, type StoredHost, type StoredMachine, hostMacs } from '../domain/resources.js';
import type { Logger } from '../log.js';
import type { RedfishClient } from '../redfish/client.js';
import { type SecretBox, hashToken, newToken, tokenMatches } from '../store/secrets.js';
import type { BatchOp, Store } from '../store/store.js';
import {
  type Policy,
  attemptFailed,
  booted,
  claim,
  enrolment,
  handedOff,
  inspectInstruction,
  nextStep,
  release,
  shouldEnroll,
  startAttempt,
  validated,
} from './transitions.js';

export type BmcDriver = Pick<RedfishClient, 'getSystem' | 'macs' | 'setOneTimePxe' | 'powerOnOrRestart' | 'waitPowerState' | 'powerOff' | 'clearBootOverride' | 'close'>;
export type BmcFactory = (host: StoredHost, password: string) => BmcDriver;

export interface OrchestratorOptions extends Policy {
  /** base URL the inspector posts to (http://advertise:port) */
  apiBase: string;
  tickMs: number;
  powerDeadlineMs: number;
}

export type ReportVerdict = { ok: true } | { ok: false; status: 401 | 404 | 409; error: string };

/** Drives machines and hosts through the workflow; state is in the store, so a restart simply reconciles again. */
export class Orchestrator {
  private readonly bmcs = new Map<string, BmcDriver>();
  private readonly busy = new Set<string>();
  private readonly inflight = new Set<Promise<void>>();
  private timer?: NodeJS.Timeout;
  private pass?: Promise<void>;
  private again = false;
  private stopped = false;

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

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.idle();
    await Promise.all([...this.bmcs.values()].map((b) => b.close().catch(() => undefined)));
  }

  /** Run a reconcile pass now (or right after the one in progress). */
  kick(): void {
    if (this.stopped) return;
    if (this.pass) {
      this.again = true;
      return;
    }
    this.pass = this.reconcileAll()
      .catch((e: Error) => this.log.error({ err: e.message }, 'reconcile pass failed'))
      .finally(() => {
        this.pass = undefined;
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

  private bmc(h: StoredHost): BmcDriver {
    let b = this.bmcs.get(h.name);
    if (!b) {
      b = this.makeBmc(h, this.secrets.open(h.spec.redfish.passwordEnc));
      this.bmcs.set(h.name, b);
    }
    return b;
  }

  async forgetBmc(name: string): Promise<void> {
    const b = this.bmcs.get(name);
    this.bmcs.delete(name);
    await b?.close().catch(() => undefined);
  }

  private async reconcileAll(): Promise<void> {
    const hosts = await this.store.hosts.all();
    const now = Date.now();
    for (const h of hosts) if (shouldEnroll(h, now) && !this.busy.has(`host/${h.name}`)) this.guard(`host/${h.name}`, () => this.enroll(h));
    const byName = new Map(hosts.map((h) => [h.name, h]));
    // claims shrink this list as the pass goes: a pass costs O(machines + hosts) while no machine waits for a host
    const available = hosts.filter((h) => h.status.state === 'Available' && !h.status.consumer);
    const machines = await this.store.machines.all();
    for (const m of machines) {
      if (this.busy.has(`machine/${m.name}`)) continue;
      const host = m.status.hostId ? byName.get(m.status.hostId) : undefined;
      const step = nextStep(m, host, available, now);
      if (step.kind === 'claim') {
        // claims run one at a time, in this loop, against the list they update: no host is claimed twice
        const c = claim(m, step.host);
        const ok = await this.store.commitIf({ machine: m, host: step.host }, [this.store.machines.put(m.name, c.machine), this.store.hosts.put(c.host.name, c.host), this.store.event({ kind: 'Claimed', machine: m.name, host: c.host.name, message: `claimed ${c.host.name}` })]);
        if (!ok) {
          this.again = true; // the host or machine changed since this pass read them
          continue;
        }
        available.splice(available.indexOf(step.host), 1);
        this.log.info({ machine: m.name, host: c.host.name }, 'host claimed');
        this.guard(`machine/${m.name}`, () => this.bootHost(c.machine, c.host));
      } else if (step.kind !== 'wait' && step.kind !== 'done' && step.kind !== 'noHost') {
        this.guard(`machine/${m.name}`, () => this.act(step.kind, m, host));
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

  private async act(kind: string, m: StoredMachine, host: StoredHost | undefined): Promise<void> {
    switch (kind) {
      case 'boot':
        return this.bootHost(m, host as StoredHost);
      case 'timeout': {
        await this.failAttempt(m, host as StoredHost, 'InspectionTimeout', `no inspection report within ${Math.round(this.opts.inspectionTimeoutMs / 1000)} s`, 'Timeout');
        return;
      }
      case 'validate':
        return this.validate(m, host as StoredHost);
      case 'handoff':
        return this.handoff(m, host as StoredHost);
      case 'release':
        return this.releaseMachine(m, host);
    }
  }

  private bootOps(h: StoredHost, instr: BootInstruction | undefined): BatchOp[] {
    return hostMacs(h).map((mac) => (instr ? this.store.bootInstructions.put(mac, instr) : this.store.bootInstructions.del(mac)));
  }

  private async enroll(h: StoredHost): Promise<void> {
    let r: Parameters<typeof enrolment>[1];
    try {
      const b = this.bmc(h);
      const sys = await b.getSystem();
      const macs = await b.macs();
      r = { ok: true, facts: { powerState: sys.powerState, uuid: sys.uuid, hardwareDetails: { manufacturer: sys.manufacturer, model: sys.model, serialNumber: sys.serialNumber }, macs } };
    } catch (e) {
      r = { ok: false, message: (e as Error).message };
    }
    const next = enrolment(h, r, Date.now(), this.opts);
    if (!(await this.store.commitIf({ host: h }, [this.store.hosts.put(h.name, next), this.store.event({ kind: next.status.state === 'Error' ? 'EnrolFailed' : 'Enrolled', host: h.name, message: next.status.errorMessage ?? `${next.status.state}: ${next.status.nics.length} NICs` })]))) return;
    const s = next.status;
    if (s.state === 'Error') this.log.warn({ host: h.name, error: s.errorMessage, failures: s.errorCount, nextRetryAt: s.nextRetryAt }, 'host enrolment failed');
    else this.log.info({ host: h.name, state: s.state }, 'host enrolled');
    this.kick();
  }

  /** New attempt: persist Inspecting/Pending with a fresh token and the inspect script, then PXE + power. */
  private async bootHost(m: StoredMachine, h: StoredHost): Promise<void> {
    // a fresh token also when a restart came between persisting and powering: only its hash was kept
    const token = newToken();
    const { machine, host } =
      h.status.state === 'InUse' ? startAttempt(m, h, hashToken(token), Date.now(), this.opts) : { machine: m, host: { ...h, inspectionTokenHash: hashToken(token) } };
    const persisted = await this.store.commitIf({ machine: m, host: h }, [
      this.store.machines.put(m.name, machine),
      this.store.hosts.put(h.name, host),
      ...this.bootOps(host, inspectInstruction(machine, host, this.opts.apiBase, token)),
      ...(h.status.state === 'InUse' ? [this.store.event({ kind: 'InspectionStarted', machine: m.name, host: h.name, message: `attempt ${machine.status.attempts}` })] : []),
    ]);
    if (!persisted) return this.kick();
    let action: string;
    try {
      const b = this.bmc(host);
      await b.setOneTimePxe();
      action = await b.powerOnOrRestart();
    } catch (e) {
      await this.failAttempt(machine, host, 'BMCError', `BMC: ${(e as Error).message}`, 'Failed');
      return;
    }
    // Booting is written as soon as the BMC took the reset: a restart after this waits for the report (or the
    // inspection timeout) instead of resetting the machine again. A fast machine may have reported already:
    // only a still-Pending attempt becomes Booting.
    const mark = (ops: (cur: StoredHost) => BatchOp[]) =>
      this.store.transact(async () => {
        const cur = await this.store.hosts.get(h.name);
        if (cur && cur.inspectionTokenHash === host.inspectionTokenHash) await this.store.batch(ops(cur));
      });
    await mark((cur) => [
      this.store.event({ kind: 'PowerOn', machine: m.name, host: h.name, message: `one-time PXE set; ${action}` }),
      ...(cur.status.inspectionPhase === 'Pending' ? [this.store.hosts.put(h.name, booted(cur))] : []),
    ]);
    this.log.info({ machine: m.name, host: h.name, action, attempt: machine.status.attempts }, 'inspection boot started');
    try {
      await this.bmc(host).waitPowerState('On', this.opts.powerDeadlineMs);
    } catch (e) {
      // a machine that fetched its script is running, whatever its BMC shows
      const phase = (await this.store.hosts.get(h.name))?.status.inspectionPhase;
      if (phase === 'InProgress' || phase === 'Complete') {
        this.log.warn({ machine: m.name, host: h.name, err: (e as Error).message }, 'BMC never showed the power on; the machine is booting anyway');
        return;
      }
      await this.failAttempt(machine, host, 'BMCError', `BMC: ${(e as Error).message}`, 'Failed');
      return;
    }
    await mark((cur) => [this.store.hosts.put(h.name, { ...cur, status: { ...cur.status, observedPowerState: 'On' } })]);
  }

  /** Ends this attempt (re-read under the store lock: a report may have come in meanwhile). */
  private async failAttempt(m: StoredMachine, h: StoredHost, reason: string, message: string, phase: 'Timeout' | 'Failed'): Promise<void> {
    const r = await this.store.transact(async () => {
      const [curM, curH] = [await this.store.machines.get(m.name), await this.store.hosts.get(h.name)];
      if (!curM || !curH || curH.inspectionTokenHash !== h.inspectionTokenHash || curH.status.inspectionPhase === 'Complete') return undefined;
      const out = attemptFailed(curM, curH, reason, message, Date.now(), this.opts, phase);
      await this.store.batch([
        this.store.machines.put(m.name, out.machine),
        this.store.hosts.put(out.host.name, out.host),
        ...this.bootOps(out.host, undefined),
        this.store.event({ kind: out.final ? 'Failed' : 'Retry', machine: m.name, host: out.host.name, message: out.machine.status.failureMessage ?? '' }),
      ]);
      return out;
    });
    if (!r) return this.kick();
    this.log.warn({ machine: m.name, host: r.host.name, final: r.final, reason: r.machine.status.failureMessage }, r.final ? 'machine failed' : 'inspection attempt failed');
    if (r.final) await this.powerDown(r.host);
  }

  private async validate(m: StoredMachine, h: StoredHost): Promise<void> {
    const stored = h.status.inspectionReportId ? await this.store.reports.get(h.status.inspectionReportId) : undefined;
    if (!stored) throw new Error(`host ${h.name} is Complete without a stored report`);
    const r = validated(m, h, stored.report);
    const ok = await this.store.commitIf({ machine: m, host: h }, [
      this.store.machines.put(m.name, r.machine),
      this.store.hosts.put(h.name, r.host),
      ...(r.machine.status.phase === 'Failed' ? this.bootOps(h, undefined) : []),
      this.store.event({ kind: r.machine.status.phase === 'Failed' ? 'RequirementsNotMet' : 'Ready', machine: m.name, host: h.name, message: r.machine.status.failureMessage ?? 'requirements met' }),
    ]);
    if (!ok) return this.kick();
    this.log.info({ machine: m.name, host: h.name, state: r.host.status.state, reason: r.machine.status.failureMessage }, 'inspection validated');
    if (r.machine.status.phase === 'Failed') await this.powerDown(r.host);
    this.kick();
  }

  /** The inspector kexecs into the target itself; later boots of this host leave iPXE for the local disk. */
  private async handoff(m: StoredMachine, h: StoredHost): Promise<void> {
    const r = handedOff(m, h);
    const ok = await this.store.commitIf({ machine: m, host: h }, [
      this.store.machines.put(m.name, r.machine),
      this.store.hosts.put(h.name, r.host),
      ...this.bootOps(h, { script: 'local-disk', cmdline: '', localDiskMethod: 'exit' }),
      this.store.event({ kind: 'Provisioned', machine: m.name, host: h.name, message: `target ${m.spec.targetImageURL}` }),
    ]);
    if (!ok) return this.kick();
    this.log.info({ machine: m.name, host: h.name }, 'machine provisioned');
  }

  /** Delete: power off, clear the override, release the host, then forget the machine. */
  private async releaseMachine(m: StoredMachine, host: StoredHost | undefined): Promise<void> {
    const ours = host && host.status.consumer === m.name ? host : undefined;
    if (ours) await this.powerDown(ours);
    await this.store.transact(async () => {
      // powerDown may have noted an error on the host: release the record as it is now
      const cur = ours ? await this.store.hosts.get(ours.name) : undefined;
      await this.store.batch([
        this.store.machines.del(m.name),
        this.store.event({ kind: 'Deleted', machine: m.name, ...(host ? { host: host.name } : {}), message: 'machine deleted' }),
        ...(cur ? [this.store.hosts.put(cur.name, release(cur)), ...this.bootOps(cur, undefined)] : []),
      ]);
    });
    this.log.info({ machine: m.name, host: ours?.name }, 'machine deleted, host released');
    this.kick();
  }

  /** Best effort: a BMC that fails here is recorded on the host, the release goes on. */
  private async powerDown(h: StoredHost): Promise<void> {
    try {
      const b = this.bmc(h);
      await b.powerOff(this.opts.powerDeadlineMs);
      await b.clearBootOverride();
    } catch (e) {
      this.log.warn({ host: h.name, err: (e as Error).message }, 'power off / clear override failed');
      await this.store.transact(async () => {
        const cur = await this.store.hosts.get(h.name);
        if (cur) await this.store.batch([this.store.hosts.put(h.name, { ...cur, status: { ...cur.status, errorMessage: `release: ${(e as Error).message}` } })]);
      });
    }
  }

  /** iPXE fetched the script of a MAC: an inspecting host moves on to InProgress. */
  scriptFetched(mac: string): Promise<void> {
    return this.store.transact(async () => {
      const h = (await this.store.hosts.all()).find((x) => x.status.state === 'Inspecting' && hostMacs(x).includes(mac));
      if (!h || (h.status.inspectionPhase !== 'Booting' && h.status.inspectionPhase !== 'Pending')) return;
      await this.store.batch([this.store.hosts.put(h.name, { ...h, status: { ...h.status, inspectionPhase: 'InProgress' } }), this.store.event({ kind: 'ScriptFetched', host: h.name, mac, message: 'inspector script fetched' })]);
    });
  }

  /** A step of the inspector after its report (download, config, kexec) or a failure it hit. */
  acceptProgress(hostName: string, token: string | undefined, p: { step: string; ok: boolean; message: string }): Promise<ReportVerdict> {
    return this.store.transact(() => this.progress(hostName, token, p));
  }

  private async progress(hostName: string, token: string | undefined, p: { step: string; ok: boolean; message: string }): Promise<ReportVerdict> {
    const h = await this.store.hosts.get(hostName);
    if (!h) return { ok: false, status: 404, error: `no host ${hostName}` };
    if (!tokenMatches(token, h.inspectionTokenHash)) return { ok: false, status: 401, error: 'wrong inspection token' };
    const ops: BatchOp[] = [this.store.event({ kind: p.ok ? 'InspectorStep' : 'InspectorFailed', host: hostName, message: `${p.step}: ${p.message}` })];
    if (!p.ok) ops.push(this.store.hosts.put(hostName, { ...h, status: { ...h.status, errorMessage: `inspector ${p.step}: ${p.message}` } }));
    await this.store.batch(ops);
    this.log[p.ok ? 'info' : 'warn']({ host: hostName, step: p.step, message: p.message }, 'inspector step');
    return { ok: true };
  }

  /** Report intake: the host's one-time token, an inspecting host; the report and the phase change in one batch. */
  async acceptReport(hostName: string, token: string | undefined, report: InspectionReport): Promise<ReportVerdict> {
    const v = await this.store.transact(() => this.report(hostName, token, report));
    if (v.ok) this.kick();
    return v;
  }

  private async report(hostName: string, token: string | undefined, report: InspectionReport): Promise<ReportVerdict> {
    const h = await this.store.hosts.get(hostName);
    if (!h) return { ok: false, status: 404, error: `no host ${hostName}` };
    if (!tokenMatches(token, h.inspectionTokenHash)) {
      await this.store.batch([this.store.event({ kind: 'ReportRejected', host: hostName, message: 'wrong or used inspection token' })]);
      return { ok: false, status: 401, error: 'wrong or used inspection token' };
    }
    // Pending counts: the token exists once the attempt is stored, and a fast machine may report before
    // the BMC call that powered it has returned
    if (h.status.state !== 'Inspecting' || !['Pending', 'Booting', 'InProgress'].includes(h.status.inspectionPhase ?? '')) {
      await this.store.batch([this.store.event({ kind: 'ReportRejected', host: hostName, message: `host is ${h.status.state}/${h.status.inspectionPhase}, not inspecting` })]);
      return { ok: false, status: 409, error: `host ${hostName} is not inspecting (${h.status.state}/${h.status.inspectionPhase})` };
    }
    const at = new Date().toISOString();
    const id = `${hostName}/${at}`;
    const next = structuredClone(h);
    // one report per token: the phase is Complete now, so a second one gets 409; the token still carries
    // the inspector's progress reports until the host is released
    next.status = { ...next.status, inspectionPhase: 'Complete', inspectionReportId: id, inspectionTimestamp: at };
    await this.store.batch([
      this.store.reports.put(id, { hostId: hostName, ...(h.status.consumer ? { machine: h.status.consumer } : {}), receivedAt: at, report }),
      this.store.hosts.put(hostName, next),
      this.store.event({ kind: 'ReportReceived', host: hostName, message: `${report.cpus.cores} cores, ${report.memory.totalGB} GB, ${report.disks.length} disks` }),
    ]);
    return { ok: true };
  }
}
