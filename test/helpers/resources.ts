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
    metadata: { name: `${h.name}-bmc` },
    stringData: { username, password },
  };
  const host = {
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
    kind: 'PhysicalHost',
    metadata: { name: h.name, labels: h.spec.labels ?? {} },
    spec: {
      redfishConnection: { ...connection, credentialsSecretRef: `${h.name}-bmc` },
      ...(h.spec.bootMACs ? { bootMACs: h.spec.bootMACs } : {}),
    },
  };
  return { secret, host };
}

export const machineManifest = (m: { name: string; spec: Record<string, unknown> }) => ({
  apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
  kind: 'Beskar7Machine',
  metadata: { name: m.name },
  spec: m.spec,
});

/** Creates a host (its Secret first); the answer is the PhysicalHost's. */
export async function addHost(request: Request, h: CompactHost) {
  const { secret, host } = hostManifests(h);
  const s = await request('POST', SECRETS, secret);
  if (s.status !== 201) return s;
  return request('POST', HOSTS, host);
}

export const addMachine = (request: Request, m: { name: string; spec: Record<string, unknown> }) =>
  request('POST', MACHINES, machineManifest(m));
