import path from 'node:path';
import t from 'tap';
import { loadTemplates, renderInspector } from '../../src/boot/ipxe.js';
import type { StoredHost, StoredMachine } from '../../src/domain/resources.js';
import { repoRoot } from '../../src/paths.js';
import {
  attemptFailed,
  claim,
  claimable,
  cleanerParams,
  cleaningDone,
  cleaningRequested,
  enrolment,
  hostDeletion,
  inspectorParams,
  judgeRedemption,
  judgeReport,
  machineDeleted,
  machineDeleting,
  newHost,
  nextStep,
  progressNoted,
  provisioned,
  provisionFailed,
  release,
  releaseFailed,
  reportRefusal,
  retryDelayMs,
  secretApplied,
  secretDeletion,
  selectHost,
  shouldEnroll,
  startAttempt,
  startCleaning,
  targetDigest,
  targetPinned,
  unmetRequirements,
} from '../../src/workflow/transitions.js';
import { sampleReport } from '../helpers/sim-inspector.js';

const templates = loadTemplates(path.join(repoRoot, 'boot-scripts'));

const policy = {
  inspectionTimeoutMs: 1000,
  deploymentTimeoutMs: 5000,
  tryOtherHosts: true,
  maxAttempts: 2,
  retryBaseMs: 100,
  retryMaxMs: 1000,
};
const host = (
  name: string,
  over: Partial<StoredHost['status']> = {},
  labels: Record<string, string> = {},
  createdAt = '2026-01-01T00:00:00Z',
): StoredHost => ({
  name,
  namespace: 'default',
  createdAt,
  spec: {
    redfish: {
      address: 'http://b',
      username: 'u',
      passwordEnc: 'v1:x',
      insecureSkipVerify: false,
      allowPlainHttp: true,
    },
    bootMACs: [],
    bootChain: 'Auto',
    labels,
  },
  status: { state: 'Available', nics: [{ mac: '52:54:00:00:00:01' }], ...over },
});
const machine = (
  over: Partial<StoredMachine['status']> = {},
  spec: Partial<StoredMachine['spec']> = {},
): StoredMachine => ({
  name: 'm',
  namespace: 'default',
  createdAt: '2026-01-01T00:00:00Z',
  spec: { inspectionImageURL: 'http://x/i', targetImageURL: 'http://x/t', ...spec },
  status: { phase: 'Pending', attempts: 0, conditions: [], rejectedHosts: [], ...over },
});

t.test('requirements: cores, memory, and the disks summed (contract §6.1)', async (t) => {
  const r = sampleReport('52:54:00:00:00:01', {
    disks: [
      { device: '/dev/a', sizeGB: 100, type: 'SSD', model: '', serial: '' },
      { device: '/dev/b', sizeGB: 100, type: 'HDD', model: '', serial: '' },
    ],
  });
  t.same(unmetRequirements(undefined, r), []);
  t.same(unmetRequirements({ minCPUCores: 4, minMemoryGB: 16, minDiskGB: 100 }, r), [], 'equal is enough');
  t.same(unmetRequirements({ minCPUCores: 4, minMemoryGB: 16, minDiskGB: 200 }, r), [], 'two 100 GB disks are 200 GB');
  t.same(
    unmetRequirements({ minCPUCores: 8, minMemoryGB: 16, minDiskGB: 250 }, r),
    ['4 CPU cores < 8 required', '200 GiB of disk < 250 GiB required'],
    'threads are not cores',
  );
});

