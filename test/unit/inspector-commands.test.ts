// The inspector contract's commands driven directly, with no HTTP and no sockets: a store in a temp dir, and
// the addresses the host holds as our DHCP would report them (in proxy mode: what it asked the site for).
import path from 'node:path';
import t, { type Test } from 'tap';
import { loadTemplates } from '../../src/boot/ipxe.js';
import type { StoredHost, StoredMachine } from '../../src/domain/resources.js';
import { InspectorCommands } from '../../src/inspector/commands.js';
import { repoRoot } from '../../src/paths.js';
import { SecretBox } from '../../src/store/secrets.js';
import { Store } from '../../src/store/store.js';
import { Pipeline } from '../../src/workflow/pipeline.js';
import { sampleReport } from '../helpers/sim-inspector.js';
import { tempDir } from '../helpers/tmp.js';

const MAC = '52:54:00:0d:00:01';

async function world(t: Test) {
  const dir = tempDir(t);
  const store = await Store.open(path.join(dir, 'db'));
  t.teardown(() => store.close());
  const secrets = SecretBox.inDir(dir);
  const pipeline = new Pipeline(store);
  const holds: { ip: string[] } = { ip: [] };
  const commands = new InspectorCommands({
    pipeline,
    secrets,
    policy: {
      inspectionTimeoutMs: 60_000,
      deploymentTimeoutMs: 60_000,
      tryOtherHosts: false,
      maxAttempts: 3,
      retryBaseMs: 1000,
      retryMaxMs: 1000,
    },
    apiBase: 'http://10.9.0.1',
    bootBase: 'http://10.9.0.1',
    leasedAddresses: () => holds.ip,
    templates: loadTemplates(path.join(repoRoot, 'boot-scripts')),
    kernelArgs: '',
    fetchUserData: async (url) => (url === 'http://config/ok' ? 'from-url' : undefined),
  });
  const host: StoredHost = {
    name: 'h',
    namespace: 'default',
    spec: {
      redfish: {
        address: 'http://bmc',
        username: 'u',
        passwordEnc: 'v1:x',
        insecureSkipVerify: false,
        allowPlainHttp: true,
      },
      bootMACs: [MAC],
      labels: {},
    },
    status: { state: 'Inspecting', nics: [{ mac: MAC }], consumer: 'm', inspectionPhase: 'Booting' },
    attempt: { id: 'a1', expiresAt: new Date(Date.now() + 60_000).toISOString() },
    createdAt: 't',
  };
  const machine: StoredMachine = {
    name: 'm',
    namespace: 'default',
    spec: { inspectionImageURL: 'http://10.9.0.1/assets/inspector', targetImageURL: 'http://10.9.0.1/t.tgz' },
    status: { phase: 'Inspecting', hostName: 'h', attempts: 1, conditions: [], rejectedHosts: [] },
    createdAt: 't',
  };
  await pipeline.run(() => ({ plan: { writes: [pipeline.host(host), pipeline.machine(machine)] }, value: 0 }));
  const { nonce, token } = secrets.attemptSecrets('h', 'a1');
  const redeem = (from: string) => commands.redeemNonce({ namespace: 'default', name: 'h', nonce, from, mac: MAC });
  const as = (from: string) => ({ namespace: 'default', name: 'h', token, from });
  return { store, secrets, commands, holds, redeem, as };
}

t.test(
  'proxy mode: a redemption from anywhere but the address the host asked the site for is a conflict',
  async (t) => {
    const w = await world(t);
    w.holds.ip = ['10.9.0.21'];
    const stolen = await w.redeem('10.9.0.66');
    t.match(stolen, { ok: true, value: { kind: 'conflict' } }, 'the attacker gets nothing');
    t.notOk((await w.store.hosts.get('h'))?.attempt, 'and the attempt ends: the token it would carry is void');
  },
);

t.test("proxy mode: the inspector's own DHCP moves the host to another address; its calls still count", async (t) => {
  const w = await world(t);
  w.holds.ip = ['10.9.0.21'];
  t.match(await w.redeem('10.9.0.21'), { ok: true, value: { kind: 'ok' } }, 'the firmware redeems from its address');
  w.holds.ip = ['10.9.0.57'];
  const report = await w.commands.acceptReport(w.as('10.9.0.57'), sampleReport(MAC));
  t.match(report, { ok: true, value: { approved: true } }, "from the inspector's new address");
  const stolen = await w.commands.acceptProgress(w.as('10.9.0.66'), { step: 'x', ok: true, message: '' });
  t.match(stolen, { ok: false, code: 'unauthorized', misuse: true }, 'from a third address: refused as misuse');
});

t.test('nothing observed (DHCP elsewhere): the first redemption binds, as before', async (t) => {
  const w = await world(t);
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } }, 'the same redeemer again: the same answer');
  t.match(await w.redeem('10.9.0.31'), { ok: true, value: { kind: 'conflict' } }, 'anyone else: a conflict');
});

t.test('the bootstrap gate: 404 until validated and user-data exists; never an empty 200', async (t) => {
  const w = await world(t);
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.match(await w.commands.bootstrap(w.as('10.9.0.30')), { ok: false, code: 'notFound' }, 'before the report');
  t.match(await w.commands.acceptReport(w.as('10.9.0.30'), sampleReport(MAC)), { ok: true, value: { approved: true } });
  const generated = await w.commands.bootstrap(w.as('10.9.0.30'));
  t.match(
    generated,
    { ok: true, value: /^#cloud-config\n[\s\S]*\nhostname: h\n$/ },
    'no source named: a minimal config',
  );
  const setSpec = async (spec: Partial<StoredMachine['spec']>) => {
    const m = (await w.store.machines.get('m')) as StoredMachine;
    const p = new Pipeline(w.store);
    await p.run(() => ({ plan: { writes: [p.machine({ ...m, spec: { ...m.spec, ...spec } })] }, value: 0 }));
  };
  await setSpec({ configurationURL: 'http://config/ok' });
  t.same(await w.commands.bootstrap(w.as('10.9.0.30')), { ok: true, value: 'from-url' }, "configurationURL's content");
  await setSpec({ configurationURL: 'http://config/down' });
  t.same(await w.commands.bootstrap(w.as('10.9.0.30')), { ok: true, value: undefined }, 'unreachable: not ready');
  await setSpec({ bootstrap: { dataSecretName: 'join' } });
  t.same(await w.commands.bootstrap(w.as('10.9.0.30')), { ok: true, value: undefined }, 'a named Secret not there yet');
  const putSecret = async (namespace: string, value: string) => {
    const s = { name: 'join', namespace, valueEnc: w.secrets.seal(value), createdAt: 't' };
    await new Pipeline(w.store).run(() => ({ plan: { writes: [w.store.secrets.put('join', s)] }, value: 0 }));
  };
  await putSecret('elsewhere', 'not ours');
  t.same(await w.commands.bootstrap(w.as('10.9.0.30')), { ok: true, value: undefined }, 'in another namespace: not it');
  await putSecret('default', '#cloud-config\ninstall: {device: auto}\n');
  t.same(
    await w.commands.bootstrap(w.as('10.9.0.30')),
    { ok: true, value: '#cloud-config\ninstall: {device: auto}\n' },
    "the Secret's value, over configurationURL",
  );
  t.match(await w.commands.bootstrap({ ...w.as('10.9.0.30'), token: 'stolen' }), { ok: false, code: 'unauthorized' });
});
