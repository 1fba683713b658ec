// The inspector contract's commands driven directly, with no HTTP and no sockets: a store in a temp dir, and
// the addresses the host holds as our DHCP would report them (in proxy mode: what it asked the site for).
import path from 'node:path';
import t, { type Test } from 'tap';
import { loadTemplates } from '../../src/boot/ipxe.js';
import type { StoredHost, StoredMachine } from '../../src/domain/resources.js';
import { InspectorCommands } from '../../src/inspector/commands.js';
import { HttpBases } from '../../src/net/bases.js';
import { repoRoot } from '../../src/paths.js';
import { SecretBox } from '../../src/store/secrets.js';
import { Store } from '../../src/store/store.js';
import { Pipeline } from '../../src/workflow/pipeline.js';
import { sampleReport } from '../helpers/sim-inspector.js';
import { tempDir } from '../helpers/tmp.js';

const MAC = '52:54:00:0d:00:01';

interface WorldOptions {
  host?: (h: StoredHost) => StoredHost;
  machine?: (m: StoredMachine) => StoredMachine | undefined;
  tryOtherHosts?: boolean;
  /** further hosts in the store */
  others?: StoredHost[];
}

async function world(t: Test, o: WorldOptions = {}) {
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
      tryOtherHosts: o.tryOtherHosts ?? false,
      maxAttempts: 3,
      retryBaseMs: 1000,
      retryMaxMs: 1000,
    },
    bases: new HttpBases('http://10.9.0.1', 'http://[fd09::1]'),
    apiHttps: false,
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
      bootChain: 'Auto',
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
  const h = o.host ? o.host(host) : host;
  const m = o.machine ? o.machine(machine) : machine;
  const writes = [h, ...(o.others ?? [])].map((x) => pipeline.host(x));
  if (m) writes.push(pipeline.machine(m));
  await pipeline.run(() => ({ plan: { writes }, value: 0 }));
  const { nonce, token } = secrets.attemptSecrets('h', 'a1');
  const redeem = (from: string) => commands.redeemNonce({ namespace: 'default', name: 'h', nonce, from, mac: MAC });
  const as = (from: string) => ({ namespace: 'default', name: 'h', token, from });
  const kinds = async () => (await store.events.all()).map((e) => e.kind);
  return { store, secrets, commands, holds, redeem, as, kinds, nonce, token, host: h, machine: m };
}

