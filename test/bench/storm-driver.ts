// The storm's far side, run inside the lab's "sim" host: N fake BMCs, and for each power-on a simulated
// machine that speaks real DHCP (as a relay, like perfdhcp), TFTP and HTTP: PXE DORA, TFTP undionly.kpxe,
// iPXE DORA, entry and host scripts, then the inspection report. Like a real machine it starts over when a
// step fails (the appliance may be down: kill -9 tests), and a BMC reset abandons the boot in progress.
// Prints JSON progress lines (with what the appliance reports), then one summary line with an audit from the
// appliance's own records: no address acknowledged to two MACs, no accepted report missing, each host
// claimed once, every machine Provisioned on its own host.
import type { DhcpPacket } from '../../src/boot/dhcp/codec.js';
import { MsgType, Opt } from '../../src/boot/dhcp/options.js';
import { pxe } from '../helpers/packets.js';
import { RelaySocket } from '../helpers/relay.js';
import { HOSTS, MACHINES, machineManifest, SECRETS } from '../helpers/resources.js';
import { callInspector, claim, claimUrlOf, type InspectorParams, wireReport } from '../helpers/sim-inspector.js';
import { tftpGet } from '../helpers/tftp-get.js';
import { FakeBmc } from '../lab/fake-bmc/server.js';

const [nArg, serverList, me, token, postArg, deadlineArg] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string | undefined,
  string | undefined,
];
const N = Number(nArg);
/** firmware POST time after a power-on: 100 ms, or spread up to this many ms (a kill test wants a longer storm) */
const postMs = () => 100 + Math.random() * Number(postArg ?? 0);
/** the appliances: a machine boots from one, and from the next when a step fails (several share etcd) */
const servers = serverList.split(',');
const apiOf = (i: number) => `http://${servers[i % servers.length]}:8080`;
/** past it the driver stops waiting and reports what it saw (the audit then names what did not finish) */
const deadline = Date.now() + Number(deadlineArg ?? 1800) * 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const relay = await RelaySocket.open(me, 67);
let xidSeq = 1;
/**
 * A PXE ROM asks again after 4, 8, 16 and 32 s (PXE 2.1, and EDK2's mPxeDhcpTimeout); iPXE after 1, 2, 4 and 8 s
 * (its retry timer, 1 to 10 s). Shorter pauses than the firmware's only add retransmissions a busy server must
 * answer again.
 */
const PXE_DHCP_WAIT = (n: number) => 4000 * 2 ** n;
const IPXE_DHCP_WAIT = (n: number) => 1000 * 2 ** n;
async function exchange(pkt: DhcpPacket, server: string, ipxe: boolean): Promise<DhcpPacket> {
  const p = await relay.exchange(pkt, server, 67, 4, ipxe ? IPXE_DHCP_WAIT : PXE_DHCP_WAIT);
  if (!p) throw new Error(`no DHCP answer for ${pkt.chaddr}`);
  return p;
}
/** Every DHCPACK the machines got: no address may ever be acknowledged to two MACs. */
const acks: { ip: string; mac: string; at: number }[] = [];
async function dora(mac: string, ipxe: boolean, server: string) {
  const opts = { mac, giaddr: me, ...(ipxe ? { userClass: '\x04iPXE' } : {}) };
  const offer = await exchange(pxe(0, { ...opts, xid: xidSeq++ }), server, ipxe);
  const ack = await exchange(
    pxe(0, { ...opts, xid: xidSeq++, type: MsgType.Request, requested: offer.yiaddr, serverId: server }),
    server,
    ipxe,
  );
  if (ack.options.get(Opt.MessageType)?.[0] !== MsgType.Ack) throw new Error(`DHCP: no ACK for ${offer.yiaddr}`);
  acks.push({ ip: ack.yiaddr, mac, at: Date.now() });
  return ack;
}
interface Times {
  power: number;
  dhcp?: number;
  tftp?: number;
  script?: number;
  report?: number;
  retries: number;
  error?: string;
}
const times = new Map<string, Times>();
/** Reports answered 202: the host and the serial number that makes this report unique. */
const accepted: { host: string; mac: string; serial: string }[] = [];
/** Each BMC power-on or reset starts a new boot; an older one stops where it is. */
const generation = new Map<string, number>();

