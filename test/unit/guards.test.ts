// The guards security claims rest on, each tested directly: path resolution, attempt credentials, secret
// comparison. A regression in any of them is caught here, not only through a whole appliance.
import { mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { resolveInside } from '../../src/domain/safe-path.js';
import { LeaseClock } from '../../src/store/leader.js';
import { adminToken, newAttemptId, newSecretKey, SecretBox, sameSecret } from '../../src/store/secrets.js';
import { tempDir } from '../helpers/tmp.js';

t.test('resolveInside: files inside the root only, each refusal for its reason', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'root');
  mkdirSync(path.join(root, 'ipxe'), { recursive: true });
  writeFileSync(path.join(root, 'ipxe', 'undionly.kpxe'), 'x'.repeat(10));
  writeFileSync(path.join(dir, 'secret.key'), 'k');
  symlinkSync(path.join(dir, 'secret.key'), path.join(root, 'escape'));
  symlinkSync(path.join(root, 'ipxe', 'undionly.kpxe'), path.join(root, 'inside'));
  mkdirSync(path.join(dir, 'root-sibling'));
  writeFileSync(path.join(dir, 'root-sibling', 'f'), 'f');

  t.match(resolveInside(root, 'ipxe/undionly.kpxe'), { ok: true, size: 10 });
  t.match(resolveInside(root, '/ipxe/undionly.kpxe'), { ok: true }, 'a leading slash is the root');
  t.match(resolveInside(root, '///ipxe/undionly.kpxe'), { ok: true }, 'and so are several');
  t.same(resolveInside(root, '//'), { ok: false, status: 403, reason: 'illegal file name' }, 'slashes only: no name');
  t.match(resolveInside(root, 'inside'), { ok: true }, 'a symlink that stays inside');
  const refused: [string, number, string][] = [
    ['', 403, 'illegal file name'],
    ['ipxe/\0x', 403, 'illegal file name'],
    ['ipxe\\undionly.kpxe', 403, 'illegal file name'],
    ['../secret.key', 403, 'path leaves the root'],
    // `..` is refused by name before any file is looked at, even where it would lead back inside
    ['ipxe/../ipxe/undionly.kpxe', 403, 'path leaves the root'],
    ['escape', 403, 'path leaves the root'],
    // a sibling whose name starts with the root's must not pass a prefix check
    ['../root-sibling/f', 403, 'path leaves the root'],
    ['ipxe', 404, 'not a regular file'],
    ['nope', 404, 'no such file'],
  ];
  for (const [name, status, reason] of refused)
    t.same(resolveInside(root, name), { ok: false, status, reason }, JSON.stringify(name));
});

t.test('attemptSecrets: nonce and token differ, and each is bound to its key, host and attempt', async (t) => {
  const box = new SecretBox(newSecretKey());
  const a = box.attemptSecrets('h', 'a1');
  t.match(a, { nonce: /^[A-Za-z0-9_-]{43}$/, token: /^[A-Za-z0-9_-]{43}$/ }, "the contract's token form");
  t.not(a.nonce, a.token, 'the nonce (served by MAC) is not the token');
  t.same(box.attemptSecrets('h', 'a1'), a, 'derived again after a restart: the same');
  // a known answer: a release that derived them otherwise would invalidate every live attempt on upgrade
  t.same(new SecretBox(Buffer.alloc(32, 7)).attemptSecrets('h', 'a1'), {
    nonce: 'A5bclhDeCdcGqofWISfl5U7vmiIcDl072dN18fLkJ2k',
    token: 'cESklHLYn6_I2y1gaEBO5el2MBnh5oKBssCsYY4S0sA',
  });
  for (const [what, other] of [
    ['another attempt', box.attemptSecrets('h', 'a2')],
    ['another host', box.attemptSecrets('h2', 'a1')],
    ['another appliance key', new SecretBox(newSecretKey()).attemptSecrets('h', 'a1')],
    // host and attempt are separated: h/1 + a is not h + 1/a
    ['a shifted separator', box.attemptSecrets('h/a', '1')],
  ] as const) {
    t.not(other.nonce, a.nonce, `${what}: another nonce`);
    t.not(other.token, a.token, `${what}: another token`);
  }
  t.throws(() => new SecretBox(Buffer.alloc(16)), /32 bytes/, 'a short key is refused');
});

t.test('tokens: configured, else generated once into the data dir (group-readable), else the shared one', async (t) => {
  const dir = tempDir(t);
  t.same(adminToken(dir, 'configured-token-0123456789'), { token: 'configured-token-0123456789' });
  const made = adminToken(dir);
  t.match(made, { token: /^[0-9a-f]{48}$/, file: path.join(dir, 'admin-token') });
  t.equal(statSync(path.join(dir, 'admin-token')).mode & 0o777, 0o640);
  t.same(adminToken(dir), made, 'the same on the next start');
  t.not(adminToken(dir, undefined, undefined, 'readonly-token').token, made.token, 'another name, another token');
  const shared = adminToken(path.join(dir, 'new', 'data'), undefined, Buffer.from('shared-by-etcd-0123456789\n'));
  t.equal(shared.token, 'shared-by-etcd-0123456789', "etcd's token is written where the CLI reads it, trimmed");
  t.match(newAttemptId(), /^[0-9a-f]{32}$/);
  t.not(newAttemptId(), newAttemptId());
});

t.test('sameSecret: equal strings only; a missing, shorter or longer one is simply wrong', async (t) => {
  t.ok(sameSecret('abc', 'abc'));
  for (const given of [undefined, '', 'ab', 'abcd', 'abd', 'ABC']) t.notOk(sameSecret(given, 'abc'), `${given}`);
});

t.test('seal and open: a round trip, and a tampered ciphertext does not open', async (t) => {
  const box = new SecretBox(newSecretKey());
  const sealed = box.seal('bmc-password');
  t.match(sealed, /^v1:/);
  t.not(box.seal('bmc-password'), sealed, 'a fresh IV each time');
  t.equal(box.open(sealed), 'bmc-password');
  const raw = Buffer.from(sealed.slice(3), 'base64');
  raw[raw.length - 1] = (raw[raw.length - 1] as number) ^ 1;
  t.throws(() => box.open(`v1:${raw.toString('base64')}`), 'authenticated: a flipped bit is refused');
  t.throws(() => new SecretBox(newSecretKey()).open(sealed), 'another key cannot open it');
});

t.test('a lease is judged from when its keep-alive was sent, on a monotonic clock', async (t) => {
  let now = 0;
  const c = new LeaseClock(() => now);
  c.fired();
  now = 900; // the answer took 900 ms: etcd refreshed the lease somewhere in between
  c.answered(3);
  now = 2700;
  t.notOk(c.expiring(), 'alive at 2.7 s');
  now = 2760;
  t.ok(c.expiring(), 'stepping down by 2.76 s: sent at 0 + 3 s TTL, less one check, not 0.9 + 3 s');
  // answers match the oldest outstanding keep-alive
  c.fired();
  now = 2800;
  c.fired();
  now = 3000;
  c.answered(3);
  t.notOk(c.expiring(), 'the first of two outstanding (sent at 2.76 s) lives until 5.76 s');
  now = 5520;
  t.ok(c.expiring());
  c.restarted();
  c.answered(3);
  t.notOk(c.expiring(), 'after a new stream an answer counts from now: nothing older is waited for');
});
