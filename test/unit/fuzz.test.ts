import dgram from 'node:dgram';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { encode } from '../../src/dhcp/codec.js';
import { DhcpServer } from '../../src/dhcp/server.js';
import { Metrics } from '../../src/metrics.js';
import { Store } from '../../src/store/store.js';
import { TftpServer } from '../../src/tftp/server.js';
import { inProcess } from '../helpers/appliance.js';
import { memoryLogger } from '../helpers/log.js';
import { pxe } from '../helpers/packets.js';
import { tempDir } from '../helpers/tmp.js';

let seed = 1234;
const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
const int = (n: number) => Math.floor(rnd() * n);
function mutate(b: Buffer): Buffer {
  const out = Buffer.from(b);
  for (let i = 0, n = 1 + int(6); i < n; i++) out[int(out.length)] = int(256);
  return rnd() < 0.2 ? out.subarray(0, int(out.length)) : out;
}
const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));

async function blast(port: number, packets: Buffer[]): Promise<void> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  for (let i = 0; i < packets.length; i++) {
    s.send(packets[i]!, port, '127.0.0.1');
    if (i % 25 === 0) await new Promise((r) => setTimeout(r, 2)); // stay under the socket buffer: UDP drops what overflows it
  }
  await new Promise((r) => setTimeout(r, 300));
  s.close();
}

t.test('TFTP survives 3000 random and mutated requests, then serves a real client', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'root');
  mkdirSync(root);
  const file = randomBytes(50_000);
  writeFileSync(path.join(root, 'f.bin'), file);
  const { log } = memoryLogger('fatal');
  const server = new TftpServer({ address: '127.0.0.1', port: 0, root, maxBlksize: 65464, maxWindowsize: 64, retries: 1 }, log, new Metrics());
  const { port } = await server.start();
  t.teardown(() => server.stop());
  const rrq = Buffer.from('\x00\x01f.bin\x00octet\x00blksize\x001432\x00tsize\x000\x00windowsize\x0016\x00', 'latin1');
  const packets = Array.from({ length: 3000 }, (_, i) => (i % 3 === 0 ? randomBytes(1 + int(600)) : mutate(rrq)));
  await blast(port, packets);
  const out = path.join(dir, 'out');
  await promisify(execFile)('timeout', ['30', 'atftp', '--option', 'blksize 1468', '-g', '-r', 'f.bin', '-l', out, '127.0.0.1', String(port)]);
  t.ok(readFileSync(out).equals(file), 'still serving byte-identical files');
});

t.test('DHCP survives 5000 mutated packets, counts them, still answers', async (t) => {
  const store = await Store.open(path.join(tempDir(t), 'db'));
  t.teardown(() => store.close());
  const metrics = new Metrics();
  const relay = dgram.createSocket('udp4');
  relay.bind(0, '127.0.0.1');
  await once(relay, 'listening');
  t.teardown(() => relay.close());
  let replies = 0;
  relay.on('message', () => replies++);
  const { log } = memoryLogger('fatal');
  const server = new DhcpServer({
    address: '127.0.0.1', port: 0, proxyPort: 0,
    context: { mode: 'proxy', serverIp: '127.0.0.1', httpBase: 'http://127.0.0.1:8080', bootFiles: { bios: 'a', efi: 'b', efiSnp: 'c', arm64: 'd' }, snponlyMACs: new Set(), clientPort: 68, serverPort: relay.address().port },
  }, store, log, metrics);
  const { port } = await server.start();
  t.teardown(() => server.stop());
  const seeds = [encode(pxe(0, { giaddr: '127.0.0.1' })), encode(pxe(7, { giaddr: '127.0.0.1', userClass: '\x04iPXE' }))];
  await blast(port, Array.from({ length: 5000 }, (_, i) => (i % 10 === 0 ? randomBytes(int(1500)) : mutate(seeds[i % 2]!))));
  const counted = async () => (await metrics.value('beskar7_dhcp_malformed_total')) + (await metrics.value('beskar7_dhcp_packets_total'));
  for (let last = -1, now = await counted(); now !== last; last = now, now = await counted()) await new Promise((r) => setTimeout(r, 200));
  const malformed = await metrics.value('beskar7_dhcp_malformed_total');
  const handled = await metrics.value('beskar7_dhcp_packets_total');
  t.ok(malformed > 100, `malformed packets counted (${malformed})`);
  t.ok(malformed + handled > 4900, `nearly every packet accounted for (${malformed} malformed + ${handled} decoded of 5000)`);
  const before = replies;
  const sock = dgram.createSocket('udp4');
  sock.send(seeds[0]!, port, '127.0.0.1', () => sock.close());
  const end = Date.now() + 2000;
  while (replies === before && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  t.ok(replies > before, 'a valid request is still answered');
});

t.test('API: 1500 mutated bodies get a 4xx with a message, never a 5xx', async (t) => {
  const a = await inProcess(t);
  const host = JSON.stringify({ name: 'f1', spec: { redfish: { address: 'http://127.0.0.1:1', username: 'u', password: 'p' }, labels: { a: 'b' } } });
  const machine = JSON.stringify({ name: 'm1', spec: { inspectionImageURL: 'http://x/i', targetImageURL: 'http://x/t', hardwareRequirements: { minCPUCores: 1, minMemoryGB: 1, minDiskGB: 1 } } });
  const report = JSON.stringify({ bootMode: 'UEFI', cpus: { count: 1, cores: 1, threads: 1 }, memory: { totalGB: 1 }, disks: [{ device: '/dev/a', sizeGB: 1, type: 'SSD' }], nics: [] });
  const statuses = new Map<number, number>();
  for (let i = 0; i < 1500; i++) {
    const [p, body, tok] = [['/hosts', host, undefined], ['/machines', machine, undefined], ['/hosts/f1/inspection', report, 'tok']][i % 3] as [string, string, string | undefined];
    let text = body;
    const n = 1 + int(4);
    for (let k = 0; k < n; k++) {
      const at = int(text.length);
      text = rnd() < 0.5 ? text.slice(0, at) + String.fromCharCode(32 + int(95)) + text.slice(at + 1) : text.slice(0, at) + text.slice(at + 1 + int(5));
    }
    const r = await a.api('POST', p, text, tok ?? undefined);
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    if (r.status >= 500) t.fail(`HTTP ${r.status} for ${p} ${text}`);
    if (r.status >= 400 && !(r.json && typeof r.json.error === 'string' && r.json.error.length)) t.fail(`4xx without a message: ${r.text}`);
  }
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
  t.ok([...statuses.keys()].every((s) => s < 500), 'no server errors');
  t.ok((statuses.get(400) ?? 0) > 500, 'mostly refused as invalid');
});
