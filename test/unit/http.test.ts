import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { serve } from '@hono/node-server';
import t from 'tap';
import { createHttpApp } from '../../src/boot/http.js';
import { loadTemplates } from '../../src/boot/ipxe.js';
import type { BootInstruction } from '../../src/domain/boot.js';
import { Metrics } from '../../src/metrics.js';
import { HttpBases } from '../../src/net/bases.js';
import { repoRoot } from '../../src/paths.js';
import { memoryLogger } from '../helpers/log.js';
import { tempDir } from '../helpers/tmp.js';

t.test('HTTP: scripts per host, assets with Range/ETag, escapes refused', async (t) => {
  const dir = tempDir(t);
  const assets = path.join(dir, 'assets');
  mkdirSync(path.join(assets, 'ipxe'), { recursive: true });
  const blob = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251));
  writeFileSync(path.join(assets, 'vmlinuz'), blob);
  writeFileSync(path.join(assets, 'ipxe', 'ipxe.efi'), 'EFI');
  writeFileSync(path.join(dir, 'secret'), 'outside');
  symlinkSync(path.join(dir, 'secret'), path.join(assets, 'escape'));
  const stored = new Map<string, BootInstruction>([
    ['52:54:00:00:00:01', { script: 'inspect', host: 'h1', cmdline: '', localDiskMethod: 'exit' }],
    // an inspect instruction whose attempt is over: no nonce to hand out
    ['52:54:00:00:00:04', { script: 'inspect', host: 'gone', cmdline: '', localDiskMethod: 'exit' }],
  ]);
  const { log } = memoryLogger('warn');
  const metrics = new Metrics();
  const app = createHttpApp({
    bases: new HttpBases('http://10.0.0.1:8080', 'http://[fd00::1]:8080'),
    rateLimit: { perSecond: 1000, burst: 1000 },
    assetsDir: assets,
    tftpRoot: path.join(assets, 'ipxe'),
    templates: loadTemplates(path.join(repoRoot, 'boot-scripts')),
    log,
    metrics,
    storedInstruction: async (mac) => stored.get(mac),
    configuredInstruction: (mac) =>
      mac === '52:54:00:00:00:02' ? { script: 'local-disk', cmdline: '', localDiskMethod: 'http404' } : undefined,
    unknownHosts: { script: 'exit', cmdline: '', localDiskMethod: 'exit' },
    health: async () => ({ probe: 1 }),
    claimUrl: async (host) => (host === 'h1' ? 'http://10.0.0.1:8080/api/v1/boot/default/h1/N0NCE' : undefined),
  });
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise((r) => server.once('listening', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const get = (p: string, headers: Record<string, string> = {}) => fetch(base + p, { headers });

  const entry = await get('/boot.ipxe');
  t.equal(entry.status, 200);
  t.match(await entry.text(), /chain --autofree http:\/\/10\.0\.0\.1:8080\/boot\/host\.ipxe\?mac=/);

  const inspect = await (
    await get('/boot/host.ipxe?mac=52-54-00-00-00-01&uuid=abc&arch=x86_64&platform=pcbios&serial=S1')
  ).text();
  t.match(
    inspect,
    /^chain --autofree http:\/\/10\.0\.0\.1:8080\/api\/v1\/boot\/default\/h1\/N0NCE\?mac=\$\{netX\/mac\}$/m,
  );
  t.notMatch(
    inspect,
    /beskar7\.token=|^kernel/m,
    'the script by MAC carries the nonce only, no token and no kernel line',
  );
  const over = await (await get('/boot/host.ipxe?mac=52:54:00:00:00:04')).text();
  t.match(over, /set beskar7-leave 1\nexit 1/, 'an attempt that is over sends the machine away');
  const chained = await (await get('/beskar7-inspector/boot')).text();
  t.match(
    chained,
    /^kernel http:\/\/10\.0\.0\.1:8080\/assets\/inspector\/vmlinuz initrd=initrd \$\{beskar7-params\}$/m,
  );
  t.equal((await get('/boot/host.ipxe?mac=52:54:00:00:00:02')).status, 404, 'local disk by HTTP 404');
  t.match(await (await get('/boot/host.ipxe?mac=52:54:00:00:00:03')).text(), /exit 1/, 'unknown host exits');
  const bad = await get('/boot/host.ipxe?mac=zz');
  t.equal(bad.status, 400);
  t.match(await bad.text(), /mac: must be a MAC address/);
  const counted = await metrics.registry.metrics();
  t.match(counted, /beskar7_ipxe_scripts_total\{script="http404"\} 1/);
  t.match(counted, /beskar7_ipxe_scripts_total\{script="exit"\} 2/, 'the unknown host and the finished attempt');

  const full = await get('/assets/vmlinuz');
  t.equal(full.status, 200);
  t.equal(full.headers.get('content-length'), String(blob.length));
  t.ok(Buffer.from(await full.arrayBuffer()).equals(blob));
  const etag = full.headers.get('etag')!;
  t.match(etag, /^"[0-9a-f]+-[0-9a-f]+"$/);
  t.equal((await get('/assets/vmlinuz', { 'If-None-Match': etag })).status, 304);
  const part = await get('/assets/vmlinuz', { Range: 'bytes=1000-1999' });
  t.equal(part.status, 206);
  t.equal(part.headers.get('content-range'), `bytes 1000-1999/${blob.length}`);
  t.ok(Buffer.from(await part.arrayBuffer()).equals(blob.subarray(1000, 2000)));
  t.equal((await get('/assets/vmlinuz', { Range: 'bytes=999999-' })).status, 416);
  // a HEAD used to end in ERR_HTTP_HEADERS_SENT inside @hono/node-server, printed to stderr, and the connection
  // destroyed (a keep-alive client's next request on it failed when the destroy came first)
  const printed = t.capture(console, 'error', console.error);
  const head = await fetch(`${base}/assets/vmlinuz`, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.headers.get('content-length'), String(blob.length));
  t.equal(head.headers.get('accept-ranges'), 'bytes');
  t.equal((await fetch(`${base}/assets/vmlinuz`, { method: 'HEAD', headers: { Range: 'bytes=10-19' } })).status, 206);
  t.same(
    printed().map((c) => String(c.args[0])),
    [],
    'HEAD answered without an error in the HTTP server',
  );
  printed.restore();
  t.equal(await (await get('/ipxe/ipxe.efi')).text(), 'EFI', 'iPXE binaries over HTTP for UEFI HTTP boot');

  // raw paths: fetch() would normalise the dot segments away before they reach the server
  const raw = (p: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) =>
      request({ host: '127.0.0.1', port: new URL(base).port, path: p }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
        .on('error', reject)
        .end(),
    );
  for (const [p, status] of [
    ['/assets/escape', 403],
    ['/assets/..%2fsecret', 403],
    ['/assets/a%00b', 403],
    ['/assets/sub%5c..%5csecret', 403],
    ['/assets/../secret', 404],
    ['/assets/%2e%2e/secret', 404],
    ['/assets//etc/passwd', 404],
    ['/assets/%2fetc%2fpasswd', 404],
  ] as const) {
    const r = await raw(p);
    t.equal(r.status, status, `${p} refused with ${status}`);
    t.notMatch(r.body, /outside/, `${p} does not leak the file`);
  }
  t.equal((await get('/assets/nothing')).status, 404);
  t.match(await (await get('/healthz')).json(), { status: 'ok', probe: 1 });
  t.match(await metrics.registry.metrics(), /beskar7_ipxe_scripts_total\{script="inspect"\} 1/);
  t.equal((await get('/metrics')).status, 404, 'metrics are on the management plane, not mounted here');
});
