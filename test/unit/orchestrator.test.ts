import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import path from 'node:path';
import type { Test } from 'tap';

import t from 'tap';
import { API_DOCS } from '../../src/admin/openapi.js';
import { repoRoot } from '../../src/paths.js';
import { ADMIN, inProcess, metricsOf, passesAfter, until } from '../helpers/appliance.js';
import { addHost, addMachine, HOSTS, MACHINES, paths, SECRETS } from '../helpers/resources.js';
import { callInspector, claim, claimUrlOf, scriptOf, simulateInspector, wireReport } from '../helpers/sim-inspector.js';
import { bmcWithMachine, conditionsOf, hostBody, machineBody, PROVISIONED } from '../helpers/workflow.js';
import { FakeBmc } from '../lab/fake-bmc/server.js';

t.test('machine -> claim -> PXE + power -> report -> Ready -> Provisioned', async (t) => {
  let base = '';
  const { bmc, address, posts } = await bmcWithMachine(t, () => base, '52:54:00:01:00:01', {
    personality: { requireIfMatch: true, onceRevertsOnBoot: true },
  });
  const a = await inProcess(t);
  base = a.base;
  await t.test('enrolment: Available with what the BMC says', async (t) => {
    t.equal((await addHost(a.kube, hostBody('h1', address))).status, 201);
    const h = await until('host Available', async () => {
      const r = await a.kube('GET', `${HOSTS}/h1`);
      return r.json.status.state === 'Available' ? r.json : undefined;
    });
    t.same(h.status.nics, [{ mac: '52:54:00:01:00:01' }], 'NIC MACs from the BMC');
    t.equal(h.status.hardwareDetails.manufacturer, 'Beskar7 Fake');
    t.notMatch(JSON.stringify(h), /secret|passwordEnc/, 'no password in the API, not even encrypted');
  });

  let m: any;
  await t.test('a machine claims it and ends Provisioned', async (t) => {
    t.equal(
      (await addMachine(a.kube, machineBody('m1', { minCPUCores: 2, minMemoryGB: 8, minDiskGB: 50 }))).status,
      201,
    );
    m = await until('machine Provisioned', async () => {
      const r = await a.kube('GET', `${MACHINES}/m1`);
      return r.json.status.phase === 'Provisioned' ? r.json : undefined;
    });
    t.equal(m.status.hostName, 'h1');
  });
  if (!m) return;

  await t.test('what the records, the BMC, metrics and events show', async (t) => {
    t.same(posts, [202], 'the report was accepted once');
    const host = (await a.kube('GET', `${HOSTS}/h1`)).json;
    t.equal(host.status.state, 'Provisioned');
    t.equal(host.status.inspectionPhase, 'Complete');
    t.equal(host.spec.consumerRef.name, 'm1');
    t.equal(host.status.inspectionReport.cpus.cores, 4, 'the report, in the host');
    t.equal(bmc.power, 'On');
    t.ok(
      bmc.seen.some((s) => s.method === 'PATCH' && (s.body as any).Boot.BootSourceOverrideTarget === 'Pxe'),
      'one-time PXE was set',
    );
    const script = await (await fetch(`${a.base}/boot/host.ipxe?mac=52-54-00-01-00-01`)).text();
    t.match(script, /exit 1/, 'a provisioned host boots from its disk from now on');
    const kinds = (await a.api('GET', '/journal')).json.items.map((e: { kind: string }) => e.kind);
    const metrics = await metricsOf(a.base);
    t.match(metrics, /beskar7_hosts\{state="Provisioned"\} 1/);
    t.match(metrics, /beskar7_inspector_calls_total\{endpoint="report",status="202"\} 1/);
    t.match(metrics, /beskar7_inspector_calls_total\{endpoint="provisioned",status="202"\} 1/);
    t.match(metrics, /beskar7_inspector_credentials_total\{result="claimed"\} 1/);
    t.match(metrics, /beskar7_redfish_calls_total\{method="PATCH",result="204"\} \d/);
    t.match(metrics, /beskar7_redfish_call_seconds_count\{method="GET"\} \d/);
    t.match(kinds, [
      'HostCreated',
      'Enrolled',
      'MachineCreated',
      'Claimed',
      'InspectionStarted',
      'PowerOn',
      'CredentialClaimed',
      'ReportReceived',
      'Ready',
      'Provisioned',
    ]);
    t.match(conditionsOf(m), PROVISIONED);
    // the attempt is over: nothing to claim any more
    const replay = await simulateInspector(a.base, '52:54:00:01:00:01', wireReport('52:54:00:01:00:01'));
    t.equal(replay.status, 0, 'no nonce in the script any more');
  });

  await t.test('deletion: powered off, override cleared, host released, machine gone', async (t) => {
    const deleting = await a.kube('DELETE', `${MACHINES}/m1`);
    t.match(deleting, { status: 200, json: { status: { phase: 'Deleting' }, metadata: { deletionTimestamp: /Z$/ } } });
    await until('machine gone', async () =>
      (await a.kube('GET', `${MACHINES}/m1`)).status === 404 ? true : undefined,
    );
    const released = (await a.kube('GET', `${HOSTS}/h1`)).json;
    t.equal(released.status.state, 'Available');
    t.notOk(released.spec.consumerRef);
    t.equal(bmc.power, 'Off', 'powered off');
    t.equal(bmc.boot.enabled, 'Disabled', 'override cleared');
  });
});

t.test('requirements not met: Failed with a clear reason, host released', async (t) => {
  let base = '';
  const { address } = await bmcWithMachine(t, () => base, '52:54:00:02:00:01');
  const a = await inProcess(t);
  base = a.base;
  await addHost(a.kube, hostBody('h2', address));
  await addMachine(a.kube, machineBody('big', { minCPUCores: 64, minMemoryGB: 512, minDiskGB: 50 }));
  const m = await until('machine Failed', async () => {
    const r = await a.kube('GET', `${MACHINES}/big`);
    return r.json.status.phase === 'Failed' ? r.json : undefined;
  });
  t.equal(m.status.failureReason, 'RequirementsNotMet');
  t.equal(m.status.failureMessage, '4 CPU cores < 64 required; 16 GiB memory < 512 GiB required');
  const h = await until('host released', async () => {
    const r = await a.kube('GET', `${HOSTS}/h2`);
    return r.json.status.state === 'Available' ? r.json : undefined;
  });
  t.ok(h.status.inspectionReport, 'the report stays with the host');
});

t.test(
  'requirements not met on the first host: the machine moves to the next one and is provisioned there',
  async (t) => {
    let base = '';
    const small = await bmcWithMachine(t, () => base, '52:54:00:02:00:11');
    const cores16 = [{ id: '0', model: 'vCPU', cores: 16, threads: 32 }];
    const large = await bmcWithMachine(t, () => base, '52:54:00:02:00:12', {
      report: wireReport('52:54:00:02:00:12', { cpus: cores16 }),
    });
    const a = await inProcess(t);
    base = a.base;
    // the oldest host goes first (and, created in the same millisecond, the first by name)
    await addHost(a.kube, hostBody('a-small', small.address));
    await addHost(a.kube, hostBody('b-large', large.address));
    await addMachine(a.kube, machineBody('m8', { minCPUCores: 8, minMemoryGB: 8, minDiskGB: 50 }));
    const m = await until('machine Provisioned', async () => {
      const r = await a.kube('GET', `${MACHINES}/m8`);
      return r.json.status.phase === 'Provisioned' || r.json.status.phase === 'Failed' ? r.json : undefined;
    });
    t.equal(m.status.phase, 'Provisioned');
    t.equal(m.status.hostName, 'b-large', 'on the host that meets the requirements');
    t.same(m.status.rejectedHosts, ['a-small'], 'the first host is remembered as failed for this machine');
    const h = await until('first host released', async () => {
      const r = await a.kube('GET', `${HOSTS}/a-small`);
      return r.json.status.state === 'Available' ? r.json : undefined;
    });
    t.notOk(h.spec.consumerRef?.name, 'the first host is free for another machine');
  },
);