t.test('host selection: Available, unclaimed, labels, oldest first', async (t) => {
  const hosts = [
    host('b', {}, { rack: 'r1' }, '2026-01-02T00:00:00Z'),
    host('a', {}, { rack: 'r1' }, '2026-01-03T00:00:00Z'),
    host('c', { state: 'InUse', consumer: 'x' }, { rack: 'r1' }, '2026-01-01T00:00:00Z'),
    host('d', {}, { rack: 'r2' }, '2026-01-01T00:00:00Z'),
  ];
  t.equal(selectHost(machine({}, { hostSelector: { matchLabels: { rack: 'r1' } } }), claimable(hosts))?.name, 'b');
  t.equal(selectHost(machine(), claimable(hosts))?.name, 'd');
  t.equal(selectHost(machine({}, { hostSelector: { matchLabels: { rack: 'r9' } } }), claimable(hosts)), undefined);
  t.equal(
    selectHost(machine({ rejectedHosts: ['d'] }), claimable(hosts))?.name,
    'b',
    'a host that failed the machine is skipped',
  );
  const lab = { ...machine(), namespace: 'lab' };
  t.equal(selectHost(lab, claimable(hosts)), undefined, 'a machine claims hosts of its own namespace only');
  const labHost = { ...host('e', {}, {}, '2026-01-04T00:00:00Z'), namespace: 'lab' };
  t.equal(selectHost(lab, claimable([...hosts, labHost]))?.name, 'e', 'the newest, but the only one in its namespace');
  t.equal(selectHost(machine(), claimable([labHost])), undefined, 'and the default namespace not those of lab');
  const twins = [host('y', {}, {}, '2026-01-01T00:00:00Z'), host('x', {}, {}, '2026-01-01T00:00:00Z')];
  t.same(
    claimable([...hosts, ...twins]).map((h) => h.name),
    ['d', 'x', 'y', 'b', 'a'],
    'claimable: Available and unclaimed only, oldest first, the same age by name',
  );
});

t.test('next step for each state', async (t) => {
  const avail = host('h');
  const mine = (over: Partial<StoredHost['status']>) => host('h', { state: 'Inspecting', consumer: 'm', ...over });
  const rows: [string, StoredMachine, StoredHost | undefined, StoredHost[], string][] = [
    ['pending with a host', machine(), undefined, [avail], 'claim'],
    ['pending without', machine(), undefined, [], 'noHost'],
    [
      'backing off',
      machine({ phase: 'Inspecting', hostName: 'h', notBefore: 5000 }),
      mine({ state: 'InUse' }),
      [],
      'wait',
    ],
    ['claimed', machine({ phase: 'Inspecting', hostName: 'h' }), mine({ state: 'InUse' }), [], 'boot'],
    [
      'persisted but not powered',
      machine({ phase: 'Inspecting', hostName: 'h' }),
      mine({ inspectionPhase: 'Pending' }),
      [],
      'boot',
    ],
    [
      'booting, in time',
      machine({ phase: 'Inspecting', hostName: 'h', inspectionDeadline: 2000 }),
      mine({ inspectionPhase: 'Booting' }),
      [],
      'wait',
    ],
    [
      'booting, late',
      machine({ phase: 'Inspecting', hostName: 'h', inspectionDeadline: 500 }),
      mine({ inspectionPhase: 'InProgress' }),
      [],
      'timeout',
    ],
    [
      'validated, deploying in time',
      machine({ phase: 'Inspecting', hostName: 'h', inspectionDeadline: 2000 }),
      mine({ state: 'Ready', inspectionPhase: 'Complete' }),
      [],
      'wait',
    ],
    [
      'validated, no provisioned callback in time',
      machine({ phase: 'Inspecting', hostName: 'h', inspectionDeadline: 500 }),
      mine({ state: 'Ready', inspectionPhase: 'Complete' }),
      [],
      'timeout',
    ],
    [
      'host taken by another',
      machine({ phase: 'Inspecting', hostName: 'h' }),
      host('h', { state: 'InUse', consumer: 'other' }),
      [],
      'release',
    ],
    ['deleting', machine({ phase: 'Deleting' }), undefined, [], 'release'],
    ['provisioned', machine({ phase: 'Provisioned' }), undefined, [avail], 'done'],
    ['failed', machine({ phase: 'Failed' }), undefined, [avail], 'done'],
  ];
  for (const [name, m, h, hosts, want] of rows) t.equal(nextStep(m, h, hosts, 1000).kind, want, name);
  const late = (state: 'Inspecting' | 'Ready') =>
    nextStep(machine({ phase: 'Inspecting', hostName: 'h', inspectionDeadline: 1 }), mine({ state }), [], 1000);
  t.match(late('Inspecting'), { kind: 'timeout', reason: 'InspectionTimeout' });
  t.match(late('Ready'), { kind: 'timeout', reason: 'DeploymentTimedOut' }, 'a validated host waits for its callback');
});

