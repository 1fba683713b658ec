import type { WorkflowEvent } from '../domain/events.js';
import type {
  HostAction,
  HostCreate,
  InspectionReport,
  MachineCreate,
  StoredHost,
  StoredMachine,
} from '../domain/resources.js';
import { hostMacs, ResourceName } from '../domain/resources.js';
import { type Backup, restoreBackup } from '../store/backup.js';
import { type SecretBox, tokenMatches } from '../store/secrets.js';
import type { BatchOp, Store } from '../store/store.js';
import {
  type ActionResult,
  describeAction,
  hostActed,
  hostDeletion,
  type InspectorProgress,
  machineDeleting,
  newHost,
  newMachine,
  progressNoted,
  type Refusal,
  reportAccepted,
  reportRefusal,
  reportRejected,
  scriptFetched,
} from './transitions.js';

export type Outcome<T> = { ok: true; value: T } | ({ ok: false } & Refusal);

const refuse = (status: Refusal['status'], error: string): { ok: false } & Refusal => ({ ok: false, status, error });
const done = <T>(value: T): Outcome<T> => ({ ok: true, value });
const no = (status: Refusal['status'], error: string): Refusal => ({ status, error });
/** What an unauthenticated caller learns: not whether the host exists, nor which part was wrong. */
const UNAUTHORIZED = no(401, 'unauthorized');

/** What the commands need of the running workflow. */
export interface Workflow {
  /** something changed: reconcile soon */
  kick(): void;
  /** a host is gone: drop its BMC session */
  forgetBmc(name: string): Promise<void>;
  /** an operator's action on a host's BMC */
  hostAction(h: StoredHost, a: HostAction): Promise<ActionResult>;
}

export interface CommandDeps {
  store: Store;
  secrets: SecretBox;
  workflow: Workflow;
  /** why a machine's inspection image cannot boot, checked when the machine is created */
  imageProblem: (inspectionImageURL: string) => Promise<string | undefined>;
  /** after a restore: state held outside the store (the DHCP lease table) is loaded again */
  restored?: () => Promise<void>;
}

/**
 * Every change the API (and so the CLI) or a booting machine asks for: load the records, decide with a pure
 * transition, commit one batch. Read-modify-write runs inside the store's transaction, so no write is based
 * on a stale read.
 */
export class Commands {
  constructor(private readonly d: CommandDeps) {}

  private get store(): Store {
    return this.d.store;
  }

  /** Runs `decide` on the current records and commits what it returns, all under the store lock. */
  private async commit<T>(decide: () => Promise<{ ops: BatchOp[]; value: T } | Refusal>): Promise<Outcome<T>> {
    const r = await this.store.transact(async () => {
      const out = await decide();
      if ('status' in out) return out;
      await this.store.batch(out.ops);
      return out;
    });
    return 'status' in r ? refuse(r.status, r.error) : done(r.value);
  }

  private ev(e: WorkflowEvent): BatchOp {
    return this.store.event(e);
  }

  async createHost(input: HostCreate): Promise<Outcome<StoredHost>> {
    const { host, event } = newHost(input, this.d.secrets.seal(input.spec.redfish.password), Date.now());
    const r = await this.commit<StoredHost>(async () =>
      (await this.store.hosts.get(host.name))
        ? no(409, `host ${host.name} exists`)
        : { ops: [this.store.hosts.put(host.name, host), this.ev(event)], value: host },
    );
    if (r.ok) this.d.workflow.kick();
    return r;
  }

  async deleteHost(name: string): Promise<Outcome<string>> {
    const r = await this.commit<string>(async () => {
      const h = await this.store.hosts.get(name);
      if (!h) return no(404, `no host ${name}`);
      const d = hostDeletion(h);
      return 'status' in d ? d : { ops: [this.store.hosts.del(name), this.ev(d.event)], value: name };
    });
    if (r.ok) await this.d.workflow.forgetBmc(name);
    return r;
  }

  async createMachine(input: MachineCreate): Promise<Outcome<StoredMachine>> {
    const problem = await this.d.imageProblem(input.spec.inspectionImageURL);
    if (problem) return refuse(400, `spec.inspectionImageURL: ${problem}`);
    const { machine, event } = newMachine(input, Date.now());
    const r = await this.commit<StoredMachine>(async () =>
      (await this.store.machines.get(machine.name))
        ? no(409, `machine ${machine.name} exists`)
        : { ops: [this.store.machines.put(machine.name, machine), this.ev(event)], value: machine },
    );
    if (r.ok) this.d.workflow.kick();
    return r;
  }

