import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { encode } from '../../src/boot/dhcp/codec.js';
import { MsgType, Opt } from '../../src/boot/dhcp/options.js';
import { DhcpServer } from '../../src/boot/dhcp/server.js';
import { Metrics } from '../../src/metrics.js';
import { Store } from '../../src/store/store.js';
import { inProcess, until } from '../helpers/appliance.js';
import { memoryLogger } from '../helpers/log.js';
import { pxe } from '../helpers/packets.js';
import { RelaySocket } from '../helpers/relay.js';
import { addHost, addMachine, HOSTS, hostManifests, MACHINES, machineManifest, SECRETS } from '../helpers/resources.js';
import { claim, claimUrlOf, wireReport } from '../helpers/sim-inspector.js';
import { startTftp } from '../helpers/tftp.js';
import { tempDir } from '../helpers/tmp.js';
import { bmcWithMachine, hostBody, machineBody } from '../helpers/workflow.js';

let seed = 1234;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};
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

/** Waits until a counter sum stops moving (the server has looked at everything that was sent). */
async function settled(read: () => Promise<number>): Promise<number> {
  for (let last = -1, now = await read(); ; last = now, now = await read()) {
    if (now === last) return now;
    await new Promise((r) => setTimeout(r, 300));
  }
}

t.test(
  'TFTP: 4000 random and mutated requests, each refused with an ERROR and counted, or served; then a real client',
  async (t) => {
    const dir = tempDir(t);
    const root = path.join(dir, 'root');
    mkdirSync(root);
    const file = randomBytes(50_000);
    writeFileSync(path.join(root, 'f.bin'), file);
    const { port, metrics } = await startTftp(
      t,
      root,
      { retries: 1, maxTransfers: 10_000, maxTransfersPerClient: 10_000 },
      'fatal',
    );
    const rrq = Buffer.from(
      '\x00\x01f.bin\x00octet\x00blksize\x001432\x00tsize\x000\x00windowsize\x0016\x00',
      'latin1',
    );
    const seeds = [
      rrq,
      Buffer.from('\x00\x01../../etc/passwd\x00netascii\x00', 'latin1'),
      Buffer.from('\x00\x02f.bin\x00octet\x00', 'latin1'),
      Buffer.from('\x00\x05\x00\x01oops\x00', 'latin1'),
    ];
    const packets = Array.from({ length: 4000 }, (_, i) =>
      i % 4 === 0 ? randomBytes(1 + int(600)) : mutate(seeds[i % seeds.length]!),
    );
    await blast(port, packets);
    const refused = await settled(() => metrics.value('beskar7_tftp_malformed_total'));
    const transfers = await settled(() => metrics.value('beskar7_tftp_transfers_total'));
    t.comment(`${refused} refused before a transfer, ${transfers} requests reached the file check`);
    t.ok(refused > 1000, 'malformed datagrams counted');
    t.ok(refused + transfers > 3950, `every datagram accounted for (${refused} + ${transfers} of 4000)`);
    // a refusal is answered, with a reason a person can read
    const sock = dgram.createSocket('udp4');
    sock.bind(0, '127.0.0.1');
    await once(sock, 'listening');
    t.teardown(() => sock.close());
    const answers: Buffer[] = [];
    sock.on('message', (m) => answers.push(m));
    for (const bad of [
      '\x00\x09f.bin\x00octet\x00',
      '\x00\x01f.bin\x00octet\x00blksize\x007\x00',
      '\x00\x02up.bin\x00octet\x00',
    ])
      sock.send(Buffer.from(bad, 'latin1'), port, '127.0.0.1');
    const end = Date.now() + 3000;
    while (answers.length < 3 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    t.same(
      answers.map((a) => a.readUInt16BE(0)),
      [5, 5, 5],
      'three ERROR packets',
    );
    t.ok(
      answers.every((a) => a.subarray(4, -1).toString('latin1').length > 3),
      `with messages: ${answers.map((a) => a.subarray(4, -1).toString('latin1')).join(' | ')}`,
    );
    const out = path.join(dir, 'out');
    await promisify(execFile)('timeout', [
      '30',
      'atftp',
      '--option',
      'blksize 1468',
      '-g',
      '-r',
      'f.bin',
      '-l',
      out,
      '127.0.0.1',
      String(port),
    ]);
    t.ok(readFileSync(out).equals(file), 'still serving byte-identical files');
  },
);

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

for (const mode of ['proxy', 'full'] as const) {
  t.test(
    `DHCP ${mode} mode: 6000 mutated packets on ports 67 and 4011 amid 100 real exchanges; every packet counted`,
    async (t) => {
      const store = await Store.open(path.join(tempDir(t), 'db'));
      t.teardown(() => store.close());
      const metrics = new Metrics();
      const relay = await RelaySocket.open('127.0.0.1');
      t.teardown(() => relay.close());
      const { log } = memoryLogger('fatal');
      const server = new DhcpServer(
        {
          address: '127.0.0.1',
          port: 0,
          proxyPort: await freeUdpPort(),
          maxPacketBytes: 1500,
          ...(mode === 'full'
            ? {
                pool: {
                  poolStart: '127.1.0.10',
                  poolEnd: '127.1.0.250',
                  leaseSeconds: 600,
                  offerHoldSeconds: 30,
                  reservations: [{ mac: '52:54:00:00:00:99', ip: '127.1.0.99' }],
                },
              }
            : {}),
          context: {
            mode,
            serverIp: '127.0.0.1',
            httpBase: 'http://127.0.0.1:8080',
            bootFiles: { bios: 'a', efi: 'b', ipxeEfi: 'c', arm64: 'd', secureBoot: 'e' },
            ipxeEfiMACs: new Set(),
            clientPort: 68,
            serverPort: relay.port,
            ...(mode === 'full' ? { full: { subnetMask: '255.0.0.0', dnsServers: [], leaseSeconds: 600 } } : {}),
          },
        },
        store,
        log,
        metrics,
      );
      const { port, proxyPort } = await server.start();
      t.teardown(() => server.stop());
      const seeds = [
        encode(pxe(0, { giaddr: '127.0.0.1' })),
        encode(pxe(7, { giaddr: '127.0.0.1', userClass: '\x04iPXE' })),
        encode(pxe(0, { giaddr: '127.0.0.1', type: MsgType.Request, requested: '127.1.0.42', serverId: '127.0.0.1' })),
        encode(
          pxe(7, {
            giaddr: '127.0.0.1',
            type: MsgType.Request,
            requested: '127.1.0.99',
            serverId: '127.0.0.1',
            mac: '52:54:00:00:00:98',
          }),
        ),
      ];
      const junk = Array.from({ length: 6000 }, (_, i) =>
        i % 10 === 0 ? randomBytes(int(1500)) : mutate(seeds[i % seeds.length]!),
      );
      // real clients (relayed, like the storm) exchange with the server while the junk arrives
      const ask = (pkt: ReturnType<typeof pxe>, to: number) => relay.exchange(pkt, '127.0.0.1', to, 5, () => 500);
      const real = async (i: number) => {
        const mac = `52:54:00:aa:00:${i.toString(16).padStart(2, '0')}`;
        const offer = await ask(pxe(0, { giaddr: '127.0.0.1', mac, xid: 0x10000 + i * 2 }), port);
        if (!offer || mode === 'proxy') return offer ? { mac, ip: 'proxy' } : undefined;
        const ack = await ask(
          pxe(0, {
            giaddr: '127.0.0.1',
            mac,
            xid: 0x10001 + i * 2,
            type: MsgType.Request,
            requested: offer.yiaddr,
            serverId: '127.0.0.1',
          }),
          port,
        );
        return ack?.options.get(Opt.MessageType)?.[0] === MsgType.Ack ? { mac, ip: ack.yiaddr } : undefined;
      };
      const [, answered] = await Promise.all([
        Promise.all([blast(port, junk.slice(0, 3000)), blast(proxyPort!, junk.slice(3000))]),
        Promise.all(
          Array.from({ length: 100 }, (_, i) => new Promise((r) => setTimeout(r, i * 5)).then(() => real(i))),
        ),
      ]);
      const counted = await settled(
        async () =>
          (await metrics.value('beskar7_dhcp_malformed_total')) + (await metrics.value('beskar7_dhcp_packets_total')),
      );
      const malformed = await metrics.value('beskar7_dhcp_malformed_total');
      t.ok(malformed > 100, `malformed packets counted (${malformed})`);
      // loopback UDP may drop a few when the machine is busy: the socket buffer, not the server
      t.ok(
        counted >= 0.99 * (6000 + relay.sent),
        `every packet accounted for: ${malformed} malformed + ${counted - malformed} decoded of ${6000 + relay.sent} sent`,
      );
      t.equal(answered.filter(Boolean).length, 100, 'all 100 real clients answered amid the junk');
      if (mode === 'full') {
        const acked = answered.filter((x): x is { mac: string; ip: string } => !!x);
        t.equal(new Set(acked.map((x) => x.ip)).size, 100, '100 different addresses acknowledged');
        const leases = await store.leases.all();
        const byIp = new Map(leases.map((l) => [l.ip, l.mac]));
        t.ok(
          acked.every((x) => byIp.get(x.ip) === x.mac),
          'every ACK is a stored lease of that MAC',
        );
        const macs = leases.map((l) => l.mac);
        t.equal(new Set(macs).size, macs.length, `no MAC holds two leases (${leases.length} leases)`);
        t.ok(
          leases.every(
            (l) =>
              /^127\.1\.0\.\d+$/.test(l.ip) && Number(l.ip.split('.')[3]) >= 10 && Number(l.ip.split('.')[3]) <= 250,
          ),
          'every lease inside the pool',
        );
        t.ok(
          leases.every((l) => l.ip !== '127.1.0.99' || l.mac === '52:54:00:00:00:99'),
          'the reserved address went to nobody else',
        );
      }
    },
  );
}

// a JSON-aware mutation: wrong types, huge and negative numbers, deep nesting, prototype keys, unicode, or
// a field dropped; plus character-level damage on the text
const oddValues: unknown[] = [
  null,
  true,
  -1,
  1e308,
  -0,
  3.5,
  '',
  'x'.repeat(5000),
  '\u0000',
  '\ud800',
  '../../etc/passwd',
  [],
  {},
  [[[[[[]]]]]],
  { __proto__: { admin: true } },
  '52:54:00:zz:00:01',
  'http://',
  'ftp://x/y',
];
function mutateJson(v: unknown): unknown {
  if (Array.isArray(v)) return rnd() < 0.2 ? [] : v.map((x) => (rnd() < 0.3 ? mutateJson(x) : x));
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = { ...(v as Record<string, unknown>) };
    const keys = Object.keys(o);
    const k = keys[int(keys.length)];
    const r = rnd();
    if (k !== undefined && r < 0.15) delete o[k];
    else if (r < 0.25) o[rnd() < 0.5 ? '__proto__' : `extra${int(9)}`] = oddValues[int(oddValues.length)];
    else if (k !== undefined && r < 0.6) o[k] = oddValues[int(oddValues.length)];
    else if (k !== undefined) o[k] = mutateJson(o[k]);
    return o;
  }
  return rnd() < 0.5 ? oddValues[int(oddValues.length)] : v;
}
function damage(text: string): string {
  for (let k = 0, n = 1 + int(4); k < n; k++) {
    const at = int(text.length);
    text =
      rnd() < 0.5
        ? text.slice(0, at) + String.fromCharCode(32 + int(95)) + text.slice(at + 1)
        : text.slice(0, at) + text.slice(at + 1 + int(5));
  }
  return text;
}