t.test('attempts: retry with growing backoff, then fail and release', async (t) => {
  const c = claim(machine(), host('h'), 0);
  t.equal(c.host.status.consumer, 'm');
  t.match(c.machine.status.conditions, [
    { type: 'HostClaimed', status: 'True' },
    { type: 'TargetDigestPinned', status: 'False', reason: 'NoDigest' },
  ]);
  const a1 = startAttempt(c.machine, c.host, 'att1', 0, policy);
  t.equal(a1.machine.status.attempts, 1);
  t.equal(a1.machine.status.inspectionDeadline, 1000);
  t.same(a1.host.attempt, { id: 'att1', expiresAt: new Date(1000).toISOString() }, 'an attempt id, no secret');
  const f1 = attemptFailed(a1.machine, a1.host, 'InspectionTimeout', 'no report', 1000, policy, 'Timeout');
  t.notOk(f1.final);
  t.same([f1.event.kind, f1.event.severity], ['Retry', 'warning'], 'a failed attempt is a warning, not progress');
  t.equal(f1.machine.status.notBefore, 1100);
  t.equal(f1.host.status.state, 'InUse', 'back to InUse: the next step boots again');
  t.notOk(f1.host.attempt, "the old attempt's credentials are void");
  const a2 = startAttempt(f1.machine, f1.host, 'att2', 2000, policy);
  const f2 = attemptFailed(a2.machine, a2.host, 'InspectionTimeout', 'no report', 3000, policy, 'Timeout');
  t.ok(f2.final);
  t.same([f2.event.kind, f2.event.severity], ['Failed', 'error']);
  t.same(
    [f2.machine.status.phase, f2.machine.status.failureReason, f2.machine.status.failureMessage],
    ['Failed', 'InspectionTimeout', 'no report (after 2 attempts)'],
  );
  t.same(
    [f2.host.status.state, f2.host.status.consumer, f2.host.status.inspectionPhase],
    ['Available', undefined, 'Timeout'],
  );
});

t.test('report verdict: Ready and a deployment deadline, or the next host, or Failed', async (t) => {
  const req = { hardwareRequirements: { minCPUCores: 2, minMemoryGB: 64, minDiskGB: 0 } };
  const m = machine({ phase: 'Inspecting', hostName: 'h' }, req);
  const h = host('h', { state: 'Inspecting', consumer: 'm', inspectionPhase: 'InProgress' });
  const report = sampleReport('52:54:00:00:00:01');
  const other = host('h2');
  const next = judgeReport(m, h, report, [h, other], 10_000, policy);
  t.same(
    [next.approved, next.effects],
    [false, [{ kind: 'powerOff', host: 'default/h', reason: 'released: 16 GiB memory < 64 GiB required' }]],
  );
  t.same(
    [next.machine.status.phase, next.machine.status.hostName, next.machine.status.rejectedHosts],
    ['Pending', undefined, ['h']],
    'the machine goes back for the next matching host',
  );
  t.same([next.host.status.state, next.host.status.consumer], ['Available', undefined], 'the first is released');
  t.same(
    next.events.map((e) => [e.kind, e.severity]),
    [
      ['ReportReceived', 'info'],
      ['RequirementsNotMet', 'warning'],
    ],
  );
  t.match(next.machine.status.conditions, [
    { type: 'InspectionComplete', status: 'True' },
    { type: 'RequirementsMet', status: 'False', reason: 'RequirementsNotMet', message: /16 GiB memory < 64/ },
  ]);
  const last = judgeReport(m, h, report, [h], 10_000, policy);
  t.same(
    [last.machine.status.phase, last.machine.status.failureReason, last.machine.status.failureMessage],
    ['Failed', 'RequirementsNotMet', '16 GiB memory < 64 GiB required'],
    'no other host: the machine fails',
  );
  const off = judgeReport(m, h, report, [h, other], 10_000, { ...policy, tryOtherHosts: false });
  t.equal(off.machine.status.phase, 'Failed', 'tryOtherHosts off: fails at once');
  const ok = judgeReport({ ...m, spec: { ...m.spec, hardwareRequirements: undefined } }, h, report, [], 10_000, policy);
  t.same([ok.approved, ok.machine.status.phase, ok.host.status.state], [true, 'Inspecting', 'Ready']);
  t.equal(ok.machine.status.inspectionDeadline, 15_000, 'the deployment deadline starts');
  t.same([ok.host.status.inspectionPhase, ok.stored.machine], ['Complete', 'm']);

  t.match(provisioned(m, h, 0), { code: 'conflict' }, 'no provisioned callback before validation');
  const p = provisioned(ok.machine, ok.host, 20_000);
  if ('code' in p) throw new Error('refused');
  t.same([p.machine.status.phase, p.host.status.state, p.host.attempt], ['Provisioned', 'Provisioned', undefined]);
  t.match(
    p.machine.status.conditions.find((c) => c.type === 'Provisioned'),
    { status: 'True' },
  );
  const f = provisionFailed(ok.machine, ok.host, 'DigestMismatch: got sha256:00\x1b[31m', 20_000);
  t.same(
    [f.machine.status.phase, f.machine.status.failureReason, f.host.status.state],
    ['Failed', 'DigestMismatch', 'Available'],
  );
  t.equal(f.machine.status.failureMessage, 'inspector reported deploy failure: DigestMismatch: got sha256:00 [31m');
  t.equal(provisionFailed(ok.machine, ok.host, 'disk write', 0).machine.status.failureReason, 'DeploymentFailed');
});

