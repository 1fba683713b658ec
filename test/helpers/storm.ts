// A provisioning storm in a private lab: the appliance as its own process (full DHCP, TFTP, HTTP), and in a
// second namespace the storm driver (N fake BMCs, N simulated machines). Optionally kills the appliance with
// SIGKILL at random points and starts it again on the same data dir. Used by `make bench-storm` and the
// kill -9 e2e test.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { repoRoot } from '../../src/paths.js';
import { ApplianceProcess, builtCommand } from '../lab/appliance-process.js';
import { Lab, stopProcess } from '../lab/netns.js';
import { type EtcdCluster, startEtcd } from './etcd.js';
import { cpuMs, peakRssMiB } from './proc.js';
import { applyPackageSysctls } from './sysctl.js';

export interface StormOptions {
  n: number;
  /** SIGKILLs of the appliance, each followed by a restart */
  kills?: number;
  seed?: number;
  /** spread the simulated machines' firmware POST over up to this many ms */
  postSpreadMs?: number;
  /** progress for people */
  note?: (line: string) => void;
  /**
   * Two appliances on one 3-member etcd cluster, both serving DHCP (one shared pool), TFTP and HTTP; the
   * simulated machines use either, and move to the other when one fails. `kills` then SIGKILLs the leader
   * (restarted at once, as systemd would); `etcdKills` members of the cluster are killed for good mid-storm.
   * `faults`, one after the other mid-storm: `outage` kills every etcd member for 30 s; `partition` cuts the
   * leader off from etcd for 15 s (a blackhole route in its namespace); `pause` stops the leader (SIGSTOP)
   * for three lease TTLs.
   */
  ha?: { etcdKills: number; faults?: EtcdFault[] };
  /** run the compiled service (`make build`), as the benchmarks do; tests run the checkout's source */
  built?: boolean;
  /**
   * The driver stops waiting after this long (default 30 min) and reports what it saw, so a stuck storm fails
   * its audit with the machines that did not finish instead of running into the test's own timeout.
   */
  deadlineS?: number;
}

export type EtcdFault = 'outage' | 'partition' | 'pause';

/** A fault on the etcd cluster or its leader: when, whom, and how long until an appliance led again after it. */
export interface FaultPoint {
  kind: EtcdFault;
  atMs: number;
  victim?: number;
  /** the victim's address, and from when its lease had certainly lapsed (the fault's start + TTL + 2 s) */
  victimIp?: string;
  leaseGoneAt?: number;
  /** from the fault's end until an appliance ran the orchestrator */
  recoveredMs: number;
  provisionedBefore: number;
}

/** A SIGKILL of the leader, and how long until the other appliance ran the orchestrator. */
export interface Takeover {
  victim: number;
  takeoverMs: number;
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
    attempts: number;
    bootRetries: number;
    /** the driver's CPU time from the first Machine to the last Provisioned */
    driverCpuMs: number;
    lastErrors: string[];
    stagesMs: Record<string, { p50: number; p99: number }>;
    /** who called the BMCs and when (ms since the epoch), in the order the calls arrived */
    bmcCalls: [string, number][];
    audit: {
      leaseConflicts: string[];
      lostReports: string[];
      hostsWithoutReport: string[];
      claimedNotOnce: string[];
      doubleClaims: number;
      notProvisioned: string[];
      bootsBeyondAttempts: string[];
      mismatched: string[];
      viewsDiffer: string[];
    };
  };
  kills: KillPoint[];
  takeovers: Takeover[];
  etcdKilledAtMs: number[];
  faults: FaultPoint[];
  /** when each appliance (by address) was elected leader (ms since the epoch), from its logs */
  elections: Record<string, number[]>;
  peakRssMiB: number;
  /** the first appliance's TFTP and DHCP counters at the end (`beskar7_tftp_transfers_total{result="ok"}`) */
  counters: Record<string, number>;
  /** CPU time (user + system) of the appliance processes, ms (the last process of each, after kills) */
  cpuMs: number;
  /** the same, less what each process had spent when it was ready: the storm's own cost */
  stormCpuMs: number;
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

