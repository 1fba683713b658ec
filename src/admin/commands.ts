import { randomUUID } from 'node:crypto';
import type { StoreEvent } from '../domain/events.js';
import {
  type MachineManifest,
  type PhysicalHostManifest,
  resourceVersion,
  type SecretManifest,
} from '../domain/manifests.js';
import { type Refusal, type Result, refusal } from '../domain/refusal.js';
import type { HostAction, HostCreate, MachineCreate, StoredHost, StoredMachine } from '../domain/resources.js';
import { HostCreateSchema } from '../domain/resources.js';
import { formatZodError } from '../domain/zod-error.js';
import { type Backup, restoreBackup } from '../store/backup.js';
import type { SecretBox } from '../store/secrets.js';
import { type Pipeline, type Refused, refuse } from '../workflow/pipeline.js';
import {
  describeAction,
  hostActionRequested,
  hostDeletion,
  hostUpdate,
  machineDeleting,
  machineUpdate,
  newHost,
  newMachine,
  secretApplied,
  secretDeletion,
} from '../workflow/transitions.js';

/** What an apply did, in kubectl's words. */
export type Applied = 'created' | 'configured' | 'unchanged';

/** What an operator's BMC action came to: done (with the power state it left), failed, or still queued. */
export interface ActionAnswer {
  host: string;
  action: string;
  /** the stored effect that carries the action out */
  effect: string;
  powerState?: string;
  /** not carried out within the wait: it still will be (no appliance leads, or the BMC is slow) */
  pending?: boolean;
}

export interface AdminDeps {
  pipeline: Pipeline;
  secrets: SecretBox;
  /** why a machine's inspection image cannot boot, checked when the machine is created */
  imageProblem: (inspectionImageURL: string) => Promise<string | undefined>;
  /** a host's BMC connection changed or the host went: drop its cached BMC session (the next call opens one) */
  forgetBmc: (name: string) => Promise<void>;
  /** how long an operator's action is waited for before the answer says it is still pending */
  actionWaitMs: number;
  /** hosts, machines and secrets kept, each (api.maxObjects) */
  maxObjects: number;
  /** after a restore: state held outside the store (the DHCP lease table) is loaded again */
  restored?: () => Promise<void>;
}

const ok = <T>(value: T): Result<T> => ({ ok: true, value });
const no = (code: Refusal['code'], error: string): Result<never> => ({ ok: false, ...refusal(code, error) });

/**
 * The inventory and the operator's BMC actions, as the admin API (and so the CLI and manifests) asks for them:
 * each a decision over the records as they are, committed through the pipeline.
 */
export class AdminCommands {
  constructor(private readonly d: AdminDeps) {}

  private get p(): Pipeline {
    return this.d.pipeline;
  }

  private get store() {
    return this.d.pipeline.store;
  }

  createHost(input: HostCreate): Promise<Result<StoredHost>> {
    const { host, event } = newHost(input, this.d.secrets.seal(input.spec.redfish.password), Date.now());
    return this.p.run(async () => {
      if (await this.store.hosts.get(host.name)) return refuse('conflict', `host ${host.name} exists`);
      return (await this.full('hosts')) ?? { plan: { writes: [this.p.host(host)], events: [event] }, value: host };
    });
  }

  async deleteHost(name: string): Promise<Result<string>> {
    const r = await this.p.run<string>(async () => {
      const h = await this.store.hosts.get(name);
      if (!h) return refuse('notFound', `no host ${name}`);
      const d = hostDeletion(h);
      if ('code' in d) return { refused: d };
      // effects still stored for it (a power-off) go with it: no BMC is left to carry them out
      const effects = await this.store.effectsOf(name);
      const writes = [this.store.hosts.del(name), ...effects.map(([k]) => this.store.effects.del(k))];
      return { plan: { writes, events: [d.event] }, value: name };
    });
    if (r.ok) await this.d.forgetBmc(name);
    return r;
  }

  async createMachine(input: MachineCreate): Promise<Result<StoredMachine>> {
    const problem = await this.d.imageProblem(input.spec.inspectionImageURL);
    if (problem) return no('invalid', `spec.inspectionImageURL: ${problem}`);
    const { machine, event } = newMachine(input, Date.now());
    return this.p.run(async () => {
      if (await this.store.machines.get(machine.name)) return refuse('conflict', `machine ${machine.name} exists`);
      return (
        (await this.full('machines')) ?? {
          plan: { writes: [this.p.machine(machine)], events: [event] },
          value: machine,
        }
      );
    });
  }