t.test('claims: the first gets the script; a second, a foreign address or a stale attempt do not', async (t) => {
  const live = host('h', { state: 'Inspecting', consumer: 'm', inspectionPhase: 'Booting' });
  live.attempt = { id: 'a1', expiresAt: new Date(5000).toISOString() };
  const first = judgeRedemption(live, { from: '10.0.0.5', mac: '52:54:00:00:00:01', leased: [] }, 1000);
  if (first.kind !== 'ok') throw new Error(first.kind);
  t.same(first.host.attempt?.redeemed, {
    from: '10.0.0.5',
    mac: '52:54:00:00:00:01',
    at: new Date(1000).toISOString(),
  });
  t.same([first.host.status.inspectionPhase, first.event.kind], ['InProgress', 'CredentialClaimed']);
  t.same(
    judgeRedemption(first.host, { from: '10.0.0.5', mac: '52:54:00:00:00:01', leased: [] }, 1000),
    { kind: 'again' },
    'the redeemer asking again (same address, same MAC) gets the same answer',
  );
  t.match(judgeRedemption(first.host, { from: '10.0.0.5', leased: [] }, 1000), {
    kind: 'conflict',
    message: 'boot nonce claimed again from 10.0.0.5 (first claim from 10.0.0.5)',
  });
  t.match(judgeRedemption(live, { from: '10.0.0.66', leased: ['10.0.0.5'] }, 1000), {
    kind: 'conflict',
    message: 'boot nonce claimed from 10.0.0.66; the host holds 10.0.0.5',
  });
  t.equal(judgeRedemption(live, { from: '10.0.0.5', leased: ['10.0.0.5'] }, 1000).kind, 'ok', 'the leased address may');
  t.equal(judgeRedemption(live, { from: '10.0.0.5', leased: [] }, 5000).kind, 'unknown', 'an expired nonce');
  t.equal(judgeRedemption(host('h'), { from: '10.0.0.5', leased: [] }, 0).kind, 'unknown', 'no attempt');

  const m = machine(
    { phase: 'Inspecting', hostName: 'h' },
    { targetImageDigest: `sha256:${'a'.repeat(64)}`, configurationURL: 'http://c/x.yaml' },
  );
  const params = inspectorParams(m, live, {
    api: 'http://10.0.0.1:8080',
    token: 'TOK',
    mac: '52:54:00:00:00:01',
    kernelArgs: 'console=ttyS0',
  });
  const s = renderInspector(templates, m.spec.inspectionImageURL, 'h', params);
  t.equal(
    s,
    [
      '#!ipxe',
      `kernel http://x/i/vmlinuz initrd=initrd.img beskar7.api=http://10.0.0.1:8080 beskar7.namespace=default beskar7.host=h beskar7.token=TOK beskar7.target=http://x/t beskar7.target-digest=sha256:${'a'.repeat(64)} beskar7.provider-id=b7://default/h BOOTIF=01-52-54-00-00-00-01 beskar7.config=http://c/x.yaml console=ttyS0`,
      'initrd http://x/i/initrd.img',
      'boot',
      '',
    ].join('\n'),
    "the contract's parameters in its order, then ours, then the operator's; no template comments",
  );
  const chained = renderInspector(
    templates,
    'http://boot-server/beskar7-inspector/boot',
    'h',
    inspectorParams(m, live, { api: 'http://a', token: 'TOK' }),
  );
  t.match(
    chained,
    /^set beskar7-params beskar7\.api=http:\/\/a .*beskar7\.token=TOK .*\nchain http:\/\/boot-server\/beskar7-inspector\/boot$/m,
  );
});

