import t from 'tap';
import { RateLimiter, take } from '../../src/boot/rate-limit.js';
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
});

t.test('unauthenticated routes are limited per address; the admin API is not', async (t) => {
  const a = await inProcess(t, { http: { rateLimit: { perSecond: 1, burst: 5 } } });
  const codes: number[] = [];
  for (let i = 0; i < 8; i++) codes.push((await fetch(`${a.base}/boot.ipxe`)).status);
  t.same(codes, [200, 200, 200, 200, 200, 429, 429, 429]);
  const limited = await fetch(`${a.base}/api/v1/inspection/default/h1`, { method: 'POST', body: '{}' });
  t.equal(limited.status, 429, 'one budget across the boot scripts and report intake');
  t.ok(Number(limited.headers.get('retry-after')) >= 1, 'with Retry-After');
  const admin = await fetch(`${a.base}/api/v1/timeline`, { headers: { Authorization: `Bearer ${ADMIN}` } });
  t.equal(admin.status, 200, 'the admin API is not limited');
  t.match(await metricsOf(a.base), /beskar7_http_rate_limited_total 4/);
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