t.test('no report: bounded retries with backoff, then Failed InspectionTimeout', async (t) => {
  let base = '';
  const { bmc, address } = await bmcWithMachine(t, () => base, '52:54:00:03:00:01', { report: null });
  const a = await inProcess(t, {
    orchestrator: {
      tickSeconds: 0.05,
      inspectionTimeoutSeconds: 0.4,
      maxAttempts: 3,
      retryBaseSeconds: 0.1,
      powerDeadlineSeconds: 5,
    },
  });
  base = a.base;
  await addHost(a.kube, hostBody('h3', address));
  await addMachine(a.kube, machineBody('m3'));
  const m = await until('machine Failed', async () => {
    const r = await a.kube('GET', `${MACHINES}/m3`);
    return r.json.status.phase === 'Failed' ? r.json : undefined;
  });
  t.equal(m.status.failureReason, 'InspectionTimeout');
  t.match(m.status.failureMessage, /after 3 attempts/);
  const resets = () =>
    bmc.seen
      .filter((s) => s.path.endsWith('ComputerSystem.Reset'))
      .map((s) => (s.body as { ResetType: string }).ResetType);
  // the failure is recorded first, the power-off follows
  await until('ForceOff', async () => (resets().includes('ForceOff') ? true : undefined));
  t.same(
    resets(),
    ['On', 'ForceRestart', 'ForceRestart', 'ForceOff'],
    'first On, then a host already on is restarted, powered off when it failed',
  );
});

t.test('enrolment against a BMC that refuses us ends in Error with the reason', async (t) => {
  const bmc = new FakeBmc({});
  const address = await bmc.start();
  t.teardown(() => bmc.stop());
  const a = await inProcess(t);
  await addHost(a.kube, {
    name: 'bad',
    spec: { redfish: { address, username: 'admin', password: 'wrong-password-xyz', allowPlainHttp: true } },
  });
  const h = await until('host Error', async () => {
    const r = await a.kube('GET', `${HOSTS}/bad`);
    return r.json.status.state === 'Error' ? r.json : undefined;
  });
  t.match(h.status.errorMessage, /enrolment failed: .*HTTP 401/);
  t.notMatch(JSON.stringify(a.lines), /wrong-password-xyz/, 'the password is in no log line');
});

t.test('API input: admin token, zod messages, size cap, report tokens', async (t) => {
  const a = await inProcess(t, { api: { adminToken: ADMIN, maxBodyBytes: 4096 } });
  t.match((await a.kube('GET', HOSTS, undefined, null)).json, { kind: 'Status', code: 401 });
  t.equal((await a.kube('GET', HOSTS, undefined, 'wrong-token-wrong-token-12')).status, 401);
  const host = (name: string, redfishConnection: Record<string, unknown>) => ({
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
    kind: 'PhysicalHost',
    metadata: { name },
    spec: { redfishConnection: { credentialsSecretRef: 'bmc', ...redfishConnection } },
  });
  const r1 = await a.kube('POST', HOSTS, host('Bad_Name', { address: 'ftp://x' }));
  t.equal(r1.status, 422);
  t.match(r1.json.message, /metadata\.name: must be a DNS label/);
  t.match(r1.json.message, /spec\.redfishConnection\.address/);
  t.match(
    r1.json.details.causes.map((c: { field: string }) => c.field),
    ['metadata.name', 'spec.redfishConnection.address'],
  );
  await a.kube('POST', SECRETS, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'bmc' },
    stringData: { username: 'root', password: 'p' },
  });
  const clear = await a.kube('POST', HOSTS, host('plain', { address: 'http://10.0.0.9' }));
  t.equal(clear.status, 422);
  t.match(clear.json.details.causes, [
    {
      field: 'spec.redfishConnection.address',
      message:
        /^plain http:\/\/ sends the BMC password in clear: use https:\/\/, or set spec\.redfish(Connection)?\.allowPlainHttp: true/,
    },
  ]);
  const r2 = await addMachine(a.kube, {
    name: 'm',
    spec: {
      inspectionImageURL: 'http://x/i',
      targetImageURL: 'http://x/t',
      hardwareRequirements: { minMemoryGB: '32GB' },
    },
  });
  t.equal(r2.status, 422);
  t.match(r2.json.details.causes, [{ field: 'spec.hardwareRequirements.minMemoryGB', message: /number/ }]);
  const raw = (body: string, type = 'application/json') =>
    fetch(`${a.base}${HOSTS}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': type },
      body,
    });
  const notJson = await raw('{not json');
  t.match([notJson.status, (await notJson.json()).reason], [400, 'BadRequest']);
  const big = await raw('x'.repeat(5000));
  t.match([big.status, (await big.json()).reason], [413, 'RequestEntityTooLarge']);
  // the same, chunked without a Content-Length: the cap counts what arrives, and the connection is closed
  const chunked = await new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
    const req = request(`${a.base}${HOSTS}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, connection: res.headers.connection });
    });
    req.on('error', reject);
    for (let i = 0; i < 5; i++) req.write('x'.repeat(1000));
    req.end();
  });
  t.same(chunked, { status: 413, connection: 'close' }, 'a chunked body over the cap: 413, connection closed');
  t.equal((await raw('{}', 'text/plain')).status, 415);

  // the contract's endpoints without the host's token: the same generic 401 for an unknown host and a wrong token
  const as = (host: string, token: string) => ({ api: a.base, namespace: 'default', host, token });
  const rep = wireReport('52:54:00:05:00:01');
  const ghost = await callInspector(as('ghost', 'tok'), 'inspection', rep);
  t.same([ghost.status, await ghost.json()], [401, { error: 'unauthorized' }]);
  const bmc = new FakeBmc({ macs: ['52:54:00:05:00:01'] });
  const address = await bmc.start();
  t.teardown(() => bmc.stop());
  await addHost(a.kube, hostBody('h5', address));
  await until('host Available', async () =>
    (await a.kube('GET', `${HOSTS}/h5`)).json.status.state === 'Available' ? true : undefined,
  );
  const wrong = await callInspector(as('h5', 'some-token'), 'inspection', rep);
  t.same([wrong.status, await wrong.json()], [401, { error: 'unauthorized' }], 'a wrong token learns nothing more');
  const junk = await callInspector(as('h5', 'some-token'), 'inspection', '{not json');
  t.equal(junk.status, 401, 'the body of an unauthenticated caller earns no more than 401');
  const naughty = await callInspector(as(encodeURIComponent('\x1b]0;x\x07'), 'tok'), 'inspection', rep);
  t.equal(naughty.status, 401, 'a host name outside the schema');
  for (const e of ['bootstrap', 'provisioned', 'provision-failed'] as const) {
    t.equal((await callInspector(as('h5', 'x'), e, e === 'bootstrap' ? undefined : {})).status, 401, `${e} too`);
  }
  const nonce = await fetch(`${a.base}/api/v1/boot/default/h5/${'A'.repeat(43)}`);
  t.same([nonce.status, await nonce.text()], [404, '#!ipxe\necho Beskar7: no boot script here\nexit 1\n']);
  const events = (await a.api('GET', '/journal')).json.items.filter(
    (e: { kind: string }) => e.kind === 'ReportRejected' || e.kind.startsWith('Credential'),
  );
  t.equal(events.length, 0, 'unauthenticated refusals store no event');
  const metrics = await metricsOf(a.base);
  t.match(metrics, /beskar7_inspector_calls_total\{endpoint="report",status="401"\} 4/, 'they are counted');
  t.match(metrics, /beskar7_inspector_credentials_total\{result="unknown"\} 1/);
  const missing = await addMachine(a.kube, {
    name: 'nope',
    spec: { inspectionImageURL: `${a.base}/assets/no-such-inspector`, targetImageURL: 'http://x/t' },
  });
  t.equal(missing.status, 422);
  t.match(
    missing.json.message,
    /spec\.inspectionImageURL: .*no-such-inspector\/vmlinuz: no such file .*make inspector/,
    'a missing bundled image is refused at creation',
  );
  for (const q of ['abc', '0', '-5', '2.5', '99999999']) {
    const r = await a.api('GET', `/journal?limit=${q}`);
    t.equal(r.status, 400, `events limit ${q} refused`);
    t.match(r.json.error, /^limit: /, r.json.error);
  }
  t.equal((await a.api('GET', '/journal?limit=2')).json.items.length, 2);
  t.equal((await a.api('GET', '/openapi.json', undefined, null)).status, 401, 'the API document needs the token too');
  const doc = (await a.api('GET', '/openapi.json')).json;
  t.equal(doc.openapi, '3.1.0');
  t.ok(
    doc.paths['/api/v1/hosts/{name}/actions'].post.requestBody.content['application/json'].schema.oneOf,
    'schemas come from zod',
  );
  const operations = Object.entries(doc.paths as Record<string, Record<string, { summary: string }>>).flatMap(
    ([p, ops]) => Object.entries(ops).map(([method, op]) => ({ at: `${method.toUpperCase()} ${p}`, op })),
  );
  t.same(
    operations.filter((o) => o.op.summary === 'undocumented').map((o) => o.at),
    [],
    'every route the app serves is documented',
  );
  for (const at of [
    'GET /api/v1/journal',
    'GET /api/v1/backup',
    'GET /api/v1/stream',
    'POST /api/v1/inspection/{ns}/{host}',
  ]) {
    t.ok(
      operations.some((o) => o.at === at),
      `${at} is in the document`,
    );
  }
  t.equal(operations.length, Object.keys(API_DOCS).length, 'and nothing documented is missing from the app');
});

