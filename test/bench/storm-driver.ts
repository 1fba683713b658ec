// The storm's far side, run inside the lab's "sim" host: N fake BMCs, and for each power-on a simulated
// machine that speaks real DHCP (as a relay, like perfdhcp), TFTP and HTTP: PXE DORA, TFTP undionly.kpxe,
// iPXE DORA, entry and host scripts, then the inspection report. Prints one JSON summary line.
import dgram from 'node:dgram';
import { once } from 'node:events';
import tftp from 'tftp';
import { decode, encode } from '../../src/dhcp/codec.js';
import { MsgType, Opt } from '../../src/dhcp/options.js';
import { FakeBmc } from '../fake-bmc/server.js';
import { pxe } from '../helpers/packets.js';
import { sampleReport } from '../helpers/sim-inspector.js';

const [nArg, server, me, token] = process.argv.slice(2) as [string, string, string, string];
const N = Number(nArg);
const api = `http://${server}:8080/api/v1`;
const relay = dgram.createSocket({ type: 'udp4', reuseAddr: true });
relay.bind(67, me);
await once(relay, 'listening');
const waiting = new Map<number, (p: ReturnType<typeof decode>) => void>();
relay.on('message', (m) => {
  try {
    const p = decode(m);
    waiting.get(p.xid)?.(p);
  } catch {
    // not ours
  }
});
let xidSeq = 1;
async function exchange(pkt: ReturnType<typeof pxe>): Promise<ReturnType<typeof decode>> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const got = new Promise<ReturnType<typeof decode> | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), 2000 * (attempt + 1));
      waiting.set(pkt.xid, (p) => (clearTimeout(timer), resolve(p)));
    });
    relay.send(encode(pkt), 67, server);
    const p = await got;
    waiting.delete(pkt.xid);
    if (p) return p;
  }
  throw new Error(`no DHCP answer for ${pkt.chaddr}`);
}
async function dora(mac: string, ipxe: boolean) {
  const opts = { mac, giaddr: me, ...(ipxe ? { userClass: '\x04iPXE' } : {}) };
  const offer = await exchange(pxe(0, { ...opts, xid: xidSeq++ }));
  return exchange(pxe(0, { ...opts, xid: xidSeq++, type: MsgType.Request, requested: offer.yiaddr, serverId: server }));
}
const tftpClient = tftp.createClient({ host: server, port: 69, blockSize: 1468, windowSize: 16 });
const tftpGet = (file: string) => new Promise<Buffer>((res, rej) => tftpClient.get(file, (e, b) => (e ? rej(e) : res(b as Buffer))));

interface Times { power: number; dhcp?: number; tftp?: number; script?: number; report?: number; error?: string }
const times = new Map<string, Times>();
async function boot(mac: string): Promise<void> {
  const t = times.get(mac)!;
  try {
    const ack = await dora(mac, false);
    t.dhcp = Date.now();
    await tftpGet(ack.file);
    t.tftp = Date.now();
    const ack2 = await dora(mac, true);
    if (!ack2.options.get(Opt.IpxeEncap)) throw new Error('no iPXE options');
    await (await fetch(ack2.file)).text();
    const script = await (await fetch(`http://${server}:8080/boot/host.ipxe?mac=${mac}`)).text();
    t.script = Date.now();
    const kv = Object.fromEntries([...script.matchAll(/beskar7\.(\w+)=(\S+)/g)].map((m) => [m[1], m[2]]));
    const r = await fetch(`${kv.api}/api/v1/hosts/${kv.host}/inspection`, { method: 'POST', headers: { Authorization: `Bearer ${kv.token}`, 'Content-Type': 'application/json' }, body: JSON.stringify(sampleReport(mac)) });
    if (r.status !== 202) throw new Error(`report ${r.status}`);
    t.report = Date.now();
  } catch (e) {
    t.error = (e as Error).message;
  }
}
const call = async (method: string, p: string, body?: unknown) =>
  (await fetch(`${api}${p}`, { method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) })).json() as Promise<any>;

const macOf = (i: number) => `52:54:01:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
const bmcs: FakeBmc[] = [];
for (let i = 0; i < N; i++) {
  const mac = macOf(i);
  const bmc = new FakeBmc({ macs: [mac], personality: { powerLagMs: 200 }, onPower: (ev, b) => {
    if (ev === 'off' || b.target !== 'Pxe') return;
    times.set(mac, { power: Date.now() });
    setTimeout(() => void boot(mac), 100);
  } });
  const address = await bmc.start(me, 30000 + i);
  bmcs.push(bmc);
  await call('POST', '/hosts', { name: `s${i}`, spec: { redfish: { address, username: 'admin', password: 'secret' } } });
}
const t0 = Date.now();
for (;;) {
  const hosts = (await call('GET', '/hosts')).items as { status: { state: string } }[];
  if (hosts.filter((h) => h.status.state === 'Available').length === N) break;
  await new Promise((r) => setTimeout(r, 200));
}
const enrolled = Date.now();
for (let i = 0; i < N; i++) await call('POST', '/machines', { name: `sm${i}`, spec: { inspectionImageURL: 'http://example.invalid/i', targetImageURL: 'http://example.invalid/t' } });
const created = Date.now();
let phases: Record<string, number> = {};
const deadline = Date.now() + 30 * 60_000;
while (Date.now() < deadline) {
  const ms = (await call('GET', '/machines')).items as { status: { phase: string } }[];
  phases = ms.reduce((a, m) => ({ ...a, [m.status.phase]: (a[m.status.phase] ?? 0) + 1 }), {} as Record<string, number>);
  if ((phases.Provisioned ?? 0) + (phases.Failed ?? 0) === N) break;
  await new Promise((r) => setTimeout(r, 500));
}
const done = Date.now();
const hosts = (await call('GET', '/hosts')).items as { name: string; status: { consumer?: string } }[];
const consumers = hosts.map((h) => h.status.consumer).filter(Boolean);
const q = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]! : NaN);
const stage = (f: (t: Times) => number | undefined) => [...times.values()].map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
const st = {
  'power->dhcp': stage((t) => (t.dhcp ? t.dhcp - t.power : undefined)),
  'dhcp->tftp': stage((t) => (t.tftp && t.dhcp ? t.tftp - t.dhcp : undefined)),
  'tftp->script': stage((t) => (t.script && t.tftp ? t.script - t.tftp : undefined)),
  'script->report': stage((t) => (t.report && t.script ? t.report - t.script : undefined)),
  'power->report': stage((t) => (t.report ? t.report - t.power : undefined)),
};
process.stdout.write(`${JSON.stringify({
  n: N, enrolSeconds: (enrolled - t0) / 1000, provisionSeconds: (done - created) / 1000, hostsPerMinute: (N / ((done - created) / 60000)), phases,
  doubleClaims: consumers.length - new Set(consumers).size, errors: [...times.values()].filter((t) => t.error).map((t) => t.error).slice(0, 5),
  stagesMs: Object.fromEntries(Object.entries(st).map(([k, v]) => [k, { p50: q(v, 0.5), p99: q(v, 0.99) }])),
})}\n`);
relay.close();
await Promise.all(bmcs.map((b) => b.stop()));
process.exit(0);
