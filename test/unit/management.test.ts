import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Agent, fetch as undiciFetch } from 'undici';
import { ADMIN, freePort, inProcess, until } from '../helpers/appliance.js';
import { HOSTS, hostManifests, SECRETS } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';

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