/** A host and machine whose inspection is under way, with no simulated inspector: the test is the machine. */
async function inspecting(t: Test, name: string, mac: string, over: Record<string, unknown> = {}) {
  let base = '';
  const { bmc, address } = await bmcWithMachine(t, () => base, mac, { report: null });
  const a = await inProcess(t, {
    orchestrator: {
      tickSeconds: 0.1,
      retryBaseSeconds: 0,
      powerDeadlineSeconds: 5,
      inspectionTimeoutSeconds: 60,
      ...over,
    },
  });
  base = a.base;
  await addHost(a.kube, hostBody(name, address));
  await addMachine(a.kube, machineBody(`m-${name}`, { minCPUCores: 2, minMemoryGB: 8, minDiskGB: 50 }));
  const url = await until('the nonce URL in the script by MAC', () => claimUrlOf(a.base, mac));
  return { a, bmc, url };
}

t.test('a claimed nonce: one report per attempt, schema and units enforced, then progress', async (t) => {
  const mac = '52:54:00:06:00:01';
  const { a, url } = await inspecting(t, 'h6', mac);
  const p = await claim(url, mac);
  if ('status' in p) throw new Error(`claim ${p.status}`);
  t.equal(p.namespace, 'default');
  t.equal(p.BOOTIF, '01-52-54-00-06-00-01', 'BOOTIF from the ?mac= of the claim');
  const again = await claim(url, mac);
  t.equal('script' in again && again.script, p.script, 'the redeemer fetching again gets the same script (§4.1)');
  t.match(p.token, /^[\w-]{43}$/, 'a 256-bit base64url token');
  t.equal((await a.kube('GET', `${HOSTS}/h6`)).json.status.inspectionPhase, 'InProgress');
  t.equal((await callInspector(p, 'bootstrap')).status, 404, 'no target before a report');
  const badUnits = await callInspector(p, 'inspection', {
    ...wireReport(mac),
    memory: [{ id: 'DIMM0', capacity: '16' }],
  });
  t.equal(badUnits.status, 400);
  t.match((await badUnits.json()).error, /memory\.0\.capacity: must be a number with a unit/);
  const negative = await callInspector(p, 'inspection', {
    ...wireReport(mac),
    disks: [{ name: 'sda', sizeGB: -1, type: 'HDD' }],
  });
  t.match((await negative.json()).error, /disks\.0\.sizeGB: /);
  const stranger = await callInspector(p, 'inspection', wireReport('52:54:00:99:99:99'));
  t.same(
    [stranger.status, (await stranger.json()).error],
    [400, 'the report lists no NIC with the MAC the host booted from (52:54:00:06:00:01)'],
  );
  // two packages of 3 cores, DIMMs in four units: cores are summed, memory is converted to GiB
  const okReport = {
    ...wireReport(mac),
    cpus: [
      { id: '0', model: 'X', cores: 3, threads: 6 },
      { id: '1', model: 'X', cores: 3, threads: 6 },
    ],
    memory: [
      { capacity: '8GiB' },
      { capacity: '4096MiB' },
      { capacity: '4294.967296MB' },
      { capacity: '0.004294967296TB' },
    ],
    extra: 'ignored: the contract is additive',
  };
  const ok = await callInspector(p, 'inspection', okReport);
  t.same([ok.status, await ok.json()], [202, { status: 'accepted', approved: true }]);
  const report = (await a.kube('GET', `${HOSTS}/h6`)).json.status.inspectionReport;
  t.same([report.cpus.count, report.cpus.cores, report.cpus.threads, report.memory.totalGB], [2, 6, 12, 20]);
  const resent = await callInspector(p, 'inspection', okReport);
  t.same(
    [resent.status, await resent.json()],
    [202, { status: 'accepted', approved: true }],
    'the same report sent again (its answer lost) gets the verdict again',
  );
  const other = await callInspector(p, 'inspection', wireReport(mac, { serialNumber: 'OTHER' }));
  t.equal(other.status, 409, 'another report is refused');
  t.not((await a.kube('GET', `${HOSTS}/h6`)).json.status.inspectionReport.serialNumber, 'OTHER', 'and changes nothing');
  const gate = await callInspector(p, 'bootstrap');
  t.equal(gate.status, 200, 'validated: the gate opens');
  t.match(await gate.text(), /^#cloud-config\n[\s\S]*hostname: h6\n$/, 'with user-data');
  t.equal((await callInspector(p, 'progress', { step: 'target-download', ok: true, message: '9 MB' })).status, 202);
  t.equal((await callInspector(p, 'progress', { step: 'kexec', ok: false, message: 'kexec_load failed' })).status, 202);
  t.equal((await callInspector({ ...p, token: 'not-the-token' }, 'progress', { step: 'x', ok: true })).status, 401);
  t.equal((await callInspector(p, 'progress', { step: 'x' })).status, 400);
  const h = (await a.kube('GET', `${HOSTS}/h6`)).json;
  t.equal(h.status.errorMessage, 'inspector kexec: kexec_load failed', 'a failed step is shown on the host');
  t.equal(h.status.state, 'Ready', 'validated, waiting for the provisioned callback');
  t.equal((await a.kube('GET', `${MACHINES}/m-h6`)).json.status.phase, 'Inspecting', 'not Provisioned yet');
  t.same(
    [(await callInspector(p, 'provisioned', {})).status, (await callInspector(p, 'provisioned', {})).status],
    [202, 401],
  );
  t.equal((await a.kube('GET', `${MACHINES}/m-h6`)).json.status.phase, 'Provisioned');
  const kinds = (await a.api('GET', '/journal')).json.items.map(
    (e: { kind: string; message: string }) => `${e.kind}: ${e.message}`,
  );
  t.ok(kinds.includes('InspectorStep: target-download: 9 MB'));
  t.ok(kinds.includes('InspectorFailed: kexec: kexec_load failed'));
  t.ok(
    kinds.some((k: string) => /^ReportRejected: invalid report body: memory\.0\.capacity/.test(k)),
    "an authenticated inspector's bad report is an event",
  );
});

t.test('a nonce claimed twice: the attempt ends loudly and starts over with fresh credentials', async (t) => {
  const mac = '52:54:00:06:03:01';
  const { a, url } = await inspecting(t, 'hc', mac);
  // someone on the segment read the script by MAC and claimed first, from another address
  const thief = await claim(url, mac, '127.0.0.2');
  if ('status' in thief) throw new Error(`claim ${thief.status}`);
  const after = await scriptOf(a.base, mac);
  t.notMatch(after, url, 'once claimed, the script by MAC no longer hands out the nonce');
  t.match(after, /claimed from another address; asking again\nexit 1/, 'it fails, so the entry script asks again');
  t.equal(await claimUrlOf(a.base, mac, '127.0.0.2'), url, 'the claimant asking again gets the same');
  // the real machine read the script before the thief claimed: its claim is the second one
  const real = await fetch(`${url}?mac=${mac}`);
  t.equal(real.status, 409, 'the second claim is refused');
  const forged = await callInspector(thief, 'inspection', wireReport(mac), '127.0.0.2');
  t.equal(forged.status, 401, "the first claimant's token died with the attempt");
  const fresh = await until('a new nonce', async () => {
    const u = await claimUrlOf(a.base, mac);
    return u && u !== url ? u : undefined;
  });
  const m = (await a.kube('GET', `${MACHINES}/m-hc`)).json;
  t.match(
    m.status.failureMessage ?? '',
    /boot nonce claimed again from 127\.0\.0\.1 \(first claim from 127\.0\.0\.2\)/,
  );
  t.equal(m.status.attempts, 1, "someone else's claim does not use up one of the machine's attempts");
  t.ok(
    m.status.conditions.some(
      (c: { type: string; status: string }) => c.type === 'CredentialsContested' && c.status === 'True',
    ),
    'a condition says so',
  );
  t.equal((await fetch(`${url}?mac=${mac}`)).status, 404, 'the old nonce is dead');
  const p = await claim(fresh, mac);
  if ('status' in p) throw new Error(`claim ${p.status}`);
  t.not(p.token, thief.token);
  t.equal((await callInspector(p, 'inspection', wireReport(mac))).status, 202, 'the real machine reports');
  const events = (await a.api('GET', '/journal')).json.items.map((e: { kind: string }) => e.kind);
  t.ok(events.includes('CredentialConflict'), 'an event');
  t.match(await metricsOf(a.base), /beskar7_inspector_credentials_total\{result="conflict"\} 1/);
});

t.test('a token used from another address than the one that claimed it is refused and recorded', async (t) => {
  const mac = '52:54:00:06:04:01';
  const { a, url } = await inspecting(t, 'hf', mac);
  const p = await claim(url, mac);
  if ('status' in p) throw new Error(`claim ${p.status}`);
  for (const e of ['inspection', 'provisioned', 'progress'] as const) {
    const body = e === 'inspection' ? wireReport(mac) : { step: 'x', ok: true };
    t.equal((await callInspector(p, e, body, '127.0.0.2')).status, 401, `a forged ${e} from 127.0.0.2`);
  }
  const h = (await a.kube('GET', `${HOSTS}/hf`)).json;
  t.same([h.status.state, h.status.inspectionPhase], ['Inspecting', 'InProgress'], 'nothing changed');
  const misuse = (await a.api('GET', '/journal')).json.items.filter(
    (e: { kind: string }) => e.kind === 'CredentialMisuse',
  );
  t.equal(misuse.length, 1, 'one event per attempt, not one per request');
  t.match(misuse[0].message, 'inspector token used from 127.0.0.2; it was claimed from 127.0.0.1');
  t.match(await metricsOf(a.base), /beskar7_inspector_credentials_total\{result="misuse"\} 3/, 'every use counted');
  t.equal((await callInspector(p, 'inspection', wireReport(mac))).status, 202, 'the claimant still reports');
});

t.test('a host that fails the requirements never passes the gate; the machine tries the next host', async (t) => {
  const macs = ['52:54:00:06:05:01', '52:54:00:06:05:02'];
  let base = '';
  const small = await bmcWithMachine(t, () => base, macs[0]!, { report: null });
  const big = await bmcWithMachine(t, () => base, macs[1]!);
  const a = await inProcess(t, { orchestrator: { tickSeconds: 0.1, retryBaseSeconds: 0, powerDeadlineSeconds: 5 } });
  base = a.base;
  await addHost(a.kube, hostBody('small', small.address));
  await until('small Available', async () =>
    (await a.kube('GET', `${HOSTS}/small`)).json.status.state === 'Available' ? true : undefined,
  );
  await addHost(a.kube, hostBody('big', big.address));
  await until('big Available', async () =>
    (await a.kube('GET', `${HOSTS}/big`)).json.status.state === 'Available' ? true : undefined,
  );
  await addMachine(a.kube, machineBody('mg', { minCPUCores: 2, minMemoryGB: 8, minDiskGB: 50 }));
  const url = await until('small inspecting', () => claimUrlOf(a.base, macs[0]!));
  const p = await claim(url, macs[0]!);
  if ('status' in p) throw new Error(`claim ${p.status}`);
  const r = await callInspector(p, 'inspection', wireReport(macs[0]!, { memory: [{ capacity: '1GiB' }] }));
  t.same(await r.json(), { status: 'accepted', approved: false }, 'the answer says: do not go on');
  t.equal((await callInspector(p, 'bootstrap')).status, 401, 'the gate stays shut: the host was let go');
  t.equal((await callInspector(p, 'provisioned', {})).status, 401, 'no provisioned callback either');
  const m = await until('machine Provisioned on the big host', async () => {
    const m = (await a.kube('GET', `${MACHINES}/mg`)).json;
    return m.status.phase === 'Provisioned' ? m : undefined;
  });
  t.equal(m.status.hostName, 'big');
  t.same(m.status.rejectedHosts, ['small']);
  // the power-off runs in the background, beside the next host's inspection
  t.equal(await until('small powered off', async () => (small.bmc.power === 'Off' ? 'Off' : undefined)), 'Off');
  t.equal((await a.kube('GET', `${HOSTS}/small`)).json.status.state, 'Available');
});

t.test(
  'provision-failed fails the machine at once; silence after validation hits the deployment timeout',
  async (t) => {
    const mac = '52:54:00:06:06:01';
    const { a, bmc, url } = await inspecting(t, 'hd', mac, { deploymentTimeoutSeconds: 0.5, maxAttempts: 1 });
    const p = await claim(url, mac);
    if ('status' in p) throw new Error(`claim ${p.status}`);
    t.equal((await callInspector(p, 'inspection', wireReport(mac))).status, 202);
    const r = await callInspector(p, 'provision-failed', { reason: 'DigestMismatch: got sha256:00\n' });
    t.same([r.status, await r.json()], [202, { status: 'accepted' }]);
    const m = (await a.kube('GET', `${MACHINES}/m-hd`)).json;
    t.same(
      [m.status.phase, m.status.failureReason, m.status.failureMessage],
      ['Failed', 'DigestMismatch', 'inspector reported deploy failure: DigestMismatch: got sha256:00'],
    );
    await until('powered off', async () => (bmc.power === 'Off' ? true : undefined));

    await a.kube('DELETE', `${MACHINES}/m-hd`);
    await until('deleted', async () => ((await a.kube('GET', `${MACHINES}/m-hd`)).status === 404 ? true : undefined));
    await addMachine(a.kube, machineBody('m-hd2'));
    const url2 = await until('inspecting again', () => claimUrlOf(a.base, mac));
    const p2 = await claim(url2, mac);
    if ('status' in p2) throw new Error(`claim ${p2.status}`);
    t.equal((await callInspector(p2, 'inspection', wireReport(mac))).status, 202);
    const late = await until('deployment timeout', async () => {
      const m = (await a.kube('GET', `${MACHINES}/m-hd2`)).json;
      return m.status.phase === 'Failed' ? m : undefined;
    });
    t.equal(late.status.failureReason, 'DeploymentTimedOut');
    t.match(late.status.failureMessage, /no provisioned callback within 1 s/);
  },
);

t.test("another host's token and an earlier attempt's token are refused", async (t) => {
  let base = '';
  const macs = ['52:54:00:06:01:01', '52:54:00:06:01:02'];
  const bmcs = await Promise.all(macs.map((mac) => bmcWithMachine(t, () => base, mac, { report: null })));
  const a = await inProcess(t, {
    orchestrator: {
      tickSeconds: 0.1,
      retryBaseSeconds: 0,
      powerDeadlineSeconds: 5,
      inspectionTimeoutSeconds: 1.5,
      maxAttempts: 2,
    },
  });
  base = a.base;
  for (const [i, b] of bmcs.entries()) {
    await addHost(a.kube, hostBody(`t${i}`, b.address, { labels: { n: String(i) } }));
    await until(`t${i} Available`, async () =>
      (await a.kube('GET', `${HOSTS}/t${i}`)).json.status.state === 'Available' ? true : undefined,
    );
    await addMachine(a.kube, machineBody(`mt${i}`, undefined, { hostSelector: { matchLabels: { n: String(i) } } }));
  }
  const claimOf = (mac: string, not?: string) =>
    until(`a claim for ${mac}`, async () => {
      const url = await claimUrlOf(a.base, mac);
      if (!url || url === not) return undefined;
      const p = await claim(url, mac);
      return 'status' in p ? undefined : { ...p, url };
    });
  const [p0, p1] = [await claimOf(macs[0]!), await claimOf(macs[1]!)];
  t.not(p0.token, p1.token);
  t.equal(
    (await callInspector({ ...p1, token: p0.token }, 'inspection', wireReport(macs[1]!))).status,
    401,
    "t0's token does not report for t1",
  );
  t.equal(
    (await callInspector({ ...p1, token: p0.token }, 'progress', { step: 'x', ok: true })).status,
    401,
    'nor post its progress',
  );
  // no report: the attempt times out and the next one has new credentials; the old ones are dead
  const fresh = await claimOf(macs[0]!, p0.url);
  t.equal((await a.kube('GET', `${MACHINES}/mt0`)).json.status.attempts, 2, 'second attempt');
  t.equal((await callInspector(p0, 'inspection', wireReport(macs[0]!))).status, 401, "the first attempt's token");
  t.equal((await callInspector(fresh, 'inspection', wireReport(macs[0]!))).status, 202, 'the current one is taken');
  const metrics = await metricsOf(a.base);
  t.match(metrics, /beskar7_inspector_calls_total\{endpoint="report",status="401"\} [2-9]/, 'each refusal is counted');
  const retry = (await a.api('GET', '/journal')).json.items.find(
    (e: { kind: string; host?: string }) => e.kind === 'Retry' && e.host === 't0',
  );
  t.equal(retry?.severity, 'warning', 'a timed-out attempt is a warning');
  const tl = (await a.api('GET', `/timeline/${macs[0]}`)).json.items as { what: string; ok: boolean }[];
  t.same(
    tl.filter((e) => /^(Retry|Claimed):/.test(e.what)).map((e) => [e.what.split(':')[0], e.ok]),
    [
      ['Claimed', true],
      ['Retry', false],
    ],
    'the timeline shows the Retry as a failure',
  );
});

t.test(
  'a BMC that never shows PowerState On: the claim proves the machine runs, the BMC is not asked again',
  async (t) => {
    let base = '';
    const mac = '52:54:00:06:02:01';
    let claimed: Promise<unknown> | undefined;
    const bmc = new FakeBmc({
      macs: [mac],
      personality: { powerLagMs: 600_000 },
      onPower: (ev, boot) => {
        if (ev === 'off' || boot.target !== 'Pxe') return;
        // the claim at once, the report only after the power deadline has passed
        claimed = claimUrlOf(base, mac).then((u) => (u ? claim(u, mac) : undefined));
      },
    });
    const address = await bmc.start();
    t.teardown(() => bmc.stop());
    const a = await inProcess(t, {
      orchestrator: { tickSeconds: 0.1, retryBaseSeconds: 0, powerDeadlineSeconds: 1, inspectionTimeoutSeconds: 60 },
    });
    base = a.base;
    await addHost(a.kube, hostBody('lag', address));
    await addMachine(a.kube, machineBody('mlag'));
    const p = (await until('claimed', async () => (claimed ? await claimed : undefined))) as Awaited<
      ReturnType<typeof claim>
    >;
    if ('status' in p) throw new Error(`claim ${p.status}`);
    const atClaim = bmc.seen.length;
    t.ok(
      bmc.seen.some((x) => x.path.endsWith('/Actions/ComputerSystem.Reset')),
      'the BMC was reset',
    );
    // past the 1 s power deadline, two whole reconcile passes have looked at the attempt: it must still stand
    await passesAfter(a.base, Date.now() + 1000, 2);
    t.same(
      bmc.seen.slice(atClaim).map((x) => `${x.method} ${x.path}`),
      [],
      'no PowerState poll once the machine had claimed its credentials',
    );
    t.equal((await a.kube('GET', `${HOSTS}/lag`)).json.status.observedPowerState, 'On', 'the claim recorded it On');
    t.equal((await callInspector(p, 'inspection', wireReport(mac))).status, 202, 'the report of the first attempt');
    t.equal((await callInspector(p, 'provisioned', {})).status, 202);
    const m = (await a.kube('GET', `${MACHINES}/mlag`)).json;
    t.equal(m.status.phase, 'Provisioned');
    t.equal(m.status.attempts, 1, 'one attempt');
    const kinds = (await a.api('GET', '/journal')).json.items.map((e: { kind: string }) => e.kind);
    t.notOk(kinds.includes('Retry'), 'no retry');
  },
);

t.test('boot timeline per MAC and the live event stream', async (t) => {
  let base = '';
  const mac = '52:54:00:07:00:01';
  const { address } = await bmcWithMachine(t, () => base, mac);
  const a = await inProcess(t);
  base = a.base;
  const ctrl = new AbortController();
  t.teardown(() => ctrl.abort());
  const res = await fetch(`${a.base}/api/v1/stream`, {
    signal: ctrl.signal,
    headers: { Authorization: `Bearer ${ADMIN}` },
  });
  t.equal(res.headers.get('content-type'), 'text/event-stream');
  const seen: string[] = [];
  const reader = (async () => {
    const dec = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(chunk);
      for (const m of buf.matchAll(/event: (\w+)\ndata: (.*)\n/g)) seen.push(`${m[1]} ${m[2]}`);
      buf = buf.slice(buf.lastIndexOf('\n\n') + 2);
    }
  })().catch(() => undefined);
  await addHost(a.kube, hostBody('h7', address));
  await addMachine(a.kube, machineBody('m7'));
  await until('Provisioned', async () =>
    (await a.kube('GET', `${MACHINES}/m7`)).json.status.phase === 'Provisioned' ? true : undefined,
  );
  await until('stream saw the workflow', async () =>
    seen.some((s) => s.startsWith('event') && s.includes('"Provisioned"')) ? true : undefined,
  );
  t.ok(
    seen.some((s) => s.startsWith('timeline') && s.includes('host script: inspect')),
    'timeline entries are streamed',
  );
  const entries = (await a.api('GET', `/timeline/${mac.replace(/:/g, '-')}`)).json.items as {
    source: string;
    what: string;
    stage?: string;
  }[];
  const tl = entries.map((e) => `${e.source}: ${e.what}`);
  const stage = (what: RegExp) => entries.find((e) => what.test(e.what))?.stage;
  t.same(
    [
      stage(/^host script: inspect/),
      stage(/^PowerOn/),
      stage(/^ReportReceived/),
      stage(/^Provisioned/),
      stage(/^Claimed/),
    ],
    ['script', 'power', 'report', 'provisioned', undefined],
    "each entry's boot step, for the dashboard's waterfall (a claim is no step of the boot)",
  );
  t.ok(tl.includes('http: host script: inspect'), 'script fetch on the timeline');
  t.ok(
    tl.some((e: string) => /^workflow: ReportReceived: 4 cores/.test(e)),
    'report on the timeline',
  );
  t.ok(
    tl.some((e: string) => /^workflow: PowerOn: one-time PXE set; On/.test(e)),
    'power on on the timeline',
  );
  t.equal((await fetch(`${a.base}/api/v1/stream`)).status, 401, 'the stream needs the token too');
  ctrl.abort();
  await reader;
});

