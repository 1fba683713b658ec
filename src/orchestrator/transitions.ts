import type { BootInstruction } from '../domain/boot.js';
import type { Severity, WorkflowEvent } from '../domain/events.js';
import type {
  HardwareRequirements,
  HostAction,
  HostCreate,
  InspectionReport,
  MachineCreate,
  StoredHost,
  StoredMachine,
  StoredReport,
} from '../domain/resources.js';

/**
 * The workflow as pure functions: which step a machine takes next, and what each step or command makes of the
 * records, with the event it is remembered by. The reconciler and the commands load records, call one of these
 * and commit the result in one batch; side effects (Redfish calls) come after the batch is on disk.
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
  /** host claimed or attempt due: one-time PXE + power, then Booting */
  | { kind: 'boot'; host: StoredHost }
  | { kind: 'timeout'; host: StoredHost }
  | { kind: 'validate'; host: StoredHost }
  | { kind: 'handoff'; host: StoredHost }
  | { kind: 'release'; host?: StoredHost | undefined }
  | { kind: 'done' };

/** A refusal of a command or report, as the API answers it. */
export interface Refusal {
  /** 502: the BMC failed an operator's action */
  status: 400 | 401 | 404 | 409 | 502;
  error: string;
}

type Scope = { host?: string | undefined; machine?: string | undefined; mac?: string | undefined };
const event = (kind: WorkflowEvent['kind'], severity: Severity, scope: Scope, message: string): WorkflowEvent => ({
  kind,
  severity,
  ...(scope.host !== undefined ? { host: scope.host } : {}),
  ...(scope.machine !== undefined ? { machine: scope.machine } : {}),
  ...(scope.mac !== undefined ? { mac: scope.mac } : {}),
  message,
});

const clone = <T>(x: T): T => structuredClone(x);

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
  const older = (a: StoredHost, b: StoredHost) =>
    a.createdAt < b.createdAt || (a.createdAt === b.createdAt && a.name < b.name);
  let best: StoredHost | undefined;
  for (const h of hosts) {
    if (h.status.state !== 'Available' || h.status.consumer) continue;
    if (!want.every(([k, v]) => h.spec.labels[k] === v)) continue;
    if (!best || older(h, best)) best = h;
  }
  return best;
}

export function nextStep(
  m: StoredMachine,
  host: StoredHost | undefined,
  hosts: readonly StoredHost[],
  now: number,
): Step {
  if (m.status.phase === 'Deleting') return { kind: 'release', host };
  if (m.status.phase === 'Provisioned' || m.status.phase === 'Failed') return { kind: 'done' };
  if (m.status.notBefore !== undefined && m.status.notBefore > now) return { kind: 'wait', until: m.status.notBefore };
  if (m.status.phase === 'Pending') {
    const h = selectHost(m, hosts);
    return h ? { kind: 'claim', host: h } : { kind: 'noHost' };
  }
  // Inspecting
  if (!host || host.status.consumer !== m.name) return { kind: 'release', host };
  if (host.status.state === 'InUse' || host.status.inspectionPhase === 'Pending') return { kind: 'boot', host };
  if (host.status.state === 'Ready') return { kind: 'handoff', host };
  if (host.status.inspectionPhase === 'Complete') return { kind: 'validate', host };
  const deadline = m.status.inspectionDeadline;
  if (deadline !== undefined && now >= deadline) return { kind: 'timeout', host };
  return { kind: 'wait', ...(deadline !== undefined ? { until: deadline } : {}) };
}

/** Exponential: base, 2 base, 4 base ... up to max, for the n-th failure in a row (n >= 1). */
export const retryDelayMs = (n: number, p: Pick<Policy, 'retryBaseMs' | 'retryMaxMs'>): number =>
  Math.min(p.retryMaxMs, p.retryBaseMs * 2 ** Math.max(0, n - 1));

/** A new host enrols at once; one whose enrolment failed (BMC down, refused, busy) tries again after a backoff. */
export function shouldEnroll(h: StoredHost, now: number): boolean {
  if (h.status.state === 'Enrolling') return true;
  return h.status.state === 'Error' && h.status.nextRetryAt !== undefined && Date.parse(h.status.nextRetryAt) <= now;
}

// ---- commands of the API ----

export function newHost(
  input: HostCreate,
  passwordEnc: string,
  now: number,
): { host: StoredHost; event: WorkflowEvent } {
  const { password: _, ...redfish } = input.spec.redfish;
  const host: StoredHost = {
    name: input.name,
    spec: { ...input.spec, redfish: { ...redfish, passwordEnc } },
    status: { state: 'Enrolling', nics: [] },
    createdAt: new Date(now).toISOString(),
  };
  return { host, event: event('HostCreated', 'info', { host: input.name }, `BMC ${redfish.address}`) };
}

