import { Hono } from 'hono';
import t from 'tap';
import { Agent, fetch as undiciFetch } from 'undici';
import { RateLimiter, rateLimit, take, unmappedAddress } from '../../src/boot/rate-limit.js';
import { ADMIN, inProcess, metricsOf } from '../helpers/appliance.js';

t.test('token bucket: a burst, then the sustained rate', async (t) => {
  const r = { perSecond: 2, burst: 3 };
  let b: Parameters<typeof take>[0];
  const oks: boolean[] = [];
  for (let i = 0; i < 5; i++) {
    const x = take(b, 0, r);
    b = x.bucket;
    oks.push(x.ok);
  }
  t.same(oks, [true, true, true, false, false], 'the burst, then refused');
  t.equal(take(b, 0, r).retryAfterS, 1);
  t.ok(take(b, 500, r).ok, 'one more after half a second at 2/s');
  t.same(take(undefined, 0, r).bucket.tokens, 2, 'a new address starts with a full bucket');
  // a quarter of a token after a second at 0.25/s: three more seconds for a whole one
  const slow = { perSecond: 0.25, burst: 1 };
  const empty = take(undefined, 0, slow).bucket;
  t.same(take(empty, 1000, slow).retryAfterS, 3, 'Retry-After: the time until a whole token');
});

t.test('the client address: IPv4-mapped IPv6 as IPv4, anything else as it is', async (t) => {
  t.equal(unmappedAddress('::ffff:10.0.0.1'), '10.0.0.1');
  for (const a of ['::1', '10.0.0.1', 'fe80::1', '::ffff:ab:cd', 'fe80::ffff:10.0.0.1'])
    t.equal(unmappedAddress(a), a, a);
});

t.test('without a socket (app.request) every request is one address; the refusal says why', async (t) => {
  const app = new Hono();
  let limited = 0;
  app.use(
    '*',
    rateLimit({ perSecond: 0.001, burst: 1 }, () => limited++),
  );
  app.get('/', (c) => c.text('ok'));
  t.equal((await app.request('/')).status, 200);
  const r = await app.request('/');
  t.same([r.status, await r.json(), limited], [429, { error: 'too many requests' }, 1]);
});

t.test('unauthenticated routes are limited per address; the admin API is not', async (t) => {
  const a = await inProcess(t, { http: { rateLimit: { perSecond: 1, burst: 5 } } });
  const codes: number[] = [];
  for (let i = 0; i < 8; i++) codes.push((await fetch(`${a.base}/boot.ipxe`)).status);
  t.same(codes, [200, 200, 200, 200, 200, 429, 429, 429]);
  const limited = await fetch(`${a.base}/api/v1/inspection/default/h1`, { method: 'POST', body: '{}' });
  t.equal(limited.status, 429, 'one budget across the boot scripts and report intake');
  t.ok(Number(limited.headers.get('retry-after')) >= 1, 'with Retry-After');
  t.same(await limited.json(), { error: 'too many requests' });
  const admin = await fetch(`${a.base}/api/v1/timeline`, { headers: { Authorization: `Bearer ${ADMIN}` } });
  t.equal(admin.status, 200, 'the admin API is not limited');
  t.match(await metricsOf(a.base), /beskar7_http_rate_limited_total 4/);
  // another address has a budget of its own
  const other = new Agent({ localAddress: '127.0.0.2' });
  t.equal((await undiciFetch(`${a.base}/boot.ipxe`, { dispatcher: other })).status, 200, 'another address: its own');
  await other.close();
});

t.test('a malformed or non-ASCII admin token gets 401, not a 500', async (t) => {
  const a = await inProcess(t);
  const sameLength = `é${ADMIN.slice(1)}`;
  for (const tok of [sameLength, '', ' ', 'x'.repeat(5000)]) {
    const r = await a.api('GET', '/timeline', undefined, tok);
    t.same([r.status, r.json], [401, { error: 'unauthorized' }], `token ${JSON.stringify(tok.slice(0, 20))}`);
  }
});

t.test('spreading over many addresses does not multiply the budget: one bucket for them all', async (t) => {
  const now = 0;
  const l = new RateLimiter({ perSecond: 1, burst: 5, global: { perSecond: 10, burst: 50 } }, 10_000, () => now);
  let admitted = 0;
  for (let a = 0; a < 64; a++) for (let i = 0; i < 6; i++) if (l.admit(`10.0.0.${a}`).ok) admitted++;
  t.equal(admitted, 50, '64 addresses with a burst of 5 each get the global 50, not 320');
  t.notOk(l.admit('10.0.1.1').ok, 'a new address too, while the global budget is spent');
});

t.test("a request the global budget refuses leaves the address's own tokens as they were", async (t) => {
  let now = 0;
  const l = new RateLimiter({ perSecond: 0.001, burst: 2, global: { perSecond: 1, burst: 1 } }, 10_000, () => now);
  t.ok(l.admit('a').ok, 'the first: one of its own two, and the global one');
  t.notOk(l.admit('a').ok, 'the second: the global budget is spent');
  now += 1000;
  t.ok(l.admit('a').ok, 'a second later the global one is back, and so is the token the refusal did not take');
});

t.test('an address evicted from a full table does not come back with a fresh burst', async (t) => {
  let now = 0;
  const l = new RateLimiter({ perSecond: 1, burst: 5 }, 3, () => now);
  const burstOf = (key: string) => {
    let n = 0;
    while (l.admit(key).ok) n++;
    return n;
  };
  t.equal(burstOf('a'), 5, 'a new address gets the burst while the table has room');
  for (const k of ['b', 'c', 'd']) burstOf(k);
  now += 10;
  t.equal(burstOf('a'), 1, 'evicted, then back while the table is full: one second of the sustained rate');
});