t.test('a slow BMC holds up only its own host', async (t) => {
  let base = '';
  const fast = await bmcWithMachine(t, () => base, '52:54:00:08:00:01');
  const slow = await bmcWithMachine(t, () => base, '52:54:00:08:00:02', { personality: { delayMs: 1500 } });
  const a = await inProcess(t, {
    redfish: { timeoutSeconds: 5, retries: 1, backoffBaseSeconds: 0.02, backoffMaxSeconds: 0.2 },
  });
  base = a.base;
  await addHost(a.kube, hostBody('slow', slow.address, { labels: { speed: 'slow' } }));
  await addHost(a.kube, hostBody('fast', fast.address, { labels: { speed: 'fast' } }));
  await until('fast Available', async () =>
    (await a.kube('GET', `${HOSTS}/fast`)).json.status.state === 'Available' ? true : undefined,
  );
  await until('slow Available', async () =>
    (await a.kube('GET', `${HOSTS}/slow`)).json.status.state === 'Available' ? true : undefined,
  );
  await addMachine(a.kube, machineBody('ms', undefined, { hostSelector: { matchLabels: { speed: 'slow' } } }));
  // the slow host's boot is under way: its BMC has been asked for the one-time PXE override
  await until('the slow host booting', async () =>
    slow.bmc.seen.some((s) => s.method === 'PATCH') ? true : undefined,
  );
  await addMachine(a.kube, machineBody('mf', undefined, { hostSelector: { matchLabels: { speed: 'fast' } } }));
  await until(
    'fast machine Provisioned',
    async () => ((await a.kube('GET', `${MACHINES}/mf`)).json.status.phase === 'Provisioned' ? true : undefined),
    5000,
  );
  t.not((await a.kube('GET', `${MACHINES}/ms`)).json.status.phase, 'Provisioned', 'the slow one is still on its way');
  await until(
    'slow machine Provisioned',
    async () => ((await a.kube('GET', `${MACHINES}/ms`)).json.status.phase === 'Provisioned' ? true : undefined),
    60_000,
  );
  t.pass('both provisioned');
});

