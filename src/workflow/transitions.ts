import type { BootInstruction } from '../domain/boot.js';
import type { Effect } from '../domain/effect.js';
import type { Severity, WorkflowEvent } from '../domain/events.js';
import type { Refusal } from '../domain/refusal.js';
import {
  type Condition,
  type HardwareRequirements,
  type HostAction,
  type HostCreate,
  hostMacs,
  type InspectionReport,
  keyOf,
  type MachineCreate,
  providerId,
  type StoredHost,
  type StoredMachine,
  type StoredReport,
  type StoredSecret,
} from '../domain/resources.js';

/**
 * The workflow as pure functions: which step a machine takes next, and what each step or command makes of the
 * records, with the event it is remembered by and the BMC effects it needs. The reconciler and the commands
 * load records, call one of these and commit the result as one plan (pipeline.ts); the reconciler carries the
 * stored effects out afterwards.
 */

export interface Policy {
  inspectionTimeoutMs: number;
  /** from a passed validation to the inspector's provisioned callback */
  deploymentTimeoutMs: number;
  /** a host that fails the requirements: claim the next matching one before failing the machine */
  tryOtherHosts: boolean;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** a host released after a deployment has its disks erased (metadata) before it is Available again */
  cleanDisks?: boolean;
}

export type Step =
  | { kind: 'wait'; until?: number }
  | { kind: 'claim'; host: StoredHost }
  | { kind: 'noHost' }
  /** host claimed or attempt due: one-time PXE + power, then Booting */
  | { kind: 'boot'; host: StoredHost }
  | { kind: 'timeout'; host: StoredHost; reason: 'InspectionTimeout' | 'DeploymentTimedOut' }
  | { kind: 'release'; host?: StoredHost | undefined }
  | { kind: 'done' };

/** What an event is about: names within one namespace (a machine claims hosts of its own namespace only). */
type Scope = { namespace: string; host?: string | undefined; machine?: string | undefined; mac?: string | undefined };
const event = (kind: WorkflowEvent['kind'], severity: Severity, scope: Scope, message: string): WorkflowEvent => ({
  kind,
  severity,
  namespace: scope.namespace,
  ...(scope.host !== undefined ? { host: scope.host } : {}),
  ...(scope.machine !== undefined ? { machine: scope.machine } : {}),
  ...(scope.mac !== undefined ? { mac: scope.mac } : {}),
  message,
});

/** A deep copy of a record to change (the store's are frozen); records are plain JSON-shaped data (zod's output). */
const clone = <T>(x: T): T => {
  if (Array.isArray(x)) return x.map(clone) as T;
  if (x === null || typeof x !== 'object') return x;
  const out: Record<string, unknown> = {};
  // for-in: no array per object; plain objects inherit nothing enumerable
  for (const k in x) out[k] = clone((x as Record<string, unknown>)[k]);
  return out as T;
};

/** Hardware requirement failures, one sentence each; an empty list means the host qualifies. */
export function unmetRequirements(req: HardwareRequirements | undefined, r: InspectionReport): string[] {
  if (!req) return [];
  const out: string[] = [];
  if (r.cpus.cores < req.minCPUCores) out.push(`${r.cpus.cores} CPU cores < ${req.minCPUCores} required`);
  // GB in the requirements are GiB (2^30 bytes), the unit the inspector reports in
  if (r.memory.totalGB < req.minMemoryGB) out.push(`${r.memory.totalGB} GiB memory < ${req.minMemoryGB} GiB required`);
  // the contract (§6.1) and the original controller sum the disks
  const disks = r.disks.reduce((n, d) => n + d.sizeGB, 0);
  if (disks < req.minDiskGB) out.push(`${disks} GiB of disk < ${req.minDiskGB} GiB required`);
  return out;
}

const older = (a: StoredHost, b: StoredHost) =>
  a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;

/** The hosts a machine may claim (Available, unclaimed), oldest first: the order selectHost takes them in. */
export function claimable(hosts: readonly StoredHost[]): StoredHost[] {
  return hosts.filter((h) => h.status.state === 'Available' && !h.status.consumer).sort(older);
}

/**
 * The first of `hosts` (claimable's list: oldest first, so selection is stable) in the machine's namespace, as
 * Beskar7's controller lists them, whose labels match and that has not failed this machine's requirements. A machine without a selector takes the first one: a pass over many
 * Pending machines costs O(machines), not O(machines x hosts).
 */
export function selectHost(m: StoredMachine, hosts: readonly StoredHost[]): StoredHost | undefined {
  const want = Object.entries(m.spec.hostSelector?.matchLabels ?? {});
  const rejected = m.status.rejectedHosts ?? [];
  return hosts.find(
    (h) =>
      h.namespace === m.namespace &&
      h.status.state === 'Available' &&
      !h.status.consumer &&
      !rejected.includes(h.name) &&
      want.every(([k, v]) => h.spec.labels[k] === v),
  );
}

/** A machine whose workflow has ended until someone deletes it: a pass has nothing to do for it. */
export const settled = (m: StoredMachine): boolean => m.status.phase === 'Provisioned' || m.status.phase === 'Failed';

