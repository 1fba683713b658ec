// HTTP image serving: N concurrent downloads of a 256 MiB file (and N concurrent 16 MiB Range requests) from
// ours and from Debian's nginx (sendfile on) serving the same directory, the same curl client, in turns.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Lab } from '../../src/lab/netns.js';
import { repoRoot } from '../../src/paths.js';
import { peakRssMiB, startNginx, startOurs } from './peers.js';

export interface HttpRun {
  n: number;
  /** aggregate MiB/s over the run */
  mibps: number;
  seconds: number;
  /** peak RSS of the server's processes, MiB */
  rssMiB: number;
}
export type HttpResults = Record<'beskar7' | 'nginx', { full: HttpRun[]; range: HttpRun[] }>;

const SIZE = 256 * 2 ** 20;
const SLICE = 16 * 2 ** 20;

/** N curl processes at once inside the namespace; each prints the bytes it got, which must add up. */
function curlAll(lab: Lab, urls: string[], ranges?: string[]): number {
  const script = urls
    .map(
      (u, i) =>
        `curl -s -o /dev/null -w '%{size_download} %{http_code}\\n' ${ranges ? `-r ${ranges[i]} ` : ''}'${u}' &`,
    )
    .join('\n');
  const t0 = process.hrtime.bigint();
  const out = execFileSync('ip', ['netns', 'exec', lab.ns, 'sh', '-c', `${script}\nwait`], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const lines = out.trim().split('\n');
  const got = lines.map((l) => Number(l.split(' ')[0])).reduce((a, b) => a + b, 0);
  const want = ranges ? urls.length * SLICE : urls.length * SIZE;
  if (got !== want) throw new Error(`curl got ${got} bytes, want ${want}: ${lines.slice(0, 3).join('; ')}`);
  return seconds;
}

export async function httpBench(lab: Lab, work: string, ns: number[], note: (l: string) => void): Promise<HttpResults> {
  const dir = path.join(work, 'assets');
  mkdirSync(dir);
  execFileSync('sh', ['-c', `head -c ${SIZE} /dev/urandom > ${dir}/big.bin`]);
  const servers = {
    beskar7: async () => {
      const s = await startOurs(lab, work, {
        http: { address: '127.0.0.1', port: 8080 },
        dhcp: { enabled: false },
        // the iPXE binaries stay where make assets put them
        tftp: { enabled: false, root: path.join(repoRoot, 'assets/ipxe') },
        assetsDir: dir,
      });
      return { url: 'http://127.0.0.1:8080/assets/big.bin', rss: () => peakRssMiB(s.pid), stop: s.stop };
    },
    nginx: async () => {
      const s = await startNginx(lab, work, 8090, dir);
      const pids = s.pids();
      return {
        url: 'http://127.0.0.1:8090/big.bin',
        rss: () => pids.reduce((a, p) => a + peakRssMiB(p), 0),
        stop: s.stop,
      };
    },
  };
  const out: HttpResults = { beskar7: { full: [], range: [] }, nginx: { full: [], range: [] } };
  for (const [i, n] of ns.entries()) {
    // which server goes first alternates with N
    const order = (i % 2 ? ['nginx', 'beskar7'] : ['beskar7', 'nginx']) as (keyof typeof servers)[];
    for (const name of order) {
      const s = await servers[name]();
      try {
        const urls = Array.from({ length: n }, () => s.url);
        const full = curlAll(lab, urls);
        const ranges = urls.map((_, k) => {
          const start = ((k * 7919) % (SIZE / SLICE)) * SLICE;
          return `${start}-${start + SLICE - 1}`;
        });
        const range = curlAll(lab, urls, ranges);
        const rss = s.rss();
        out[name].full.push({ n, seconds: full, mibps: (n * SIZE) / 2 ** 20 / full, rssMiB: rss });
        out[name].range.push({ n, seconds: range, mibps: (n * SLICE) / 2 ** 20 / range, rssMiB: rss });
        note(
          `  ${name.padEnd(8)} N=${String(n).padStart(3)}  256 MiB each: ${((n * SIZE) / 2 ** 20 / full).toFixed(0).padStart(6)} MiB/s  ` +
            `16 MiB ranges: ${((n * SLICE) / 2 ** 20 / range).toFixed(0).padStart(6)} MiB/s  peak RSS ${rss.toFixed(0)} MiB`,
        );
      } finally {
        await s.stop();
      }
    }
  }
  return out;
}