t.test('a released host shows what its BMC reports, also when clearing the override fails', async (t) => {
  let base = '';
  const a = await inProcess(t, {
    orchestrator: { tickSeconds: 0.1, retryBaseSeconds: 0, powerDeadlineSeconds: 5, inspectionTimeoutSeconds: 60 },
  });
  base = a.base;
  for (const [name, mac, personality] of [
    ['rel-target', '52:54:00:07:00:01', { requireTargetWithDisabled: true }],
    ['rel-refuse', '52:54:00:07:00:02', { refuseClear: true }],
  ] as const) {
    const { bmc, address } = await bmcWithMachine(t, () => base, mac, { personality, report: null });
    await addHost(a.kube, hostBody(name, address, { labels: { n: name } }));
    await until(`${name} Available`, async () =>
      (await a.kube('GET', `${HOSTS}/${name}`)).json.status.state === 'Available' ? true : undefined,
    );
    await addMachine(a.kube, machineBody(`m-${name}`, undefined, { hostSelector: { matchLabels: { n: name } } }));
    await until(`${name} Booting`, async () =>
      (await a.kube('GET', `${HOSTS}/${name}`)).json.status.inspectionPhase === 'Booting' ? true : undefined,
    );
    t.equal((await a.kube('DELETE', `${MACHINES}/m-${name}`)).status, 200);
    const h = await until(`${name} released`, async () => {
      const r = (await a.kube('GET', `${HOSTS}/${name}`)).json;
      return r.status.state === 'Available' && !r.spec.consumerRef?.name ? r : undefined;
    });
    t.equal(bmc.power, 'Off', `${name}: powered off`);
    t.equal(h.status.observedPowerState, 'Off', `${name}: the host shows the BMC's power state`);
    t.equal(h.status.inspectionPhase, undefined, `${name}: no stale Booting phase`);
    if (name === 'rel-target') {
      t.same([bmc.boot.target, bmc.boot.enabled], ['None', 'Disabled'], 'override cleared with Target None');
      t.equal(h.status.errorMessage, undefined, 'no error');
    } else {
      t.match(h.status.errorMessage, /^release: PATCH .*HTTP 400/, 'the failed clear is on the host');
      const ev = (await a.api('GET', '/journal')).json.items.find(
        (e: { kind: string; host?: string }) => e.kind === 'ReleaseFailed' && e.host === name,
      );
      t.equal(ev?.severity, 'warning', 'and a ReleaseFailed warning');
    }
  }
});

