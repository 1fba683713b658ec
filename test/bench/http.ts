// HTTP image serving: N concurrent downloads of a 256 MiB file (and N concurrent 16 MiB Range requests) from
// ours and from Debian's nginx (sendfile on) serving the same directory, the same curl client, in turns,
// BENCH_HTTP_RUNS rounds (5) and their medians.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../src/paths.js';
import type { Lab } from '../lab/netns.js';
import { median, peakRssMiB, startNginx, startOurs } from './peers.js';

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

export async function httpBench(
  lab: Lab,
  work: string,
  ns: number[],
  runs: number,
  note: (l: string) => void,
): Promise<HttpResults> {
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
  const names = Object.keys(servers) as (keyof typeof servers)[];
  for (const n of ns) {
    // both up from fresh for each N (peak RSS is per N); `runs` rounds, the servers taking turns, medians kept:
    // one round alone on this shared machine moved a ratio by 2x from one run of make bench to the next
    const up = { beskar7: await servers.beskar7(), nginx: await servers.nginx() };
    try {
      const urls = (name: keyof typeof up) => Array.from({ length: n }, () => up[name].url);
      const ranges = Array.from({ length: n }, (_, k) => {
        const start = ((k * 7919) % (SIZE / SLICE)) * SLICE;
        return `${start}-${start + SLICE - 1}`;
      });
      const times = Object.fromEntries(names.map((name) => [name, { full: [] as number[], range: [] as number[] }]));
      for (let r = 0; r < runs; r++) {
        for (let k = 0; k < names.length; k++) {
          const name = names[(r + k) % names.length] as keyof typeof up;
          times[name]?.full.push(curlAll(lab, urls(name)));
          times[name]?.range.push(curlAll(lab, urls(name), ranges));
        }
      }
      for (const name of names) {
        const rss = up[name].rss();
        const t = times[name] as { full: number[]; range: number[] };
        const [full, range] = [median(t.full), median(t.range)];
        out[name].full.push({ n, seconds: full, mibps: (n * SIZE) / 2 ** 20 / full, rssMiB: rss });
        out[name].range.push({ n, seconds: range, mibps: (n * SLICE) / 2 ** 20 / range, rssMiB: rss });
        const spread = (xs: number[], bytes: number) => xs.map((x) => (bytes / 2 ** 20 / x).toFixed(0)).join('/');
        note(
          `  ${name.padEnd(8)} N=${String(n).padStart(3)}  256 MiB each: ${((n * SIZE) / 2 ** 20 / full).toFixed(0).padStart(6)} MiB/s  ` +
            `16 MiB ranges: ${((n * SLICE) / 2 ** 20 / range).toFixed(0).padStart(6)} MiB/s  peak RSS ${rss.toFixed(0)} MiB` +
            `  (medians of ${spread(t.full, n * SIZE)} and ${spread(t.range, n * SLICE)})`,
        );
      }
    } finally {
      await up.beskar7.stop();
      await up.nginx.stop();
    }
  }
  return out;
}