t.test('enrolment: Available with the BMC facts, or Error with the reason and a growing backoff', async (t) => {
  const facts = { powerState: 'Off', uuid: 'u-1', hardwareDetails: { manufacturer: 'M' }, macs: ['52:54:00:00:00:09'] };
  t.same(
    [1, 2, 3, 4, 5].map((n) => retryDelayMs(n, policy)),
    [100, 200, 400, 800, 1000],
    'doubling, capped at retryMaxMs',
  );
  let h = host('h', { state: 'Enrolling', nics: [] });
  t.ok(shouldEnroll(h, 0), 'a new host enrols at once');
  const fails: (string | undefined)[] = [];
  for (const now of [0, 100, 300]) {
    const e = enrolment(h, { ok: false, message: 'GET /redfish/v1/Systems: HTTP 500' }, now, policy);
    h = e.host;
    t.same([e.event.kind, e.event.severity], ['EnrolFailed', 'warning']);
    fails.push(h.status.nextRetryAt);
    t.equal(h.status.state, 'Error');
    t.equal(h.status.errorMessage, 'enrolment failed: GET /redfish/v1/Systems: HTTP 500', 'the reason is on the host');
  }
  t.same(
    fails,
    [100, 300, 700].map((ms) => new Date(ms).toISOString()),
    'each failure waits twice as long',
  );
  t.equal(h.status.errorCount, 3);
  t.notOk(shouldEnroll(h, 699), 'not before the backoff is over');
  t.ok(shouldEnroll(h, 700));
  const { host: ok, event } = enrolment(h, { ok: true, facts }, 700, policy);
  t.same([event.kind, event.severity], ['Enrolled', 'info']);
  t.equal(ok.status.state, 'Available');
  t.same(ok.status.nics, [{ mac: '52:54:00:00:00:09' }]);
  t.same(
    [ok.status.errorMessage, ok.status.errorCount, ok.status.nextRetryAt],
    [undefined, undefined, undefined],
    'recovery clears the error and the count',
  );
  t.notOk(shouldEnroll(ok, 1e12), 'an Available host is not enrolled again');
  const noMacs = enrolment(
    host('n', { state: 'Enrolling', nics: [] }),
    { ok: true, facts: { ...facts, macs: [] } },
    0,
    policy,
  ).host;
  t.same(
    [noMacs.status.state, noMacs.status.errorMessage],
    ['Error', 'the BMC lists no NIC MAC addresses; set spec.bootMACs'],
  );
  t.notOk(
    shouldEnroll(host('e', { state: 'Error', errorMessage: 'restored without a retry time' }), 1e12),
    'an Error host without nextRetryAt waits for the operator',
  );
});