/** Which appliance runs the orchestrator now (its /healthz says so, asked from inside the lab), or -1. */
async function leaderOf(lab: Lab, from: string, ips: string[]): Promise<number> {
  const leads = await Promise.all(
    ips.map(async (ip) => {
      const r = await lab.run(from, 'curl', ['-s', '-m', '1', `http://${ip}:8080/healthz`], 5000);
      try {
        return (JSON.parse(r.stdout) as { store?: { orchestrator?: boolean } }).store?.orchestrator === true;
      } catch {
        return false;
      }
    }),
  );
  return leads.indexOf(true);
}
/** The appliance that leads, asked until one does or `withinMs` is over (-1). */
async function awaitLeader(lab: Lab, from: string, ips: string[], withinMs: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const i = await leaderOf(lab, from, ips);
    if (i >= 0 || Date.now() - t0 >= withinMs) return i;
    await sleep(50);
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** the leader lease of the HA storms: a dead leader is followed within it plus one reconcile pass */
const TTL_S = 3;
const ETCD_ADDRESS = '10.92.0.4';

export async function runStorm(o: StormOptions): Promise<StormResult> {
  const note = o.note ?? (() => {});
  const rand = prng(o.seed ?? 1);
  const deadlineS = o.deadlineS ?? 30 * 60;
  const work = mkdtempSync(path.join(tmpdir(), 'b7storm-'));
  const lab = new Lab(`b7storm${process.pid % 10000}`, '10.92.0', 16).up();
  const sim = lab.addHost('sim', '52:54:00:92:00:02', '10.92.0.2');
  // each simulated machine claims its inspector credentials from the address it was leased, as a real one does
  lab.anyIp(sim, '10.92.64.0/18');
  let etcd: EtcdCluster | undefined;
  let apps: ApplianceProcess[] = [];
  let sampler: NodeJS.Timeout | undefined;
  // the kernel's neighbour table is shared by every namespace, and its default 1024 entries dropped TFTP answers
  // to a 3000-host storm's hosts: the storm runs with the package's sysctls, as an installed appliance does
  const restoreSysctls = applyPackageSysctls();
  try {
    const ips = [lab.serverIp];
    let store: Record<string, unknown> | undefined;
    if (o.ha) {
      const etcdNs = lab.addHost('etcd', '52:54:00:92:00:04', ETCD_ADDRESS);
      etcd = await startEtcd({ members: 3, address: ETCD_ADDRESS, base: 2379, ns: etcdNs });
      // a leader lease of 3 s: a dead leader is followed within 3 s plus one reconcile pass
      store = { backend: 'etcd', etcd: { endpoints: etcd.endpoints, leaseTTLSeconds: TTL_S, timeoutSeconds: 1 } };
      ips.push('10.92.0.3');
    }
    apps = ips.map((ip, i) => {
      const dir = path.join(work, `a${i}`);
      mkdirSync(dir, { recursive: true });
      const app = new ApplianceProcess(
        lab,
        {
          dataDir: path.join(dir, 'data'),
          logLevel: 'warn',
          advertiseAddress: ip,
          ...(store ? { store } : {}),
          // the simulated hosts share the driver's few addresses
          http: {
            address: ip,
            port: 8080,
            rateLimit: { perSecond: 1e6, burst: 1e6, global: { perSecond: 1e6, burst: 1e6 } },
          },
          api: { adminToken: TOKEN },
          dhcp: {
            mode: 'full',
            probeSeconds: 0,
            full: { poolStart: '10.92.64.0', poolEnd: '10.92.127.255', subnetMask: '255.255.0.0', leaseSeconds: 3600 },
          },
          orchestrator: { tickSeconds: 0.5, inspectionTimeoutSeconds: 300, powerDeadlineSeconds: 60 },
          redfish: { perBmcConcurrency: 2, globalConcurrency: 64 },
        },
        dir,
        false,
        o.built ? builtCommand : undefined,
      );
      if (i > 0) app.ns = lab.addHost(`b${i}`, `52:54:00:92:00:${String(10 + i)}`, ip);
      return app;
    });
    // CPU each appliance process had spent by the time it was ready (start-up: loading, tsx, opening the store)
    const readyCpu = new Map<ApplianceProcess, number>();
    const start = async (a: ApplianceProcess) => {
      await a.start();
      readyCpu.set(a, cpuMs(a.pid as number));
    };
    for (const a of apps) await start(a);
    const app = apps[0] as ApplianceProcess;
    let peakMiB = 0;
    // \`ip netns exec\` execs the appliance, so the pid is node itself; 0 between a kill and the restart
    sampler = setInterval(() => (peakMiB = Math.max(peakMiB, peakRssMiB(app.pid as number))), 500);
    const driver = lab.spawn(sim, process.execPath, [
      '--import',
      'tsx',
      path.join(repoRoot, 'test/bench/storm-driver.ts'),
      String(o.n),
      ips.join(','),
      '10.92.0.2',
      TOKEN,
      String(o.postSpreadMs ?? 0),
      String(deadlineS),
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
    const takeovers: Takeover[] = [];
    const etcdKilledAtMs: number[] = [];
    const faults: FaultPoint[] = [];
    const started = Date.now();
    const provisioned = () => ((last.machines as Record<string, number> | undefined)?.Provisioned ?? 0) as number;
    const midStorm = () => last.progress === 'provisioning' && provisioned() < o.n;
    if (o.kills) {
      await Promise.race([creatingHosts, exited]);
      // the first kill lands while hosts are being created and enrolled; the others while machines are being provisioned, a random moment
      // after the restart (claims, BMC calls, DHCP, TFTP, scripts, report intake, hand-off)
      while (kills.length < o.kills && !ended) {
        if (kills.length) while (!midStorm() && !ended) await sleep(20);
        await Promise.race([sleep(kills.length ? rand() * 300 : rand() * 400), exited]);
        if (ended) break;
        const state = last;
        const afterMs = Date.now() - started;
        // on etcd the victim is the leader: the one running the orchestrator
        const victim = o.ha ? await awaitLeader(lab, sim, ips, 30_000) : 0;
        if (victim < 0)
          throw new Error(`no appliance ran the orchestrator for 30 s before kill -9 #${kills.length + 1}`);
        const target = apps[victim] as ApplianceProcess;
        await target.kill9();
        const t0 = Date.now();
        if (o.ha && etcd && etcdKilledAtMs.length < o.ha.etcdKills) {
          // one etcd member dies for good while an appliance is down
          await etcd.kill(2 - etcdKilledAtMs.length);
          etcdKilledAtMs.push(Date.now() - started);
          note(`etcd member m${2 - etcdKilledAtMs.length + 1} killed at ${Date.now() - started} ms`);
        }
        await start(target);
        kills.push({ afterMs, state, restartMs: Date.now() - t0 });
        if (o.ha) {
          await awaitLeader(lab, sim, ips, 60_000);
          takeovers.push({ victim, takeoverMs: Date.now() - t0 });
          note(`appliance ${victim} was the leader; an appliance leads again ${Date.now() - t0} ms after its kill`);
        }
        last = {}; // the next kill waits for a poll answered by the new process
        note(`kill -9 #${kills.length} at ${afterMs} ms (${JSON.stringify(state)}); up again in ${Date.now() - t0} ms`);
      }
    }
    for (const kind of o.ha?.faults ?? []) {
      if (!etcd) break;
      // each fault lands on a storm still provisioning, after some hosts got through since the last one
      const from = provisioned();
      while (!ended && !(midStorm() && provisioned() > from)) await sleep(50);
      if (ended) break;
      const at = Date.now();
      const atMs = at - started;
      const provisionedBefore = provisioned();
      let victim: number | undefined;
      if (kind === 'outage') {
        for (let i = 0; i < 3; i++) await etcd.kill(i);
        await sleep(30_000);
        for (let i = 0; i < 3; i++) await etcd.start(i);
      } else {
        victim = await awaitLeader(lab, sim, ips, 30_000);
        if (victim < 0) throw new Error(`no appliance led for 30 s before the ${kind}`);
        const a = apps[victim] as ApplianceProcess;
        if (kind === 'partition') {
          const route = ['route', 'add', 'blackhole', `${ETCD_ADDRESS}/32`];
          await lab.run(a.ns, 'ip', route);
          await sleep(15_000);
          await lab.run(a.ns, 'ip', ['route', 'del', 'blackhole', `${ETCD_ADDRESS}/32`]);
        } else {
          process.kill(a.pid as number, 'SIGSTOP');
          await sleep(3 * TTL_S * 1000);
          process.kill(a.pid as number, 'SIGCONT');
        }
      }
      const t0 = Date.now();
      if ((await awaitLeader(lab, sim, ips, 60_000)) < 0)
        throw new Error(`no appliance led for 60 s after the ${kind}`);
      faults.push({
        kind,
        atMs,
        // cut off or stopped at `at`, its last keep-alive reached etcd before: its lease lapsed by at + TTL
        ...(victim !== undefined ? { victim, victimIp: ips[victim], leaseGoneAt: at + TTL_S * 1000 + 2000 } : {}),
        recoveredMs: Date.now() - t0,
        provisionedBefore,
      });
      note(
        `${kind} at ${atMs} ms (${provisionedBefore} Provisioned${victim !== undefined ? `, appliance ${victim} led` : ''}); an appliance leads again ${Date.now() - t0} ms after it ended`,
      );
    }
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      // the driver reports at its deadline; this is for a driver that cannot
      new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), (deadlineS + 120) * 1000))),
    ]);
    clearTimeout(timer);
    if (code === 'timeout') await stopProcess(driver);
    // what the first appliance counted: TFTP transfers by result, DHCP packets by type and result
    const metrics = await lab.run(
      sim,
      'curl',
      ['-s', '-m', '5', '-H', `Authorization: Bearer ${TOKEN}`, `http://${ips[0]}:8080/metrics`],
      10_000,
    );
    const counters = Object.fromEntries(
      [...metrics.stdout.matchAll(/^beskar7_(tftp_transfers_total|dhcp_packets_total)\{(.*)\} (\d+)$/gm)].map((m) => [
        `${m[1]}{${m[2]}}`,
        Number(m[3]),
      ]),
    );
    // the appliances' CPU time for the whole storm (the last processes', after kills)
    const cpu = apps.reduce((sum, a) => sum + cpuMs(a.pid as number), 0);
    const stormCpu = cpu - apps.reduce((sum, a) => sum + (readyCpu.get(a) ?? 0), 0);
    if (!summary) throw new Error(`storm driver failed (${code}): ${errText}`);
    const elections = Object.fromEntries(
      apps.map((a, i) => [
        ips[i],
        a.find('leader elected: this appliance runs the orchestrator').map((l) => Date.parse(String(l.time))),
      ]),
    );
    return {
      summary,
      kills,
      takeovers,
      etcdKilledAtMs,
      faults,
      elections,
      peakRssMiB: peakMiB,
      counters,
      cpuMs: cpu,
      stormCpuMs: stormCpu,
    };
  } finally {
    // a failed run must not leave the sampler keeping the test alive until its timeout
    clearInterval(sampler);
    for (const a of apps) await a.stop();
    // who led when, as the appliances logged it (a surprise in the audit, or a failure, is read against this)
    const leadership = apps.flatMap((a, i) =>
      a.logs
        .filter((l) => /leader|leadership/.test(String(l.msg)))
        .map((l) => `${String(l.time)} appliance ${i}: ${String(l.msg)} ${String(l.reason ?? '')}`),
    );
    for (const l of leadership.sort()) note(l);
    await etcd?.stop();
    await lab.down();
    restoreSysctls();
    rmSync(work, { recursive: true, force: true });
  }
}