export function nextStep(
  m: StoredMachine,
  host: StoredHost | undefined,
  hosts: readonly StoredHost[],
  now: number,
): Step {
  if (m.status.phase === 'Deleting') return { kind: 'release', host };
  if (settled(m)) return { kind: 'done' };
  if (m.status.notBefore !== undefined && m.status.notBefore > now) return { kind: 'wait', until: m.status.notBefore };
  if (m.status.phase === 'Pending') {
    const h = selectHost(m, hosts);
    return h ? { kind: 'claim', host: h } : { kind: 'noHost' };
  }
  // Inspecting
  if (!host || host.status.consumer !== m.name) return { kind: 'release', host };
  if (host.status.state === 'InUse' || host.status.inspectionPhase === 'Pending') return { kind: 'boot', host };
  const deadline = m.status.inspectionDeadline;
  if (deadline !== undefined && now >= deadline) {
    return {
      kind: 'timeout',
      host,
      reason: host.status.state === 'Ready' ? 'DeploymentTimedOut' : 'InspectionTimeout',
    };
  }
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
    namespace: input.namespace,
    spec: { ...input.spec, redfish: { ...redfish, passwordEnc } },
    status: { state: 'Enrolling', nics: [] },
    createdAt: new Date(now).toISOString(),
  };
  return {
    host,
    event: event('HostCreated', 'info', { namespace: input.namespace, host: input.name }, `BMC ${redfish.address}`),
  };
}

/**
 * An applied host manifest over the stored host: the same spec is no change; labels may change any time; a
 * new BMC connection re-enrols a host no machine holds.
 */
export function hostUpdate(
  h: StoredHost,
  spec: StoredHost['spec'],
  annotations: StoredHost['annotations'] = h.annotations,
): { host: StoredHost; event?: WorkflowEvent } | Refusal | 'unchanged' {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (same(h.spec, spec)) {
    return same(h.annotations ?? {}, annotations ?? {}) ? 'unchanged' : { host: { ...clone(h), annotations } };
  }
  const host = { ...clone(h), annotations };
  host.spec = spec;
  const { passwordEnc: _a, ...was } = h.spec.redfish;
  const { passwordEnc: _b, ...now } = spec.redfish;
  const connection = !same(was, now) || !same(h.spec.bootMACs, spec.bootMACs);
  if (connection && h.status.consumer) {
    return {
      code: 'conflict',
      error: `host ${h.name} is used by machine ${h.status.consumer}: its BMC cannot change now`,
    };
  }
  if (connection) host.status = { state: 'Enrolling', nics: [] };
  const what = connection ? 'BMC connection changed; enrolling again' : 'labels changed';
  return { host, event: event('HostUpdated', 'info', { namespace: h.namespace, host: h.name }, what) };
}

/**
 * An applied Secret over the stored one (`same`: the stored credentials are these): the secret as stored, and
 * the hosts that name it with the new credentials, as a controller watching the Secret would update them.
 */
export function secretApplied(
  old: StoredSecret | undefined,
  s: {
    name: string;
    namespace: string;
    username?: string | undefined;
    /** the password and the value are what `old` holds */
    same: boolean;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  },
  sealed: { passwordEnc?: string | undefined; valueEnc?: string | undefined },
  users: readonly StoredHost[],
  now: number,
): { secret: StoredSecret; hosts: StoredHost[] } | 'unchanged' {
  const same = (a: unknown, b: unknown) => JSON.stringify(a ?? {}) === JSON.stringify(b ?? {});
  const changed = !(old && old.username === s.username && s.same);
  if (!changed && same(old?.labels, s.labels) && same(old?.annotations, s.annotations)) return 'unchanged';
  const kept = changed || !old ? sealed : { passwordEnc: old.passwordEnc, valueEnc: old.valueEnc };
  const secret: StoredSecret = {
    name: s.name,
    namespace: s.namespace,
    ...(s.username !== undefined ? { username: s.username } : {}),
    ...(kept.passwordEnc !== undefined ? { passwordEnc: kept.passwordEnc } : {}),
    ...(kept.valueEnc !== undefined ? { valueEnc: kept.valueEnc } : {}),
    labels: s.labels,
    annotations: s.annotations,
    createdAt: old?.createdAt ?? new Date(now).toISOString(),
  };
  const { username } = s;
  const { passwordEnc } = sealed;
  if (!changed || username === undefined || passwordEnc === undefined) return { secret, hosts: [] };
  const hosts = users
    .filter((h) => h.namespace === s.namespace && h.spec.redfish.credentialsSecretRef === s.name)
    .map((h) => ({ ...h, spec: { ...h.spec, redfish: { ...h.spec.redfish, username, passwordEnc } } }));
  return { secret, hosts };
}

/** A Secret goes only while no host names it. */
export function secretDeletion(s: StoredSecret, hosts: readonly StoredHost[]): Refusal | undefined {
  const user = hosts.find((h) => h.spec.redfish.credentialsSecretRef === s.name && h.namespace === s.namespace);
  return user ? { code: 'conflict', error: `secret ${s.name} is used by host ${user.name}` } : undefined;
}