/** A host may go only while no machine holds it. */
export function hostDeletion(h: StoredHost): { event: WorkflowEvent } | Refusal {
  if (h.status.consumer) {
    return {
      status: 409,
      error: `host ${h.name} is used by machine ${h.status.consumer}; delete the machine first`,
    };
  }
  return { event: event('HostDeleted', 'info', { host: h.name }, 'deleted') };
}

export function newMachine(input: MachineCreate, now: number): { machine: StoredMachine; event: WorkflowEvent } {
  const machine: StoredMachine = {
    name: input.name,
    spec: input.spec,
    status: { phase: 'Pending', attempts: 0 },
    createdAt: new Date(now).toISOString(),
  };
  return { machine, event: event('MachineCreated', 'info', { machine: input.name }, 'created') };
}

/** Deletion is a phase: the reconciler powers the host off and releases it before the record goes. */
export function machineDeleting(m: StoredMachine): { machine: StoredMachine; event: WorkflowEvent } {
  const machine = clone(m);
  machine.status.phase = 'Deleting';
  const scope = { machine: m.name, host: m.status.hostId };
  return { machine, event: event('MachineDeleting', 'info', scope, 'deletion requested') };
}

// ---- enrolment ----

export interface BmcFacts {
  powerState?: string | undefined;
  uuid?: string | undefined;
  hardwareDetails: { manufacturer?: string | undefined; model?: string | undefined; serialNumber?: string | undefined };
  macs: string[];
}

/** What an enrolment makes of the host: Available with what the BMC told, or Error with the reason and the next try. */
export function enrolment(
  h: StoredHost,
  r: { ok: true; facts: BmcFacts } | { ok: false; message: string },
  now: number,
  p: Policy,
): { host: StoredHost; event: WorkflowEvent } {
  const host = clone(h);
  if (r.ok) {
    const f = r.facts;
    const nics = f.macs.map((mac) => ({ mac }));
    host.status = {
      ...host.status,
      state: 'Available',
      observedPowerState: f.powerState,
      uuid: f.uuid,
      hardwareDetails: f.hardwareDetails,
      nics,
    };
    for (const k of ['errorMessage', 'errorCount', 'nextRetryAt'] as const) delete host.status[k];
    if (f.macs.length || h.spec.bootMACs.length) {
      return { host, event: event('Enrolled', 'info', { host: h.name }, `Available: ${nics.length} NICs`) };
    }
  }
  const n = (h.status.errorCount ?? 0) + 1;
  const message = r.ok ? 'the BMC lists no NIC MAC addresses; set spec.bootMACs' : `enrolment failed: ${r.message}`;
  host.status = {
    ...host.status,
    state: 'Error',
    errorMessage: message,
    errorCount: n,
    nextRetryAt: new Date(now + retryDelayMs(n, p)).toISOString(),
  };
  return { host, event: event('EnrolFailed', 'warning', { host: h.name }, message) };
}

// ---- the inspection workflow ----

type Pair = { machine: StoredMachine; host: StoredHost };
type PairEvent = Pair & { event: WorkflowEvent };

export function claim(m: StoredMachine, h: StoredHost): PairEvent {
  const machine = clone(m);
  const host = clone(h);
  machine.status = { ...machine.status, phase: 'Inspecting', hostId: h.name, attempts: 0 };
  delete machine.status.failureReason;
  delete machine.status.failureMessage;
  host.status = { ...host.status, state: 'InUse', consumer: m.name, inspectionPhase: 'Pending' };
  delete host.status.errorMessage;
  return { machine, host, event: event('Claimed', 'info', { machine: m.name, host: h.name }, `claimed ${h.name}`) };
}

/**
 * Records for booting the inspector with a fresh token (only its hash is kept). A claimed host starts a new
 * attempt; a host whose attempt was persisted but not powered (a restart came between) only gets the new token.
 */
export function startAttempt(
  m: StoredMachine,
  h: StoredHost,
  tokenHash: string,
  now: number,
  p: Policy,
): Pair & { event?: WorkflowEvent } {
  const machine = clone(m);
  const host = clone(h);
  host.inspectionTokenHash = tokenHash;
  if (h.status.state !== 'InUse') return { machine, host };
  machine.status.attempts = (machine.status.attempts ?? 0) + 1;
  machine.status.inspectionDeadline = now + p.inspectionTimeoutMs;
  delete machine.status.notBefore;
  host.status = {
    ...host.status,
    state: 'Inspecting',
    inspectionPhase: 'Pending',
    inspectionTimestamp: new Date(now).toISOString(),
  };
  const scope = { machine: m.name, host: h.name };
  return { machine, host, event: event('InspectionStarted', 'info', scope, `attempt ${machine.status.attempts}`) };
}

