import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { knownMacs } from '../../src/appliance.js';
import { scopeKeys } from '../../src/store/scoped-keys.js';
import { Store } from '../../src/store/store.js';
import { Pipeline } from '../../src/workflow/pipeline.js';
import { tempDir } from '../helpers/tmp.js';

t.test('atomic batch and zod-checked reads', async (t) => {
  const store = await Store.open(path.join(tempDir(t), 'db'));
  t.teardown(() => store.close());
  await store.batch([
    store.leases.put('10.0.0.1', { ip: '10.0.0.1', mac: '52:54:00:00:00:01', expiresAt: 1, boundAt: 0 }),
  ]);
  await store.batch([
    store.leases.del('10.0.0.1'),
    store.leases.put('10.0.0.2', { ip: '10.0.0.2', mac: '52:54:00:00:00:01', expiresAt: 1, boundAt: 0 }),
  ]);
  t.same(
    (await store.leases.all()).map((l) => l.ip),
    ['10.0.0.2'],
  );
  await store.backend.commit([{ type: 'put', collection: 'leases', key: 'bad', value: { ip: 1 } }], []);
  await t.rejects(store.leases.get('bad'), /store leases\/bad holds an invalid value/);
  // a cached collection checks a value before it is written: the whole batch is refused, nothing reaches disk
  await t.rejects(
    store.batch([store.leases.del('10.0.0.2'), store.hosts.put('h', { name: 'h' } as never)]),
    /store hosts\/h holds an invalid value/,
  );
  t.equal(await store.hosts.get('h'), undefined);
  t.equal(await store.backend.get('hosts', 'h'), undefined, 'not on disk either');
  t.ok(await store.leases.get('10.0.0.2'), 'the rest of the refused batch was not written');
});

t.test('cached hosts and machines read as LevelDB does, after writes and after reopening', async (t) => {
  const dir = path.join(tempDir(t), 'db');
  const host = (name: string, state: string) => ({
    name,
    createdAt: '2026-01-01T00:00:00.000Z',
    status: { state },
    spec: {
      redfish: { address: 'https://10.0.0.1', username: 'u', passwordEnc: 'x', insecureSkipVerify: false },
      bootMACs: [],
      labels: {},
    },
  });
  const store = await Store.open(dir);
  await store.batch([
    store.hosts.put('b', host('b', 'Enrolling') as never),
    store.hosts.put('a', host('a', 'Available') as never),
  ]);
  await store.batch([store.hosts.del('b'), store.hosts.put('c', host('c', 'Error') as never)]);
  const cached = await store.hosts.entries();
  t.same(
    cached.map(([k]) => k),
    ['a', 'c'],
    'keys in LevelDB order, the deleted one gone',
  );
  t.same(cached[0]![1].status.nics, [], 'schema defaults applied as on a read from disk');
  t.throws(
    () => {
      (cached[0]![1].status as { state: string }).state = 'InUse';
    },
    TypeError,
    'a cached value cannot be changed in place',
  );
  const seen = await store.hosts.get('a');
  const pipeline = new Pipeline(store);
  const ifStill = (writes: ReturnType<typeof store.hosts.put>[]) =>
    pipeline.run(async () =>
      Pipeline.same(seen, await store.hosts.get('a')) ? { plan: { writes }, value: true } : { value: false },
    );
  const inUse = store.hosts.put('a', { ...seen!, status: { ...seen!.status, state: 'InUse' } });
  t.same(await ifStill([inUse]), { ok: true, value: true });
  t.same(await ifStill([]), { ok: true, value: false }, 'a stale read no longer commits');
  const fromCache = await store.hosts.all();
  t.same(
    fromCache.map((h) => [h.name, h.status.state]),
    [
      ['a', 'InUse'],
      ['c', 'Error'],
    ],
    'an update takes its place in key order',
  );
  t.equal(cached[0]![1].status.state, 'Available', 'entries read before the update are not changed by it');
  await store.close();
  const reopened = await Store.open(dir);
  t.teardown(() => reopened.close());
  t.same(await reopened.hosts.all(), fromCache, 'the cache held exactly what is on disk');
});