t.test('commands as transitions: new records, deletion guards, script and report', async (t) => {
  const hc = newHost(
    {
      name: 'h',
      namespace: 'default',
      spec: {
        redfish: {
          address: 'https://b',
          username: 'u',
          password: 'pw',
          insecureSkipVerify: false,
          allowPlainHttp: false,
        },
        bootMACs: [],
        bootChain: 'Auto',
        labels: {},
      },
    },
    'v1:sealed',
    0,
  );
  t.same(
    hc.host.spec.redfish,
    { address: 'https://b', username: 'u', insecureSkipVerify: false, allowPlainHttp: false, passwordEnc: 'v1:sealed' },
    'only the sealed password is kept',
  );
  t.same([hc.host.status.state, hc.event.kind, hc.event.severity], ['Enrolling', 'HostCreated', 'info']);
  t.same(hostDeletion(host('h', { consumer: 'm' })), {
    code: 'conflict',
    error: 'host h is used by machine m; delete the machine first',
  });
  t.equal((hostDeletion(host('h')) as { event: { kind: string } }).event.kind, 'HostDeleted');
  const del = machineDeleting(machine({ phase: 'Inspecting', hostName: 'h' }), Date.parse('2026-01-02T03:04:05Z'));
  t.same(
    [del.machine.status.phase, del.event.kind, del.event.host, del.machine.deletedAt],
    ['Deleting', 'MachineDeleting', 'h', '2026-01-02T03:04:05.000Z'],
  );

  const booting = host('h', { state: 'Inspecting', consumer: 'm', inspectionPhase: 'InProgress' });
  const report = sampleReport('52:54:00:00:00:01');
  t.equal(reportRefusal(booting, report), undefined);
  t.same(reportRefusal(host('h', { state: 'Ready', inspectionPhase: 'Complete' }), report), {
    code: 'conflict',
    error: 'host h is not inspecting (Ready/Complete)',
  });
  t.same(
    reportRefusal(booting, sampleReport('52:54:00:00:00:99')),
    { code: 'invalid', error: 'the report lists no NIC with the MAC the host booted from (52:54:00:00:00:01)' },
    "a report that does not list the host's boot NIC is not this host's",
  );
  const started = '2026-01-01T00:00:05.000Z';
  const acc = judgeReport(
    machine({ phase: 'Inspecting', hostName: 'h' }),
    { ...booting, status: { ...booting.status, inspectionTimestamp: started } },
    report,
    [],
    10_000,
    policy,
  );
  t.same(
    [acc.host.status.inspectionPhase, acc.host.status.inspectionReportId, acc.stored.machine],
    ['Complete', 'default/h/1970-01-01T00:00:10.000Z', 'm'],
  );
  t.equal(acc.host.status.inspectionTimestamp, started, 'inspectionTimestamp stays the start of inspection');
  const pf = progressNoted(booting, { step: 'kexec', ok: false, message: 'no' });
  t.same(
    [pf.host.status.errorMessage, pf.event.kind, pf.event.severity],
    ['inspector kexec: no', 'InspectorFailed', 'warning'],
  );
});

t.test('release: back to the pool with no live phase; a failed power-off keeps the real power state', async (t) => {
  const h = host('h', { state: 'Inspecting', consumer: 'm', inspectionPhase: 'Booting', observedPowerState: 'On' });
  const r = release({ ...h, attempt: { id: 'x', expiresAt: '' } });
  t.same(
    [r.status.state, r.status.consumer, r.status.inspectionPhase, r.attempt],
    ['Available', undefined, undefined, undefined],
  );
  t.equal(
    release(host('h', { inspectionPhase: 'Timeout' })).status.inspectionPhase,
    'Timeout',
    'the outcome of the last inspection stays',
  );
  const f = releaseFailed(h, 'PATCH: HTTP 400', 'Off');
  t.same(
    [f.host.status.observedPowerState, f.host.status.errorMessage, f.event.kind, f.event.severity],
    ['Off', 'release: PATCH: HTTP 400', 'ReleaseFailed', 'warning'],
  );
  const gone = machineDeleted(machine({ phase: 'Deleting', hostName: 'h' }), f.host);
  t.same(
    [gone.host?.status.state, gone.host?.status.observedPowerState, gone.event.kind],
    ['Available', 'Off', 'Deleted'],
  );
  t.notOk(
    machineDeleted(machine({ phase: 'Deleting', hostName: 'h' }), host('h', { consumer: 'other' })).host,
    'a host someone else holds is left alone',
  );
});

