import { Agent, fetch as undiciFetch } from 'undici';
import type { ContractReport } from '../../src/domain/inspection.js';
import type { InspectionReport } from '../../src/domain/resources.js';

/** The inspector's kernel parameters, as the claimed boot script carries them. */
export interface InspectorParams {
  api: string;
  namespace: string;
  host: string;
  token: string;
  target: string;
  'target-digest'?: string;
  'provider-id'?: string;
  ca?: string;
  config?: string;
  BOOTIF?: string;
  /** clean: the cleaner, not the inspector */
  mode?: string;
  /** the whole script the claim returned */
  script: string;
}

/** A host's script by MAC (what any machine on the segment can read), fetched from `from`. */
export const scriptOf = async (base: string, mac: string, from?: string): Promise<string> =>
  (await fetchFrom(from, `${base}/boot/host.ipxe?mac=${mac.replace(/:/g, '-')}`)).text();

/** The nonce URL in a host's script by MAC. */
export async function claimUrlOf(base: string, mac: string, from?: string): Promise<string | undefined> {
  return /^chain --autofree (\S+)\?mac=/m.exec(await scriptOf(base, mac, from))?.[1];
}

const agents = new Map<string, Agent>();
/** fetch from another loopback address (127.0.0.2, ...): a second machine on the segment */
function fetchFrom(from: string | undefined, url: string, init: RequestInit = {}): Promise<Response> {
  if (!from) return fetch(url, init);
  let dispatcher = agents.get(from);
  if (!dispatcher) {
    dispatcher = new Agent({ localAddress: from });
    agents.set(from, dispatcher);
  }
  return undiciFetch(url, { ...(init as object), dispatcher }) as unknown as Promise<Response>;
}

/** Claims a boot nonce as iPXE would (`?mac=` with the booting NIC): the parameters, or the refusal's status. */
export async function claim(url: string, mac: string, from?: string): Promise<InspectorParams | { status: number }> {
  const res = await fetchFrom(from, `${url}?mac=${mac}`);
  const script = await res.text();
  if (res.status !== 200) return { status: res.status };
  const kv = Object.fromEntries(
    [...script.matchAll(/(?:beskar7\.([\w-]+)|(BOOTIF))=(\S+)/g)].map((m) => [m[1] ?? m[2], m[3]]),
  );
  return { ...kv, script } as InspectorParams;
}

/** POST or GET one contract endpoint with the token. */
export function callInspector(
  p: Pick<InspectorParams, 'api' | 'namespace' | 'host' | 'token'>,
  endpoint: 'inspection' | 'bootstrap' | 'provisioned' | 'provision-failed' | 'progress' | 'cleaned',
  body?: unknown,
  from?: string,
): Promise<Response> {
  const headers: Record<string, string> = { Authorization: `Bearer ${p.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  return fetchFrom(from, `${p.api}/api/v1/${endpoint}/${p.namespace}/${p.host}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers,
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
}

/**
 * What a booted machine does, without QEMU, as the bundled inspector does it: fetch its script by MAC, claim
 * the nonce, post the report, pass the bootstrap gate and (unless `provision` is false) send `provisioned`.
 * `status` is the report's answer (0: no script to claim).
 */
export async function simulateInspector(
  base: string,
  mac: string,
  report: ContractReport | ((h: string) => ContractReport),
  opts: { provision?: boolean } = {},
): Promise<{ status: number; host?: string; approved?: boolean; params?: InspectorParams }> {
  const url = await claimUrlOf(base, mac);
  if (!url) return { status: 0 };
  const p = await claim(url, mac);
  if ('status' in p) return { status: 0 };
  const body = typeof report === 'function' ? report(p.host) : report;
  const res = await callInspector(p, 'inspection', body);
  const out = { status: res.status, host: p.host, params: p };
  if (res.status !== 202) return out;
  const approved = ((await res.json()) as { approved: boolean }).approved;
  if (approved && opts.provision !== false && (await callInspector(p, 'bootstrap')).status === 200) {
    await callInspector(p, 'provisioned', { status: 'provisioned' });
  }
  return { ...out, approved };
}

/** A report as the contract's inspector sends it: 1 package of 4 cores, 16 GiB in two DIMMs, one disk. */
export const wireReport = (mac: string, over: Partial<ContractReport> = {}): ContractReport => ({
  manufacturer: 'QEMU',
  model: 'Standard PC',
  serialNumber: 'S1',
  bootModeDetected: 'UEFI',
  firmwareVersion: '1.0',
  cpus: [{ id: '0', model: 'vCPU', cores: 4, threads: 8 }],
  memory: [
    { id: 'DIMM0', capacity: '8GiB' },
    { id: 'DIMM1', capacity: '8192MiB' },
  ],
  disks: [{ name: '/dev/vda', sizeGB: 100, type: 'SSD', model: 'virtio', serialNumber: 'D1' }],
  nics: [{ name: 'eth0', macAddress: mac, speed: '1000Mb/s', driver: 'virtio_net', ipAddresses: ['10.0.0.5'] }],
  ...over,
});

/** The same report in the appliance's normalised form (what transitions and validation see). */
export const sampleReport = (mac: string, over: Partial<InspectionReport> = {}): InspectionReport => ({
  manufacturer: 'QEMU',
  model: 'Standard PC',
  serialNumber: 'S1',
  bootMode: 'UEFI',
  firmwareVersion: '1.0',
  cpus: { count: 1, cores: 4, threads: 8, model: 'vCPU' },
  memory: { totalGB: 16 },
  disks: [{ device: '/dev/vda', sizeGB: 100, type: 'SSD', model: 'virtio', serial: 'D1' }],
  nics: [{ interface: 'eth0', macAddress: mac, speedMbps: 1000, driver: 'virtio_net', ipAddresses: ['10.0.0.5'] }],
  ...over,
});