t.test('API: 5000 mutated bodies on every POST endpoint get a 4xx with a message, never a 5xx', async (t) => {
  let base = '';
  const mac = '52:54:00:0f:00:01';
  // a host that is inspecting, so the report endpoints are fuzzed with its real token, past authentication
  const { address } = await bmcWithMachine(t, () => base, mac, { report: null });
  const a = await inProcess(t);
  base = a.base;
  await addHost(a.kube, hostBody('fz', address));
  await addMachine(a.kube, machineBody('mfz'));
  const url = await until('the nonce URL', () => claimUrlOf(a.base, mac));
  const claimed = await claim(url, mac);
  if ('status' in claimed) throw new Error(`claim ${claimed.status}`);
  const token = claimed.token;
  const hostSpec = {
    redfish: { address: 'http://127.0.0.1:1', username: 'u', password: 'p', allowPlainHttp: true },
    labels: { a: 'b' },
    bootMACs: ['52:54:00:00:00:01'],
  };
  const report = wireReport(mac);
  const backup = (await a.api('GET', '/backup')).json;
  const endpoints: [string, unknown, string | undefined][] = [
    [HOSTS, hostManifests({ name: 'f1', spec: hostSpec }).host, undefined],
    [SECRETS, hostManifests({ name: 'f1', spec: hostSpec }).secret, undefined],
    [
      MACHINES,
      machineManifest({
        name: 'm1',
        spec: {
          inspectionImageURL: 'http://x/i',
          targetImageURL: 'http://x/t',
          targetImageDigest: `sha256:${'a'.repeat(64)}`,
          hardwareRequirements: { minCPUCores: 1, minMemoryGB: 1, minDiskGB: 1 },
          hostSelector: { matchLabels: { a: 'b' } },
        },
      }),
      undefined,
    ],
    ['/api/v1/inspection/default/fz', report, token],
    ['/api/v1/progress/default/fz', { step: 'download', ok: true, message: 'fetched' }, token],
    ['/api/v1/restore', backup, undefined],
  ];
  const statuses = new Map<string, number>();
  for (let i = 0; i < 5000; i++) {
    const [p, body, tok] = endpoints[i % endpoints.length]!;
    const mutated = mutateJson(structuredClone(body));
    const text = rnd() < 0.3 ? damage(JSON.stringify(mutated) ?? '') : JSON.stringify(mutated);
    const r = await a.kube('POST', p, text ?? '', tok ?? undefined);
    const key = `${p} ${r.status}`;
    statuses.set(key, (statuses.get(key) ?? 0) + 1);
    if (r.status >= 500) t.fail(`HTTP ${r.status} for ${p} ${text.slice(0, 300)}`);
    // the admin and inspector APIs say {error}; the resource API a Status with its message
    const said = r.json?.error ?? r.json?.message;
    if (r.status >= 400 && !(typeof said === 'string' && said.length))
      t.fail(`4xx without a message: ${r.text.slice(0, 300)}`);
  }
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
  t.ok(
    [...statuses.keys()].every((k) => Number(k.split(' ')[1]) < 500),
    'no server errors',
  );
  const refusedAsInvalid = (p: string) => (statuses.get(`${p} 400`) ?? 0) + (statuses.get(`${p} 422`) ?? 0);
  for (const [p] of endpoints) t.ok(refusedAsInvalid(p) > 100, `${p}: mostly refused as invalid`);
  // without the token, nothing of the body is even read: a counter, no stored event
  const rejected = async () =>
    (await a.api('GET', '/journal?limit=100000')).json.items.filter(
      (e: { kind: string }) => e.kind === 'ReportRejected',
    ).length;
  const before = await rejected();
  for (let i = 0; i < 200; i++) {
    const r = await a.api('POST', `/inspection/default/${i % 2 ? 'fz' : `ghost-${i}`}`, report, `forged-${i}`);
    if (r.status !== 401 || r.json.error !== 'unauthorized') t.fail(`forged report: ${r.status} ${r.text}`);
  }
  t.equal(await rejected(), before, '200 forged reports stored nothing');
  t.equal(({} as Record<string, unknown>).admin, undefined, 'no prototype was polluted');
  // whatever got in is valid: every record reads back through its schema
  for (const p of [HOSTS, MACHINES, SECRETS, '/api/v1/journal'])
    t.equal((await a.kube('GET', p)).status, 200, `${p} still reads`);
  t.equal((await a.api('GET', '/backup')).status, 200, 'the whole store still reads');
});