/** An applied machine manifest: its spec may change only while it waits for a host. */
export function machineUpdate(
  m: StoredMachine,
  spec: StoredMachine['spec'],
  meta: Pick<StoredMachine, 'labels' | 'annotations'> = m,
): { machine: StoredMachine; event?: WorkflowEvent } | Refusal | 'unchanged' {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const metaSame = same(m.labels ?? {}, meta.labels ?? {}) && same(m.annotations ?? {}, meta.annotations ?? {});
  if (same(m.spec, spec)) {
    if (metaSame) return 'unchanged';
    // labels and annotations may change in any phase; no event: kubectl apply rewrites an annotation each time
    return { machine: { ...clone(m), labels: meta.labels, annotations: meta.annotations } };
  }
  if (m.status.phase !== 'Pending') {
    return {
      code: 'conflict',
      error: `machine ${m.name} is ${m.status.phase}: its spec cannot change now; delete it and apply it again`,
    };
  }
  const machine = { ...clone(m), labels: meta.labels, annotations: meta.annotations };
  machine.spec = spec;
  return {
    machine,
    event: event('MachineUpdated', 'info', { namespace: m.namespace, machine: m.name }, 'spec updated'),
  };
}

/** A host may go only while no machine holds it. */
export function hostDeletion(h: StoredHost): { event: WorkflowEvent } | Refusal {
  if (h.status.consumer) {
    return {
      code: 'conflict',
      error: `host ${h.name} is used by machine ${h.status.consumer}; delete the machine first`,
    };
  }
  return { event: event('HostDeleted', 'info', { namespace: h.namespace, host: h.name }, 'deleted') };
}

export function newMachine(input: MachineCreate, now: number): { machine: StoredMachine; event: WorkflowEvent } {
  const machine: StoredMachine = {
    name: input.name,
    namespace: input.namespace,
    labels: input.labels,
    annotations: input.annotations,
    spec: input.spec,
    status: { phase: 'Pending', attempts: 0, conditions: [], rejectedHosts: [] },
    createdAt: new Date(now).toISOString(),
  };
  return {
    machine,
    event: event('MachineCreated', 'info', { namespace: input.namespace, machine: input.name }, 'created'),
  };
}

/** Deletion is a phase: the reconciler powers the host off and releases it before the record goes. */
export function machineDeleting(m: StoredMachine, now: number): { machine: StoredMachine; event: WorkflowEvent } {
  const machine = clone(m);
  machine.status.phase = 'Deleting';
  machine.deletedAt = new Date(now).toISOString();
  const scope = { namespace: m.namespace, machine: m.name, host: m.status.hostName };
  return { machine, event: event('MachineDeleting', 'info', scope, 'deletion requested') };
}

// ---- enrolment ----

export interface BmcFacts {
  powerState?: string | undefined;
  uuid?: string | undefined;
  hardwareDetails: { manufacturer?: string | undefined; model?: string | undefined; serialNumber?: string | undefined };
  macs: string[];
  secureBoot?: boolean | undefined;
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
      ...(f.secureBoot === undefined ? {} : { secureBoot: f.secureBoot }),
    };
    for (const k of ['errorMessage', 'errorCount', 'nextRetryAt'] as const) delete host.status[k];
    if (f.macs.length || h.spec.bootMACs.length) {
      return {
        host,
        event: event('Enrolled', 'info', { namespace: h.namespace, host: h.name }, `Available: ${nics.length} NICs`),
      };
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
  return { host, event: event('EnrolFailed', 'warning', { namespace: h.namespace, host: h.name }, message) };
}

// ---- the inspection workflow ----

type Pair = { machine: StoredMachine; host: StoredHost };
type PairEvent = Pair & { event: WorkflowEvent };

/** Sets a condition; its lastTransitionTime moves only when its status does. */
export function setCondition(
  m: StoredMachine,
  type: string,
  status: Condition['status'],
  reason: string,
  message: string,
  now: number,
): void {
  const list = m.status.conditions ?? [];
  const old = list.find((c) => c.type === type);
  const lastTransitionTime = old && old.status === status ? old.lastTransitionTime : new Date(now).toISOString();
  m.status.conditions = [...list.filter((c) => c.type !== type), { type, status, reason, message, lastTransitionTime }];
}

export function claim(m: StoredMachine, h: StoredHost, now: number): PairEvent {
  const machine = clone(m);
  const host = clone(h);
  machine.status = { ...machine.status, phase: 'Inspecting', hostName: h.name, attempts: 0 };
  delete machine.status.failureReason;
  delete machine.status.failureMessage;
  setCondition(machine, 'HostClaimed', 'True', 'Claimed', `host ${h.name}`, now);
  if (!m.spec.targetImageDigest) {
    setCondition(
      machine,
      'TargetDigestPinned',
      'False',
      'NoDigest',
      'no targetImageDigest: the target is not verified before it boots',
      now,
    );
  }
  host.status = { ...host.status, state: 'InUse', consumer: m.name, inspectionPhase: 'Pending' };
  delete host.status.errorMessage;
  return {
    machine,
    host,
    event: event('Claimed', 'info', { namespace: m.namespace, machine: m.name, host: h.name }, `claimed ${h.name}`),
  };
}

