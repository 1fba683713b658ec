import { createHash } from 'node:crypto';
import type { z } from 'zod';
import type { StoreEvent } from '../../domain/events.js';
import {
  API_VERSION,
  ClusterManifestSchema,
  hostAddresses,
  hostManifest,
  MachineManifestSchema,
  MachineTemplateManifestSchema,
  machineManifest,
  metadata,
  NamespaceManifestSchema,
  PhysicalHostManifestSchema,
  reportedAddresses,
  SecretManifestSchema,
  type StoredObject,
  uidOf,
} from '../../domain/manifests.js';
import { type Result, refusal } from '../../domain/refusal.js';
import { DEFAULT_NAMESPACE, hostMacs, objectKey, type StoredHost, type StoredMachine } from '../../domain/resources.js';
import type { Store } from '../../store/store.js';
import type { AdminCommands, Applied, PlainKind, WriteMode } from '../commands.js';
import { KIND_INFO, type KindInfo, type KindName, type Obj } from './kinds.js';

/** Reports whose addresses a machine view keeps in memory: one a host, about 100 bytes each. */
const REPORTED_CACHE = 16_384;

export interface KubeDeps {
  store: Store;
  commands: AdminCommands;
  /** the addresses our DHCP leased to these MACs now */
  leasedAddresses: (macs: string[]) => string[];
}

/** A write's answer: done (with what it did), refused by the workflow, or a manifest that does not parse. */
export type Written = Result<Applied> | { ok: false; code: 'invalid'; zod: z.ZodError; error: string };

/** One kind of the API over the store: its records as objects, and its writes as commands. */
export interface Kind {
  info: KindInfo;
  /** the store collection its records live in (what the watch follows) */
  collection: string;
  view(key: string, value: unknown): Promise<Obj[]>;
  entries(limit?: number): Promise<[string, unknown][]>;
  find(namespace: string, name: string): Promise<[string, unknown] | undefined>;
  write?(o: Obj, mode: WriteMode): Promise<Written>;
  /** 'gone' once the record went; 'pending' while its finalizer works (a machine releasing its host) */
  remove?(namespace: string, name: string): Promise<Result<'gone' | 'pending'>>;
}

const parsed = async <S extends z.ZodType>(
  schema: S,
  o: Obj,
  run: (m: z.output<S>) => Promise<Result<Applied>>,
): Promise<Written> => {
  const r = schema.safeParse(o);
  if (!r.success) return { ok: false, code: 'invalid', zod: r.error, error: r.error.message };
  return run(r.data);
};

const gone = <T>(r: Result<T>): Result<'gone'> => (r.ok ? { ok: true, value: 'gone' } : r);

/** Records keyed `<namespace>/<name>`. */
function byKey(col: { get(k: string): Promise<unknown> }) {
  return async (namespace: string, name: string): Promise<[string, unknown] | undefined> => {
    const key = objectKey(namespace, name);
    const v = await col.get(key);
    return v ? [key, v] : undefined;
  };
}

