import { until } from './appliance.js';

/**
 * The resource API's paths, and the compact shapes tests write hosts and machines in ({name, spec: {redfish:
 * {address, username, password, ...}, bootMACs, labels}}) turned into the Secret and manifests it takes.
 */
export const GV = '/apis/infrastructure.cluster.x-k8s.io/v1beta1';
export const HOSTS = `${GV}/namespaces/default/physicalhosts`;
export const MACHINES = `${GV}/namespaces/default/beskar7machines`;
export const SECRETS = '/api/v1/namespaces/default/secrets';

/** One request to the appliance, by full path: in process, or with curl inside a lab namespace. */
export type Request = (method: string, path: string, body?: unknown) => Promise<{ status: number; json: any }>;

/** The machine once it has settled, Provisioned or Failed. */
export const settled = (kube: Request, name: string, ms: number): Promise<any> =>
  until(
    `${name} Provisioned or Failed`,
    async () => {
      const r = (await kube('GET', `${MACHINES}/${name}`)).json;
      return r.status?.phase === 'Provisioned' || r.status?.phase === 'Failed' ? r : undefined;
    },
    ms,
  );

interface CompactHost {
  name: string;
  namespace?: string;
  spec: {
    redfish: { username: string; password: string } & Record<string, unknown>;
    bootMACs?: string[];
    labels?: Record<string, string>;
  };
}

/** A host's BMC credentials as its own Secret, and the PhysicalHost that names it. */
export function hostManifests(h: CompactHost) {
  const { username, password, ...connection } = h.spec.redfish;
  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `${h.name}-bmc`, ...(h.namespace ? { namespace: h.namespace } : {}) },
    stringData: { username, password },
  };
  const host = {
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
    kind: 'PhysicalHost',
    metadata: { name: h.name, ...(h.namespace ? { namespace: h.namespace } : {}), labels: h.spec.labels ?? {} },
    spec: {
      redfishConnection: { ...connection, credentialsSecretRef: `${h.name}-bmc` },
      ...(h.spec.bootMACs ? { bootMACs: h.spec.bootMACs } : {}),
    },
  };
  return { secret, host };
}

interface CompactMachine {
  name: string;
  namespace?: string;
  spec: Record<string, unknown>;
}

export const machineManifest = (m: CompactMachine) => ({
  apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
  kind: 'Beskar7Machine',
  metadata: { name: m.name, ...(m.namespace ? { namespace: m.namespace } : {}) },
  spec: m.spec,
});

/** The collection paths of a namespace. */
export const paths = (ns = 'default') => ({
  hosts: `${GV}/namespaces/${ns}/physicalhosts`,
  machines: `${GV}/namespaces/${ns}/beskar7machines`,
  secrets: `/api/v1/namespaces/${ns}/secrets`,
});

/** Creates a host (its Secret first); the answer is the PhysicalHost's. */
export async function addHost(request: Request, h: CompactHost) {
  const { secret, host } = hostManifests(h);
  const s = await request('POST', paths(h.namespace).secrets, secret);
  if (s.status !== 201) return s;
  return request('POST', paths(h.namespace).hosts, host);
}

export const addMachine = (request: Request, m: CompactMachine) =>
  request('POST', paths(m.namespace).machines, machineManifest(m));