t.test(
  'proxy mode: a redemption from anywhere but the address the host asked the site for is a conflict',
  async (t) => {
    const w = await world(t);
    w.holds.ip = ['10.9.0.21'];
    const stolen = await w.redeem('10.9.0.66');
    t.match(stolen, { ok: true, value: { kind: 'conflict' } }, 'the attacker gets nothing');
    t.notOk((await w.store.hosts.get('default/h'))?.attempt, 'and the attempt ends: the token it would carry is void');
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

t.test("IPv6: a claim from the host's IPv6 lease gets IPv6 URLs all through; anyone else a conflict", async (t) => {
  const w = await world(t);
  w.holds.ip = ['fd09::105', 'fd09::5054:ff:fe00:1'];
  t.equal(
    await w.commands.claimUrl('default/h', 'fd09::105'),
    `http://[fd09::1]/api/v1/boot/default/h/${w.nonce}`,
    'the claim URL iPXE is given names our IPv6 address',
  );
  const r = await w.redeem('fd09::105');
  if (!r.ok || r.value.kind !== 'ok') throw new Error('not redeemed');
  t.match(r.value.script, /kernel http:\/\/\[fd09::1\]\/assets\/inspector\/vmlinuz/, 'our inspector, by IPv6');
  t.match(r.value.script, /beskar7\.api=http:\/\/\[fd09::1\] /, 'the callbacks, by IPv6');
  t.match(r.value.script, /beskar7\.target=http:\/\/\[fd09::1\]\/t\.tgz/, 'our target image, by IPv6');
  const report = await w.commands.acceptReport(w.as('fd09::5054:ff:fe00:1'), sampleReport(MAC));
  t.match(report, { ok: true, value: { approved: true } }, "the inspector's SLAAC address counts as the host's");
  const stolen = await w.commands.acceptProgress(w.as('fd09::66'), { step: 'x', ok: true, message: '' });
  t.match(stolen, { ok: false, code: 'unauthorized', misuse: true }, 'another IPv6 address: misuse');
  const w2 = await world(t);
  w2.holds.ip = ['fd09::105'];
  t.match(await w2.redeem('fd09::66'), { ok: true, value: { kind: 'conflict' } }, 'a claim from elsewhere');
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
  t.same(
    await w.commands.bootstrap(w.as('10.9.0.30')),
    { ok: false, code: 'notFound', error: 'not found' },
    'before the report',
  );
  t.match(await w.commands.acceptReport(w.as('10.9.0.30'), sampleReport(MAC)), { ok: true, value: { approved: true } });
  const generated = await w.commands.bootstrap(w.as('10.9.0.30'));
  t.match(
    generated,
    { ok: true, value: /^#cloud-config\n[\s\S]*\nhostname: h\n$/ },
    'no source named: a minimal config',
  );
  const setSpec = async (spec: Partial<StoredMachine['spec']>) => {
    const m = (await w.store.machines.get('default/m')) as StoredMachine;
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
    await new Pipeline(w.store).run(() => ({
      plan: { writes: [w.store.secrets.put(`${namespace}/join`, s)] },
      value: 0,
    }));
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

const cleaningHost = (h: StoredHost): StoredHost => {
  const { consumer: _, ...status } = h.status;
  return {
    ...h,
    status: { ...status, state: 'Cleaning', inspectionPhase: 'Complete', needsCleaning: true },
    attempt: { ...(h.attempt as NonNullable<StoredHost['attempt']>), purpose: 'clean' },
  };
};

t.test('claimUrl: the nonce URL of a live attempt; once claimed, only for the claimant', async (t) => {
  const w = await world(t);
  const url = `http://10.9.0.1/api/v1/boot/default/h/${w.nonce}`;
  t.equal(await w.commands.claimUrl('default/nope'), undefined, 'no such host');
  t.equal(await w.commands.claimUrl('default/h', '10.9.0.30'), url);
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.equal(await w.commands.claimUrl('default/h', '10.9.0.30'), url, 'iPXE asking again from the claimant');
  t.equal(await w.commands.claimUrl('default/h', '10.9.0.31'), 'claimed', 'anyone else');
  t.equal(await w.commands.claimUrl('default/h'), 'claimed', 'an unknown address');
  for (const [state, live] of [
    ['Ready', true],
    ['Cleaning', true],
    ['Available', false],
    ['Provisioned', false],
  ] as const) {
    const v = await world(t, { host: (h) => ({ ...h, status: { ...h.status, state } }) });
    t.equal(
      await v.commands.claimUrl('default/h'),
      live ? `http://10.9.0.1/api/v1/boot/default/h/${v.nonce}` : undefined,
      `${state}: ${live ? 'live' : 'no attempt to boot'}`,
    );
  }
  const none = await world(t, { host: ({ attempt: _, ...h }) => h });
  t.equal(await none.commands.claimUrl('default/h'), undefined, 'no attempt');
});

t.test('redeemNonce: what is unknown, the first claim, the same claimant again', async (t) => {
  const w = await world(t);
  const unknown = { ok: true, value: { kind: 'unknown' } };
  const r = (over: Partial<Parameters<typeof w.commands.redeemNonce>[0]>) =>
    w.commands.redeemNonce({ namespace: 'default', name: 'h', nonce: w.nonce, from: '10.9.0.30', mac: MAC, ...over });
  t.same(await r({ name: 'nope' }), unknown, 'no such host');
  t.same(await r({ namespace: 'other' }), unknown, 'another namespace');
  t.same(await r({ nonce: w.nonce.replace(/.$/, (c) => (c === 'a' ? 'b' : 'a')) }), unknown, 'a wrong nonce');
  t.same(await w.kinds(), [], 'none of these writes anything');
  const first = await r({});
  if (!first.ok || first.value.kind !== 'ok') return t.fail('not claimed');
  t.match(first.value.script, `kernel http://10.9.0.1/assets/inspector`, "the machine's inspection image");
  t.match(first.value.script, `beskar7.token=${w.token}`);
  t.notMatch(first.value.script, 'beskar7.mode=clean');
  const h = (await w.store.hosts.get('default/h')) as StoredHost;
  t.match(h.attempt?.redeemed, { from: '10.9.0.30', mac: MAC });
  t.equal(h.status.inspectionPhase, 'InProgress');
  t.same(await w.kinds(), ['CredentialClaimed']);
  t.same(await r({}), first, 'the same claimant again: the same script');
  t.same(await w.kinds(), ['CredentialClaimed'], 'and nothing written');
  const gone = await world(t, { host: ({ attempt: _, ...h }) => h });
  t.same(await gone.redeem('10.9.0.30'), unknown, 'a host with no attempt');
  const free = await world(t, {
    host: (h) => ({ ...h, status: { ...h.status, consumer: undefined } }),
    machine: () => undefined,
  });
  t.same(await free.redeem('10.9.0.30'), unknown, 'an inspection attempt no machine holds');
  const expired = await world(t, {
    host: (h) => ({ ...h, attempt: { id: 'a1', expiresAt: new Date(Date.now() - 1000).toISOString() } }),
  });
  t.same(await expired.redeem('10.9.0.30'), unknown, 'an expired attempt');
});

t.test('redeemNonce: a second claimant ends the attempt without using it up', async (t) => {
  const w = await world(t);
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  const c = await w.redeem('10.9.0.31');
  t.same(c, {
    ok: true,
    value: { kind: 'conflict', message: 'boot nonce claimed again from 10.9.0.31 (first claim from 10.9.0.30)' },
  });
  const kinds = await w.kinds();
  t.same(kinds.slice(0, 2), ['CredentialClaimed', 'CredentialConflict']);
  t.ok(kinds.length > 2, `the attempt's end is told too (${kinds.join(', ')})`);
  const m = (await w.store.machines.get('default/m')) as StoredMachine;
  t.match(m.status.conditions, [{ type: 'CredentialsContested', status: 'True', reason: 'CredentialConflict' }]);
  t.equal(m.status.attempts, 0, 'the contested attempt does not count');
  t.notOk((await w.store.hosts.get('default/h'))?.attempt, 'its credentials are void');
});

t.test(
  "a GRUB host's claim: the inspector over TFTP, or at once a failed machine when GRUB cannot reach it",
  async (t) => {
    const ours = await world(t);
    const r = await ours.commands.redeemNonce({
      namespace: 'default',
      name: 'h',
      nonce: ours.nonce,
      from: '10.9.0.30',
      loader: 'grub',
    });
    t.match(r, { ok: true, value: { kind: 'ok' } });
    const cfg = r.ok && r.value.kind === 'ok' ? r.value.script : '';
    t.match(cfg, /^set b7dir=\/assets\/inspector$/m, 'our inspector, read over TFTP');
    t.match(cfg, /^linux "\$\{b7dir\}\/vmlinuz" .*beskar7\.token=/m, 'with the attempt token');

    const far = await world(t, {
      machine: (m) => ({ ...m, spec: { ...m.spec, inspectionImageURL: 'http://images.example/insp/' } }),
    });
    const f = await far.commands.redeemNonce({
      namespace: 'default',
      name: 'h',
      nonce: far.nonce,
      from: '10.9.0.30',
      loader: 'grub',
    });
    const script = f.ok && f.value.kind === 'ok' ? f.value.script : '';
    t.notMatch(script, /beskar7\.token/, 'no token handed out');
    t.match(script, /cannot boot the inspector http:\/\/images\.example\/insp\//, 'the console says why');
    const m = (await far.store.machines.get('default/m')) as StoredMachine;
    t.equal(m.status.phase, 'Failed', 'the machine fails at the first attempt: no retry can mend it');
    t.equal(m.status.failureReason, 'InspectorUnreachable');
    t.match(
      m.status.failureMessage,
      /signed GRUB \(Secure Boot or ARM64\), which loads only this appliance's assets, over TFTP: spec\.inspectionImageURL http:\/\/images\.example\/insp\/ is out of its reach$/,
    );
    const h = await far.store.hosts.get('default/h');
    t.notOk(h?.attempt, 'the attempt is over');
    t.notOk(h?.status.consumer, 'the host is released');
    t.ok(
      (await far.store.effects.all()).some((e) => e.kind === 'powerOff'),
      'and powered off',
    );
    const ipxe = await world(t, {
      machine: (m) => ({ ...m, spec: { ...m.spec, inspectionImageURL: 'http://images.example/insp/' } }),
    });
    t.match(
      await ipxe.redeem('10.9.0.30'),
      { ok: true, value: { kind: 'ok' } },
      'iPXE reaches any server: nothing fails',
    );
    t.equal(((await ipxe.store.machines.get('default/m')) as StoredMachine).status.phase, 'Inspecting');
  },
);

t.test('cleaning: the bundled cleaner is booted; a contested claim starts the cleaning over', async (t) => {
  const w = await world(t, { host: cleaningHost, machine: () => undefined });
  const ok = await w.redeem('10.9.0.30');
  if (!ok.ok || ok.value.kind !== 'ok') return t.fail('not claimed');
  t.match(ok.value.script, 'chain http://10.9.0.1/beskar7-inspector/boot');
  t.match(ok.value.script, 'beskar7.mode=clean');
  t.equal((await w.store.hosts.get('default/h'))?.status.inspectionPhase, 'Complete', 'the inspection outcome stays');
  const c = await w.redeem('10.9.0.31');
  t.match(c, { ok: true, value: { kind: 'conflict', message: /claimed again from 10\.9\.0\.31/ } });
  const h = (await w.store.hosts.get('default/h')) as StoredHost;
  t.equal(h.attempt, undefined, 'fresh credentials on the next pass');
  t.equal(h.status.state, 'Cleaning', 'still to be cleaned');
  t.same(await w.kinds(), ['CredentialClaimed', 'CredentialConflict']);
  const held = await world(t, {
    host: (h) => ({ ...cleaningHost(h), status: { ...cleaningHost(h).status, consumer: 'm' } }),
  });
  const s = await held.redeem('10.9.0.30');
  t.match(s.ok && s.value.kind === 'ok' && s.value.script, 'beskar7.mode=clean', 'a clean attempt boots the cleaner');
});

t.test('authorization: token, namespace, address; misuse remembered once per attempt', async (t) => {
  const w = await world(t);
  const refused = { ok: false, code: 'unauthorized', error: 'unauthorized' };
  const step = { step: 'x', ok: true, message: 'm' };
  t.same(await w.commands.acceptProgress(w.as('10.9.0.30'), step), refused, 'before the nonce is claimed');
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.same(await w.commands.acceptProgress({ ...w.as('10.9.0.30'), name: 'nope' }, step), refused, 'another host');
  t.same(await w.commands.acceptProgress({ ...w.as('10.9.0.30'), namespace: 'x' }, step), refused, 'another namespace');
  t.same(await w.commands.acceptProgress({ ...w.as('10.9.0.30'), token: undefined }, step), refused, 'no token');
  t.same(await w.commands.acceptProgress(w.as('10.9.0.30'), step), { ok: true, value: 'h' }, 'the claimant');
  t.same(await w.kinds(), ['CredentialClaimed', 'InspectorStep']);
  t.same(
    await w.commands.acceptProgress(w.as('10.9.0.66'), step),
    { ...refused, misuse: true },
    'the right token from another address',
  );
  const h = (await w.store.hosts.get('default/h')) as StoredHost;
  t.equal(h.attempt?.misused, true, 'remembered on the attempt');
  const events = await w.store.events.all();
  t.match(events.at(-1), {
    kind: 'CredentialMisuse',
    message:
      'inspector token used from 10.9.0.66; it was claimed from 10.9.0.30 (further uses are counted in beskar7_inspector_credentials_total{result="misuse"})',
  });
  t.same(await w.commands.acceptProgress(w.as('10.9.0.67'), step), { ...refused, misuse: true }, 'again');
  t.equal((await w.store.events.all()).length, events.length, 'no second event');
  const none = await world(t, { host: ({ attempt: _, ...h }) => h });
  t.same(await none.commands.acceptProgress(none.as('10.9.0.30'), step), refused, 'a host with no attempt');
});

t.test('a host no machine holds takes no report; an invalid body is remembered', async (t) => {
  const w = await world(t, { host: cleaningHost, machine: () => undefined });
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.same(await w.commands.acceptReport(w.as('10.9.0.30'), sampleReport(MAC)), {
    ok: false,
    code: 'conflict',
    error: 'host h is not held by a machine',
  });
  const v = await world(t);
  t.match(await v.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.same(await v.commands.reportInvalid(v.as('10.9.0.30'), 'cpus: required'), { ok: true, value: undefined });
  t.match((await v.store.events.all()).at(-1), {
    kind: 'ReportRejected',
    message: 'invalid report body: cpus: required',
  });
  t.same(await v.commands.reportInvalid(v.as('10.9.0.66'), 'x'), {
    ok: false,
    code: 'unauthorized',
    error: 'unauthorized',
    misuse: true,
  });
});

t.test('acceptReport: the same report again gets its verdict; another is refused and remembered', async (t) => {
  const w = await world(t);
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.same(await w.commands.acceptReport(w.as('10.9.0.30'), sampleReport(MAC)), { ok: true, value: { approved: true } });
  const after = await w.kinds();
  t.same(
    await w.commands.acceptReport(w.as('10.9.0.30'), sampleReport(MAC)),
    { ok: true, value: { approved: true } },
    'the same report (its answer lost): approved again',
  );
  t.same(await w.kinds(), after, 'and nothing written');
  const other = await w.commands.acceptReport(w.as('10.9.0.30'), sampleReport(MAC, { serialNumber: 'S2' }));
  t.match(other, { ok: false, code: 'conflict', error: 'host h is not inspecting (Ready/Complete)' });
  t.same(await w.kinds(), [...after, 'ReportRejected']);
});

t.test('acceptReport: requirements not met release the host; with tryOtherHosts the machine moves on', async (t) => {
  const other: StoredHost = {
    name: 'h2',
    namespace: 'default',
    spec: {
      redfish: {
        address: 'http://bmc2',
        username: 'u',
        passwordEnc: 'v1:x',
        insecureSkipVerify: false,
        allowPlainHttp: true,
      },
      bootMACs: ['52:54:00:0d:00:02'],
      bootChain: 'Auto',
      labels: {},
    },
    status: { state: 'Available', nics: [{ mac: '52:54:00:0d:00:02' }] },
    createdAt: 't',
  };
  const big = (m: StoredMachine): StoredMachine => ({
    ...m,
    spec: { ...m.spec, hardwareRequirements: { minCPUCores: 64, minMemoryGB: 0, minDiskGB: 0 } },
  });
  for (const tryOtherHosts of [false, true]) {
    const w = await world(t, { machine: big, tryOtherHosts, others: [other] });
    t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
    t.same(await w.commands.acceptReport(w.as('10.9.0.30'), sampleReport(MAC)), {
      ok: true,
      value: { approved: false },
    });
    const m = (await w.store.machines.get('default/m')) as StoredMachine;
    t.equal(m.status.phase, tryOtherHosts ? 'Pending' : 'Failed', `tryOtherHosts ${tryOtherHosts}`);
    t.equal((await w.store.hosts.get('default/h'))?.status.state, 'Available', 'the host is released');
    t.equal((await w.store.effects.all()).length, 1, 'with a stored power-off');
    t.equal(await w.store.bootInstructions.get(MAC), undefined, 'and no boot instruction left');
  }
  const fits = await world(t, { tryOtherHosts: true, others: [other] });
  t.match(await fits.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.same(await fits.commands.acceptReport(fits.as('10.9.0.30'), sampleReport(MAC)), {
    ok: true,
    value: { approved: true },
  });
});

t.test('provisioned and provision-failed: only after validation', async (t) => {
  const w = await world(t);
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.same(await w.commands.provisioned(w.as('10.9.0.30')), {
    ok: false,
    code: 'conflict',
    error: 'host h has not passed validation',
  });
  t.same(
    await w.commands.provisionFailed(w.as('10.9.0.30'), 'early'),
    { ok: true, value: undefined },
    '§4.5: 202, no change',
  );
  t.equal((await w.store.machines.get('default/m'))?.status.phase, 'Inspecting');
  t.match(await w.commands.acceptReport(w.as('10.9.0.30'), sampleReport(MAC)), { ok: true, value: { approved: true } });
  t.match(await w.commands.bootstrap(w.as('10.9.0.30')), { ok: true, value: /^#cloud-config\n[\s\S]*hostname: h\n$/ });
  t.same(await w.commands.provisioned(w.as('10.9.0.30')), { ok: true, value: 'h' });
  t.equal((await w.store.machines.get('default/m'))?.status.phase, 'Provisioned');
  t.equal((await w.store.hosts.get('default/h'))?.status.state, 'Provisioned');
  t.match(await w.store.bootInstructions.get(MAC), { script: 'local-disk' }, 'later boots go to the disk');
  t.equal((await w.kinds()).at(-1), 'Provisioned');
  t.same(
    await w.commands.provisioned(w.as('10.9.0.30')),
    { ok: false, code: 'unauthorized', error: 'unauthorized' },
    'the attempt is over',
  );

  const f = await world(t);
  t.match(await f.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.match(await f.commands.acceptReport(f.as('10.9.0.30'), sampleReport(MAC)), { ok: true, value: { approved: true } });
  t.same(await f.commands.provisionFailed(f.as('10.9.0.30'), 'disk full'), { ok: true, value: 'h' });
  t.equal((await f.store.machines.get('default/m'))?.status.phase, 'Failed');
  t.equal(await f.store.bootInstructions.get(MAC), undefined);
  t.ok((await f.store.effects.all()).length >= 1, 'a stored power-off');
  t.match(await f.store.events.all(), [{}, {}, {}, { message: /disk full/ }]);
});

t.test('cleaned: only from a host being cleaned', async (t) => {
  const w = await world(t, { host: cleaningHost, machine: () => undefined });
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.same(await w.commands.cleaned(w.as('10.9.0.30'), { ok: true, message: 'erased /dev/vda' }), {
    ok: true,
    value: 'h',
  });
  const h = (await w.store.hosts.get('default/h')) as StoredHost;
  t.equal(h.status.state, 'Available');
  t.equal(h.attempt, undefined);
  t.equal((await w.kinds()).at(-1), 'Cleaned');
  t.equal((await w.store.effects.all()).length, 1, 'powered off');
  const v = await world(t);
  t.match(await v.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.same(await v.commands.cleaned(v.as('10.9.0.30'), { ok: true, message: '' }), {
    ok: false,
    code: 'conflict',
    error: 'host h is not being cleaned',
  });
  // Cleaning, but this attempt is an inspection one
  const u = await world(t, {
    host: (h) => ({ ...h, status: { ...h.status, state: 'Cleaning' } }),
  });
  t.match(
    await u.redeem('10.9.0.30'),
    { ok: true, value: { kind: 'unknown' } },
    'an inspection nonce of a host being cleaned',
  );
});

t.test('a host inspected before sends the same report in a new attempt: it is judged again', async (t) => {
  const first = await world(t);
  t.match(await first.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.match(await first.commands.acceptReport(first.as('10.9.0.30'), sampleReport(MAC)), { ok: true });
  const id = (await first.store.hosts.get('default/h'))?.status.inspectionReportId as string;
  const stored = await first.store.reports.get(id);
  // a later attempt on the same host: Inspecting again, its earlier report still stored
  const w = await world(t, { host: (h) => ({ ...h, status: { ...h.status, inspectionReportId: id } }) });
  await new Pipeline(w.store).run(() => ({ plan: { writes: [w.store.reports.put(id, stored!)] }, value: 0 }));
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  t.same(await w.commands.acceptReport(w.as('10.9.0.30'), sampleReport(MAC)), { ok: true, value: { approved: true } });
  const h = (await w.store.hosts.get('default/h')) as StoredHost;
  t.equal(h.status.state, 'Ready', 'judged, not taken for a replay');
  t.not(h.status.inspectionReportId, id, "and stored as this attempt's report");
  t.same(await w.kinds(), ['CredentialClaimed', 'ReportReceived', 'Ready']);
});

t.test('a failed inspector step is kept on the host', async (t) => {
  const w = await world(t);
  t.match(await w.redeem('10.9.0.30'), { ok: true, value: { kind: 'ok' } });
  const r = await w.commands.acceptProgress(w.as('10.9.0.30'), { step: 'download', ok: false, message: 'HTTP 404' });
  t.same(r, { ok: true, value: 'h' });
  t.equal((await w.store.hosts.get('default/h'))?.status.errorMessage, 'inspector download: HTTP 404');
  t.equal((await w.kinds()).at(-1), 'InspectorFailed');
});

t.test('cleaned: refused unless the host is being cleaned under a cleaning attempt', async (t) => {
  const redeemed = (h: StoredHost, state: StoredHost['status']['state'], purpose?: 'clean'): StoredHost => ({
    ...h,
    status: { ...h.status, state },
    attempt: {
      id: 'a1',
      expiresAt: new Date(Date.now() + 60_000).toISOString(),
      redeemed: { from: '10.9.0.30', at: new Date().toISOString() },
      ...(purpose ? { purpose } : {}),
    },
  });
  const refused = { ok: false, code: 'conflict', error: 'host h is not being cleaned' };
  const inspecting = await world(t, { host: (h) => redeemed(h, 'Cleaning') });
  t.same(
    await inspecting.commands.cleaned(inspecting.as('10.9.0.30'), { ok: true, message: '' }),
    refused,
    'Cleaning, but the attempt is an inspection',
  );
  const notCleaning = await world(t, { host: (h) => redeemed(h, 'InUse', 'clean') });
  t.same(
    await notCleaning.commands.cleaned(notCleaning.as('10.9.0.30'), { ok: true, message: '' }),
    refused,
    'a cleaning attempt of a host no longer Cleaning',
  );
  t.equal((await notCleaning.store.hosts.get('default/h'))?.status.state, 'InUse', 'nothing changed');
});
