import type { BootInstruction } from '../config.js';
import type { HardwareRequirements, InspectionReport, StoredHost, StoredMachine } from '../domain/resources.js';

/**
 * The workflow as pure functions: which step a machine takes next, and what each step makes of the records.
 * The reconciler persists the new records before it performs the step's side effects (Redfish calls).
 */

export interface Policy {
  inspectionTimeoutMs: number;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
}

export type Step =
  | { kind: 'wait'; until?: number }
  | { kind: 'claim'; host: StoredHost }
  | { kind: 'noHost' }
  | { kind: 'boot' } // host claimed or attempt due: one-time PXE + power, then Booting
  | { kind: 'timeout' }
  | { kind: 'validate' }
  | { kind: 'handoff' }
  | { kind: 'release' }
  | { kind: 'done' };

/** Hardware requirement failures, one sentence each; an empty list means the host qualifies. */
export function unmetRequirements(req: HardwareRequirements | undefined, r: InspectionReport): string[] {
  if (!req) return [];
  const out: string[] = [];
  if (r.cpus.cores < req.minCPUCores) out.push(`${r.cpus.cores} CPU cores < ${req.minCPUCores} required`);
  if (r.memory.totalGB < req.minMemoryGB) out.push(`${r.memory.totalGB} GB memory < ${req.minMemoryGB} GB required`);
  // the OS goes on one disk, so the largest single disk counts
  const largest = Math.max(0, ...r.disks.map((d) => d.sizeGB));
  if (largest < req.minDiskGB) out.push(`largest disk ${largest} GB < ${req.minDiskGB} GB required`);
  return out;
}

/** An Available host whose labels match; the oldest first, so selection is stable. One scan, no sort. */
export function selectHost(m: StoredMachine, hosts: readonly StoredHost[]): StoredHost | undefined {
  const want = Object.entries(m.spec.hostSelector?.matchLabels ?? {});
  const older = (a: StoredHost, b: StoredHost) => a.createdAt < b.createdAt || (a.createdAt === b.createdAt && a.name < b.name);
  let best: StoredHost | undefined;
  for (const h of hosts) {
    if (h.status.state !== 'Available' || h.status.consumer || !want.every(([k, v]) => h.spec.labels[k] === v)) continue;
    if (!best || older(h, best)) best = h;
  }
  return best;
}

export function nextStep(m: StoredMachine, host: StoredHost | undefined, hosts: readonly StoredHost[], now: number): Step {
  if (m.status.phase === 'Deleting') return { kind: 'release' };
  if (m.status.phase === 'Provisioned' || m.status.phase === 'Failed') return { kind: 'done' };
  if (m.status.notBefore !== undefined && m.status.notBefore > now) return { kind: 'wait', until: m.status.notBefore };
  if (m.status.phase === 'Pending') {
    const h = selectHost(m, hosts);
    return h ? { kind: 'claim', host: h } : { kind: 'noHost' };
  }
  // Inspecting
  if (!host || host.status.consumer !== m.name) return { kind: 'release' };
  if (host.status.state === 'InUse' || host.status.inspectionPhase === 'Pending') return { kind: 'boot' };
  if (host.status.state === 'Ready') return { kind: 'handoff' };
  if (host.status.inspectionPhase === 'Complete') return { kind: 'validate' };
  if (m.status.inspectionDeadline !== undefined && now >= m.status.inspectionDeadline) return { kind: 'timeout' };
  return { kind: 'wait', ...(m.status.inspectionDeadline !== undefined ? { until: m.status.inspectionDeadline } : {}) };
}

const clone = <T>(x: T): T => structuredClone(x);

/** Exponential: base, 2 base, 4 base ... up to max, for the n-th failure in a row (n >= 1). */
export const retryDelayMs = (n: number, p: Pick<Policy, 'retryBaseMs' | 'retryMaxMs'>): number => Math.min(p.retryMaxMs, p.retryBaseMs * 2 ** Math.max(0, n - 1));

/** A new host enrols at once; one whose enrolment failed (BMC down, refused, busy) tries again after a backoff. */
export function shouldEnroll(h: StoredHost, now: number): boolean {
  if (h.status.state === 'Enrolling') return true;
  return h.status.state === 'Error' && h.status.nextRetryAt !== undefined && Date.parse(h.status.nextRetryAt) <= now;
}

export interface BmcFacts {
  powerState?: string | undefined;
  uuid?: string | undefined;
  hardwareDetails: { manufacturer?: string | undefined; model?: string | undefined; serialNumber?: string | undefined };
  macs: string[];
}