t.test('shutdown stops BMC calls at once, even towards a hung BMC', async (t) => {
  // a stop that waited for the call would wait an hour (the call's timeout): the test's own timeout says so
  t.setTimeout(120_000);
  const bmc = new FakeBmc({ personality: { fault: { kind: 'hang' } } });
  const address = await bmc.start();
  t.teardown(() => bmc.stop());
  const a = await inProcess(t, { redfish: { timeoutSeconds: 3600, retries: 3, backoffBaseSeconds: 1 } });
  await addHost(a.kube, hostBody('hung', address));
  await until('a call hangs', async () => (bmc.hanging > 0 ? true : undefined));
  await a.stop();
  await until('the hung call abandoned by the stop', async () => (bmc.abandoned > 0 ? true : undefined));
  t.pass('stopped with a call in flight, which it gave up (reconciler.test: a stopped reconciler calls no BMC)');
});

t.test(
  'URLs that go into iPXE scripts: refused with the field named when iPXE would run them, stored normalised',
  async (t) => {
    const a = await inProcess(t);
    const spec = { inspectionImageURL: 'http://127.0.0.1/i', targetImageURL: 'http://127.0.0.1/t' };
    for (const [field, url] of [
      ['targetImageURL', 'http://x/t || shell'],
      ['targetImageURL', 'http://x/t\tshell'],
      ['configurationURL', 'http://x/${net0/ip}'],
      ['inspectionImageURL', 'http://x/i&&shell'],
      // full-width: && and ${ only once normalised (NFKC; IDNA in the host), and refused all the same
      ['inspectionImageURL', 'http://x\uff06\uff06reboot/'],
      ['configurationURL', 'http://x/\uff04{net0/ip}'],
    ] as const) {
      const r = await addMachine(a.kube, { name: 'bad-url', spec: { ...spec, [field]: url } });
      t.equal(r.status, 422, `${field} ${JSON.stringify(url)}`);
      t.match(r.json.details.causes, [
        { field: `spec.${field}`, message: /^must not contain whitespace, "\$", "\|\|" or "&&"/ },
      ]);
    }
    const ok = await addMachine(a.kube, {
      name: 'norm',
      spec: { ...spec, targetImageURL: 'HTTP://Example.COM:80/os/../os/t%41r.gz' },
    });
    t.equal(ok.status, 201);
    t.equal(ok.json.spec.targetImageURL, 'http://example.com/os/t%41r.gz', 'stored normalised');
  },
);

