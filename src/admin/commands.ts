import { randomUUID } from 'node:crypto';
import type { StoreEvent } from '../domain/events.js';
import {
  type MachineManifest,
  type Metadata,
  type PhysicalHostManifest,
  providerIdOf,
  recordVersion,
  resourceVersion,
  type SecretManifest,
  type StoredObject,
} from '../domain/manifests.js';
import { type Refusal, type Result, refusal } from '../domain/refusal.js';
import type { HostAction, MachineCreate, StoredHost, StoredMachine } from '../domain/resources.js';
import { HostCreateSchema, keyOf, objectKey } from '../domain/resources.js';
import { formatZodError } from '../domain/zod-error.js';
import { type Backup, restoreBackup } from '../store/backup.js';
import type { SecretBox } from '../store/secrets.js';
import { type Pipeline, type Refused, refuse } from '../workflow/pipeline.js';
import {
  cleaningRequested,
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

/** create: refused when it exists (POST); update: refused when it does not (PUT, PATCH); apply: either. */
export type WriteMode = 'create' | 'update' | 'apply';

/** The kinds kept as applied, with no workflow of their own. */
export type PlainKind = 'clusters' | 'templates' | 'namespaces';

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
  forgetBmc: (hostKey: string) => Promise<void>;
  /** how long an operator's action is waited for before the answer says it is still pending */
  actionWaitMs: number;
  /** hosts, machines and secrets kept, each (api.maxObjects) */
  maxObjects: number;
  /** after a restore: state held outside the store (the DHCP lease table) is loaded again */
  restored?: () => Promise<void>;
}

const ok = <T>(value: T): Result<T> => ({ ok: true, value });