t.test('events: the newest n read alone, and pruning keeps the newest', async (t) => {
  const store = await Store.open(path.join(tempDir(t), 'db'));
  t.teardown(() => store.close());
  for (let i = 0; i < 250; i++)
    await store.batch([store.putEvent({ kind: 'HostCreated', severity: 'info', message: String(i) })]);
  t.same(
    (await store.events.last(3)).map((e) => e.message),
    ['247', '248', '249'],
    'oldest first',
  );
  t.equal(await store.pruneEvents(100), 150, '150 pruned');
  const left = await store.events.all();
  t.equal(left.length, 100);
  t.same([left[0]!.message, left.at(-1)!.message], ['150', '249'], 'the newest 100 kept');
  t.equal(await store.pruneEvents(100), 0, 'nothing more to prune');
});

t.test('kill -9 while writing loses no acknowledged batch (8 writers at once: merged group commits)', async (t) => {
  const dir = path.join(tempDir(t), 'db');
  const acked = new Set<number>();
  for (const round of [1, 2, 3]) {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(import.meta.dirname, '../helpers/store-writer.ts'), dir],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let buf = '';
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) acked.add(Number(l));
    });
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (acked.size >= 300 * round) {
          clearInterval(check);
          child.kill('SIGKILL');
          resolve();
        }
      }, 2);
    });
    await new Promise((r) => child.once('exit', r));
    const store = await Store.open(dir);
    const all = await store.leases.all();
    await store.close();
    const have = new Set(all.map((l) => l.expiresAt));
    const missing = [...acked].filter((i) => !have.has(i));
    t.same(missing, [], `round ${round}: all ${acked.size} acknowledged batches survived (store holds ${all.length})`);
  }
});

t.test(
  'group commit: concurrent batches share LevelDB writes; a bad one fails alone; close writes what is queued',
  async (t) => {
    const dir = path.join(tempDir(t), 'db');
    const store = await Store.open(dir);
    const level = (store.backend as unknown as { db: { batch: (...a: unknown[]) => Promise<void> } }).db;
    const writes = t.capture(level, 'batch', level.batch.bind(level));
    const lease = (i: number) => {
      const ip = `10.0.${i >> 8}.${i & 255}`;
      return store.leases.put(ip, { ip, mac: '52:54:00:00:00:01', expiresAt: i, boundAt: 0 });
    };
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.batch([lease(i)])));
    const n = writes().length;
    t.ok(n >= 1 && n < 50, `50 concurrent batches took ${n} LevelDB writes`);

    const bad = { ...lease(1000), value: { n: 1n } };
    const results = await Promise.allSettled([
      store.batch([lease(100)]),
      store.batch([bad as never]),
      store.batch([lease(101)]),
    ]);
    t.same(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
      'a value LevelDB cannot encode fails its own commit only',
    );
    const queued = store.batch([lease(102)]);
    await store.close();
    await queued;
    const again = await Store.open(dir);
    t.equal((await again.leases.all()).length, 53, 'every acknowledged commit is there after reopening');
    await again.close();
  },
);

t.test('known MACs for dhcp.full.knownMACsOnly follow the hosts as they change', async (t) => {
  const store = await Store.open(path.join(tempDir(t), 'db'));
  t.teardown(() => store.close());
  const host = (name: string, mac: string) =>
    ({
      name,
      createdAt: '2026-01-01T00:00:00.000Z',
      status: { state: 'Available', nics: [] },
      spec: {
        redfish: { address: 'https://10.0.0.1', username: 'u', passwordEnc: 'x', insecureSkipVerify: false },
        bootMACs: [mac],
        labels: {},
      },
    }) as never;
  const known = knownMacs(store);
  t.notOk(known('52:54:00:00:00:01'), 'no hosts, no known MACs');
  await store.batch([store.hosts.put('a', host('a', '52:54:00:00:00:01'))]);
  t.ok(known('52:54:00:00:00:01'), 'a new host is known at once');
  t.notOk(known('52:54:00:00:00:02'));
  await store.batch([store.hosts.del('a')]);
  t.notOk(known('52:54:00:00:00:01'), 'a deleted host is forgotten');
});

