import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Agent, fetch as undiciFetch } from 'undici';
import { ADMIN, freePort, inProcess } from '../helpers/appliance.js';
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

  t.equal((await get(`${mgmt}/api/v1/hosts`, ADMIN)).status, 200, 'admin API over HTTPS');
  t.match(await (await get(`${mgmt}/ui`)).text(), /<title>Beskar7/, 'dashboard there');
  t.match(await (await get(`${mgmt}/metrics`, ADMIN)).text(), /beskar7_/, 'metrics there, with the token');
  t.equal((await get(`${mgmt}/metrics`)).status, 401, 'and not without it: they tell who is inspecting when');
  for (const p of ['/api/v1/hosts', '/ui', '/metrics', '/api/v1/stream']) {
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