/** kubectl's last-applied copy of a Secret holds its values in clear: kept with the values blanked. */
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
function redactedAnnotations(a: Metadata['annotations']): Metadata['annotations'] {
  const last = a[LAST_APPLIED];
  if (last === undefined) return a;
  let o: { data?: Record<string, string>; stringData?: Record<string, string> };
  try {
    o = JSON.parse(last);
  } catch {
    const { [LAST_APPLIED]: _, ...rest } = a;
    return rest;
  }
  for (const k of ['data', 'stringData'] as const)
    if (o[k]) o[k] = Object.fromEntries(Object.keys(o[k]).map((key) => [key, '']));
  return { ...a, [LAST_APPLIED]: JSON.stringify(o) };
}
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

  async deleteHost(namespace: string, name: string): Promise<Result<string>> {
    const key = objectKey(namespace, name);
    const r = await this.p.run<string>(async () => {
      const h = await this.store.hosts.get(key);
      if (!h) return refuse('notFound', `no host ${name} in namespace ${namespace}`);
      const d = hostDeletion(h);
      if ('code' in d) return { refused: d };
      // effects still stored for it (a power-off) go with it: no BMC is left to carry them out
      const effects = await this.store.effectsOf(key);
      const writes = [this.store.hosts.del(key), ...effects.map(([k]) => this.store.effects.del(k))];
      return { plan: { writes, events: [d.event] }, value: name };
    });
    if (r.ok) await this.d.forgetBmc(key);
    return r;
  }

  private async createMachine(input: MachineCreate): Promise<Result<StoredMachine>> {
    const problem = await this.d.imageProblem(input.spec.inspectionImageURL);
    if (problem) return no('invalid', `spec.inspectionImageURL: ${problem}`);
    const { machine, event } = newMachine(input, Date.now());
    return this.p.run(async () => {
      if (await this.store.machines.get(keyOf(machine)))
        return refuse('conflict', `machine ${machine.name} exists in namespace ${machine.namespace}`);
      return (
        (await this.full('machines')) ?? {
          plan: { writes: [this.p.machine(machine)], events: [event] },
          value: machine,
        }
      );
    });
  }

  /** Marks the machine Deleting; the reconciler releases its host with a stored power-off and drops the record. */
  deleteMachine(namespace: string, name: string): Promise<Result<string>> {
    return this.p.run(async () => {
      const m = await this.store.machines.get(objectKey(namespace, name));
      if (!m) return refuse('notFound', `no machine ${name} in namespace ${namespace}`);
      if (m.status.phase === 'Deleting') return { value: name };
      const d = machineDeleting(m, Date.now());
      return { plan: { writes: [this.p.machine(d.machine)], events: [d.event] }, value: name };
    });
  }

  /** A new record of a kind that has `maxObjects` already is refused: the store is not an open-ended sink. */
  private async full(kind: 'hosts' | 'machines' | 'secrets' | PlainKind): Promise<Refused | undefined> {
    const n = await this.store[kind].count();
    return n >= this.d.maxObjects
      ? refuse('quota', `${kind}: ${n} stored, the most this appliance keeps (api.maxObjects ${this.d.maxObjects})`)
      : undefined;
  }

  /** Whether the given resourceVersion (if any) is the stored record's: a conflict when stale. */
  private stale(given: string | undefined, stored: unknown, what: string): Refused | undefined {
    if (!given || recordVersion(given) === resourceVersion(stored)) return undefined;
    return refuse('conflict', `${what} was changed since resourceVersion ${given}: get it again and re-apply`);
  }

  /** A create of what exists, or an update of what does not: refused as the mode says. */
  private mismatch(mode: WriteMode, exists: boolean, what: string): Refused | undefined {
    if (mode === 'create' && exists) return refuse('exists', `${what} already exists`);
    if (mode === 'update' && !exists) return refuse('notFound', `${what} not found`);
    return undefined;
  }

  /** A Beskar7Cluster, Beskar7MachineTemplate or Namespace: kept as applied. */
  applyObject(kind: PlainKind, key: string, o: Omit<StoredObject, 'createdAt'>, mode: WriteMode, rv?: string) {
    return this.p.run<Applied>(async () => {
      const col = this.store[kind];
      const old = await col.get(key);
      const refused =
        this.mismatch(mode, !!old, `${kind.slice(0, -1)} ${key}`) ??
        (old ? this.stale(rv, old, `${kind.slice(0, -1)} ${key}`) : await this.full(kind));
      if (refused) return refused;
      const next: StoredObject = { ...o, createdAt: old?.createdAt ?? new Date().toISOString() };
      if (old && JSON.stringify(old) === JSON.stringify(next)) return { value: 'unchanged' };
      return { plan: { writes: [col.put(key, next)] }, value: old ? 'configured' : 'created' };
    });
  }

  deleteObject(kind: PlainKind, key: string): Promise<Result<string>> {
    return this.p.run(async () => {
      if (!(await this.store[kind].get(key))) return refuse('notFound', `${kind.slice(0, -1)} ${key} not found`);
      return { plan: { writes: [this.store[kind].del(key)] }, value: key };
    });
  }

  /**
   * A v1.0 Secret with BMC credentials: stored sealed. Hosts that name it take the new credentials (and drop
   * their BMC session), as a controller watching the Secret would.
   */
  async applySecret(s: SecretManifest, mode: WriteMode = 'apply'): Promise<Result<Applied>> {
    let touched: string[] = [];
    const key = objectKey(s.namespace, s.name);
    const r = await this.p.run<Applied>(async () => {
      const old = await this.store.secrets.get(key);
      const refused =
        this.mismatch(mode, !!old, `secret ${s.name}`) ??
        (old && this.stale(s.metadata.resourceVersion, old, `secret ${s.name}`));
      if (refused) return refused;
      const opened = (enc: string | undefined) => (enc === undefined ? undefined : this.d.secrets.open(enc));
      const same = !!old && opened(old.passwordEnc) === s.password && opened(old.valueEnc) === s.value;
      // read one by one: on etcd each host read is then one this commit compares
      const users: StoredHost[] = [];
      for (const k of await this.store.hosts.keys()) {
        if (!k.startsWith(`${s.namespace}/`)) continue;
        const h = await this.store.hosts.get(k);
        if (h?.spec.redfish.credentialsSecretRef === s.name) users.push(h);
      }
      const full = old ? undefined : await this.full('secrets');
      if (full) return full;
      const meta = { labels: s.metadata.labels, annotations: redactedAnnotations(s.metadata.annotations) };
      const seal = (v: string | undefined) => (v === undefined ? undefined : this.d.secrets.seal(v));
      const sealed = { passwordEnc: seal(s.password), valueEnc: seal(s.value) };
      const a = secretApplied(old, { ...s, ...meta, same }, sealed, users, Date.now());
      if (a === 'unchanged') return { value: 'unchanged' };
      touched = a.hosts.map(keyOf);
      const writes = [this.store.secrets.put(key, a.secret), ...a.hosts.map((h) => this.p.host(h))];
      return { plan: { writes }, value: old ? 'configured' : 'created' };
    });
    for (const h of touched) await this.d.forgetBmc(h);
    return r;
  }

  /** A v1.0 PhysicalHost: created, or its labels or BMC connection updated; credentials from its Secret. */
  async applyHost(m: PhysicalHostManifest, mode: WriteMode = 'apply'): Promise<Result<Applied>> {
    const key = objectKey(m.metadata.namespace, m.metadata.name);
    const r = await this.p.run<Applied>(async () => {
      const old = await this.store.hosts.get(key);
      const refused = this.mismatch(mode, !!old, `host ${m.metadata.name}`);
      if (refused) return refused;
      const { credentialsSecretRef: ref, ...conn } = m.spec.redfishConnection;
      const secret = await this.store.secrets.get(objectKey(m.metadata.namespace, ref));
      if (!secret?.username || !secret.passwordEnc) {
        const what = `Secret ${ref} in namespace ${m.metadata.namespace}`;
        const why = secret ? `${what} has no username and password` : `no ${what}`;
        return refuse(
          'invalid',
          `spec.redfishConnection.credentialsSecretRef: ${why}; apply it first (kind: Secret, stringData: username, password)`,
        );
      }
      // the password is the Secret's, already sealed: the schema only needs to see one
      const input = HostCreateSchema.safeParse({
        name: m.metadata.name,
        namespace: m.metadata.namespace,
        spec: {
          redfish: { ...conn, username: secret.username, password: 'sealed' },
          bootMACs: m.spec.bootMACs,
          bootChain: m.spec.bootChain,
          labels: m.metadata.labels,
        },
      });
      // the schema names the fields as stored: the manifest's names are what the applier wrote
      if (!input.success)
        return refuse('invalid', formatZodError(input.error).replace(/\bspec\.redfish\./g, 'spec.redfishConnection.'));
      const created = newHost(input.data, secret.passwordEnc, Date.now());
      created.host.spec.redfish.credentialsSecretRef = ref;
      created.host.annotations = m.metadata.annotations;
      if (!old) {
        const full = await this.full('hosts');
        return full ?? { plan: { writes: [this.p.host(created.host)], events: [created.event] }, value: 'created' };
      }
      const stale = this.stale(m.metadata.resourceVersion, old, `host ${old.name}`);
      if (stale) return stale;
      const u = hostUpdate(old, created.host.spec, m.metadata.annotations);
      if (u === 'unchanged') return { value: 'unchanged' };
      if ('code' in u) return { refused: u };
      return { plan: { writes: [this.p.host(u.host)], events: u.event ? [u.event] : [] }, value: 'configured' };
    });
    if (r.ok && r.value === 'configured') await this.d.forgetBmc(key);
    return r;
  }

  /** A v1.0 Beskar7Machine: created, or its spec updated while it waits for a host. */
  async applyMachine(m: MachineManifest, mode: WriteMode = 'apply'): Promise<Result<Applied>> {
    const { providerID, ...spec } = m.spec;
    const meta = { labels: m.metadata.labels, annotations: m.metadata.annotations };
    const key = objectKey(m.metadata.namespace, m.metadata.name);
    const old = await this.store.machines.get(key);
    const refused = this.mismatch(mode, !!old, `machine ${m.metadata.name}`);
    if (refused) return { ok: false, ...refused.refused };
    if (!old) {
      if (providerID)
        return no('invalid', `spec.providerID: set by the appliance once the machine is provisioned; drop it`);
      const c = await this.createMachine({ name: m.metadata.name, namespace: m.metadata.namespace, ...meta, spec });
      return c.ok ? ok('created') : c;
    }
    const problem = await this.d.imageProblem(m.spec.inspectionImageURL);
    if (problem) return no('invalid', `spec.inspectionImageURL: ${problem}`);
    return this.p.run<Applied>(async () => {
      const cur = await this.store.machines.get(key);
      if (!cur) return refuse('conflict', `machine ${m.metadata.name} was deleted meanwhile`);
      const stale = this.stale(m.metadata.resourceVersion, cur, `machine ${cur.name}`);
      if (stale) return stale;
      if (providerID) {
        const host = cur.status.hostName
          ? await this.store.hosts.get(objectKey(cur.namespace, cur.status.hostName))
          : undefined;
        const want = providerIdOf(cur, host);
        if (providerID !== want)
          return refuse(
            'invalid',
            `spec.providerID: is ${want ?? 'not set yet'}, set by the appliance; not ${providerID}`,
          );
      }
      const u = machineUpdate(cur, spec, meta);
      if (u === 'unchanged') return { value: 'unchanged' };
      if ('code' in u) return { refused: u };
      return { plan: { writes: [this.p.machine(u.machine)], events: u.event ? [u.event] : [] }, value: 'configured' };
    });
  }

  /** A Secret goes only while no host names it. */
  deleteSecret(namespace: string, name: string): Promise<Result<string>> {
    const key = objectKey(namespace, name);
    return this.p.run(async () => {
      const s = await this.store.secrets.get(key);
      if (!s) return refuse('notFound', `no secret ${name} in namespace ${namespace}`);
      const refused = secretDeletion(s, await this.store.hosts.all());
      if (refused) return { refused };
      return { plan: { writes: [this.store.secrets.del(key)] }, value: name };
    });
  }

  /**
   * Reset, power on or off, or a one-time PXE boot: stored as an effect, which the leading appliance's
   * reconciler carries out after the host's earlier effects. The answer waits up to `actionWaitMs` for its
   * outcome event.
   */
  async hostAction(namespace: string, name: string, a: HostAction): Promise<Result<ActionAnswer>> {
    const key = objectKey(namespace, name);
    if (a.action === 'clean') return this.cleanHost(namespace, name);
    const id = randomUUID();
    const outcome = this.outcomeOf(id);
    const r = await this.p.run(async () => {
      const h = await this.store.hosts.get(key);
      if (!h) return refuse('notFound', `no host ${name} in namespace ${namespace}`);
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
    const power = (await this.store.hosts.get(key))?.status.observedPowerState;
    return ok({ ...base, ...(power ? { powerState: power } : {}) });
  }

  /** Cleaning asked for by an operator: the reconciler boots the cleaner; its outcome is an event on the host. */
  private async cleanHost(namespace: string, name: string): Promise<Result<ActionAnswer>> {
    return this.p.run<ActionAnswer>(async () => {
      const h = await this.store.hosts.get(objectKey(namespace, name));
      if (!h) return refuse('notFound', `no host ${name} in namespace ${namespace}`);
      const c = cleaningRequested(h);
      if ('code' in c) return { refused: c };
      const e = hostActionRequested(h, { action: 'clean' }, randomUUID()).event;
      return {
        plan: { writes: [this.p.host(c)], events: [e] },
        value: { host: name, action: 'clean', effect: 'cleaning', pending: true },
      };
    });
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