  /** Marks the machine Deleting; the reconciler releases its host with a stored power-off and drops the record. */
  deleteMachine(name: string): Promise<Result<string>> {
    return this.p.run(async () => {
      const m = await this.store.machines.get(name);
      if (!m) return refuse('notFound', `no machine ${name}`);
      if (m.status.phase === 'Deleting') return { value: name };
      const d = machineDeleting(m);
      return { plan: { writes: [this.p.machine(d.machine)], events: [d.event] }, value: name };
    });
  }

  /** A new record of a kind that has `maxObjects` already is refused: the store is not an open-ended sink. */
  private async full(kind: 'hosts' | 'machines' | 'secrets'): Promise<Refused | undefined> {
    const n = await this.store[kind].count();
    return n >= this.d.maxObjects
      ? refuse('quota', `${kind}: ${n} stored, the most this appliance keeps (api.maxObjects ${this.d.maxObjects})`)
      : undefined;
  }

  /** Whether the given resourceVersion (if any) is the stored record's: a conflict when stale. */
  private stale(given: string | undefined, stored: unknown, what: string): Refused | undefined {
    if (given === undefined || given === resourceVersion(stored)) return undefined;
    return refuse('conflict', `${what} was changed since resourceVersion ${given}: get it again and re-apply`);
  }

  /**
   * A v1.0 Secret with BMC credentials: stored sealed. Hosts that name it take the new credentials (and drop
   * their BMC session), as a controller watching the Secret would.
   */
  async applySecret(s: SecretManifest): Promise<Result<Applied>> {
    let touched: string[] = [];
    const r = await this.p.run<Applied>(async () => {
      const old = await this.store.secrets.get(s.name);
      const stale =
        old && old.namespace === s.namespace && this.stale(s.metadata.resourceVersion, old, `secret ${s.name}`);
      if (stale) return stale;
      const same = !!old && this.d.secrets.open(old.passwordEnc) === s.password;
      // read one by one: on etcd each host read is then one this commit compares
      const users: StoredHost[] = [];
      for (const name of await this.store.hosts.keys()) {
        const h = await this.store.hosts.get(name);
        if (h?.spec.redfish.credentialsSecretRef === s.name) users.push(h);
      }
      const full = old ? undefined : await this.full('secrets');
      if (full) return full;
      const a = secretApplied(old, { ...s, same }, this.d.secrets.seal(s.password), users, Date.now());
      if (a === 'unchanged') return { value: 'unchanged' };
      if ('code' in a) return { refused: a };
      touched = a.hosts.map((h) => h.name);
      const writes = [this.store.secrets.put(s.name, a.secret), ...a.hosts.map((h) => this.p.host(h))];
      return { plan: { writes }, value: old ? 'configured' : 'created' };
    });
    for (const h of touched) await this.d.forgetBmc(h);
    return r;
  }

  /** A v1.0 PhysicalHost: created, or its labels or BMC connection updated; credentials from its Secret. */
  async applyHost(m: PhysicalHostManifest): Promise<Result<Applied>> {
    const r = await this.p.run<Applied>(async () => {
      const { credentialsSecretRef: ref, ...conn } = m.spec.redfishConnection;
      const secret = await this.store.secrets.get(ref);
      if (!secret || secret.namespace !== m.metadata.namespace) {
        return refuse(
          'invalid',
          `spec.redfishConnection.credentialsSecretRef: no Secret ${ref} in namespace ${m.metadata.namespace}; apply it first (kind: Secret, stringData: username, password)`,
        );
      }
      // the password is the Secret's, already sealed: the schema only needs to see one
      const input = HostCreateSchema.safeParse({
        name: m.metadata.name,
        namespace: m.metadata.namespace,
        spec: {
          redfish: { ...conn, username: secret.username, password: 'sealed' },
          bootMACs: m.spec.bootMACs,
          labels: m.metadata.labels,
        },
      });
      if (!input.success) return refuse('invalid', formatZodError(input.error));
      const created = newHost(input.data, secret.passwordEnc, Date.now());
      created.host.spec.redfish.credentialsSecretRef = ref;
      const old = await this.store.hosts.get(m.metadata.name);
      if (!old) {
        const full = await this.full('hosts');
        return full ?? { plan: { writes: [this.p.host(created.host)], events: [created.event] }, value: 'created' };
      }
      if (old.namespace !== m.metadata.namespace)
        return refuse('conflict', `host ${old.name} exists in namespace ${old.namespace}`);
      const stale = this.stale(m.metadata.resourceVersion, old, `host ${old.name}`);
      if (stale) return stale;
      const u = hostUpdate(old, created.host.spec);
      if (u === 'unchanged') return { value: 'unchanged' };
      if ('code' in u) return { refused: u };
      return { plan: { writes: [this.p.host(u.host)], events: [u.event] }, value: 'configured' };
    });
    if (r.ok && r.value === 'configured') await this.d.forgetBmc(m.metadata.name);
    return r;
  }