/** Every kind the API serves, over one store and its commands. */
export function kinds(d: KubeDeps): Record<KindName, Kind> {
  const { store, commands } = d;
  const hostView = async (h: StoredHost) => {
    const id = h.status.inspectionReportId;
    return hostManifest(h, id ? await store.reports.get(id) : undefined, d.leasedAddresses(hostMacs(h)));
  };
  // A stored report never changes (its id is its host and the time it came), so the addresses a machine shows
  // are read from it once, not from disk for each machine of each list: 3000 reads per `get b7m` of 3000 hosts.
  const reported = new Map<string, string[]>();
  const reportedOf = async (id: string): Promise<string[]> => {
    let ips = reported.get(id);
    if (!ips) {
      ips = reportedAddresses(await store.reports.get(id));
      reported.set(id, ips);
      if (reported.size > REPORTED_CACHE) reported.delete(reported.keys().next().value as string);
    }
    return ips;
  };
  const plain = (
    kind: 'Beskar7Cluster' | 'Beskar7MachineTemplate',
    collection: PlainKind,
    schema: typeof ClusterManifestSchema | typeof MachineTemplateManifestSchema,
  ) => {
    const col = store[collection];
    return {
      info: KIND_INFO[kind],
      collection,
      entries: () => col.entries(),
      find: byKey(col),
      view: async (_: string, v: unknown) => {
        const o = v as StoredObject;
        const base = { apiVersion: API_VERSION, kind, metadata: metadata(kind, o, o.labels), spec: o.spec };
        if (kind !== 'Beskar7Cluster') return [base];
        const endpoint = (o.spec as { controlPlaneEndpoint?: { host: string } }).controlPlaneEndpoint;
        const ready = !!endpoint?.host;
        return [
          {
            ...base,
            status: {
              ready,
              initialization: { provisioned: ready },
              ...(endpoint ? { controlPlaneEndpoint: endpoint } : {}),
            },
          },
        ];
      },
      write: (o: Obj, mode: WriteMode) =>
        parsed(schema, o, ({ metadata: m, spec }: z.output<typeof schema>) =>
          commands.applyObject(
            collection,
            objectKey(m.namespace, m.name),
            { name: m.name, namespace: m.namespace, labels: m.labels, annotations: m.annotations, spec },
            mode,
            m.resourceVersion,
          ),
        ),
      remove: async (ns: string, name: string) => gone(await commands.deleteObject(collection, objectKey(ns, name))),
    } satisfies Kind;
  };

  return {
    PhysicalHost: {
      info: KIND_INFO.PhysicalHost,
      collection: 'hosts',
      entries: () => store.hosts.entries(),
      find: byKey(store.hosts),
      view: async (_, v) => [await hostView(v as StoredHost)],
      write: (o, mode) => parsed(PhysicalHostManifestSchema, o, (m) => commands.applyHost(m, mode)),
      remove: async (ns, name) => gone(await commands.deleteHost(ns, name)),
    },
    Beskar7Machine: {
      info: KIND_INFO.Beskar7Machine,
      collection: 'machines',
      entries: () => store.machines.entries(),
      find: byKey(store.machines),
      view: async (_, v) => {
        const m = v as StoredMachine;
        const h = m.status.hostName ? await store.hosts.get(objectKey(m.namespace, m.status.hostName)) : undefined;
        const id = h?.status.inspectionReportId;
        const held =
          h && h.status.consumer === m.name
            ? hostAddresses(d.leasedAddresses(hostMacs(h)), id ? await reportedOf(id) : [])
            : [];
        return [machineManifest(m, h, held)];
      },
      write: (o, mode) => parsed(MachineManifestSchema, o, (m) => commands.applyMachine(m, mode)),
      remove: async (ns, name) => {
        const r = await commands.deleteMachine(ns, name);
        if (!r.ok) return r;
        return { ok: true, value: (await store.machines.get(objectKey(ns, name))) ? 'pending' : 'gone' };
      },
    },
    Beskar7Cluster: plain('Beskar7Cluster', 'clusters', ClusterManifestSchema),
    Beskar7MachineTemplate: plain('Beskar7MachineTemplate', 'templates', MachineTemplateManifestSchema),
    Secret: {
      info: KIND_INFO.Secret,
      collection: 'secrets',
      entries: () => store.secrets.entries(),
      find: byKey(store.secrets),
      // a Secret is written, never read back: what it holds stays in the appliance
      view: async (_, v) => {
        const s = v as {
          name: string;
          namespace: string;
          createdAt: string;
          labels?: Record<string, string>;
          annotations?: Record<string, string>;
        };
        return [{ apiVersion: 'v1', kind: 'Secret', metadata: metadata('Secret', s, s.labels ?? {}), type: 'Opaque' }];
      },
      write: (o, mode) => parsed(SecretManifestSchema, o, (s) => commands.applySecret(s, mode)),
      remove: async (ns, name) => gone(await commands.deleteSecret(ns, name)),
    },
    Namespace: namespaces(d),
    Event: events(d),
  };
}