/** The BMC took the reset: a still-Pending attempt is Booting (a fast machine may have reported already). */
export function booted(h: StoredHost, machine: string, action: string): { host: StoredHost; event: WorkflowEvent } {
  const host = clone(h);
  if (host.status.inspectionPhase === 'Pending') host.status.inspectionPhase = 'Booting';
  return { host, event: event('PowerOn', 'info', { machine, host: h.name }, `one-time PXE set; ${action}`) };
}

/** What the BMC last said about the power. */
export function powerObserved(h: StoredHost, powerState: string | undefined): StoredHost {
  const host = clone(h);
  if (powerState === undefined) delete host.status.observedPowerState;
  else host.status.observedPowerState = powerState;
  return host;
}

/** iPXE fetched the script of an inspecting host's MAC: the inspector is on its way. */
export function scriptFetched(h: StoredHost, mac: string): { host: StoredHost; event: WorkflowEvent } | undefined {
  if (h.status.state !== 'Inspecting') return undefined;
  if (h.status.inspectionPhase !== 'Booting' && h.status.inspectionPhase !== 'Pending') return undefined;
  const host = clone(h);
  host.status.inspectionPhase = 'InProgress';
  const scope = { host: h.name, machine: h.status.consumer, mac };
  return { host, event: event('ScriptFetched', 'info', scope, 'inspector script fetched') };
}

/** Why a report from this host is refused now; the token has been checked already. */
export function reportRefusal(h: StoredHost): Refusal | undefined {
  // Pending counts: the token exists once the attempt is stored, and a fast machine may report before the
  // BMC call that powered it has returned
  const phase = h.status.inspectionPhase ?? '';
  if (h.status.state === 'Inspecting' && ['Pending', 'Booting', 'InProgress'].includes(phase)) return undefined;
  return { status: 409, error: `host ${h.name} is not inspecting (${h.status.state}/${phase || '-'})` };
}

export const reportRejected = (host: string, message: string): WorkflowEvent =>
  event('ReportRejected', 'warning', { host }, message);

/**
 * The report is stored and the phase is Complete in one batch: a second report with the same token gets 409.
 * The token still carries the inspector's progress reports until the host is released.
 */
export function reportAccepted(
  h: StoredHost,
  report: InspectionReport,
  now: number,
): { host: StoredHost; id: string; stored: StoredReport; event: WorkflowEvent } {
  const at = new Date(now).toISOString();
  const id = `${h.name}/${at}`;
  const host = clone(h);
  host.status = { ...host.status, inspectionPhase: 'Complete', inspectionReportId: id };
  const stored: StoredReport = {
    hostId: h.name,
    ...(h.status.consumer ? { machine: h.status.consumer } : {}),
    receivedAt: at,
    report,
  };
  const summary = `${report.cpus.cores} cores, ${report.memory.totalGB} GB, ${report.disks.length} disks`;
  return {
    host,
    id,
    stored,
    event: event('ReportReceived', 'info', { host: h.name, machine: h.status.consumer }, summary),
  };
}

export interface InspectorProgress {
  step: string;
  ok: boolean;
  message: string;
}

/** A step of the inspector after its report (download, config, kexec), or a failure it hit. */
export function progressNoted(h: StoredHost, p: InspectorProgress): { host: StoredHost; event: WorkflowEvent } {
  const host = clone(h);
  if (!p.ok) host.status.errorMessage = `inspector ${p.step}: ${p.message}`;
  const scope = { host: h.name, machine: h.status.consumer };
  const msg = `${p.step}: ${p.message}`;
  return {
    host,
    event: p.ok ? event('InspectorStep', 'info', scope, msg) : event('InspectorFailed', 'warning', scope, msg),
  };
}

/** A failed attempt (timeout or BMC error): retry with backoff, or fail the machine after the last one. */
export function attemptFailed(
  m: StoredMachine,
  h: StoredHost,
  reason: string,
  message: string,
  now: number,
  p: Policy,
  phase: 'Timeout' | 'Failed',
): PairEvent & { final: boolean } {
  const machine = clone(m);
  const host = clone(h);
  host.status.inspectionPhase = phase;
  host.status.errorMessage = message;
  delete host.inspectionTokenHash;
  const scope = { machine: m.name, host: h.name };
  if ((machine.status.attempts ?? 0) >= p.maxAttempts) {
    const failureMessage = `${message} (after ${machine.status.attempts} attempts)`;
    machine.status = { ...machine.status, phase: 'Failed', failureReason: reason, failureMessage };
    delete machine.status.inspectionDeadline;
    return { machine, host: release(host), final: true, event: event('Failed', 'error', scope, failureMessage) };
  }
  const wait = retryDelayMs(machine.status.attempts ?? 1, p);
  machine.status.notBefore = now + wait;
  machine.status.failureMessage = `${message}; retrying in ${Math.round(wait / 1000)} s`;
  host.status.state = 'InUse';
  return { machine, host, final: false, event: event('Retry', 'warning', scope, machine.status.failureMessage) };
}

