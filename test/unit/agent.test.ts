// The bundled inspection agent's callbacks (assets/inspector-src/agent.sh `call`), run in busybox sh with its
// wget against a loopback server: a refusal (4xx) ends the call, a 5xx is asked again past the five tries that
// an etcd outage of 30 s outlasted, and the run's timeout bounds it.
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { repoRoot } from '../../src/paths.js';

const agent = path.join(repoRoot, 'assets/inspector-src/agent.sh');

/** A server answering the agent's calls with `statuses` in turn (the last one from then on), counting them. */
async function appliance(t: Test, statuses: number[]) {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${req.headers.authorization} ${body}`);
      const status = statuses[Math.min(seen.length, statuses.length) - 1] as number;
      res.writeHead(status, status === 503 ? { 'Retry-After': '2' } : {}).end(status < 300 ? '{}' : 'no\n');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { api: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

/**
 * `call provisioned` in busybox sh with the agent's functions: its exit code and what it logged. The agent keeps
 * its answers in /tmp, as in its initramfs: here a private one (a mount namespace with its own tmpfs).
 */
function callProvisioned(api: string, timeoutS: number): Promise<{ rc: number; out: string }> {
  const script = `mount -t tmpfs none /tmp && . ${agent} && API=${api} NS=default HOST=h1 TOKEN=tok TIMEOUT=${timeoutS} &&
call provisioned '{"status":"provisioned"}'`;
  return new Promise((r) =>
    execFile('unshare', ['--mount', 'busybox', 'sh', '-c', script], (e, out) => r({ rc: e ? Number(e.code) : 0, out })),
  );
}

t.test('a 5xx is asked again past five tries, until the answer comes', async (t) => {
  const a = await appliance(t, [503, 503, 503, 503, 503, 200]);
  const r = await callProvisioned(a.api, 1800);
  t.equal(r.rc, 0, 'the sixth try succeeded');
  t.equal(a.seen.length, 6);
  t.same(new Set(a.seen), new Set(['POST /api/v1/provisioned/default/h1 Bearer tok {"status":"provisioned"}']));
});

t.test("a 4xx is the appliance's word: one try", async (t) => {
  const a = await appliance(t, [409]);
  const r = await callProvisioned(a.api, 1800);
  t.equal(r.rc, 1);
  t.equal(a.seen.length, 1);
  t.match(r.out, /provisioned refused: .*409/);
});

t.test("the run's timeout bounds the tries", async (t) => {
  const a = await appliance(t, [503]);
  const r = await callProvisioned(a.api, 2);
  t.equal(r.rc, 1);
  // paused 1 s, then 2 s: past the 2 s budget after the third try
  t.equal(a.seen.length, 3);
  t.match(r.out, /provisioned: no answer in 2 s/);
});
