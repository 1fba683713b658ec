import path from 'node:path';
import { repoRoot } from '../../src/paths.js';
import type { Lab } from './netns.js';

/** The appliance API from inside the lab namespace (curl there: the lab has no route to this side). */
export async function labApi(lab: Lab, base: string, token: string, method: string, p: string, body?: unknown) {
  return (await labRequest(lab, `${base}/api/v1${p}`, token, method, body)).json;
}

/** The resource API from inside the lab: requests by full path. */
export const labKube = (lab: Lab, base: string, token: string) => (method: string, p: string, body?: unknown) =>
  labRequest(lab, `${base}${p}`, token, method, body);

/** One request with curl inside the lab, by full URL: its status and JSON body. */
export async function labRequest(lab: Lab, url: string, token: string, method: string, body?: unknown) {
  const args = [
    '-s',
    '-w',
    '\n%{http_code}',
    '-X',
    method,
    '-H',
    `Authorization: Bearer ${token}`,
    ...(body ? ['-H', 'Content-Type: application/json', '-d', JSON.stringify(body)] : []),
    url,
  ];
  const r = await lab.run(lab.ns, 'curl', args, 10_000);
  const at = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(at + 1)), json: JSON.parse(r.stdout.slice(0, at) || 'null') };
}

/** A fake BMC process in the lab whose power actions start and stop a real QEMU machine; resolves when it listens. */
export async function startLabBmc(lab: Lab, cfg: Record<string, unknown>): Promise<void> {
  const p = lab.spawn(lab.ns, process.execPath, [
    '--import',
    'tsx',
    path.join(repoRoot, 'test/lab/fake-bmc/cli.ts'),
    JSON.stringify(cfg),
  ]);
  await new Promise<void>((resolve) =>
    p.stdout?.on('data', (c: Buffer) => c.toString().includes('listening') && resolve()),
  );
}

/** The Redfish spec of a lab fake BMC on `port`: the credentials it accepts, plain HTTP inside the namespace. */
export const labRedfish = (lab: Lab, port: number) => ({
  address: `http://${lab.serverIp}:${port}`,
  username: 'admin',
  password: 'secret',
  allowPlainHttp: true,
});
