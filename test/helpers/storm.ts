// A provisioning storm in a private lab: the appliance as its own process (full DHCP, TFTP, HTTP), and in a
// second namespace the storm driver (N fake BMCs, N simulated machines). Optionally kills the appliance with
// SIGKILL at random points and starts it again on the same data dir. Used by `make bench-storm` and the
// kill -9 e2e test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApplianceProcess } from '../../src/lab/appliance-process.js';
import { Lab, stopProcess } from '../../src/lab/netns.js';
import { repoRoot } from '../../src/paths.js';
import { cpuMs, peakRssMiB } from './proc.js';

export interface StormOptions {
  n: number;
  /** SIGKILLs of the appliance, each followed by a restart */
  kills?: number;
  seed?: number;
  /** spread the simulated machines' firmware POST over up to this many ms */
  postSpreadMs?: number;
  /** progress for people */
  note?: (line: string) => void;
}

/** What the appliance reported (driver's last poll) when a kill hit it. */
export interface KillPoint {
  afterMs: number;
  state: Record<string, unknown>;
  restartMs: number;
}

export interface StormResult {
  summary: {
    n: number;
    enrolSeconds: number;
    provisionSeconds: number;
    hostsPerMinute: number;
    phases: Record<string, number>;
    acks: number;
    accepted: number;
    reportsStored: number;
    powerOns: number;
    bootRetries: number;
    lastErrors: string[];
    stagesMs: Record<string, { p50: number; p99: number }>;
    audit: {
      leaseConflicts: string[];
      lostReports: string[];
      hostsWithoutReport: string[];
      claimedNotOnce: string[];
      doubleClaims: number;
      notProvisioned: string[];
      mismatched: string[];
    };
  };
  kills: KillPoint[];
  peakRssMiB: number;
  /** CPU time (user + system) of the appliance process, ms */
  cpuMs: number;
}

/** Small seeded PRNG (mulberry32): a failing run can be repeated with its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TOKEN = 'storm-admin-token-0123456789';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runStorm(o: StormOptions): Promise<StormResult> {
  const note = o.note ?? (() => {});
  const rand = prng(o.seed ?? 1);
  const work = mkdtempSync(path.join(tmpdir(), 'b7storm-'));
  const lab = new Lab(`b7storm${process.pid % 10000}`, '10.92.0', 16).up();
  const sim = lab.addHost('sim', '52:54:00:92:00:02', '10.92.0.2');
  // each simulated machine claims its inspector credentials from the address it was leased, as a real one does
  lab.anyIp(sim, '10.92.64.0/18');
  try {
    const app = new ApplianceProcess(
      lab,
      {
        dataDir: path.join(work, 'data'),
        logLevel: 'warn',
        advertiseAddress: lab.serverIp,
        // the simulated hosts share the driver's few addresses
        http: { address: lab.serverIp, port: 8080, rateLimit: { perSecond: 1e6, burst: 1e6 } },
        api: { adminToken: TOKEN },
        dhcp: {
          mode: 'full',
          probeSeconds: 0,
          full: { poolStart: '10.92.64.0', poolEnd: '10.92.127.255', subnetMask: '255.255.0.0', leaseSeconds: 3600 },
        },
        orchestrator: { tickSeconds: 0.5, inspectionTimeoutSeconds: 300, powerDeadlineSeconds: 60 },
        redfish: { perBmcConcurrency: 2, globalConcurrency: 64 },
      },
      work,
    );
    await app.start();
    let peakMiB = 0;
    // \`ip netns exec\` execs the appliance, so the pid is node itself; 0 between a kill and the restart
    const sampler = setInterval(() => (peakMiB = Math.max(peakMiB, peakRssMiB(app.pid as number))), 500);
    const driver = lab.spawn(sim, process.execPath, [
      '--import',
      'tsx',
      path.join(repoRoot, 'test/bench/storm-driver.ts'),
      String(o.n),
      lab.serverIp,
      '10.92.0.2',
      TOKEN,
      String(o.postSpreadMs ?? 0),
    ]);
    let last: Record<string, unknown> = {};
    let summary: StormResult['summary'] | undefined;
    let creating!: () => void;
    const creatingHosts = new Promise<void>((r) => (creating = r));
    let buf = '';
    let errText = '';
    driver.stderr?.on('data', (c: Buffer) => (errText = (errText + c.toString()).slice(-4000)));
    driver.stdout?.on('data', (c: Buffer) => {
      buf += c.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        const rec = JSON.parse(l) as Record<string, unknown>;
        if (rec.progress === 'creating hosts') creating();
        if (rec.progress) last = rec;
        else summary = rec as unknown as StormResult['summary'];
      }
    });
    let ended = false;
    const exited = new Promise<number | null>((r) =>
      driver.once('exit', (code) => {
        ended = true;
        r(code);
      }),
    );
    const kills: KillPoint[] = [];
    if (o.kills) {
      await Promise.race([creatingHosts, exited]);
      const started = Date.now();
      // the first kill lands while hosts are being created and enrolled; the others while machines are being provisioned, a random moment
      // after the restart (claims, BMC calls, DHCP, TFTP, scripts, report intake, hand-off)
      const midStorm = () =>
        last.progress === 'provisioning' && ((last.machines as Record<string, number>).Provisioned ?? 0) < o.n;
      while (kills.length < o.kills && !ended) {
        if (kills.length) while (!midStorm() && !ended) await sleep(20);
        await Promise.race([sleep(kills.length ? rand() * 300 : rand() * 400), exited]);
        if (ended) break;
        const state = last;
        const afterMs = Date.now() - started;
        await app.kill9();
        const t0 = Date.now();
        await app.start();
        kills.push({ afterMs, state, restartMs: Date.now() - t0 });
        last = {}; // the next kill waits for a poll answered by the new process
        note(`kill -9 #${kills.length} at ${afterMs} ms (${JSON.stringify(state)}); up again in ${Date.now() - t0} ms`);
      }
    }
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 40 * 60_000))),
    ]);
    clearTimeout(timer);
    if (code === 'timeout') await stopProcess(driver);
    clearInterval(sampler);
    // the appliance's CPU time for the whole storm (the last process's, after kills)
    const cpu = cpuMs(app.pid as number);
    await app.stop();
    if (!summary) throw new Error(`storm driver failed (${code}): ${errText}`);
    return { summary, kills, peakRssMiB: peakMiB, cpuMs: cpu };
  } finally {
    await lab.down();
    rmSync(work, { recursive: true, force: true });
  }
}