/** Namespaces: `default`, those applied, and those objects are in. */
function namespaces(d: KubeDeps): Kind {
  const { store, commands } = d;
  const objects = async (): Promise<{ namespace: string; createdAt: string }[]> => [
    ...store.hosts.snapshot(),
    ...store.machines.snapshot(),
    ...(await store.secrets.all()),
    ...(await store.clusters.all()),
    ...(await store.templates.all()),
  ];
  const all = async (): Promise<[string, unknown][]> => {
    const stored = new Map<string, unknown>(await store.namespaces.entries());
    const used = await objects();
    // a namespace nobody applied exists since its oldest object; `default` since the first of all
    const since = new Map<string, string>();
    for (const o of [...used, ...used.map((u) => ({ ...u, namespace: DEFAULT_NAMESPACE }))]) {
      const t = since.get(o.namespace);
      if (!t || o.createdAt < t) since.set(o.namespace, o.createdAt);
    }
    if (!since.has(DEFAULT_NAMESPACE)) since.set(DEFAULT_NAMESPACE, new Date().toISOString());
    for (const [name, createdAt] of since)
      if (!stored.has(name))
        stored.set(name, { name, namespace: '', labels: {}, annotations: {}, spec: {}, createdAt });
    return [...stored.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  };
  return {
    info: KIND_INFO.Namespace,
    collection: 'namespaces',
    entries: all,
    find: async (_, name) => (await all()).find(([k]) => k === name),
    view: async (_, v) => {
      const o = v as StoredObject;
      const { namespace: _ns, ...meta } = metadata('Namespace', o, o.labels);
      return [
        {
          apiVersion: 'v1',
          kind: 'Namespace',
          metadata: meta,
          spec: { finalizers: ['kubernetes'] },
          status: { phase: 'Active' },
        },
      ];
    },
    write: (o, mode) =>
      parsed(NamespaceManifestSchema, o, (m) =>
        commands.applyObject(
          'namespaces',
          m.metadata.name,
          {
            name: m.metadata.name,
            namespace: '',
            labels: m.metadata.labels,
            annotations: m.metadata.annotations,
            spec: {},
          },
          mode,
          m.metadata.resourceVersion,
        ),
      ),
    remove: async (_, name) => {
      const inUse = (await objects()).some((o) => o.namespace === name);
      if (name === DEFAULT_NAMESPACE || inUse)
        return {
          ok: false,
          ...refusal('conflict', `namespace ${name} still holds objects (or is the default): delete them first`),
        };
      return gone(await commands.deleteObject('namespaces', name));
    },
  };
}

/** The workflow's events as core v1 Events, one for each object an event is about, so `describe` shows them. */
function events(d: KubeDeps): Kind {
  const { store } = d;
  const involved = async (e: StoreEvent) => {
    const out: Obj[] = [];
    const namespace = e.namespace ?? DEFAULT_NAMESPACE;
    const about = [
      ['Beskar7Machine', e.machine, e.machine ? await store.machines.get(objectKey(namespace, e.machine)) : undefined],
      ['PhysicalHost', e.host, e.host ? await store.hosts.get(objectKey(namespace, e.host)) : undefined],
    ] as const;
    for (const [kind, name, rec] of about) {
      if (!name) continue;
      const uid = rec ? uidOf(kind, rec) : '';
      out.push({ apiVersion: API_VERSION, kind, name, namespace, uid });
    }
    return out;
  };
  return {
    info: KIND_INFO.Event,
    collection: 'events',
    entries: async (limit) => {
      const items = await store.events.last(limit ?? 1000);
      return items.map((e) => [e.at, e]);
    },
    find: async () => undefined,
    view: async (_, v) => {
      const e = v as StoreEvent;
      const id = createHash('sha256').update(JSON.stringify(e)).digest('hex').slice(0, 16);
      return (await involved(e)).map((obj) => ({
        apiVersion: 'v1',
        kind: 'Event',
        metadata: {
          name: `${obj.name}.${id}`,
          namespace: obj.namespace,
          uid: `${id}-${obj.kind}`,
          creationTimestamp: e.at,
        },
        involvedObject: obj,
        reason: e.kind,
        message: e.message,
        type: e.severity === 'info' ? 'Normal' : 'Warning',
        source: { component: 'beskar7' },
        reportingComponent: 'beskar7',
        firstTimestamp: e.at,
        lastTimestamp: e.at,
        count: 1,
      }));
    },
  };
}