t.test("host actions through the host's BMC: power on, reset, PXE once, power off; each an event", async (t) => {
  const bmc = new FakeBmc({ macs: ['52:54:00:08:00:01'] });
  const address = await bmc.start();
  t.teardown(() => bmc.stop());
  const a = await inProcess(t);
  await addHost(a.kube, hostBody('act', address));
  await until('act Available', async () =>
    (await a.kube('GET', `${HOSTS}/act`)).json.status.state === 'Available' ? true : undefined,
  );
  const act = (body: unknown) => a.api('POST', '/hosts/act/actions', body);
  t.match((await act({ action: 'powerOn' })).json, {
    host: 'act',
    action: 'powerOn',
    powerState: 'On',
    effect: /^[0-9a-f-]{36}$/,
  });
  t.same((await a.api('GET', '/backup')).json.collections.effects, [], 'the stored effect is gone once carried out');
  t.equal(bmc.power, 'On');
  t.equal((await act({ action: 'powerOn' })).status, 200, 'on when on already: nothing to do, no error');
  t.same((await act({ action: 'reset' })).json.action, 'reset ForceRestart', 'reset defaults to ForceRestart');
  t.same(bmc.seen.filter((s) => s.path.endsWith('Reset')).at(-1)?.body, { ResetType: 'ForceRestart' });
  await act({ action: 'pxeOnce' });
  t.same([bmc.boot.target, bmc.boot.enabled], ['Pxe', 'Once']);
  t.same((await act({ action: 'powerOff' })).json.powerState, 'Off');
  t.equal((await a.kube('GET', `${HOSTS}/act`)).json.status.observedPowerState, 'Off', 'the host shows it');
  const bad = await act({ action: 'reset', resetType: 'Explode' });
  t.equal(bad.status, 400);
  t.match(bad.json.error, /^resetType: /);
  t.equal((await a.api('POST', '/hosts/nope/actions', { action: 'powerOn' })).status, 404);
  const refused = await act({ action: 'reset', resetType: 'Nmi' });
  t.equal(refused.status, 502, 'a BMC that refuses the reset type');
  t.match(refused.json.error, /^BMC: POST .*HTTP 400/);
  const all = (await a.api('GET', '/journal')).json.items.filter(
    (e: { host?: string; kind: string }) => e.host === 'act' && e.kind.startsWith('HostAction'),
  );
  const requested = all.filter((e: { kind: string }) => e.kind === 'HostActionRequested');
  const events = all
    .filter((e: { kind: string }) => e.kind !== 'HostActionRequested')
    .map((e: { kind: string; severity: string; message: string }) => `${e.kind} ${e.severity} ${e.message}`);
  t.equal(requested.length, events.length, 'every action is stored as requested, then its outcome');
  t.same(events.slice(0, 3), [
    'HostAction info powerOn; power On',
    'HostAction info powerOn; power On',
    'HostAction info reset ForceRestart; power On',
  ]);
  t.match(events.at(-1), /^HostActionFailed warning reset Nmi: /);
});

t.test('an action its BMC has not carried out when the wait ends is answered pending, and stays stored', async (t) => {
  const bmc = new FakeBmc({ macs: ['52:54:00:08:00:09'] });
  const address = await bmc.start();
  t.teardown(() => bmc.stop());
  const a = await inProcess(t, {
    orchestrator: { tickSeconds: 0.1, retryBaseSeconds: 0, powerDeadlineSeconds: 1 },
    redfish: { timeoutSeconds: 30, retries: 0, backoffBaseSeconds: 0.02, backoffMaxSeconds: 0.2 },
  });
  await addHost(a.kube, hostBody('slowact', address));
  await until('slowact Available', async () =>
    (await a.kube('GET', `${HOSTS}/slowact`)).json.status.state === 'Available' ? true : undefined,
  );
  bmc.p.fault = { kind: 'hang', scope: 'actions' };
  const r = await a.api('POST', '/hosts/slowact/actions', { action: 'powerOn' });
  t.match([r.status, r.json], [200, { host: 'slowact', action: 'powerOn', pending: true }]);
  const stored = (await a.api('GET', '/backup')).json.collections.effects as [string, { kind: string }][];
  t.same(
    stored.map(([, e]) => e.kind),
    ['hostAction'],
    'the action is still stored: the reconciler carries it out when the BMC answers',
  );
});