  /** A v1.0 Beskar7Machine: created, or its spec updated while it waits for a host. */
  async applyMachine(m: MachineManifest): Promise<Result<Applied>> {
    const old = await this.store.machines.get(m.metadata.name);
    if (!old) {
      const c = await this.createMachine({ name: m.metadata.name, namespace: m.metadata.namespace, spec: m.spec });
      return c.ok ? ok('created') : c;
    }
    const problem = await this.d.imageProblem(m.spec.inspectionImageURL);
    if (problem) return no('invalid', `spec.inspectionImageURL: ${problem}`);
    return this.p.run<Applied>(async () => {
      const cur = await this.store.machines.get(m.metadata.name);
      if (!cur) return refuse('conflict', `machine ${m.metadata.name} was deleted meanwhile`);
      if (cur.namespace !== m.metadata.namespace)
        return refuse('conflict', `machine ${cur.name} exists in namespace ${cur.namespace}`);
      const stale = this.stale(m.metadata.resourceVersion, cur, `machine ${cur.name}`);
      if (stale) return stale;
      const u = machineUpdate(cur, m.spec);
      if (u === 'unchanged') return { value: 'unchanged' };
      if ('code' in u) return { refused: u };
      return { plan: { writes: [this.p.machine(u.machine)], events: [u.event] }, value: 'configured' };
    });
  }

  /** A Secret goes only while no host names it. */
  deleteSecret(name: string): Promise<Result<string>> {
    return this.p.run(async () => {
      const s = await this.store.secrets.get(name);
      if (!s) return refuse('notFound', `no secret ${name}`);
      const refused = secretDeletion(s, await this.store.hosts.all());
      if (refused) return { refused };
      return { plan: { writes: [this.store.secrets.del(name)] }, value: name };
    });
  }

  /**
   * Reset, power on or off, or a one-time PXE boot: stored as an effect, which the leading appliance's
   * reconciler carries out after the host's earlier effects. The answer waits up to `actionWaitMs` for its
   * outcome event.
   */
  async hostAction(name: string, a: HostAction): Promise<Result<ActionAnswer>> {
    const id = randomUUID();
    const outcome = this.outcomeOf(id);
    const r = await this.p.run(async () => {
      const h = await this.store.hosts.get(name);
      if (!h) return refuse('notFound', `no host ${name}`);
      const q = hostActionRequested(h, a, id);
      return { plan: { events: [q.event], effects: [q.effect] }, value: h.name };
    });
    if (!r.ok) {
      outcome.cancel();
      return r;
    }
    const base = { host: name, action: describeAction(a), effect: id };
    const e = await outcome.wait(this.d.actionWaitMs);
    if (!e) return ok({ ...base, pending: true });
    if (e.kind === 'HostActionFailed') return no('bmcFailed', `BMC: ${e.message.replace(/^[^:]*: /, '')}`);
    const power = (await this.store.hosts.get(name))?.status.observedPowerState;
    return ok({ ...base, ...(power ? { powerState: power } : {}) });
  }

  /** The event that tells effect `id`'s outcome, stored here or (etcd) by the leader. */
  private outcomeOf(id: string) {
    let listener: ((e: StoreEvent) => void) | undefined;
    // only the outcome carries the effect's id
    const got = new Promise<StoreEvent>((resolve) => {
      listener = (e) => {
        if (e.effect === id) resolve(e);
      };
      this.store.on('event', listener);
    });
    const cancel = () => listener && this.store.off('event', listener);
    return {
      cancel,
      wait: async (ms: number) => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<undefined>((r) => {
          timer = setTimeout(() => r(undefined), ms);
        });
        try {
          return await Promise.race([got, late]);
        } finally {
          clearTimeout(timer);
          cancel();
        }
      },
    };
  }

  /**
   * Replaces the whole store with a backup, then reloads what lives beside it. Not a plan: on etcd it goes in
   * transactions of at most 100 writes (etcd allows 128), so it is atomic on LevelDB only.
   */
  async restore(b: Backup): Promise<Result<Record<string, number>>> {
    let counts: Record<string, number>;
    try {
      counts = await restoreBackup(this.store, b);
    } catch (e) {
      return no('invalid', (e as Error).message);
    }
    await this.d.restored?.();
    this.p.changed();
    return ok(counts);
  }
}