/**
 * Records for booting the inspector with fresh credentials (an attempt id; the nonce and token derive from it).
 * A claimed host starts a new attempt; a host whose attempt was persisted but not powered (a restart came
 * between) only gets the new credentials.
 */
export function startAttempt(
  m: StoredMachine,
  h: StoredHost,
  attempt: string,
  now: number,
  p: Policy,
): PairEvent & { effect: Extract<Effect, { kind: 'bootInspector' }> } {
  const machine = clone(m);
  const host = clone(h);
  host.attempt = { id: attempt, expiresAt: new Date(now + p.inspectionTimeoutMs).toISOString() };
  const scope = { namespace: m.namespace, machine: m.name, host: h.name };
  const effect = { kind: 'bootInspector' as const, host: keyOf(h), machine: m.name, attempt };
  if (h.status.state !== 'InUse') {
    // a boot stored by an earlier leader or process may have reached the BMC: the machine may be booting with
    // the old credentials, so this boot gets new ones
    const why = 'its power-on was not recorded before a restart or a change of leader';
    return {
      machine,
      host,
      effect,
      event: event(
        'InspectionResumed',
        'info',
        scope,
        `attempt ${m.status.attempts ?? 0} booted again with fresh credentials: ${why}`,
      ),
    };
  }
  machine.status.attempts = (machine.status.attempts ?? 0) + 1;
  machine.status.inspectionDeadline = now + p.inspectionTimeoutMs;
  delete machine.status.notBefore;
  host.status = {
    ...host.status,
    state: 'Inspecting',
    inspectionPhase: 'Pending',
    inspectionTimestamp: new Date(now).toISOString(),
  };
  return {
    machine,
    host,
    effect,
    event: event('InspectionStarted', 'info', scope, `attempt ${machine.status.attempts}`),
  };
}

/** The BMC took the reset: a still-Pending attempt is Booting (a fast machine may have reported already). */
export function booted(h: StoredHost, machine: string, action: string): { host: StoredHost; event: WorkflowEvent } {
  const host = clone(h);
  if (host.status.inspectionPhase === 'Pending') host.status.inspectionPhase = 'Booting';
  return {
    host,
    event: event('PowerOn', 'info', { namespace: h.namespace, machine, host: h.name }, `one-time PXE set; ${action}`),
  };
}

/** What the BMC last said about the power. */
export function powerObserved(h: StoredHost, powerState: string | undefined): StoredHost {
  const host = clone(h);
  if (powerState === undefined) delete host.status.observedPowerState;
  else host.status.observedPowerState = powerState;
  return host;
}

/** A boot nonce presented with the right value (the caller checked it) is judged here. */
export type RedemptionVerdict =
  | { kind: 'unknown' }
  | { kind: 'conflict'; message: string }
  /** the redeemer asks again (iPXE retries a fetch): the same answer, nothing changes (contract §4.1, §7) */
  | { kind: 'again' }
  | { kind: 'ok'; host: StoredHost; event: WorkflowEvent };

/**
 * The one redemption of an attempt's boot nonce. The same redeemer asking again (same address, same MAC) gets
 * the same answer. Anyone else, or a first redemption from an address other than the one the host holds (our
 * lease in full mode; in proxy mode what our DHCP saw it ask the site's server for), means someone else has
 * the nonce: the caller ends the attempt and retries with fresh credentials,
 * and nothing that claimant sends is trusted.
 */
export function judgeRedemption(
  h: StoredHost,
  c: { from: string; mac?: string | undefined; leased: readonly string[] },
  now: number,
): RedemptionVerdict {
  const b = h.attempt;
  if (!b || Date.parse(b.expiresAt) <= now) return { kind: 'unknown' };
  const cleaning = b.purpose === 'clean';
  if (cleaning ? h.status.state !== 'Cleaning' : h.status.state !== 'Inspecting' && h.status.state !== 'Ready')
    return { kind: 'unknown' };
  if (b.redeemed) {
    const r = b.redeemed;
    if (r.from === c.from && (r.mac ?? '') === (c.mac ?? '')) return { kind: 'again' };
    return {
      kind: 'conflict',
      message: `boot nonce claimed again from ${c.from} (first claim from ${b.redeemed.from})`,
    };
  }
  if (c.leased.length && !c.leased.includes(c.from)) {
    return {
      kind: 'conflict',
      message: `boot nonce claimed from ${c.from}; the host holds ${c.leased.join(', ')}`,
    };
  }
  const host = clone(h);
  host.attempt = {
    ...b,
    redeemed: { from: c.from, at: new Date(now).toISOString(), ...(c.mac ? { mac: c.mac } : {}) },
  };
  if (!cleaning) host.status.inspectionPhase = 'InProgress';
  // the machine itself asked: it is on, whether or not its BMC shows it yet
  host.status.observedPowerState = 'On';
  const scope = { namespace: h.namespace, host: h.name, machine: h.status.consumer, mac: c.mac };
  return {
    kind: 'ok',
    host,
    event: event('CredentialClaimed', 'info', scope, `inspector credentials claimed from ${c.from}`),
  };
}

