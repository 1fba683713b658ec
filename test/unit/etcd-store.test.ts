// The store on a real etcd (Debian's etcd-server on loopback): two appliances' stores on one cluster, racing
// transactions, the watch, etcd going away and coming back, leader election with its fence, backup and restore.
import { execFileSync, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { repoRoot } from '../../src/paths.js';
import type { Guard } from '../../src/store/backend.js';
import { restoreBackup, takeBackup } from '../../src/store/backup.js';
import { EtcdBackend } from '../../src/store/etcd-backend.js';
import { Leadership } from '../../src/store/leader.js';
import { Store } from '../../src/store/store.js';
import { until } from '../helpers/appliance.js';
import { startEtcd, testCertificates } from '../helpers/etcd.js';
import { tempDir } from '../helpers/tmp.js';
import { stopProcess } from '../lab/netns.js';

const log = createLogger(process.env.TEST_LOG ?? 'silent');
const wait = (check: () => boolean | Promise<boolean>, ms: number) =>
  until('the condition', async () => ((await check()) ? true : undefined), ms);
const lease = (ip: string, mac: string, n = 0) => ({ ip, mac, expiresAt: n, boundAt: 0 });

t.test('etcd', async (t) => {
  const etcd = await startEtcd({ base: 24310 });
  t.teardown(() => etcd.stop());
  let prefixes = 0;
  const open = async (prefix: string, timeoutMs = 1000) => {
    const b = new EtcdBackend({ endpoints: etcd.endpoints, prefix, timeoutMs });
    const s = await Store.over(b);
    t.teardown(() => s.close());
    return s;
  };
  const pair = async () => {
    const prefix = `/t${prefixes++}/`;
    return [await open(prefix), await open(prefix)] as const;
  };
  /** Two stores on one prefix, b through a link to etcd that the test cuts. */
  const pairOverLink = async () => {
    const prefix = `/t${prefixes++}/`;
    const a = await open(prefix);
    const link = await cuttableLink(Number(new URL(etcd.endpoints[0] as string).port));
    t.teardown(() => link.close());
    const b = await Store.over(new EtcdBackend({ endpoints: [link.url], prefix, timeoutMs: 1000 }));
    t.teardown(() => b.close());
    return { a, b, link };
  };

  t.test("one appliance's write reaches the other's cache through the watch", async (t) => {
    const [a, b] = await pair();
    await a.batch([a.leases.put('10.0.0.5', lease('10.0.0.5', '52:54:00:00:00:05'))]);
    await wait(() => b.leases.snapshot().length === 1, 5000);
    t.same(await b.leases.get('10.0.0.5'), lease('10.0.0.5', '52:54:00:00:00:05'));
    await b.batch([b.leases.del('10.0.0.5')]);
    await wait(() => a.leases.snapshot().length === 0, 5000);
    t.equal(await a.leases.get('10.0.0.5'), undefined, 'a delete travels too');
  });

  t.test('a watch broken while it caught up resumes at the last change it delivered, and misses none', async (t) => {
    const { a, b, link } = await pairOverLink();
    await a.batch([a.leases.put('first', lease('first', '52:54:00:00:00:01'))]);
    await wait(() => b.leases.snapshot().length === 1, 5000);
    const announced = new Set<string>();
    b.on('record', (c: { key: string }) => announced.add(c.key));
    link.cut();
    // 400 revisions while b is away: its catch-up is one answer of them after etcd's `created`
    for (let i = 0; i < 400; i++) await a.batch([a.leases.put(`k${i}`, lease(`k${i}`, '52:54:00:00:00:02', i))]);
    // b comes back, and its link breaks again after 4 KiB from etcd: `created` got through, the catch-up did not
    await link.restore(4096);
    link.restore();
    await a.batch([a.leases.put('last', lease('last', '52:54:00:00:00:03'))]);
    await wait(() => b.leases.snapshot().some((l) => l.ip === 'last'), 30_000);
    t.equal(b.leases.snapshot().length, 402, 'every change made while b was away is in its cache');
    t.equal(announced.size, 401, 'and each was announced to its watches');
  });

  t.test(
    'a watch whose history was compacted while it was away catches up from a snapshot and announces it',
    async (t) => {
      const { a, b, link } = await pairOverLink();
      await a.batch([
        a.leases.put('gone', lease('gone', '52:54:00:00:00:01')),
        a.leases.put('kept', lease('kept', '52:54:00:00:00:02')),
      ]);
      await wait(() => b.leases.snapshot().length === 2, 5000);
      const announced: string[] = [];
      b.on('record', (c: { key: string; value?: unknown }) =>
        announced.push(`${c.key} ${c.value ? 'put' : 'deleted'}`),
      );
      link.cut();
      await a.batch([a.leases.del('gone'), a.leases.put('new', lease('new', '52:54:00:00:00:03'))]);
      // compacted at the revision of the delete: a watch resumed there would miss it, tombstone and all
      const { rev } = await (a.backend as EtcdBackend).snapshot();
      await (a.backend as EtcdBackend).client.kv.compact({ revision: String(rev), physical: true });
      await link.restore();
      await wait(() => announced.length === 2, 30_000);
      t.same(
        announced.sort(),
        ['gone deleted', 'new put'],
        'the delete and the put it missed, announced as the watch would have',
      );
      t.same(
        b.leases
          .snapshot()
          .map((l) => l.ip)
          .sort(),
        ['kept', 'new'],
      );
    },
  );

  t.test(
    'a watch resumed where a compaction cut history is told so, not given changes without their delete',
    async (t) => {
      const prefix = `/t${prefixes++}/`;
      const a = await open(prefix);
      await a.batch([a.leases.put('x', lease('x', '52:54:00:00:00:01'))]);
      const seen = (await (a.backend as EtcdBackend).snapshot()).rev;
      await a.batch([a.leases.del('x'), a.leases.put('y', lease('y', '52:54:00:00:00:02'))]);
      // compacted at the delete's revision: etcd keeps revision `seen + 1` watchable, without the delete's tombstone
      await (a.backend as EtcdBackend).client.kv.compact({ revision: String(seen + 1), physical: true });
      const bb = new EtcdBackend({ endpoints: etcd.endpoints, prefix, timeoutMs: 1000 });
      t.teardown(() => bb.close());
      const got: string[] = [];
      let resync = false;
      await bb.watch(
        seen,
        (c) => got.push(`${c.key} ${c.value ? 'put' : 'deleted'}`),
        () => (resync = true),
      );
      await wait(() => resync || got.length > 0, 5000);
      t.ok(resync, 'the watch cannot go on: the store takes a snapshot');
      t.same(got, [], 'and delivered nothing ("y put" alone would leave x in every cache)');
    },
  );

  t.test('read-modify-write sections racing on two appliances lose no update', async (t) => {
    const [a, b] = await pair();
    await a.batch([a.leases.put('c', lease('c', '52:54:00:00:00:01', 0))]);
    await wait(() => b.leases.snapshot().length === 1, 5000);
    const bump = (s: Store) =>
      s.transact(async () => {
        const cur = await s.leases.get('c');
        await s.batch([
          s.leases.put('c', { ...(cur as ReturnType<typeof lease>), expiresAt: (cur?.expiresAt ?? 0) + 1 }),
        ]);
      });
    await Promise.all(Array.from({ length: 20 }, (_, i) => bump(i % 2 ? a : b)));
    await wait(
      async () => (await a.leases.get('c'))?.expiresAt === 20 && (await b.leases.get('c'))?.expiresAt === 20,
      5000,
    );
    t.equal((await a.leases.get('c'))?.expiresAt, 20, '20 increments from two stores: 20');
  });

  t.test('a guarded bind loses to the one that came first, and learns it', async (t) => {
    const [a, b] = await pair();
    const guard = (s: Store) => [{ collection: 'leases', key: '10.0.0.9', rev: s.leases.revOf('10.0.0.9') }];
    const ga = guard(a);
    const gb = guard(b);
    await a.batch([a.leases.put('10.0.0.9', lease('10.0.0.9', '52:54:00:00:00:0a'))], ga);
    await t.rejects(
      b.batch([b.leases.put('10.0.0.9', lease('10.0.0.9', '52:54:00:00:00:0b'))], gb),
      { name: 'StoreConflict' },
      'the second appliance, deciding on what it had seen, cannot take the address',
    );
    t.equal((await b.leases.get('10.0.0.9'))?.mac, '52:54:00:00:00:0a', "the loser's cache holds the winner's lease");
  });

  t.test('a section that read a record another appliance changed runs again on the new value', async (t) => {
    const [a, b] = await pair();
    await a.batch([a.leases.put('x', lease('x', '52:54:00:00:00:01'))]);
    await wait(() => b.leases.snapshot().length === 1, 5000);
    const seen = await b.leases.get('x');
    await a.batch([a.leases.put('x', lease('x', '52:54:00:00:00:02'))]);
    const won = await b.transact(async () => {
      const cur = await b.leases.get('x');
      if (JSON.stringify(cur) !== JSON.stringify(seen)) return false;
      await b.batch([b.leases.put('x', lease('x', '52:54:00:00:00:03'))]);
      return true;
    });
    t.equal(won, false, 'the section ran again on the new value and saw the change');
    t.equal((await a.leases.get('x'))?.mac, '52:54:00:00:00:02');
  });

  t.test('backup and restore on etcd, past its 128-operation transaction limit', async (t) => {
    const [a, b] = await pair();
    const ops = Array.from({ length: 300 }, (_, i) =>
      a.leases.put(`10.1.${i >> 8}.${i & 255}`, lease(`10.1.${i >> 8}.${i & 255}`, '52:54:00:00:00:01', i)),
    );
    await a.bulk(ops);
    const backup = await takeBackup(a);
    t.equal(backup.collections.leases?.length, 300);
    await a.bulk([a.leases.put('extra', lease('extra', '52:54:00:00:00:02'))]);
    const counts = await restoreBackup(a, backup);
    t.equal(counts.leases, 300);
    await wait(() => b.leases.snapshot().length === 300, 5000);
    t.equal(await b.leases.get('extra'), undefined, 'what the backup did not hold is gone');
  });

  t.test('leader election: SIGKILLed, the leader is followed within the TTL, and its fence fails', async (t) => {
    const prefix = `/t${prefixes++}/`;
    const script = path.join(repoRoot, 'test/helpers/leader-child.ts');
    const child = spawn(process.execPath, ['--import', 'tsx', script, etcd.endpoints.join(','), prefix, '2']);
    t.teardown(() => stopProcess(child));
    const fence = await new Promise<Guard>((resolve) =>
      child.stdout.once('data', (c: Buffer) => resolve(JSON.parse(c.toString()))),
    );
    const bb = new EtcdBackend({ endpoints: etcd.endpoints, prefix, timeoutMs: 1000 });
    const b = await Store.over(bb);
    t.teardown(() => b.close());
    const lb = new Leadership(bb, 'b', 2, log);
    t.teardown(() => lb.stop());
    lb.start();
    // both campaigns have their key: the second is past its put and waiting on the first
    await wait(async () => (await bb.client.getAll().prefix(`${prefix}leader/`).keys()).length === 2, 10_000);
    t.notOk(lb.isLeader, 'the second campaign waits while the first leads');
    t.equal(await lb.leader(), 'child', 'and names the leader');
    child.kill('SIGKILL');
    await wait(() => lb.isLeader, 10_000);
    t.pass("the campaign that waited leads once the dead leader's lease expired");
    t.equal(await lb.leader(), 'b');
    const put = { type: 'put' as const, collection: 'leases', key: 'f', value: lease('f', '52:54:00:00:00:09') };
    const r = await bb.commit([put], [fence]);
    t.equal(r.ok, false, "a commit fenced by the dead leader's key does not apply");
    t.notOk(await bb.get('leases', 'f'), 'nothing was written');
  });

  t.test(
    'a leader whose event loop stood still past its lease steps down when first asked, before any call',
    async (t) => {
      const prefix = `/t${prefixes++}/`;
      const bb = new EtcdBackend({ endpoints: etcd.endpoints, prefix, timeoutMs: 1000 });
      const l = new Leadership(bb, 'p', 2, log);
      t.teardown(async () => {
        await l.stop();
        await bb.close();
      });
      const deposed: string[] = [];
      l.on('deposed', () => deposed.push('deposed'));
      const elected = new Promise((r) => l.once('elected', r));
      l.start();
      await elected;
      t.ok(l.holds(), 'a fresh lease is held');
      // as SIGSTOP or a long synchronous stretch would: no timer, no keep-alive, for longer than the 2 s TTL
      const until = performance.now() + 2500;
      while (performance.now() < until);
      t.notOk(l.holds(), 'asked first thing after: not held');
      t.same(
        deposed,
        ['deposed'],
        'and the leadership ended there, synchronously (the orchestrator stops before the refused call returns)',
      );
      t.notOk(l.isLeader);
    },
  );

  t.test(
    'etcd down: reads from memory, writes refused at once with StoreUnavailable; back: writes and the watch resume',
    async (t) => {
      const [a, b] = await pair();
      await a.batch([a.leases.put('k', lease('k', '52:54:00:00:00:01'))]);
      await wait(() => b.leases.snapshot().length === 1, 5000);
      await etcd.kill(0);
      t.equal((await a.leases.get('k'))?.mac, '52:54:00:00:00:01', 'the cache still answers');
      await t.rejects(a.batch([a.leases.put('k2', lease('k2', '52:54:00:00:00:02'))]), { name: 'StoreUnavailable' });
      // the client's circuit breaker is open now: that is etcd unreachable too, not an internal error
      await t.rejects(a.batch([a.leases.put('k2', lease('k2', '52:54:00:00:00:02'))]), { name: 'StoreUnavailable' });
      await etcd.start(0);
      await wait(async () => {
        try {
          await a.batch([a.leases.put('k3', lease('k3', '52:54:00:00:00:03'))]);
          return true;
        } catch {
          return false;
        }
      }, 30_000);
      await wait(() => b.leases.snapshot().some((l) => l.ip === 'k3'), 15_000);
      t.pass('after etcd came back, a write from one appliance reached the other');
    },
  );
});

/**
 * A TCP link to etcd that a test breaks: `cut()` drops its connections and refuses new ones, as a lost route
 * would; `restore(bytes)` lets connections through again until that many bytes came back from etcd, then cuts
 * (resolving then); `restore()` for good.
 */
async function cuttableLink(port: number) {
  let open = true;
  let budget = Number.POSITIVE_INFINITY;
  let spent = () => {};
  const socks = new Set<net.Socket>();
  const cut = () => {
    open = false;
    for (const s of socks) s.destroy();
    socks.clear();
    spent();
  };
  const server = net.createServer((c) => {
    if (!open) return void c.destroy();
    const u = net.connect(port, '127.0.0.1');
    socks.add(c).add(u);
    c.on('data', (d) => u.write(d));
    u.on('data', (d) => {
      budget -= d.length;
      if (budget < 0) cut();
      else c.write(d);
    });
    for (const [x, y] of [
      [c, u],
      [u, c],
    ] as const) {
      x.on('error', () => y.destroy());
      x.on('close', () => y.destroy());
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    cut,
    restore: (bytes = Number.POSITIVE_INFINITY) =>
      new Promise<void>((r) => {
        budget = bytes;
        open = true;
        spent = r;
        if (bytes === Number.POSITIVE_INFINITY) r();
      }),
    close: () => {
      cut();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

t.test('etcd with client TLS: the store connects with its certificate, and not without one', async (t) => {
  const certs = testCertificates(tempDir(t));
  const etcd = await startEtcd({ base: 24330, tls: certs });
  t.teardown(() => etcd.stop());
  const s = await Store.over(
    new EtcdBackend({ endpoints: etcd.endpoints, prefix: '/tls/', timeoutMs: 1000, tls: certs }),
  );
  t.teardown(() => s.close());
  await s.batch([s.leases.put('10.0.0.1', lease('10.0.0.1', '52:54:00:00:00:01'))]);
  t.equal(
    ((await s.backend.get('leases', '10.0.0.1')) as { mac: string }).mac,
    '52:54:00:00:00:01',
    'written and read over TLS',
  );
  const anon = new EtcdBackend({
    endpoints: etcd.endpoints,
    prefix: '/tls/',
    timeoutMs: 1000,
    tls: { caFile: certs.caFile },
  });
  t.teardown(() => anon.close());
  await t.rejects(anon.snapshot(), 'a client without a certificate is refused');
});

t.test('etcd with password auth: the store signs in, a wrong password is refused', async (t) => {
  const etcd = await startEtcd({ base: 24390 });
  t.teardown(() => etcd.stop());
  const ctl = (...args: string[]) =>
    execFileSync('etcdctl', ['--endpoints', etcd.endpoints.join(','), ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
      stdio: 'ignore',
    });
  ctl('user', 'add', 'root:root-pw-0123');
  ctl('auth', 'enable');
  const auth = { username: 'root', password: 'root-pw-0123' };
  const s = await Store.over(new EtcdBackend({ endpoints: etcd.endpoints, prefix: '/auth/', timeoutMs: 1000, auth }));
  t.teardown(() => s.close());
  await s.batch([s.leases.put('10.0.0.1', lease('10.0.0.1', '52:54:00:00:00:01'))]);
  t.equal(((await s.backend.get('leases', '10.0.0.1')) as { mac: string }).mac, '52:54:00:00:00:01', 'signed in');
  const wrong = new EtcdBackend({
    endpoints: etcd.endpoints,
    prefix: '/auth/',
    timeoutMs: 1000,
    auth: { username: 'root', password: 'wrong' },
  });
  t.teardown(() => wrong.close());
  await t.rejects(wrong.snapshot(), 'a wrong password is refused');
});