t.test('every unauthenticated HTTP route: 3000 random paths, queries and headers, never a 5xx', async (t) => {
  const a = await inProcess(t);
  const pieces = [
    '..',
    '%2e%2e',
    '%2f',
    '%00',
    '%',
    '~',
    'ipxe',
    'inspector',
    'é',
    '\\',
    '//',
    '${x}',
    ' ',
    'a'.repeat(300),
  ];
  const segment = () => Array.from({ length: 1 + int(4) }, () => pieces[int(pieces.length)]).join('');
  const query = () =>
    Array.from(
      { length: int(6) },
      () => `${['mac', 'uuid', 'arch', 'serial', 'x', ''][int(6)]}=${encodeURIComponent(segment())}`,
    ).join('&');
  const paths = [
    () => '/boot.ipxe',
    () => `/boot/host.ipxe?${rnd() < 0.5 ? `mac=52-54-00-00-00-0${int(9)}&` : ''}${query()}`,
    () => `/ipxe/${segment()}`,
    () => `/assets/${segment()}/${segment()}`,
    () => `/assets/inspector/${['vmlinuz', 'initrd', segment()][int(3)]}`,
    () => '/healthz',
    () => `/api/v1/openapi.json?${query()}`,
    () => `/api/v1/boot/${segment()}/${segment()}/${segment()}?${query()}`,
    () => `/api/v1/boot/default/fz/${'A'.repeat(int(60))}?${query()}`,
    () => `/beskar7-inspector/${['boot', segment()][int(2)]}`,
    () => `/${segment()}`,
  ];
  const statuses = new Map<number, number>();
  // the HTTP server writes nothing outside the structured log (a HEAD once printed ERR_HTTP_HEADERS_SENT)
  const printed = t.capture(console, 'error', console.error);
  for (let i = 0; i < 3000; i++) {
    const p = paths[int(paths.length)]!();
    const headers: Record<string, string> = {};
    if (rnd() < 0.3)
      headers.Range = ['bytes=0-', 'bytes=-5', 'bytes=9999999999-', 'bytes=a-b', 'bytes=0-1,5-'][int(5)]!;
    if (rnd() < 0.2) headers['If-None-Match'] = ['*', '"x"', 'W/"1-2"', ''][int(4)]!;
    let status: number;
    try {
      const r = await fetch(`${a.base}${p}`, { method: rnd() < 0.2 ? 'HEAD' : 'GET', headers });
      await r.arrayBuffer();
      status = r.status;
    } catch (e) {
      // a path fetch itself refuses to send; a connection the server broke is a failure
      const cause = (e as Error & { cause?: { code?: string; message?: string } }).cause;
      if (cause?.code) t.fail(`${p}: ${cause.code} ${cause.message ?? ''}`);
      status = 0;
    }
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    if (status >= 500) t.fail(`HTTP ${status} for ${p}`);
  }
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
  t.same(
    printed().map((c) => String(c.args[0])),
    [],
    'nothing printed by the HTTP server',
  );
  printed.restore();
  t.notOk(
    [...statuses.keys()].some((s) => s >= 500),
    'no server errors',
  );
  t.ok((statuses.get(200) ?? 0) > 100 && (statuses.get(404) ?? 0) > 100, 'both served and refused paths were reached');
  t.equal((await fetch(`${a.base}/boot.ipxe`)).status, 200, 'still serving');
});