/** Why a report from this host is refused now; the token and address have been checked already. */
export function reportRefusal(h: StoredHost, report: InspectionReport): Refusal | undefined {
  const phase = h.status.inspectionPhase ?? '';
  if (h.status.state !== 'Inspecting' || phase !== 'InProgress') {
    return { code: 'conflict', error: `host ${h.name} is not inspecting (${h.status.state}/${phase || '-'})` };
  }
  const booted = h.attempt?.redeemed?.mac;
  const want = booted ? [booted] : hostMacs(h);
  if (!report.nics.some((n) => n.macAddress !== undefined && want.includes(n.macAddress))) {
    return { code: 'invalid', error: `the report lists no NIC with the MAC the host booted from (${want.join(', ')})` };
  }
  return undefined;
}

export const reportRejected = (h: StoredHost, message: string): WorkflowEvent =>
  event('ReportRejected', 'warning', { namespace: h.namespace, host: h.name }, message);

export const credentialConflict = (h: StoredHost, message: string): WorkflowEvent =>
  event('CredentialConflict', 'warning', { namespace: h.namespace, host: h.name, machine: h.status.consumer }, message);

export const credentialMisuse = (h: StoredHost, message: string): WorkflowEvent =>
  event('CredentialMisuse', 'warning', { namespace: h.namespace, host: h.name, machine: h.status.consumer }, message);

export interface ReportJudgement extends Pair {
  id: string;
  stored: StoredReport;
  events: WorkflowEvent[];
  /** the requirements are met: the inspector may go on to the target */
  approved: boolean;
  /** the host was let go: power it off */
  effects: Effect[];
}

/**
 * A report is stored and judged in one batch, so the inspector's next request already sees the verdict: a
 * host that meets the requirements is Ready and waits for the provisioned callback; one that does not is
 * released, and the machine claims the next matching host (if allowed) or fails.
 */
export function judgeReport(
  m: StoredMachine,
  h: StoredHost,
  report: InspectionReport,
  hosts: readonly StoredHost[],
  now: number,
  p: Policy,
): ReportJudgement {
  const at = new Date(now).toISOString();
  const id = `${keyOf(h)}/${at}`;
  const machine = clone(m);
  const host = clone(h);
  host.status = { ...host.status, inspectionPhase: 'Complete', inspectionReportId: id };
  const stored: StoredReport = { hostName: h.name, machine: m.name, receivedAt: at, report };
  const scope = { namespace: m.namespace, machine: m.name, host: h.name };
  const summary = `${report.cpus.cores} cores, ${report.memory.totalGB} GiB, ${report.disks.length} disks`;
  const events = [event('ReportReceived', 'info', scope, summary)];
  setCondition(machine, 'InspectionComplete', 'True', 'ReportReceived', summary, now);
  const unmet = unmetRequirements(m.spec.hardwareRequirements, report);
  if (!unmet.length) {
    host.status.state = 'Ready';
    // from here on the inspector may write to the disks
    if (p.cleanDisks) host.status.needsCleaning = true;
    machine.status.inspectionDeadline = now + p.deploymentTimeoutMs;
    delete machine.status.failureMessage;
    setCondition(machine, 'RequirementsMet', 'True', 'RequirementsMet', summary, now);
    events.push(event('Ready', 'info', scope, 'requirements met; waiting for the provisioned callback'));
    return { machine, host, id, stored, events, approved: true, effects: [] };
  }
  const why = unmet.join('; ');
  setCondition(machine, 'RequirementsMet', 'False', 'RequirementsNotMet', `${h.name}: ${why}`, now);
  machine.status.rejectedHosts = [...(machine.status.rejectedHosts ?? []), h.name];
  delete machine.status.inspectionDeadline;
  const next = p.tryOtherHosts ? selectHost(machine, claimable(hosts)) : undefined;
  if (next) {
    machine.status = { ...machine.status, phase: 'Pending', failureMessage: `${h.name}: ${why}` };
    delete machine.status.hostName;
    events.push(event('RequirementsNotMet', 'warning', scope, `${why}; trying ${next.name}`));
  } else {
    machine.status = { ...machine.status, phase: 'Failed', failureReason: 'RequirementsNotMet', failureMessage: why };
    events.push(event('RequirementsNotMet', 'error', scope, why));
  }
  const effects = [powerOff(h, `released: ${why}`)];
  return { machine, host: release(host), id, stored, events, approved: false, effects };
}

export interface InspectorProgress {
  step: string;
  ok: boolean;
  message: string;
}