/** What an enrolment makes of the host: Available with what the BMC told, or Error with the reason and the next try. */
export function enrolment(h: StoredHost, r: { ok: true; facts: BmcFacts } | { ok: false; message: string }, now: number, p: Policy): StoredHost {
  const host = clone(h);
  if (r.ok) {
    const f = r.facts;
    host.status = { ...host.status, state: 'Available', observedPowerState: f.powerState, uuid: f.uuid, hardwareDetails: f.hardwareDetails, nics: f.macs.map((mac) => ({ mac })) };
    for (const k of ['errorMessage', 'errorCount', 'nextRetryAt'] as const) delete host.status[k];
    if (f.macs.length || h.spec.bootMACs.length) return host;
  }
  const n = (h.status.errorCount ?? 0) + 1;
  host.status = {
    ...host.status,
    state: 'Error',
    errorMessage: r.ok ? 'the BMC lists no NIC MAC addresses; set spec.bootMACs' : `enrolment failed: ${r.message}`,
    errorCount: n,
    nextRetryAt: new Date(now + retryDelayMs(n, p)).toISOString(),
  };
  return host;
}

export function claim(m: StoredMachine, h: StoredHost): { machine: StoredMachine; host: StoredHost } {
  const machine = clone(m);
  const host = clone(h);
  machine.status = { ...machine.status, phase: 'Inspecting', hostId: h.name, attempts: 0 };
  delete machine.status.failureReason;
  delete machine.status.failureMessage;
  host.status = { ...host.status, state: 'InUse', consumer: m.name, inspectionPhase: 'Pending' };
  delete host.status.errorMessage;
  return { machine, host };
}

/** Records for a new inspection attempt; the token hash is stored, the token goes only into the boot script. */
export function startAttempt(m: StoredMachine, h: StoredHost, tokenHash: string, now: number, p: Policy): { machine: StoredMachine; host: StoredHost } {
  const machine = clone(m);
  const host = clone(h);
  machine.status.attempts = (machine.status.attempts ?? 0) + 1;
  machine.status.inspectionDeadline = now + p.inspectionTimeoutMs;
  delete machine.status.notBefore;
  host.status = { ...host.status, state: 'Inspecting', inspectionPhase: 'Pending', inspectionTimestamp: new Date(now).toISOString() };
  host.inspectionTokenHash = tokenHash;
  return { machine, host };
}

export function booted(h: StoredHost): StoredHost {
  const host = clone(h);
  host.status = { ...host.status, inspectionPhase: 'Booting' };
  return host;
}

/** A failed attempt (timeout or BMC error): retry with backoff, or fail the machine after the last one. */
export function attemptFailed(m: StoredMachine, h: StoredHost, reason: string, message: string, now: number, p: Policy, phase: 'Timeout' | 'Failed'): { machine: StoredMachine; host: StoredHost; final: boolean } {
  const machine = clone(m);
  const host = clone(h);
  host.status.inspectionPhase = phase;
  host.status.errorMessage = message;
  delete host.inspectionTokenHash;
  if ((machine.status.attempts ?? 0) >= p.maxAttempts) {
    machine.status = { ...machine.status, phase: 'Failed', failureReason: reason, failureMessage: `${message} (after ${machine.status.attempts} attempts)` };
    delete machine.status.inspectionDeadline;
    return { machine, host: release(host), final: true };
  }
  const wait = retryDelayMs(machine.status.attempts ?? 1, p);
  machine.status.notBefore = now + wait;
  machine.status.failureMessage = `${message}; retrying in ${Math.round(wait / 1000)} s`;
  host.status.state = 'InUse';
  return { machine, host, final: false };
}

export function validated(m: StoredMachine, h: StoredHost, report: InspectionReport): { machine: StoredMachine; host: StoredHost } {
  const unmet = unmetRequirements(m.spec.hardwareRequirements, report);
  const machine = clone(m);
  const host = clone(h);
  delete machine.status.inspectionDeadline;
  if (unmet.length) {
    machine.status = { ...machine.status, phase: 'Failed', failureReason: 'RequirementsNotMet', failureMessage: unmet.join('; ') };
    return { machine, host: release(host) };
  }
  delete machine.status.failureMessage;
  host.status.state = 'Ready';
  return { machine, host };
}

export function handedOff(m: StoredMachine, h: StoredHost): { machine: StoredMachine; host: StoredHost } {
  const machine = clone(m);
  const host = clone(h);
  machine.status.phase = 'Provisioned';
  host.status.state = 'Provisioned';
  return { machine, host };
}

/** The host goes back to the pool; its report stays. */
export function release(h: StoredHost): StoredHost {
  const host = clone(h);
  host.status.state = 'Available';
  delete host.status.consumer;
  delete host.inspectionTokenHash;
  return host;
}

/** The kernel command line the inspector reads its parameters from. */
export function inspectInstruction(m: StoredMachine, host: StoredHost, apiBase: string, token: string): BootInstruction {
  const base = m.spec.inspectionImageURL.replace(/\/$/, '');
  const args = [
    `beskar7.api=${apiBase}`,
    `beskar7.host=${host.name}`,
    `beskar7.token=${token}`,
    `beskar7.target=${m.spec.targetImageURL}`,
    ...(m.spec.configurationURL ? [`beskar7.config=${m.spec.configurationURL}`] : []),
    // the last console= is /dev/console, where the agent writes: the serial line, which BMCs expose as SOL
    'console=tty0',
    'console=ttyS0',
  ];
  return { script: 'inspect', kernelURL: `${base}/vmlinuz`, initrdURL: `${base}/initrd`, cmdline: args.join(' '), localDiskMethod: 'exit' };
}