  /** Marks the machine Deleting; the reconciler powers its host off, releases it and removes the record. */
  async deleteMachine(name: string): Promise<Outcome<string>> {
    const r = await this.commit<string>(async () => {
      const m = await this.store.machines.get(name);
      if (!m) return no(404, `no machine ${name}`);
      if (m.status.phase === 'Deleting') return { ops: [], value: name };
      const d = machineDeleting(m);
      return { ops: [this.store.machines.put(name, d.machine), this.ev(d.event)], value: name };
    });
    if (r.ok) this.d.workflow.kick();
    return r;
  }

  /** Reset, power on or off, or a one-time PXE boot, through the host's BMC; recorded as an event. */
  async hostAction(
    name: string,
    a: HostAction,
  ): Promise<Outcome<{ host: string; action: string; powerState?: string }>> {
    const h = await this.store.hosts.get(name);
    if (!h) return refuse(404, `no host ${name}`);
    const r = await this.d.workflow.hostAction(h, a);
    await this.commit<undefined>(async () => {
      const cur = await this.store.hosts.get(name);
      if (!cur) return { ops: [], value: undefined };
      const n = hostActed(cur, a, r);
      return { ops: [this.store.hosts.put(name, n.host), this.ev(n.event)], value: undefined };
    });
    if (!r.ok) return refuse(502, `BMC: ${r.message}`);
    return done({ host: name, action: describeAction(a), ...(r.powerState ? { powerState: r.powerState } : {}) });
  }

  /** iPXE fetched the script of a MAC: an inspecting host moves on to InProgress. */
  async scriptFetched(mac: string): Promise<void> {
    await this.commit<undefined>(async () => {
      const h = (await this.store.hosts.all()).find(
        (x) => x.status.state === 'Inspecting' && hostMacs(x).includes(mac),
      );
      const next = h && scriptFetched(h, mac);
      return {
        ops: next ? [this.store.hosts.put(next.host.name, next.host), this.ev(next.event)] : [],
        value: undefined,
      };
    });
  }

  /**
   * Whether this caller holds the host's inspection token. Anyone on the segment can ask, so a wrong name or
   * token costs a counter (the caller's), never a stored event.
   */
  async inspectorAuth(hostName: string, token: string | undefined): Promise<boolean> {
    if (!ResourceName.safeParse(hostName).success) return false;
    const h = await this.store.hosts.get(hostName);
    return !!h && tokenMatches(token, h.inspectionTokenHash);
  }

  /** An authenticated inspector sent a report that failed its schema: remembered against its host. */
  async reportInvalid(hostName: string, why: string): Promise<void> {
    await this.store.batch([this.ev(reportRejected(hostName, `invalid report body: ${why}`))]);
  }

  /** Report intake: the host's one-time token, an inspecting host; the report and the phase change in one batch. */
  async acceptReport(hostName: string, token: string | undefined, report: InspectionReport): Promise<Outcome<string>> {
    const r = await this.commit<Refusal | undefined>(async () => {
      const h = await this.store.hosts.get(hostName);
      if (!h || !tokenMatches(token, h.inspectionTokenHash)) return UNAUTHORIZED;
      // the token is right: a refusal now is the inspector's business, kept as an event
      const refusal = reportRefusal(h);
      if (refusal) return { ops: [this.ev(reportRejected(hostName, refusal.error))], value: refusal };
      const a = reportAccepted(h, report, Date.now());
      const ops = [this.store.reports.put(a.id, a.stored), this.store.hosts.put(hostName, a.host), this.ev(a.event)];
      return { ops, value: undefined };
    });
    if (!r.ok) return r;
    if (r.value) return refuse(r.value.status, r.value.error);
    this.d.workflow.kick();
    return done(hostName);
  }

  /** A step of the inspector after its report (download, config, kexec) or a failure it hit. */
  acceptProgress(hostName: string, token: string | undefined, p: InspectorProgress): Promise<Outcome<string>> {
    return this.commit<string>(async () => {
      const h = await this.store.hosts.get(hostName);
      if (!h || !tokenMatches(token, h.inspectionTokenHash)) return UNAUTHORIZED;
      const n = progressNoted(h, p);
      return { ops: [this.store.hosts.put(hostName, n.host), this.ev(n.event)], value: hostName };
    });
  }

  /** Replaces the whole store with a backup, then reloads what lives beside it and reconciles. */
  async restore(b: Backup): Promise<Outcome<Record<string, number>>> {
    let counts: Record<string, number>;
    try {
      counts = await restoreBackup(this.store, b);
    } catch (e) {
      return refuse(400, (e as Error).message);
    }
    await this.d.restored?.();
    this.d.workflow.kick();
    return done(counts);
  }
}