/**
 * Like the bundled inspector's callbacks (assets/inspector-src/agent.sh `call`): no answer or a 5xx is asked
 * again, pauses growing to 5 s (the agent's, halved), until the deadline; any other answer is the appliance's word.
 */
async function persist(call: () => Promise<Response>): Promise<Response> {
  for (let n = 1; ; n++) {
    try {
      const r = await call();
      if (r.status < 500 || Date.now() > deadline) return r;
      await r.arrayBuffer();
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
    await sleep(Math.min(n, 10) * 500);
  }
}

/** Like agent.sh `bootstrap_wait`: 404, a 5xx or no answer mean "not yet", asked again until the deadline. */
async function bootstrapWait(p: InspectorParams, from: string): Promise<boolean> {
  while (Date.now() < deadline) {
    try {
      const r = await callInspector(p, 'bootstrap', undefined, from);
      await r.arrayBuffer();
      if (r.status === 200) return true;
      if (r.status !== 404 && r.status < 500) return false;
    } catch {}
    await sleep(500);
  }
  return false;
}

/** After an accepted report: the bootstrap gate, then `provisioned`. */
async function deploy(p: InspectorParams, from: string): Promise<void> {
  if (await bootstrapWait(p, from))
    await persist(() => callInspector(p, 'provisioned', { status: 'provisioned' }, from));
}

async function bootOnce(mac: string, g: number, t: Times): Promise<'done' | 'again'> {
  // one appliance per try, the next after a failure
  const si = (Number.parseInt(mac.slice(-2), 16) + t.retries) % servers.length;
  const server = servers[si] as string;
  const ack = await dora(mac, false, server);
  t.dhcp = Date.now();
  // from the address it was leased (the driver's namespace has them all, see Lab.anyIp), as EDK2's PXE base code
  // times it (PXEBC_MTFTP_TIMEOUT 4 s, PXEBC_MTFTP_RETRIES 6) before it starts over
  await tftpGet(server, 69, ack.file, ack.yiaddr, { retryMs: 4000, tries: 7 });
  t.tftp = Date.now();
  const ack2 = await dora(mac, true, server);
  if (!ack2.options.get(Opt.IpxeEncap)) throw new Error('no iPXE options');
  await (await fetch(ack2.file)).text();
  const url = await claimUrlOf(`http://${server}:8080`, mac);
  t.script = Date.now();
  if (!url) throw new Error('no inspection script');
  if (generation.get(mac) !== g) return 'done';
  // the machine speaks from the address it was leased
  const p = await claim(url, mac, ack2.yiaddr);
  if ('status' in p) {
    // 503 (this appliance cannot reach etcd) or no answer: the entry script asks for its host script again, as here
    if (p.status === 503 || p.status === 0) throw new Error(`claim ${p.status}`);
    // 409: an earlier claim whose answer a kill swallowed; the attempt starts over with a BMC reset on its way
    return 'done';
  }
  const serial = `R-${mac}-${g}-${t.retries}`;
  const r = await persist(() => callInspector(p, 'inspection', wireReport(mac, { serialNumber: serial }), ack2.yiaddr));
  if (r.status === 202) {
    accepted.push({ host: p.host, mac, serial });
    t.report = Date.now();
    await deploy(p, ack2.yiaddr);
    return 'done';
  }
  // 409: this host has its report (an earlier POST whose answer the kill swallowed, this one's serial differs):
  // on to the gate as after a 202; 401: a newer attempt has new credentials and a BMC reset on its way
  if (r.status === 409) {
    await deploy(p, ack2.yiaddr);
    return 'done';
  }
  if (r.status === 401) return 'done';
  throw new Error(`report ${r.status}`);
}

async function boot(mac: string, g: number): Promise<void> {
  const t = times.get(mac)!;
  while (generation.get(mac) === g && Date.now() < deadline) {
    try {
      if ((await bootOnce(mac, g, t)) === 'done') return;
    } catch (e) {
      t.error = (e as Error).message;
      t.retries++;
      await sleep(300);
    }
  }
}

/** Admin API calls outlive appliance restarts; a create repeated after a lost answer gets 409 and is fine. */
let apiIndex = 0;
async function call(method: string, p: string, body?: unknown, accept = [200, 201, 202, 409]): Promise<any> {
  for (;;) {
    const got = await fetch(`${apiOf(apiIndex)}${p}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(10_000),
    })
      .then(async (r) => ({ status: r.status, text: await r.text() }))
      .catch(() => undefined);
    if (got && accept.includes(got.status)) return JSON.parse(got.text);
    // 503: that appliance cannot reach etcd now; another may
    if (got && got.status !== 503) throw new Error(`${method} ${p}: ${got.status} ${got.text}`);
    // down (being restarted): try again, on the next appliance
    apiIndex++;
    if (Date.now() > deadline) throw new Error(`${method} ${p}: no answer`);
    await sleep(200);
  }
}

const say = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);
const count = (xs: string[]) => {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
};
const macOf = (i: number) =>
  `52:54:01:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
const bmcs: FakeBmc[] = [];
/** Who called the BMCs and when, in the order the calls arrived: [address, ms since the epoch]. */
const bmcCalls: [string, number][] = [];
// one Secret holds every simulated BMC's credentials
await call('POST', SECRETS, {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'storm-bmc' },
  stringData: { username: 'admin', password: 'secret' },
});
for (let i = 0; i < N; i++) {
  const mac = macOf(i);
  const bmc = new FakeBmc({
    macs: [mac],
    personality: { powerLagMs: 200 },
    onRequest: (from) => bmcCalls.push([from, Date.now()]),
    onPower: (ev, b) => {
      if (ev === 'off' || b.target !== 'Pxe') return;
      const g = (generation.get(mac) ?? 0) + 1;
      generation.set(mac, g);
      if (!times.has(mac)) times.set(mac, { power: Date.now(), retries: 0 });
      setTimeout(() => void boot(mac, g), postMs());
    },
  });
  const address = await bmc.start(me, 30000 + i);
  bmcs.push(bmc);
  await call('POST', HOSTS, {
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
    kind: 'PhysicalHost',
    metadata: { name: `s${i}` },
    spec: { redfishConnection: { address, allowPlainHttp: true, credentialsSecretRef: 'storm-bmc' } },
  });
  say({ progress: 'creating hosts', created: i + 1 });
}
const t0 = Date.now();
for (;;) {
  const hosts = (await call('GET', HOSTS)).items as { status: { state: string } }[];
  const states = count(hosts.map((h) => h.status.state));
  say({ progress: 'enrolling', hosts: states });
  if (states.Available === N) break;
  await sleep(100);
}
const enrolled = Date.now();
const cpuAtEnrolled = process.cpuUsage();
for (let i = 0; i < N; i++)
  await call(
    'POST',
    MACHINES,
    machineManifest({
      name: `sm${i}`,
      spec: {
        inspectionImageURL: 'http://example.invalid/i',
        targetImageURL: 'http://example.invalid/t',
        targetImageDigest: `sha256:${'a'.repeat(64)}`,
      },
    }),
  );
type Phases = Record<string, number>;
const finished = (p: Phases) => (p.Provisioned ?? 0) + (p.Failed ?? 0) === N;
/**
 * Follows the machines as kubectl get -w and informers do: one list, then a watch from its resourceVersion, and
 * a new list when the watch ends (410 Gone, a dropped reader, an appliance restarted). Listing all 3000 machines
 * every few hundred ms took a twelfth of the appliance's CPU, which measured the harness.
 */
async function follow(): Promise<Phases> {
  const phase = new Map<string, string>();
  let said = 0;
  /** the machines by phase, said as progress at most every 100 ms (`force`: now) */
  const tally = (force = false) => {
    const p = count([...phase.values()]);
    if (force || Date.now() - said >= 100) {
      said = Date.now();
      say({ progress: 'provisioning', machines: p });
    }
    return p;
  };
  while (Date.now() < deadline) {
    const list = (await call('GET', MACHINES)) as {
      metadata: { resourceVersion: string };
      items: { metadata: { name: string }; status: { phase: string } }[];
    };
    phase.clear();
    for (const m of list.items) phase.set(m.metadata.name, m.status.phase);
    const listed = tally(true);
    if (finished(listed)) return listed;
    const base = apiOf(apiIndex);
    try {
      const r = await fetch(`${base}${MACHINES}?watch=1&resourceVersion=${list.metadata.resourceVersion}`, {
        headers: { Authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
      if (!r.ok || !r.body) throw new Error(`watch: ${r.status}`);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        for (const l of lines) {
          const e = JSON.parse(l) as {
            type: string;
            object: { metadata: { name: string }; status: { phase: string } };
          };
          if (e.type === 'ERROR') throw new Error('watch: gone');
          if (e.type === 'DELETED') phase.delete(e.object.metadata.name);
          else if (e.type !== 'BOOKMARK') phase.set(e.object.metadata.name, e.object.status.phase);
        }
        const p = tally();
        if (finished(p)) {
          await reader.cancel();
          return tally(true);
        }
      }
    } catch {
      // the appliance went or dropped this reader: list again, on the next appliance
      apiIndex++;
      await sleep(200);
    }
  }
  return tally(true);
}
const phases = await follow();
const done = Date.now();
// this process's own CPU over the storm: with the appliance's, it says which side the storm measured
const driverCpu = process.cpuUsage(cpuAtEnrolled);

// the audit, from the appliance's own records
const hosts = (
  (await call('GET', HOSTS)).items as {
    metadata: { name: string };
    spec: { consumerRef?: { name: string } };
    status: { state: string; inspectionReport?: { serialNumber: string } };
  }[]
).map((h) => ({ ...h, name: h.metadata.name }));
const machines = (
  (await call('GET', MACHINES)).items as { metadata: { name: string }; status: { phase: string; hostName?: string } }[]
).map((m) => ({ ...m, name: m.metadata.name })) as {
  name: string;
  status: { phase: string; hostName?: string };
}[];
/** One appliance's phase of each machine and state of each host, as it serves them (undefined: no answer). */
async function view(server: string): Promise<Map<string, string> | undefined> {
  const out = new Map<string, string>();
  for (const [p, kind] of [
    [MACHINES, 'machine'],
    [HOSTS, 'host'],
  ] as const) {
    const r = await fetch(`http://${server}:8080${p}`, {
      headers: { Authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(10_000),
    }).catch(() => undefined);
    if (!r?.ok) return undefined;
    const items = (await r.json()).items as {
      metadata: { name: string };
      status: { phase?: string; state?: string };
    }[];
    for (const o of items) out.set(`${kind} ${o.metadata.name}`, String(o.status.phase ?? o.status.state));
  }
  return out;
}
/**
 * Where the appliances disagree: a change one of them never took from etcd. Each follows the other's writes
 * within milliseconds; they get 10 s to agree.
 */
async function viewsDiffer(): Promise<string[]> {
  let diff: string[] = [];
  for (let i = 0; i < 20; i++) {
    const views = await Promise.all(servers.map(view));
    diff = servers.filter((_, j) => !views[j]).map((sv) => `${sv}: no answer`);
    const names = new Set(views.flatMap((v) => [...(v?.keys() ?? [])]));
    for (const n of names) {
      const seen = views.map((v) => v?.get(n) ?? 'absent');
      if (new Set(seen).size > 1) diff.push(`${n}: ${servers.map((sv, j) => `${sv} ${seen[j]}`).join(', ')}`);
    }
    if (!diff.length) return diff;
    await sleep(500);
  }
  return diff;
}
const events = (await call('GET', '/api/v1/journal?limit=1000000')).items as {
  at: string;
  kind: string;
  host?: string;
  message: string;
}[];
const powerOns = [...generation.values()].reduce((a, g) => a + g, 0);
const attempts = events.filter((e) => e.kind === 'InspectionStarted' || e.kind === 'InspectionResumed').length;
const consumers = hosts.map((h) => h.spec.consumerRef?.name).filter(Boolean);
const macsByIp = new Map<string, Set<string>>();
for (const a of acks) macsByIp.set(a.ip, (macsByIp.get(a.ip) ?? new Set()).add(a.mac));
const claims = count(events.filter((e) => e.kind === 'Claimed').map((e) => e.host ?? '?'));
const stored = new Map<string, string>();
for (const h of hosts) if (h.status.inspectionReport) stored.set(h.name, h.status.inspectionReport.serialNumber);
const audit = {
  leaseConflicts: [...macsByIp].filter(([, m]) => m.size > 1).map(([ip, m]) => `${ip}: ${[...m].join(', ')}`),
  // a later attempt (after contested credentials or a deployment timeout) may replace an accepted report:
  // the last one accepted for each host must be the one stored
  lostReports: [...new Map(accepted.map((a) => [a.host, a])).values()]
    .filter((a) => stored.get(a.host) !== a.serial)
    .map((a) => `${a.host}: accepted ${a.serial}, stored ${stored.get(a.host)}`),
  hostsWithoutReport: hosts.filter((h) => !stored.has(h.name)).map((h) => h.name),
  claimedNotOnce: hosts.filter((h) => claims[h.name] !== 1).map((h) => `${h.name}: ${claims[h.name] ?? 0} claims`),
  doubleClaims: consumers.length - new Set(consumers).size,
  notProvisioned: [
    ...machines.filter((m) => m.status.phase !== 'Provisioned').map((m) => `${m.name}: ${m.status.phase}`),
    ...hosts.filter((h) => h.status.state !== 'Provisioned').map((h) => `${h.name}: ${h.status.state}`),
  ],
  // every boot of an attempt (a new one, or one resumed with fresh credentials after a restart or a new
  // leader) is committed, fenced on etcd, before its one PXE power-on: more power-ons than those would mean
  // one of them was powered twice (two leaders, or a step repeated)
  bootsBeyondAttempts: hosts
    .map((h) => ({
      h,
      ons: generation.get(macOf(Number(h.name.slice(1)))) ?? 0,
      boots: events.filter(
        (e) => e.host === h.name && (e.kind === 'InspectionStarted' || e.kind === 'InspectionResumed'),
      ),
    }))
    .filter(({ ons, boots }) => ons > boots.length)
    .map(({ h, ons, boots }) => `${h.name}: ${ons} PXE power-ons, ${boots.length} attempt boots`),
  mismatched: machines
    .filter(
      (m) => !m.status.hostName || hosts.find((h) => h.name === m.status.hostName)?.spec.consumerRef?.name !== m.name,
    )
    .map((m) => m.name),
  viewsDiffer: servers.length > 1 ? await viewsDiffer() : [],
};
const q = (xs: number[], p: number) =>
  xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]! : NaN;
const stage = (f: (t: Times) => number | undefined) =>
  [...times.values()].map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
const st = {
  'power->dhcp': stage((t) => (t.dhcp ? t.dhcp - t.power : undefined)),
  'dhcp->tftp': stage((t) => (t.tftp && t.dhcp ? t.tftp - t.dhcp : undefined)),
  'tftp->script': stage((t) => (t.script && t.tftp ? t.script - t.tftp : undefined)),
  'script->report': stage((t) => (t.report && t.script ? t.report - t.script : undefined)),
  'power->report': stage((t) => (t.report ? t.report - t.power : undefined)),
};
say({
  n: N,
  enrolSeconds: (enrolled - t0) / 1000,
  // from the first Machine's POST: the machines are provisioned while the later ones are still being created
  provisionSeconds: (done - enrolled) / 1000,
  hostsPerMinute: N / ((done - enrolled) / 60000),
  phases,
  acks: acks.length,
  accepted: accepted.length,
  reportsStored: stored.size,
  powerOns,
  attempts,
  bootRetries: [...times.values()].reduce((a, t) => a + t.retries, 0),
  driverCpuMs: (driverCpu.user + driverCpu.system) / 1000,
  lastErrors: [...new Set([...times.values()].map((t) => t.error).filter(Boolean))].slice(0, 5),
  stagesMs: Object.fromEntries(Object.entries(st).map(([k, v]) => [k, { p50: q(v, 0.5), p99: q(v, 0.99) }])),
  bmcCalls,
  audit,
});
relay.close();
await Promise.all(bmcs.map((b) => b.stop()));
// a pipe is written asynchronously: exiting before the summary (a large line) is out would cut it off
await new Promise((r) => process.stdout.write('', r));
process.exit(0);
