import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { Agent, fetch as undiciFetch } from 'undici';
import { ADMIN, freePort, inProcess, READ_ONLY, until } from '../helpers/appliance.js';
import { HOSTS, hostManifests, SECRETS } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';

const CLUSTERS = '/apis/infrastructure.cluster.x-k8s.io/v1beta1/namespaces/default/beskar7clusters';
const cluster = (name: string) => ({
  apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
  kind: 'Beskar7Cluster',
  metadata: { name },
  spec: { controlPlaneEndpoint: { host: '192.0.2.1', port: 6443 } },
});

t.test('management plane on its own listener with TLS: the boot plane keeps only what machines need', async (t) => {
  const dir = tempDir(t);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2']
      .concat(['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'])
      .concat(['-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')]),
    { stdio: 'ignore' },
  );
  const port = await freePort();
  const tls = { certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem') };
  const a = await inProcess(t, { api: { adminToken: ADMIN, address: '127.0.0.1', port, tls } });
  const mgmt = `https://127.0.0.1:${port}`;
  const trusted = new Agent({ connect: { ca: readFileSync(tls.certFile) } });
  t.teardown(() => trusted.close());
  const get = (url: string, token?: string) =>
    undiciFetch(url, { dispatcher: trusted, headers: token ? { Authorization: `Bearer ${token}` } : {} });

  t.equal((await get(`${mgmt}/api/v1/timeline`, ADMIN)).status, 200, 'admin API over HTTPS');
  t.match(await (await get(`${mgmt}/ui`)).text(), /<title>Beskar7/, 'dashboard there');
  t.match(await (await get(`${mgmt}/metrics`, ADMIN)).text(), /beskar7_/, 'metrics there, with the token');
  t.equal((await get(`${mgmt}/metrics`)).status, 401, 'and not without it: they tell who is inspecting when');
  for (const p of ['/api/v1/timeline', '/ui', '/metrics', '/api/v1/stream']) {
    const r = await fetch(`${a.base}${p}`, { headers: { Authorization: `Bearer ${ADMIN}` } });
    t.equal(r.status, 404, `boot plane: no ${p}`);
  }
  t.equal((await fetch(`${a.base}/boot.ipxe`)).status, 200, 'boot plane: scripts');
  const intake = await fetch(`${a.base}/api/v1/inspection/default/h1`, { method: 'POST', body: '{}' });
  t.equal(intake.status, 401, 'boot plane: report intake stays where the inspector posts');
  t.equal(
    (await get(`${mgmt}/api/v1/stream?token=${ADMIN}`)).status,
    401,
    'no token in a URL, not even for the stream',
  );
  const stream = await get(`${mgmt}/api/v1/stream`, ADMIN);
  t.equal(stream.headers.get('content-type'), 'text/event-stream', 'the stream takes the header');
  await stream.body?.cancel();
});

t.test('api.tls needs api.port', async (t) => {
  await t.rejects(inProcess(t, { api: { adminToken: ADMIN, tls: { certFile: 'c', keyFile: 'k' } } }), {
    message: /api\.tls: TLS is for the management listener: set api\.port/,
  });
});

t.test('bounds: objects of each kind (api.maxObjects), live streams at once (api.maxStreams)', async (t) => {
  const a = await inProcess(t, { api: { adminToken: ADMIN, maxObjects: 2, maxStreams: 2 } });
  const { secret, host } = hostManifests({
    name: 'q',
    spec: { redfish: { address: 'http://127.0.0.1:9', username: 'u', password: 'p', allowPlainHttp: true } },
  });
  t.equal((await a.kube('POST', SECRETS, secret)).status, 201);
  const add = (name: string) => a.kube('POST', HOSTS, { ...host, metadata: { name } });
  t.equal((await add('q1')).status, 201);
  t.equal((await add('q2')).status, 201);
  const over = await add('q3');
  t.match(over, {
    status: 403,
    json: { reason: 'Forbidden', message: 'hosts: 2 stored, the most this appliance keeps (api.maxObjects 2)' },
  });
  t.equal((await a.kube('DELETE', `${HOSTS}/q2`)).status, 200);
  t.equal((await add('q3')).status, 201, 'room again once one is deleted');

  const open = () => fetch(`${a.base}/api/v1/stream`, { headers: { Authorization: `Bearer ${ADMIN}` } });
  const [s1, s2] = [await open(), await open()];
  t.same([s1.status, s2.status], [200, 200]);
  const third = await open();
  t.same([third.status, third.headers.get('retry-after')], [503, '5'], 'a third stream waits for one to close');
  await s1.body?.cancel();
  const again = await until('a stream slot is free', async () => {
    const r = await open();
    if (r.status === 200) return r;
    await r.body?.cancel();
    return undefined;
  });
  t.equal(again.status, 200);
  await Promise.all([s2.body?.cancel(), again.body?.cancel()]);
});