/** The audit every HA storm must pass, whatever was done to it: nothing lost, nothing done twice. */
export function assertCleanStorm(t: Test, r: StormResult, n: number): void {
  const s = r.summary;
  const a = s.audit;
  t.same(s.phases, { Provisioned: n }, 'every machine Provisioned');
  t.same(a.notProvisioned, [], 'every host Provisioned');
  t.same(a.viewsDiffer, [], 'every appliance serves the same phase for each machine and state for each host');
  t.same(a.mismatched, [], "every machine's host names it as consumer");
  t.same(a.claimedNotOnce, [], 'each host claimed exactly once (one Claimed event each)');
  t.equal(a.doubleClaims, 0, 'no two machines on one host');
  t.same(a.leaseConflicts, [], `no address acknowledged to two MACs (${s.acks} DHCPACKs from two appliances)`);
  t.same(a.lostReports, [], `every report answered 202 is the one stored (${s.accepted} accepted)`);
  t.equal(s.reportsStored, n, 'a stored report for every host');
  t.same(
    a.bootsBeyondAttempts,
    [],
    `no attempt booted twice: ${s.powerOns} PXE power-ons for ${s.attempts} attempt boots (each committed, fenced, first)`,
  );
  // once another appliance's calls reached the BMCs, an appliance calls again only after it was elected again
  const runs = new Map<string, number>();
  let last = '';
  for (const [from] of s.bmcCalls) {
    if (from !== last) runs.set(from, (runs.get(from) ?? 0) + 1);
    last = from;
  }
  const elected = (ip: string) => r.elections[ip] ?? [];
  t.same(
    [...runs]
      .filter(([ip, n]) => n > elected(ip).length)
      .map(([ip, n]) => `${ip}: ${n} runs, ${elected(ip).length} elections`),
    [],
    `BMC calls came in ${[...runs.values()].reduce((a, b) => a + b, 0)} runs from one appliance, each after an election of it`,
  );
  // a partitioned or paused leader sends nothing once its lease lapsed, until it is elected again
  const stray = r.faults.flatMap((f) => {
    if (!f.victimIp || !f.leaseGoneAt) return [];
    const gone = f.leaseGoneAt;
    const back = elected(f.victimIp).find((e) => e > gone) ?? Number.POSITIVE_INFINITY;
    const calls = s.bmcCalls.filter(([from, at]) => from === f.victimIp && at > gone && at < back);
    return calls.length ? [`${f.kind}: ${calls.length} calls from ${f.victimIp} after its lease lapsed`] : [];
  });
  t.same(stray, [], 'no BMC call from an appliance after its lease lapsed (the partitioned and the paused leader)');
}
