import path from 'node:path';
import { repoRoot } from '../../src/paths.js';
import type { Lab } from './netns.js';

/** The appliance API from inside the lab namespace (curl there: the lab has no route to this side). */
export async function labApi(lab: Lab, base: string, token: string, method: string, p: string, body?: unknown) {
  const args = [
    '-s',
    '-X',
    method,
    '-H',
    `Authorization: Bearer ${token}`,
    ...(body ? ['-H', 'Content-Type: application/json', '-d', JSON.stringify(body)] : []),
    `${base}/api/v1${p}`,
  ];
  const r = await lab.run(lab.ns, 'curl', args, 10_000);
  return JSON.parse(r.stdout || 'null');
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
