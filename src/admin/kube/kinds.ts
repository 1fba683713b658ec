import { API_VERSION } from '../../domain/manifests.js';

/** The Kubernetes shapes of the API, without its handlers: discovery, tables and OpenAPI read them. */
export const GROUP = API_VERSION.split('/')[0] as string;
export const VERSION = API_VERSION.split('/')[1] as string;

/** An object as the API shows it: JSON, read by the printer columns' cells. */
// biome-ignore lint/suspicious/noExplicitAny: objects of every kind, read by path
export type Obj = Record<string, any>;

export interface Column {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  format?: 'name';
  /** 0: `kubectl get`; 1: only `-o wide` */
  priority: 0 | 1;
  description: string;
  cell: (o: Obj) => unknown;
}

export interface KindInfo {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  categories: string[];
  /** '' for core v1 */
  group: string;
  version: string;
  namespaced: boolean;
  verbs: string[];
  /** has a status subresource */
  status: boolean;
  columns: Column[];
}

const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
const READ_VERBS = ['get', 'list', 'watch'];

/** A duration as kubectl prints ages: 45s, 12m, 5h, 3d. */
export function age(ts: string | undefined, now = Date.now()): string {
  if (!ts) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

const col = (
  name: string,
  cell: (o: Obj) => unknown,
  description: string,
  priority: 0 | 1 = 0,
  type: Column['type'] = 'string',
): Column => ({ name, type, priority, description, cell });
const NAME: Column = {
  name: 'Name',
  type: 'string',
  format: 'name',
  priority: 0,
  description: 'metadata.name',
  cell: (o) => o.metadata.name,
};
const AGE = col('Age', (o) => age(o.metadata.creationTimestamp), 'time since creation', 0, 'date');
const CLUSTER = col('Cluster', (o) => o.metadata.labels?.['cluster.x-k8s.io/cluster-name'], 'Cluster API cluster');
const addresses = (o: Obj) => (o.status?.addresses ?? []).map((a: { address: string }) => a.address).join(',');

const beskar7 = (k: Omit<KindInfo, 'group' | 'version' | 'namespaced' | 'verbs' | 'categories' | 'status'>) => ({
  ...k,
  group: GROUP,
  version: VERSION,
  namespaced: true,
  verbs: ALL_VERBS,
  categories: ['cluster-api', 'beskar7'],
  status: true,
});

export const KIND_INFO = {
  PhysicalHost: beskar7({
    kind: 'PhysicalHost',
    plural: 'physicalhosts',
    singular: 'physicalhost',
    shortNames: ['ph'],
    columns: [
      NAME,
      col('State', (o) => o.status?.state, 'enrolment and use'),
      col('Consumer', (o) => o.spec?.consumerRef?.name, 'the machine holding it'),
      col('Power', (o) => o.status?.observedPowerState, 'power state the BMC reported'),
      AGE,
      col('Inspection', (o) => o.status?.inspectionPhase, 'inspection phase', 1),
      col('BMC', (o) => o.spec?.redfishConnection?.address, 'Redfish address', 1),
      col('Addresses', addresses, 'leased and reported addresses', 1),
      col('Model', (o) => o.status?.hardwareDetails?.model, 'model the BMC reported', 1),
      col('Error', (o) => o.status?.errorMessage, 'last enrolment error', 1),
    ],
  }),
  Beskar7Machine: beskar7({
    kind: 'Beskar7Machine',
    plural: 'beskar7machines',
    singular: 'beskar7machine',
    shortNames: ['b7m', 'bm'],
    columns: [
      NAME,
      col('Phase', (o) => o.status?.phase, 'provisioning phase'),
      col('Host', (o) => o.status?.hostRef?.name, 'the PhysicalHost it holds'),
      col('Ready', (o) => o.status?.ready, 'provisioned', 0, 'boolean'),
      AGE,
      CLUSTER,
      col('Attempts', (o) => o.status?.attempts, 'inspection attempts', 1, 'integer'),
      col('ProviderID', (o) => o.spec?.providerID, 'provider id once provisioned', 1),
      col('Addresses', addresses, "its host's addresses", 1),
      col('Reason', (o) => o.status?.failureReason, 'why it failed', 1),
    ],
  }),
  Beskar7Cluster: beskar7({
    kind: 'Beskar7Cluster',
    plural: 'beskar7clusters',
    singular: 'beskar7cluster',
    shortNames: ['b7c'],
    columns: [
      NAME,
      CLUSTER,
      col('Ready', (o) => o.status?.ready, 'endpoint set', 0, 'boolean'),
      col('Endpoint', (o) => o.spec?.controlPlaneEndpoint?.host, 'control plane endpoint'),
      AGE,
    ],
  }),
  Beskar7MachineTemplate: beskar7({
    kind: 'Beskar7MachineTemplate',
    plural: 'beskar7machinetemplates',
    singular: 'beskar7machinetemplate',
    shortNames: ['b7mt'],
    columns: [
      NAME,
      AGE,
      col('Target', (o) => o.spec?.template?.spec?.targetImageURL, 'target image', 1),
      col('Inspector', (o) => o.spec?.template?.spec?.inspectionImageURL, 'inspection image', 1),
    ],
  }),
  Secret: {
    kind: 'Secret',
    plural: 'secrets',
    singular: 'secret',
    shortNames: [],
    categories: [],
    group: '',
    version: 'v1',
    namespaced: true,
    verbs: ALL_VERBS,
    status: false,
    columns: [
      NAME,
      col('Type', (o) => o.type, 'secret type'),
      col('Data', (o) => Object.keys(o.data ?? {}).length, 'keys held', 0, 'integer'),
      AGE,
    ],
  },
  Namespace: {
    kind: 'Namespace',
    plural: 'namespaces',
    singular: 'namespace',
    shortNames: ['ns'],
    categories: [],
    group: '',
    version: 'v1',
    namespaced: false,
    verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
    status: false,
    columns: [NAME, col('Status', (o) => o.status?.phase, 'phase'), AGE],
  },
  Event: {
    kind: 'Event',
    plural: 'events',
    singular: 'event',
    shortNames: ['ev'],
    categories: [],
    group: '',
    version: 'v1',
    namespaced: true,
    verbs: READ_VERBS,
    status: false,
    columns: [
      col('Last Seen', (o) => age(o.lastTimestamp), 'when'),
      col('Type', (o) => o.type, 'Normal or Warning'),
      col('Reason', (o) => o.reason, 'what happened'),
      col('Object', (o) => `${o.involvedObject.kind.toLowerCase()}/${o.involvedObject.name}`, 'about what'),
      col('Message', (o) => o.message, 'the message'),
    ],
  },
} satisfies Record<string, KindInfo>;

export type KindName = keyof typeof KIND_INFO;
export const KIND_NAMES = Object.keys(KIND_INFO) as KindName[];

export const apiVersionOf = (k: KindInfo): string => (k.group ? `${k.group}/${k.version}` : k.version);

/** The kind a user means by any of its names (plural, singular, short, Kind), as kubectl resolves them. */
export function kindNamed(s: string): KindName | undefined {
  const l = s.toLowerCase().split('.')[0] as string;
  return KIND_NAMES.find((k) => {
    const i: KindInfo = KIND_INFO[k];
    return [i.plural, i.singular, i.kind.toLowerCase(), ...i.shortNames].includes(l);
  });
}