t.test('a target without a digest is pinned by the appliance before the boot; one it cannot read fails', async (t) => {
  let base = '';
  const mac = '52:54:00:0d:0e:01';
  const { address } = await bmcWithMachine(t, () => base, mac, { report: null });
  const a = await inProcess(t, {
    orchestrator: { tickSeconds: 0.1, retryBaseSeconds: 0, maxAttempts: 1, powerDeadlineSeconds: 5 },
  });
  base = a.base;
  await addHost(a.kube, hostBody('hp', address));
  const hosted = path.join(repoRoot, 'assets/build-demo-image.sh');
  const want = `sha256:${createHash('sha256').update(readFileSync(hosted)).digest('hex')}`;
  const spec = { ...machineBody('mp').spec, targetImageURL: `${a.base}/assets/build-demo-image.sh` };
  delete (spec as { targetImageDigest?: string }).targetImageDigest;
  await addMachine(a.kube, { name: 'mp', spec });
  const url = await until('the nonce URL', () => claimUrlOf(a.base, mac));
  const p = await claim(url, mac);
  if ('status' in p) throw new Error(`claim ${p.status}`);
  t.equal(p['target-digest'], want, 'the inspector is given the digest of the hosted file');
  const m = (await a.kube('GET', `${MACHINES}/mp`)).json;
  t.match(
    m.status.conditions.find((c: { type: string }) => c.type === 'TargetDigestPinned'),
    {
      status: 'True',
      reason: 'PinnedByAppliance',
    },
  );
  t.same(
    [m.status.pinnedTarget.url, m.status.pinnedTarget.digest],
    [spec.targetImageURL, want],
    'what was pinned, in the status',
  );
  await a.kube('DELETE', `${MACHINES}/mp`);
  await until('mp gone', async () => ((await a.kube('GET', `${MACHINES}/mp`)).status === 404 ? true : undefined));
  await until('hp Available', async () =>
    (await a.kube('GET', `${HOSTS}/hp`)).json.status.state === 'Available' ? true : undefined,
  );
  await addMachine(a.kube, { name: 'mu', spec: { ...spec, targetImageURL: 'http://127.0.0.1:9/nothing.img' } });
  const failed = await until('mu Failed', async () => {
    const r = (await a.kube('GET', `${MACHINES}/mu`)).json;
    return r.status.phase === 'Failed' ? r : undefined;
  });
  t.equal(failed.status.failureReason, 'TargetUnavailable');
  t.match(failed.status.failureMessage, /the target's digest could not be computed: /);
});

t.test(
  'cleaning: a released host boots the cleaner, is erased and Available; a failure waits for the operator',
  async (t) => {
    let base = '';
    const mac = '52:54:00:0c:1e:01';
    const { bmc, address } = await bmcWithMachine(t, () => base, mac, { report: null });
    const a = await inProcess(t, {
      orchestrator: { tickSeconds: 0.1, retryBaseSeconds: 0, powerDeadlineSeconds: 5, cleanDisks: true },
    });
    base = a.base;
    await addHost(a.kube, hostBody('hc', address));
    await addMachine(a.kube, machineBody('mc'));
    const p = await claim(await until('the nonce URL', () => claimUrlOf(a.base, mac)), mac);
    if ('status' in p) throw new Error(`claim ${p.status}`);
    t.equal((await callInspector(p, 'inspection', wireReport(mac))).status, 202);
    t.equal((await callInspector(p, 'provisioned', {})).status, 202);
    t.equal((await a.kube('GET', `${HOSTS}/hc`)).json.status.state, 'Provisioned');
    const offBefore = bmc.powerLog.filter((x) => x === 'off').length;

    await a.kube('DELETE', `${MACHINES}/mc`);
    await until('mc gone', async () => ((await a.kube('GET', `${MACHINES}/mc`)).status === 404 ? true : undefined));
    t.equal((await a.kube('GET', `${HOSTS}/hc`)).json.status.state, 'Cleaning', 'the host is cleaned, not Available');
    const url = await until('the cleaning nonce', () => claimUrlOf(a.base, mac));
    t.notOk(p.script.includes(url), 'a nonce of its own');
    const c = await claim(url, mac);
    if ('status' in c) throw new Error(`claim ${c.status}`);
    t.equal(c.mode, 'clean', 'the inspector is booted to erase the disks');
    t.notOk(c.target, 'with no target');
    t.equal(
      (await callInspector(p, 'progress', { step: 'x', ok: true })).status,
      401,
      "the deployment's token is void",
    );
    t.equal((await callInspector(c, 'progress', { step: 'network', ok: true, message: '10.0.0.5' })).status, 202);
    t.equal((await callInspector(c, 'provisioned', {})).status, 409, 'no machine holds it: nothing to provision');
    const done = await callInspector(c, 'cleaned', { ok: true, message: 'erased /dev/sda /dev/sdb' });
    t.equal(done.status, 202);
    const h = await until('hc Available', async () => {
      const r = (await a.kube('GET', `${HOSTS}/hc`)).json;
      return r.status.state === 'Available' ? r : undefined;
    });
    t.notOk(h.status.errorMessage);
    await until('powered off after cleaning', async () =>
      bmc.powerLog.filter((x) => x === 'off').length > offBefore + 1 ? true : undefined,
    );
    const kinds = (await a.api('GET', '/journal?limit=200')).json.items
      .filter((e: { host?: string }) => e.host === 'hc')
      .map((e: { kind: string; message: string }) => `${e.kind} ${e.message}`);
    t.ok(kinds.includes('CleaningStarted erasing the disks (partition tables and signatures)'));
    t.ok(kinds.includes('Cleaned erased /dev/sda /dev/sdb'));
    t.equal((await scriptOf(a.base, mac)).includes('chain --autofree'), false, 'no nonce handed out once cleaned');

    // a cleaner that fails: CleanFailed, not claimable, until an operator asks again
    const asked = await a.api('POST', '/hosts/hc/actions', { action: 'clean' });
    t.equal(asked.status, 200, JSON.stringify(asked.json));
    const c2 = await claim(await until('a new cleaning nonce', () => claimUrlOf(a.base, mac)), mac);
    if ('status' in c2) throw new Error(`claim ${c2.status}`);
    const fail = await callInspector(c2, 'cleaned', { ok: false, message: 'could not erase /dev/sdb' });
    t.equal(fail.status, 202);
    const failed = await until('hc CleanFailed', async () => {
      const r = (await a.kube('GET', `${HOSTS}/hc`)).json;
      return r.status.state === 'CleanFailed' ? r : undefined;
    });
    t.equal(failed.status.errorMessage, 'cleaning: could not erase /dev/sdb');
    await addMachine(a.kube, machineBody('mc2'));
    await passesAfter(a.base, Date.now(), 3);
    t.equal((await a.kube('GET', `${MACHINES}/mc2`)).json.status.phase, 'Pending', 'a CleanFailed host is not claimed');
    const busy = await a.api('POST', '/hosts/hc/actions', { action: 'clean' });
    t.equal(busy.status, 200, 'asked again');
    const refused = await a.api('POST', '/hosts/hc/actions', { action: 'clean' });
    t.equal(refused.status, 409, 'not while it is being cleaned');
  },
);

t.test(
  'names are unique per namespace: hosts, Secrets and machines of one name in two namespaces keep to their own',
  async (t) => {
    const a = await inProcess(t);
    const bmcs: Record<string, FakeBmc> = {};
    for (const [ns, mac] of [
      ['lab', '52:54:00:0a:00:01'],
      ['prod', '52:54:00:0a:00:02'],
    ] as const) {
      const bmc = new FakeBmc({ macs: [mac] });
      const address = await bmc.start();
      t.teardown(() => bmc.stop());
      bmcs[ns] = bmc;
      t.equal((await addHost(a.kube, { ...hostBody('w', address), namespace: ns })).status, 201, `host ${ns}/w`);
    }
    for (const ns of ['lab', 'prod'])
      await until(`${ns}/w Available`, async () =>
        (await a.kube('GET', `${paths(ns).hosts}/w`)).json.status?.state === 'Available' ? true : undefined,
      );
    t.equal((await a.kube('GET', `${HOSTS}/w`)).status, 404, 'none of that name in the default namespace');
    // a machine claims a host of its own namespace, as Beskar7's controller lists them
    t.equal((await addMachine(a.kube, { ...machineBody('m'), namespace: 'prod' })).status, 201);
    const prod = await until('prod/m claims', async () => {
      const m = (await a.kube('GET', `${paths('prod').machines}/m`)).json;
      return m.status?.hostRef ? m : undefined;
    });
    t.same(prod.status.hostRef, { kind: 'PhysicalHost', namespace: 'prod', name: 'w' });
    await until('prod/w booted', async () => (bmcs.prod?.powerLog.length ? true : undefined));
    t.same(bmcs.lab?.powerLog, [], "lab's host of the same name was not touched");
    t.equal((await a.kube('GET', `${paths('lab').hosts}/w`)).json.status.state, 'Available');
    const inProd = (await a.kube('GET', `/api/v1/namespaces/prod/events`)).json.items;
    t.ok(
      inProd.some((e: { reason: string }) => e.reason === 'Claimed'),
      'the claim is an event of prod',
    );
    t.notOk(
      (await a.kube('GET', `/api/v1/namespaces/lab/events`)).json.items.some(
        (e: { reason: string }) => e.reason === 'Claimed',
      ),
      'and none of lab',
    );
    // an operator's action reaches the host of the namespace it names
    const act = await a.api('POST', '/namespaces/lab/hosts/w/actions', { action: 'powerOn' });
    t.same([act.status, act.json.powerState], [200, 'On']);
    t.same(bmcs.lab?.powerLog, ['on'], "lab's BMC powered on");
    t.equal((await a.api('POST', '/namespaces/nope/hosts/w/actions', { action: 'powerOn' })).status, 404);
    // one of the pair goes; the other stays
    t.equal((await a.kube('DELETE', `${paths('lab').hosts}/w`)).status, 200);
    t.same(
      (await a.kube('GET', `${paths('prod').hosts}/w`)).json.spec.consumerRef,
      { kind: 'Beskar7Machine', namespace: 'prod', name: 'm' },
      'prod/w stays, held by prod/m',
    );
    t.equal((await a.kube('DELETE', `${paths('lab').secrets}/w-bmc`)).status, 200, "lab's Secret goes");
    t.equal((await a.kube('GET', `${paths('prod').secrets}/w-bmc`)).status, 200, "prod's stays");
  },
);