export function validated(m: StoredMachine, h: StoredHost, report: InspectionReport): PairEvent {
  const unmet = unmetRequirements(m.spec.hardwareRequirements, report);
  const machine = clone(m);
  const host = clone(h);
  delete machine.status.inspectionDeadline;
  const scope = { machine: m.name, host: h.name };
  if (unmet.length) {
    const failureMessage = unmet.join('; ');
    machine.status = { ...machine.status, phase: 'Failed', failureReason: 'RequirementsNotMet', failureMessage };
    return { machine, host: release(host), event: event('RequirementsNotMet', 'error', scope, failureMessage) };
  }
  delete machine.status.failureMessage;
  host.status.state = 'Ready';
  return { machine, host, event: event('Ready', 'info', scope, 'requirements met') };
}

/** Later network boots of a provisioned host leave iPXE for the local disk. */
export const localDisk: BootInstruction = { script: 'local-disk', cmdline: '', localDiskMethod: 'exit' };

export function handedOff(m: StoredMachine, h: StoredHost): PairEvent {
  const machine = clone(m);
  const host = clone(h);
  machine.status.phase = 'Provisioned';
  host.status.state = 'Provisioned';
  const scope = { machine: m.name, host: h.name };
  return { machine, host, event: event('Provisioned', 'info', scope, `target ${m.spec.targetImageURL}`) };
}

const LIVE_PHASES = new Set(['Pending', 'Booting', 'InProgress']);

/** The host goes back to the pool; its report and the outcome of its last inspection stay, a live phase does not. */
export function release(h: StoredHost): StoredHost {
  const host = clone(h);
  host.status.state = 'Available';
  delete host.status.consumer;
  delete host.inspectionTokenHash;
  if (LIVE_PHASES.has(host.status.inspectionPhase ?? '')) delete host.status.inspectionPhase;
  return host;
}

/** Powering a released host off failed: the reason and the power state the BMC last showed stay on the host. */
export function releaseFailed(
  h: StoredHost,
  message: string,
  powerState: string | undefined,
): { host: StoredHost; event: WorkflowEvent } {
  const host = powerObserved(h, powerState);
  host.status.errorMessage = `release: ${message}`;
  const scope = { host: h.name, machine: h.status.consumer };
  return { host, event: event('ReleaseFailed', 'warning', scope, message) };
}

/** The machine record goes; its host (if it still holds it) is released. */
export function machineDeleted(
  m: StoredMachine,
  h: StoredHost | undefined,
): { host?: StoredHost; event: WorkflowEvent } {
  const ours = h && h.status.consumer === m.name ? release(h) : undefined;
  const e = event('Deleted', 'info', { machine: m.name, host: h?.name }, 'machine deleted');
  return ours ? { host: ours, event: e } : { event: e };
}

/** What an operator's BMC action did: the power state the BMC reports after it, or why it failed. */
export type ActionResult = { ok: true; powerState?: string | undefined } | { ok: false; message: string };

export const describeAction = (a: HostAction): string => (a.action === 'reset' ? `reset ${a.resetType}` : a.action);

export function hostActed(h: StoredHost, a: HostAction, r: ActionResult): { host: StoredHost; event: WorkflowEvent } {
  const scope = { host: h.name, machine: h.status.consumer };
  if (!r.ok)
    return { host: h, event: event('HostActionFailed', 'warning', scope, `${describeAction(a)}: ${r.message}`) };
  const host = powerObserved(h, r.powerState);
  const power = r.powerState ? `; power ${r.powerState}` : '';
  return { host, event: event('HostAction', 'info', scope, `${describeAction(a)}${power}`) };
}

/** The kernel command line the inspector reads its parameters from. */
export function inspectInstruction(
  m: StoredMachine,
  host: StoredHost,
  apiBase: string,
  token: string,
): BootInstruction {
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
  return {
    script: 'inspect',
    kernelURL: `${base}/vmlinuz`,
    initrdURL: `${base}/initrd`,
    cmdline: args.join(' '),
    localDiskMethod: 'exit',
  };
}
