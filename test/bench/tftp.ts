// TFTP against atftpd and tftpd-hpa, all three running at once in the bench namespace: a 32 MiB file at
// blksize 1468 with windowsize 1 and 64 (the atftp client, the servers taking turns run by run), then a PXE
// storm of concurrent clients fetching the iPXE binaries.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../src/paths.js';
import type { Lab } from '../lab/netns.js';
import { median, startAtftpd, startOurs, startTftpdHpa } from './peers.js';

export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number;
}
export interface TftpResults {
  /** seconds for 32 MiB, by server and windowsize */
  file: Record<string, Record<string, Spread>>;
  storm: Record<string, { clients: number; seconds: number; failed: number; mib: number }>;
}

const spread = (xs: number[]): Spread => ({
  median: median(xs),
  min: Math.min(...xs),
  max: Math.max(...xs),
  runs: xs.length,
});

export async function tftpBench(lab: Lab, work: string, runs: number, stormClients: number): Promise<TftpResults> {
  const root = path.join(work, 'tftproot');
  mkdirSync(root);
  writeFileSync(path.join(root, 'f32m'), randomBytes(32 * 1024 * 1024));
  for (const f of ['undionly.kpxe', 'ipxe.efi', 'snponly.efi']) {
    copyFileSync(path.join(repoRoot, 'assets/ipxe', f), path.join(root, f));
  }
  const ports: Record<string, number> = { beskar7: 6901, atftpd: 6902, 'tftpd-hpa': 6903 };
  const ours = await startOurs(lab, work, {
    http: { address: lab.serverIp, port: 8080 },
    dhcp: { enabled: false },
    tftp: { address: '127.0.0.1', port: ports.beskar7, root },
  });
  const stops = [
    ours.stop,
    await startAtftpd(lab, ports.atftpd!, root),
    await startTftpdHpa(lab, ports['tftpd-hpa']!, root),
  ];
  try {
    const out = path.join(work, 'out');
    const times: Record<string, Record<string, number[]>> = {};
    const names = Object.keys(ports);
    // one untimed transfer each first: no server is measured cold (page cache, JIT)
    for (const name of names) for (const ws of [1, 64]) atftpGet(lab, ports[name]!, 'f32m', out, ws);
    for (let i = 0; i < runs; i++) {
      for (const ws of [1, 64]) {
        // the servers take turns, starting with another one each run: drift in the machine hits all alike
        for (let k = 0; k < names.length; k++) {
          const name = names[(i + k) % names.length] as string;
          const t = atftpGet(lab, ports[name]!, 'f32m', out, ws);
          execFileSync('cmp', [out, path.join(root, 'f32m')]);
          const mine = times[name] ?? {};
          times[name] = mine;
          mine[ws] = [...(mine[ws] ?? []), t];
        }
      }
    }
    const file: TftpResults['file'] = {};
    for (const [name, byWs] of Object.entries(times)) {
      file[name] = Object.fromEntries(Object.entries(byWs).map(([ws, xs]) => [ws, spread(xs)]));
    }
    const storm: TftpResults['storm'] = {};
    for (const name of names) {
      const r = await lab.run(
        lab.ns,
        process.execPath,
        [
          '--import',
          'tsx',
          path.join(repoRoot, 'test/bench/tftp-storm-client.ts'),
          String(ports[name]),
          String(stormClients),
          'undionly.kpxe',
          'ipxe.efi',
        ],
        300_000,
      );
      const s = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as {
        seconds: number;
        failed: number;
        bytes: number;
      };
      storm[name] = { clients: stormClients, seconds: s.seconds, failed: s.failed, mib: s.bytes / 2 ** 20 };
    }
    return { file, storm };
  } finally {
    for (const stop of stops) await stop();
  }
}

function atftpGet(lab: Lab, port: number, file: string, out: string, windowsize: number): number {
  const t0 = process.hrtime.bigint();
  execFileSync(
    'ip',
    [
      'netns',
      'exec',
      lab.ns,
      'timeout',
      '120',
      'atftp',
      '--option',
      'blksize 1468',
      '--option',
      `windowsize ${windowsize}`,
      '--option',
      'tsize 0',
      '-g',
      '-r',
      file,
      '-l',
      out,
      '127.0.0.1',
      String(port),
    ],
    { stdio: 'ignore' },
  );
  return Number(process.hrtime.bigint() - t0) / 1e9;
}
