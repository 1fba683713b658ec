import type { InspectionReport } from '../../src/domain/resources.js';

/**
 * What a booted machine does, without QEMU: fetch its iPXE script by MAC over HTTP as iPXE would, read the
 * inspector's parameters from the kernel command line in it, and post a report with the token.
 */
export async function simulateInspector(
  base: string,
  mac: string,
  report: InspectionReport | ((h: string) => InspectionReport),
): Promise<{ status: number; host?: string }> {
  const script = await (await fetch(`${base}/boot/host.ipxe?mac=${mac.replace(/:/g, '-')}`)).text();
  const kv = Object.fromEntries([...script.matchAll(/beskar7\.(\w+)=(\S+)/g)].map((m) => [m[1], m[2]]));
  if (!kv.token || !kv.host || !kv.api) return { status: 0 };
  const body = typeof report === 'function' ? report(kv.host) : report;
  const res = await fetch(`${kv.api}/api/v1/hosts/${kv.host}/inspection`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${kv.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, host: kv.host };
}

export const sampleReport = (mac: string, over: Partial<InspectionReport> = {}): InspectionReport => ({
  manufacturer: 'QEMU',
  model: 'Standard PC',
  serialNumber: 'S1',
  bootMode: 'UEFI',
  firmwareVersion: '1.0',
  cpus: { count: 1, cores: 4, threads: 8, model: 'vCPU' },
  memory: { totalGB: 16 },
  disks: [{ device: '/dev/vda', sizeGB: 100, type: 'SSD', model: 'virtio', serial: 'D1' }],
  nics: [{ interface: 'eth0', macAddress: mac, speedMbps: 1000, driver: 'virtio_net' }],
  ...over,
});
