// Whole appliances on a real etcd: two of them share one inventory and one leader runs the orchestrator; a
// machine created on the follower is provisioned by the leader; with etcd gone the boot plane goes on and
// writes get 503; `beskar7 migrate` moves a running LevelDB appliance's inventory into etcd.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { EtcdBackend } from '../../src/store/etcd-backend.js';
import { SecretBox } from '../../src/store/secrets.js';
import { Store } from '../../src/store/store.js';
import { ADMIN, inProcess, until } from '../helpers/appliance.js';
import { runCli } from '../helpers/cli.js';
import { startEtcd } from '../helpers/etcd.js';
import { addHost, addMachine, HOSTS, MACHINES } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';
import { bmcWithMachine, hostBody, machineBody } from '../helpers/workflow.js';

const healthOf = async (base: string) =>
  ((await (await fetch(`${base}/healthz`)).json()) as { store: { orchestrator: boolean } }).store.orchestrator;

t.test('appliances on etcd', async (t) => {
  const etcd = await startEtcd({ base: 24350 });
  t.teardown(() => etcd.stop());
  let n = 0;
  const onEtcd = (t: Parameters<typeof inProcess>[0]) =>
    inProcess(t, {
      store: {
        backend: 'etcd',
        etcd: { endpoints: etcd.endpoints, prefix: `/a${n}/`, leaseTTLSeconds: 2, timeoutSeconds: 1 },
      },
    });

  t.test(
    'two appliances: one inventory, one orchestrator; the follower stores BMC work, the leader does it',
    async (t) => {
      n++;
      const a = await onEtcd(t);
      await until('a leader', async () => ((await healthOf(a.base)) ? true : undefined));
      const b = await onEtcd(t);
      t.equal(await healthOf(b.base), false, 'the second appliance does not run the orchestrator');
      const gauge = async (base: string) =>
        /beskar7_orchestrator_leader (\d)/.exec(
          await (await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${ADMIN}` } })).text(),
        )?.[1];
      t.same([await gauge(a.base), await gauge(b.base)], ['1', '0'], 'and /metrics says which one leads');
      const { address } = await bmcWithMachine(t, () => b.base, '52:54:00:aa:00:01');
      t.equal((await addHost(b.kube, hostBody('h1', address))).status, 201, 'host created on the follower');
      const act = await b.api('POST', '/hosts/h1/actions', { action: 'powerOn' });
      t.equal(act.status, 200, 'an operator action on the follower is stored there');
      t.match(act.json, { host: 'h1', powerState: 'On' }, "and its outcome, the leader's, comes back through etcd");
      const done = (await a.api('GET', '/journal')).json.items.find(
        (e: { kind: string; effect?: string }) => e.kind === 'HostAction' && e.effect === act.json.effect,
      );
      t.ok(done, 'the leader recorded the outcome');
      t.equal((await addMachine(b.kube, machineBody('m1'))).status, 201, 'machine created on the follower');
      const m = await until('m1 Provisioned', async () => {
        const r = await a.kube('GET', `${MACHINES}/m1`);
        return r.json.status?.phase === 'Provisioned' ? r.json : undefined;
      });
      t.equal(
        m.status.hostName,
        'h1',
        "the leader provisioned the follower's machine (the inspector reported to the follower)",
      );
      t.equal((await b.kube('GET', `${MACHINES}/m1`)).json.status.phase, 'Provisioned', 'and the follower sees it');
      await a.stop();
      await until('b leads after a resigned', async () => ((await healthOf(b.base)) ? true : undefined), 10_000);
      t.pass('a resigning leader is followed at once');
    },
  );

  t.test('etcd away: scripts are served from memory, writes get 503 with Retry-After, and it recovers', async (t) => {
    n++;
    const a = await onEtcd(t);
    t.equal((await addHost(a.kube, hostBody('h2', 'http://127.0.0.1:9'))).status, 201);
    await etcd.kill(0);
    const script = await fetch(`${a.base}/boot.ipxe`);
    t.equal(script.status, 200, 'the entry script is still served');
    t.equal((await a.kube('GET', `${HOSTS}/h2`)).status, 200, 'reads answer from memory');
    const w = await addHost(a.kube, hostBody('h3', 'http://127.0.0.1:9'));
    t.equal(w.status, 503, 'a write is refused');
    t.match(w.json.error, /store unavailable: etcd unreachable/);
    await etcd.start(0);
    await until(
      'writes again',
      async () => {
        const r = await addHost(a.kube, hostBody('h4', 'http://127.0.0.1:9'));
        return r.status === 201 ? true : undefined;
      },
      30_000,
    );
    t.pass('writes resume by themselves once etcd is back');
  });

  t.test('beskar7 migrate --from leveldb --to etcd moves a running inventory with its key and token', async (t) => {
    const dir = path.join(tempDir(t), 'data');
    const lev = await inProcess(t, {}, dir);
    await addHost(lev.kube, hostBody('old1', 'http://127.0.0.1:9'));
    const prefix = '/migrated/';
    const cfgFile = path.join(tempDir(t), 'beskar7.yaml');
    const port = Number(new URL(lev.base).port);
    writeFileSync(
      cfgFile,
      YAML.stringify({
        dataDir: dir,
        http: { port },
        api: { adminToken: ADMIN },
        store: { etcd: { endpoints: etcd.endpoints, prefix } },
      }),
    );
    const r = await runCli(['--config', cfgFile, 'migrate', '--from', 'leveldb', '--to', 'etcd']);
    t.equal(r.code, 0, r.err);
    t.match(r.out, /migrated from the running appliance: .*1 hosts/);
    const s = await Store.over(new EtcdBackend({ endpoints: etcd.endpoints, prefix, timeoutMs: 1000 }));
    t.teardown(() => s.close());
    const h = await s.hosts.get('default/old1');
    const key = await (s.backend as EtcdBackend).shared('secret-key', () => Buffer.alloc(32));
    t.equal(
      new SecretBox(key).open(h?.spec.redfish.passwordEnc ?? ''),
      'secret',
      'the sealed BMC password opens with the shared key',
    );
    const again = await runCli(['--config', cfgFile, 'migrate', '--from', 'leveldb', '--to', 'etcd']);
    t.equal(again.code, 2, 'a second migration into a filled prefix is refused');
    t.match(again.err, /already holds 1 hosts and machines; --force replaces them/);
  });
});