/** A step of the inspector after its report (download, verify, kexec), or a failure it hit. */
export function progressNoted(h: StoredHost, p: InspectorProgress): { host: StoredHost; event: WorkflowEvent } {
  const host = clone(h);
  if (!p.ok) host.status.errorMessage = `inspector ${p.step}: ${p.message}`;
  const scope = { namespace: h.namespace, host: h.name, machine: h.status.consumer };
  const msg = `${p.step}: ${p.message}`;
  return {
    host,
    event: p.ok ? event('InspectorStep', 'info', scope, msg) : event('InspectorFailed', 'warning', scope, msg),
  };
}

/** A failed attempt (timeout, BMC error, contested credentials): retry with backoff, or fail after the last. */
export function attemptFailed(
  m: StoredMachine,
  h: StoredHost,
  reason: string,
  message: string,
  now: number,
  p: Policy,
  phase: 'Timeout' | 'Failed',
): PairEvent & { final: boolean; effects: Effect[] } {
  const machine = clone(m);
  const host = clone(h);
  host.status.inspectionPhase = phase;
  host.status.errorMessage = message;
  delete host.attempt;
  const scope = { namespace: m.namespace, machine: m.name, host: h.name };
  // someone else presented the nonce: that is no failure of the machine's, and must not use up its attempts,
  // or anyone who knows a MAC could fail its machine
  const contested = reason === 'CredentialConflict';
  if (contested) {
    machine.status.attempts = Math.max(0, (machine.status.attempts ?? 1) - 1);
    setCondition(machine, 'CredentialsContested', 'True', reason, message, now);
  }
  if (!contested && (FINAL.has(reason) || (machine.status.attempts ?? 0) >= p.maxAttempts)) {
    const failureMessage = FINAL.has(reason) ? message : `${message} (after ${machine.status.attempts} attempts)`;
    machine.status = { ...machine.status, phase: 'Failed', failureReason: reason, failureMessage };
    delete machine.status.inspectionDeadline;
    return {
      machine,
      host: release(host),
      final: true,
      effects: [powerOff(h, `released: ${failureMessage}`)],
      event: event('Failed', 'error', scope, failureMessage),
    };
  }
  const wait = retryDelayMs(Math.max(1, machine.status.attempts ?? 1), p);
  machine.status.notBefore = now + wait;
  delete machine.status.inspectionDeadline;
  machine.status.failureMessage = `${message}; retrying in ${Math.round(wait / 1000)} s`;
  host.status.state = 'InUse';
  return {
    machine,
    host,
    final: false,
    effects: [],
    event: event('Retry', 'warning', scope, machine.status.failureMessage),
  };
}

/** Later network boots of a provisioned host leave iPXE for the local disk. */
export const localDisk: BootInstruction = { script: 'local-disk', cmdline: '', localDiskMethod: 'exit' };

/** The inspector verified the target and is about to kexec: the only way a machine becomes Provisioned. */
export function provisioned(m: StoredMachine, h: StoredHost, now: number): PairEvent | Refusal {
  if (h.status.state !== 'Ready') return { code: 'conflict', error: `host ${h.name} has not passed validation` };
  const machine = clone(m);
  const host = clone(h);
  machine.status.phase = 'Provisioned';
  delete machine.status.inspectionDeadline;
  host.status.state = 'Provisioned';
  delete host.attempt;
  setCondition(machine, 'Provisioned', 'True', 'InspectorProvisioned', 'target verified; kexec', now);
  const scope = { namespace: m.namespace, machine: m.name, host: h.name };
  return { machine, host, event: event('Provisioned', 'info', scope, `target ${m.spec.targetImageURL}`) };
}

/** Contract §4.5: the reason is a hint, cleaned of control characters and capped. */
export const cleanReason = (s: string): string =>
  s
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .trim()
    .slice(0, 256);

/** The inspector could not deploy the target: the machine fails at once, with DigestMismatch when it says so. */
export function provisionFailed(
  m: StoredMachine,
  h: StoredHost,
  reason: string,
  now: number,
): PairEvent & { effects: Effect[] } {
  const machine = clone(m);
  const why = cleanReason(reason) || 'no reason given';
  const failureReason = /digest/i.test(why) ? 'DigestMismatch' : 'DeploymentFailed';
  const failureMessage = `inspector reported deploy failure: ${why}`;
  machine.status = { ...machine.status, phase: 'Failed', failureReason, failureMessage };
  delete machine.status.inspectionDeadline;
  setCondition(machine, 'Provisioned', 'False', failureReason, failureMessage, now);
  const host = release(h);
  host.status.errorMessage = failureMessage;
  const scope = { namespace: m.namespace, machine: m.name, host: h.name };
  return {
    machine,
    host,
    effects: [powerOff(h, `released: ${failureMessage}`)],
    event: event('ProvisionFailed', 'error', scope, failureMessage),
  };
}

/** Power a host off and clear its boot override: what every release needs before the host is claimed again. */
export const powerOff = (h: StoredHost, reason: string): Effect => ({ kind: 'powerOff', host: keyOf(h), reason });