t.test(
  'live streams: a token holds at most api.maxStreamsPerToken, watches and the event stream together',
  async (t) => {
    const a = await inProcess(t, {
      api: { adminToken: ADMIN, readOnlyToken: READ_ONLY, maxStreams: 3, maxStreamsPerToken: 2 },
    });
    const sse = (token: string) => fetch(`${a.base}/api/v1/stream`, { headers: { Authorization: `Bearer ${token}` } });
    const watch = (token: string) =>
      fetch(`${a.base}${CLUSTERS}?watch=true`, { headers: { Authorization: `Bearer ${token}` } });
    const held = [await sse(ADMIN), await watch(ADMIN)];
    t.same(
      held.map((r) => r.status),
      [200, 200],
    );
    const third = await sse(ADMIN);
    t.match(
      { status: third.status, body: await third.json() },
      { status: 503, body: { error: /with the admin token \(api\.maxStreamsPerToken 2\)/ } },
      "the admin token's third stream is refused",
    );
    const ro = await watch(READ_ONLY);
    t.equal(ro.status, 200, 'the read-only token still gets one');
    held.push(ro);
    const over = await watch(READ_ONLY);
    t.match(
      { status: over.status, body: await over.json() },
      { status: 503, body: { reason: 'ServiceUnavailable', message: /api\.maxStreams 3/ } },
      'and the total holds',
    );
    await Promise.all(held.map((r) => r.body?.cancel()));
  },
);

/** An HTTP GET on a raw socket that, once the answer's headers are in, never reads again. */
async function stalledReader(t: Test, base: string, p: string): Promise<net.Socket> {
  const u = new URL(base);
  const s = net.connect(Number(u.port), u.hostname);
  t.teardown(() => s.destroy());
  s.write(`GET ${p} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${ADMIN}\r\n\r\n`);
  const [head] = (await once(s, 'data')) as [Buffer];
  t.match(head.toString(), /^HTTP\/1\.1 200/, `${p}: the stalled reader's stream is open`);
  s.pause();
  return s;
}

t.test('a live-stream reader that stops reading is dropped; one that reads gets every entry', async (t) => {
  const a = await inProcess(t, { api: { adminToken: ADMIN, maxStreams: 2, maxStreamsPerToken: 2 } });
  await stalledReader(t, a.base, '/api/v1/stream');
  const fast = await fetch(`${a.base}/api/v1/stream`, { headers: { Authorization: `Bearer ${ADMIN}` } });
  const reader = (fast.body as ReadableStream<Uint8Array>).getReader();
  let seen = '';
  const reading = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      seen += Buffer.from(value).toString();
    }
  })();
  // a boot storm's worth of timeline entries, until the stalled stream's slot is free again
  let sent = 0;
  const slot = await until('the stalled reader is dropped', async () => {
    for (let i = 0; i < 500; i++, sent++)
      a.app.timeline.add('52:54:00:00:00:01', 'http', `GET /x/${sent} ${'y'.repeat(150)}`);
    await new Promise((r) => setImmediate(r));
    const r = await fetch(`${a.base}/api/v1/stream`, { headers: { Authorization: `Bearer ${ADMIN}` } });
    if (r.status === 200) return r;
    await r.body?.cancel();
    return undefined;
  });
  t.ok(sent > 1000, `dropped after ${sent} entries, more than the 1000 a stream may have waiting`);
  a.app.timeline.add('52:54:00:00:00:01', 'http', 'GET /the-last-one');
  await until('the reading stream has the last entry', async () => (seen.includes('/the-last-one') ? true : undefined));
  t.ok(seen.includes(`GET /x/${sent - 1} `), 'the reading stream kept up: it has every entry up to the last');
  await Promise.all([slot.body?.cancel(), reader.cancel()]);
  await reading;
});

t.test('a watch whose reader stops reading is dropped past 8 MiB unread', async (t) => {
  const a = await inProcess(t, { api: { adminToken: ADMIN, maxStreams: 1, maxStreamsPerToken: 1 } });
  t.equal((await a.kube('POST', CLUSTERS, cluster('big'))).status, 201);
  await stalledReader(t, a.base, `${CLUSTERS}?watch=true`);
  const note = 'z'.repeat(256 * 1024);
  let updates = 0;
  await until(
    'the stalled watch is dropped',
    async () => {
      const r = await a.kube(
        'PATCH',
        `${CLUSTERS}/big`,
        { metadata: { annotations: { note: `${updates++}${note}` } } },
        ADMIN,
        {
          'Content-Type': 'application/merge-patch+json',
        },
      );
      t.equal(r.status, 200);
      const w = await fetch(`${a.base}${CLUSTERS}?watch=true`, { headers: { Authorization: `Bearer ${ADMIN}` } });
      await w.body?.cancel();
      return w.status === 200 ? true : undefined;
    },
    60_000,
  );
  t.ok(updates * 256 * 1024 > 8 * 1024 * 1024, `dropped after ${updates} updates of 256 KiB: more than 8 MiB unread`);
});

t.test(
  'stopping ends open watches and event streams: a dashboard left open does not hold the shutdown',
  // without the fix stop() waits for ever: the test's timeout is the failure
  { timeout: 20_000 },
  async (t) => {
    const a = await inProcess(t);
    const h = { headers: { Authorization: `Bearer ${ADMIN}` } };
    const watch = await fetch(`${a.base}${HOSTS}?watch=1`, h);
    const stream = await fetch(`${a.base}/api/v1/stream`, h);
    t.same([watch.status, stream.status], [200, 200]);
    // each body read to its end, however it ends (closed, or cut)
    const drained = async (r: Response) => {
      const reader = (r.body as ReadableStream<Uint8Array>).getReader();
      try {
        while (!(await reader.read()).done);
      } catch {}
    };
    await t.resolves(a.stop(), 'stop returns');
    await t.resolves(drained(watch), 'the watch was closed');
    await t.resolves(drained(stream), 'the event stream was closed');
  },
);