t.test('secrets: applied over the stored one, the hosts that name it updated; deleted only when unused', async (t) => {
  const named = {
    ...host('h'),
    spec: { ...host('h').spec, redfish: { ...host('h').spec.redfish, credentialsSecretRef: 'bmc' } },
  };
  const other = host('o');
  const old = { name: 'bmc', namespace: 'default', username: 'root', passwordEnc: 'v1:old', createdAt: 't0' };
  const s = { name: 'bmc', namespace: 'default', username: 'root', labels: {}, annotations: {} };
  t.equal(secretApplied(old, { ...s, same: true }, { passwordEnc: 'v1:new' }, [named, other], 1000), 'unchanged');
  const relabelled = secretApplied(
    old,
    { ...s, labels: { a: 'b' }, same: true },
    { passwordEnc: 'v1:new' },
    [named],
    1000,
  );
  if (relabelled === 'unchanged') throw new Error('unchanged');
  t.same(
    [relabelled.secret.labels, relabelled.secret.passwordEnc, relabelled.hosts],
    [{ a: 'b' }, 'v1:old', []],
    'a label changes the secret, not its credentials nor the hosts that name it',
  );
  const a = secretApplied(old, { ...s, same: false }, { passwordEnc: 'v1:new' }, [named, other], 1000);
  if (a === 'unchanged') throw new Error('unchanged');
  t.same([a.secret.passwordEnc, a.secret.createdAt], ['v1:new', 't0'], 'sealed anew; created when it was');
  t.same(
    a.hosts.map((h) => [h.name, h.spec.redfish.passwordEnc]),
    [['h', 'v1:new']],
    'only the host that names it takes the new credentials',
  );
  const data = { name: 'join', namespace: 'default', labels: {}, annotations: {}, same: false };
  const d = secretApplied(undefined, data, { valueEnc: 'v1:ud' }, [named], 1000);
  if (d === 'unchanged') throw new Error('unchanged');
  t.same([d.secret.valueEnc, d.secret.username, d.hosts], ['v1:ud', undefined, []], 'bootstrap data: no host touched');
  t.match(secretDeletion(old, [named]), { code: 'conflict', error: 'secret bmc is used by host h' });
  t.equal(secretDeletion(old, [other]), undefined);
});

t.test(
  "a contested nonce ends the attempt but uses none of the machine's attempts: nobody fails it by its MAC",
  async (t) => {
    const m = machine({ phase: 'Inspecting', hostName: 'h', attempts: policy.maxAttempts });
    const h = host('h', { state: 'Inspecting', consumer: 'm', inspectionPhase: 'InProgress' });
    const timedOut = attemptFailed(m, h, 'InspectionTimeout', 'no report', 1000, policy, 'Timeout');
    t.equal(timedOut.final, true, 'a timeout at the last attempt fails the machine');
    const contested = attemptFailed(m, h, 'CredentialConflict', 'claimed again', 1000, policy, 'Failed');
    t.equal(contested.final, false, 'a conflict at the last attempt does not');
    t.equal(contested.machine.status.attempts, policy.maxAttempts - 1, 'the attempt is given back');
    t.same(contested.effects, [], 'and the host is not released');
  },
);