/** Reasons that end an attempt whose report is in. */
const AFTER_REPORT = new Set(['DeploymentTimedOut', 'CredentialConflict']);
/** Failures no further attempt can mend: the machine fails at the first. */
const FINAL = new Set(['InspectorUnreachable']);

/**
 * Ends the host's attempt `attempt`, if it is still the live one: retried, or the machine fails. A host that
 * reported is judged already: only a deployment timeout or contested credentials end it then.
 */
export function endAttempt(
  m: StoredMachine | undefined,
  h: StoredHost | undefined,
  attempt: string | undefined,
  why: { reason: string; message: string; phase: 'Timeout' | 'Failed' },
  now: number,
  p: Policy,
): ReturnType<typeof attemptFailed> | undefined {
  if (!m || !h || attempt === undefined || h.attempt?.id !== attempt || h.status.consumer !== m.name) return;
  if (h.status.inspectionPhase === 'Complete' && !AFTER_REPORT.has(why.reason)) return;
  return attemptFailed(m, h, why.reason, why.message, now, p, why.phase);
}

const LIVE_PHASES = new Set(['Pending', 'Booting', 'InProgress']);

/**
 * The host goes back to the pool, or first to cleaning when a deployment may have written to its disks; its
 * report and the outcome of its last inspection stay, a live phase does not.
 */
export function release(h: StoredHost): StoredHost {
  const host = clone(h);
  host.status.state = h.status.needsCleaning ? 'Cleaning' : 'Available';
  delete host.status.consumer;
  delete host.attempt;
  if (LIVE_PHASES.has(host.status.inspectionPhase ?? '')) delete host.status.inspectionPhase;
  return host;
}

/** A host to clean gets an attempt of its own: fresh credentials, and the inspector booted to erase its disks. */
export function startCleaning(
  h: StoredHost,
  attempt: string,
  now: number,
  p: Pick<Policy, 'inspectionTimeoutMs'>,
): { host: StoredHost; effect: Extract<Effect, { kind: 'bootCleaner' }>; event: WorkflowEvent } {
  const host = clone(h);
  host.attempt = { id: attempt, expiresAt: new Date(now + p.inspectionTimeoutMs).toISOString(), purpose: 'clean' };
  delete host.status.errorMessage;
  return {
    host,
    effect: { kind: 'bootCleaner', host: keyOf(h), attempt },
    event: event(
      'CleaningStarted',
      'info',
      { namespace: h.namespace, host: h.name },
      'erasing the disks (partition tables and signatures)',
    ),
  };
}

/** The cleaner's answer (or its silence past the deadline): Available, or CleanFailed until an operator acts. */
export function cleaningDone(
  h: StoredHost,
  r: { ok: boolean; message: string },
): { host: StoredHost; effects: Effect[]; event: WorkflowEvent } {
  const host = clone(h);
  delete host.attempt;
  const message = cleanReason(r.message) || (r.ok ? 'disks erased' : 'no reason given');
  if (r.ok) {
    host.status.state = 'Available';
    delete host.status.needsCleaning;
    delete host.status.errorMessage;
  } else {
    host.status.state = 'CleanFailed';
    host.status.errorMessage = `cleaning: ${message}`;
  }
  const e = r.ok
    ? event('Cleaned', 'info', { namespace: h.namespace, host: h.name }, message)
    : event('CleanFailed', 'error', { namespace: h.namespace, host: h.name }, message);
  return { host, effects: [powerOff(h, r.ok ? 'cleaned' : `cleaning failed: ${message}`)], event: e };
}

/** An operator asks for the disks to be erased again: only a host no machine holds, and none being cleaned. */
export function cleaningRequested(h: StoredHost): StoredHost | Refusal {
  if (h.status.consumer) return { code: 'conflict', error: `host ${h.name} is held by machine ${h.status.consumer}` };
  if (!['Available', 'CleanFailed'].includes(h.status.state))
    return {
      code: 'conflict',
      error: `host ${h.name} is ${h.status.state}: only an Available or CleanFailed host is cleaned`,
    };
  const host = clone(h);
  host.status.state = 'Cleaning';
  host.status.needsCleaning = true;
  delete host.attempt;
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
  const scope = { namespace: h.namespace, host: h.name, machine: h.status.consumer };
  return { host, event: event('ReleaseFailed', 'warning', scope, message) };
}

/**
 * Deleting a machine whose host it holds: the host is powered off first, and the effect's outcome deletes the
 * machine and releases the host (machineDeleted), as a Kubernetes finalizer would.
 */
export const deletionPowerOff = (m: StoredMachine, h: StoredHost): Effect => ({
  kind: 'powerOff',
  host: keyOf(h),
  reason: `machine ${m.name} deleted`,
  release: m.name,
});

/** The machine record goes; its host (if it still holds it) is released. */
export function machineDeleted(
  m: StoredMachine,
  h: StoredHost | undefined,
): { host?: StoredHost; event: WorkflowEvent } {
  const ours = h && h.status.consumer === m.name ? release(h) : undefined;
  const e = event('Deleted', 'info', { namespace: m.namespace, machine: m.name, host: h?.name }, 'machine deleted');
  return ours ? { host: ours, event: e } : { event: e };
}