t.test('records stored by the release before stored effects load under their new names', async (t) => {
  const dir = path.join(tempDir(t), 'db');
  const old = await Store.open(dir);
  const host = {
    name: 'h',
    namespace: 'default',
    spec: {
      redfish: { address: 'https://b', username: 'u', passwordEnc: 'v1:x', insecureSkipVerify: false },
      bootMACs: [],
      labels: {},
    },
    status: { state: 'Inspecting', nics: [], consumer: 'm', inspectionPhase: 'InProgress' },
    bootstrap: { attempt: 'a1', expiresAt: '2030-01-01T00:00:00Z', claim: { from: '10.0.0.5', at: 't' } },
    createdAt: 't',
  };
  const machine = {
    name: 'm',
    spec: { inspectionImageURL: 'http://x/i', targetImageURL: 'http://x/t' },
    status: { phase: 'Inspecting', hostId: 'h', attempts: 1 },
    createdAt: 't',
  };
  const report = {
    hostId: 'h',
    receivedAt: 't',
    report: {
      bootMode: 'UEFI',
      cpus: { count: 1, cores: 1, threads: 1, model: 'x' },
      memory: { totalGB: 1 },
      disks: [],
      nics: [],
    },
  };
  // written as raw values, as the old release wrote them
  await old.backend.commit(
    [
      { type: 'put', collection: 'hosts', key: 'h', value: host },
      { type: 'put', collection: 'machines', key: 'm', value: machine },
      { type: 'put', collection: 'reports', key: 'h/t', value: report },
      { type: 'put', collection: 'requests', key: 'r1', value: { kind: 'powerDown', host: 'h' } },
      {
        type: 'put',
        collection: 'hosts',
        key: 'x',
        value: { ...host, name: 'x', namespace: 'lab', status: { state: 'Available', nics: [] } },
      },
      {
        type: 'put',
        collection: 'effects',
        key: 'x/2026-t-000001-abc',
        value: { kind: 'powerOff', host: 'x', reason: 'r' },
      },
      {
        type: 'put',
        collection: 'boot',
        key: '52:54:00:00:00:09',
        value: { script: 'inspect', host: 'x', cmdline: '' },
      },
      { type: 'put', collection: 'secrets', key: 'bmc', value: { name: 'bmc', namespace: 'lab', createdAt: 't' } },
    ],
    [],
  );
  await old.close();
  const store = await Store.open(dir);
  t.teardown(() => store.close());
  const h = await store.hosts.get('default/h');
  t.same(h?.attempt, { id: 'a1', expiresAt: '2030-01-01T00:00:00Z', redeemed: { from: '10.0.0.5', at: 't' } });
  t.notOk('bootstrap' in (h ?? {}), 'the old name is gone');
  t.equal((await store.machines.get('default/m'))?.status.hostName, 'h');
  t.equal((await store.reports.get('h/t'))?.hostName, 'h');
  // names were unique across namespaces: keys are now <namespace>/<name>, and what named a host names its key
  t.same(await store.hosts.keys(), ['default/h', 'lab/x']);
  t.same(await store.secrets.keys(), ['lab/bmc']);
  t.same(
    await store.effects.entries(),
    [['lab/x/2026-t-000001-abc', { kind: 'powerOff', host: 'lab/x', reason: 'r' }]],
    "a host's effects follow its key, in their order; old leader hand-offs are not effects",
  );
  t.equal((await store.bootInstructions.get('52:54:00:00:00:09'))?.host, 'lab/x');
  await store.close();
  const again = await Store.open(dir);
  t.teardown(() => again.close());
  t.same(await again.hosts.keys(), ['default/h', 'lab/x'], 'opened again: nothing more to do');
});

t.test(
  'scopeKeys: a crash between writing the new keys and deleting the old ones is finished by the next run',
  async (t) => {
    const h = { name: 'x', namespace: 'lab' };
    const half = {
      hosts: [
        ['lab/x', h],
        ['x', h],
      ] as [string, unknown][],
      effects: [],
    };
    t.same(
      scopeKeys(half).hosts,
      [
        ['lab/x', h],
        ['lab/x', h],
      ],
      'both name the same key: one record once written',
    );
    const fresh = {
      hosts: [
        ['lab/x', h],
        ['prod/x', { name: 'x', namespace: 'prod' }],
      ] as [string, unknown][],
    };
    t.same(scopeKeys(fresh), fresh, 'a scoped store is left as it is, two hosts of one name among it');
  },
);