t.test('cleaning: a host that passed validation is erased before it is Available again', async (t) => {
  const inspecting = host('h', { state: 'Inspecting', consumer: 'm', inspectionPhase: 'InProgress' });
  const m = machine({ phase: 'Inspecting', hostName: 'h' });
  const report = sampleReport('52:54:00:00:00:01');
  const on = judgeReport(m, inspecting, report, [], 0, { ...policy, cleanDisks: true });
  t.same([on.host.status.state, on.host.status.needsCleaning], ['Ready', true], 'validated: its disks may be written');
  const off = judgeReport(m, inspecting, report, [], 0, policy);
  t.equal(off.host.status.needsCleaning, undefined, 'cleaning off: nothing marked');
  const failedReq = judgeReport(
    machine(
      { phase: 'Inspecting', hostName: 'h' },
      { hardwareRequirements: { minCPUCores: 999, minMemoryGB: 0, minDiskGB: 0 } },
    ),
    inspecting,
    report,
    [],
    0,
    { ...policy, cleanDisks: true },
  );
  t.equal(failedReq.host.status.state, 'Available', 'a host that failed the requirements was never written to');

  t.equal(release(on.host).status.state, 'Cleaning', 'released after validation: Cleaning');
  t.equal(release(off.host).status.state, 'Available');
  t.equal(provisionFailed(m, on.host, 'DigestMismatch', 0).host.status.state, 'Cleaning', 'a failed deployment too');

  const cleaning = release(on.host);
  const c = startCleaning(cleaning, 'a9', 1000, policy);
  t.same(
    [c.host.attempt?.purpose, c.host.attempt?.id, c.effect],
    ['clean', 'a9', { kind: 'bootCleaner', host: 'default/h', attempt: 'a9' }],
  );
  t.equal(c.event.kind, 'CleaningStarted');
  const claimed = judgeRedemption(c.host, { from: '10.0.0.9', leased: [] }, 1500);
  t.equal(claimed.kind, 'ok', 'the cleaning nonce is redeemed like an inspection one');
  if (claimed.kind === 'ok')
    t.equal(claimed.host.status.inspectionPhase, on.host.status.inspectionPhase, 'the inspection phase stays');
  t.same(judgeRedemption(c.host, { from: '10.0.0.9', leased: [] }, 2500), { kind: 'unknown' }, 'expired');
  t.match(
    cleanerParams(c.host, { api: 'http://a', token: 'T' }),
    /^beskar7\.api=http:\/\/a beskar7\.namespace=default beskar7\.host=h beskar7\.token=T beskar7\.mode=clean$/,
  );

  const ok = cleaningDone(c.host, { ok: true, message: 'erased /dev/vda' });
  t.same(
    [ok.host.status.state, ok.host.status.needsCleaning, ok.host.attempt, ok.event.kind],
    ['Available', undefined, undefined, 'Cleaned'],
  );
  t.same(ok.effects, [{ kind: 'powerOff', host: 'default/h', reason: 'cleaned' }]);
  const bad = cleaningDone(c.host, { ok: false, message: 'could not erase /dev/vda\u001b[2J' });
  t.same([bad.host.status.state, bad.host.status.needsCleaning, bad.event.kind], ['CleanFailed', true, 'CleanFailed']);
  t.equal(bad.host.status.errorMessage, 'cleaning: could not erase /dev/vda [2J', 'control characters stripped');
  t.notOk(claimable([bad.host]).length, 'a CleanFailed host is not claimed');

  const again = cleaningRequested(bad.host);
  t.same(
    'code' in again ? again : [again.status.state, again.attempt],
    ['Cleaning', undefined],
    'an operator asks again',
  );
  t.match(cleaningRequested(inspecting), { code: 'conflict', error: 'host h is held by machine m' });
  t.match(cleaningRequested(c.host), { code: 'conflict' }, 'not while it is being cleaned');
});

t.test("the target digest: the spec's, else the one pinned for this very URL", async (t) => {
  const m = machine({}, { targetImageURL: 'http://x/os.img' });
  t.equal(targetDigest(m), undefined);
  const p = targetPinned(m, `sha256:${'b'.repeat(64)}`, 0).machine;
  t.equal(targetDigest(p), `sha256:${'b'.repeat(64)}`);
  t.equal(
    targetDigest({ ...p, spec: { ...p.spec, targetImageURL: 'http://x/other.img' } }),
    undefined,
    'not for another URL',
  );
  t.equal(
    targetDigest({ ...p, spec: { ...p.spec, targetImageDigest: `sha256:${'c'.repeat(64)}` } }),
    `sha256:${'c'.repeat(64)}`,
    'the spec wins',
  );
});