/** What an operator's BMC action did: the power state the BMC reports after it, or why it failed. */
export type ActionResult = { ok: true; powerState?: string | undefined } | { ok: false; message: string };

export const describeAction = (a: HostAction): string => (a.action === 'reset' ? `reset ${a.resetType}` : a.action);

/** An operator asked for a BMC action: stored as an effect, whose outcome event carries `id`. */
export function hostActionRequested(
  h: StoredHost,
  a: HostAction,
  id: string,
): { event: WorkflowEvent; effect: Effect } {
  const scope = { namespace: h.namespace, host: h.name, machine: h.status.consumer };
  return {
    event: event('HostActionRequested', 'info', scope, describeAction(a)),
    effect: { kind: 'hostAction', host: keyOf(h), action: a, id },
  };
}

export function hostActed(
  h: StoredHost,
  a: HostAction,
  r: ActionResult,
  id: string,
): { host: StoredHost; event: WorkflowEvent } {
  const scope = { namespace: h.namespace, host: h.name, machine: h.status.consumer };
  if (!r.ok) {
    const e = event('HostActionFailed', 'warning', scope, `${describeAction(a)}: ${r.message}`);
    return { host: h, event: { ...e, effect: id } };
  }
  const host = powerObserved(h, r.powerState);
  const power = r.powerState ? `; power ${r.powerState}` : '';
  return { host, event: { ...event('HostAction', 'info', scope, `${describeAction(a)}${power}`), effect: id } };
}

/** Where the inspector is booted from: an iPXE script to chain, or a directory with its kernel and initrd. */
export const inspectorIsScript = (url: string): boolean => /(\.ipxe|\/boot)$/.test(new URL(url).pathname);

/** The digest the inspector checks the target against: the spec's, else the one the appliance pinned for this URL. */
export const targetDigest = (m: StoredMachine): string | undefined =>
  m.spec.targetImageDigest ??
  (m.status.pinnedTarget?.url === m.spec.targetImageURL ? m.status.pinnedTarget.digest : undefined);

/** The appliance computed the target's digest: recorded, and the inspector is given it from now on. */
export function targetPinned(
  m: StoredMachine,
  digest: string,
  now: number,
): { machine: StoredMachine; event: WorkflowEvent } {
  const machine = clone(m);
  const url = m.spec.targetImageURL;
  machine.status.pinnedTarget = { url, digest, at: new Date(now).toISOString() };
  const message = `${url} pinned at ${digest} by the appliance: a target that changes from now on fails its check`;
  setCondition(machine, 'TargetDigestPinned', 'True', 'PinnedByAppliance', message, now);
  return {
    machine,
    event: event('TargetPinned', 'info', { namespace: m.namespace, machine: m.name, host: m.status.hostName }, message),
  };
}

type ParamContext = {
  api: string;
  token: string;
  mac?: string | undefined;
  ca?: string | undefined;
  kernelArgs?: string;
};

/** Kernel parameters in the contract's order: the credentials, then `own` around beskar7.ca and BOOTIF. */
function kernelParams(
  h: StoredHost,
  c: ParamContext,
  own: { beforeCa: string[]; afterCa?: string[]; last?: string[] },
): string {
  return [
    `beskar7.api=${c.api}`,
    `beskar7.namespace=${h.namespace}`,
    `beskar7.host=${h.name}`,
    `beskar7.token=${c.token}`,
    ...own.beforeCa,
    ...(c.ca ? [`beskar7.ca=${c.ca}`] : []),
    ...(own.afterCa ?? []),
    ...(c.mac ? [`BOOTIF=01-${c.mac.replace(/:/g, '-')}`] : []),
    ...(own.last ?? []),
    ...(c.kernelArgs ? [c.kernelArgs] : []),
  ].join(' ');
}

/** The bundled inspector's parameters for erasing a host's disks (beskar7.mode=clean): no target, no machine. */
export const cleanerParams = (h: StoredHost, c: ParamContext): string =>
  kernelParams(h, c, { beforeCa: ['beskar7.mode=clean'] });

/**
 * The inspector's kernel parameters in the contract's order (v4.2 §4.1, §5); they carry the attempt's token.
 * Ours follow the contract's: beskar7.config, then the operator's kernel arguments.
 */
export function inspectorParams(m: StoredMachine, h: StoredHost, c: ParamContext): string {
  const digest = targetDigest(m);
  return kernelParams(h, c, {
    beforeCa: [
      `beskar7.target=${m.spec.targetImageURL}`,
      ...(digest ? [`beskar7.target-digest=${digest}`] : []),
      `beskar7.provider-id=${providerId(h)}`,
    ],
    afterCa: m.spec.targetDisk ? [`beskar7.disk=${m.spec.targetDisk}`] : [],
    last: m.spec.configurationURL ? [`beskar7.config=${m.spec.configurationURL}`] : [],
  });
}
