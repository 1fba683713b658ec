import t from 'tap';
import type { StoredHost, StoredMachine } from '../../src/domain/resources.js';
import { attemptFailed, claim, nextStep, selectHost, startAttempt, unmetRequirements, validated } from '../../src/orchestrator/transitions.js';
import { sampleReport } from '../helpers/sim-inspector.js';

const policy = { inspectionTimeoutMs: 1000, maxAttempts: 2, retryBaseMs: 100, retryMaxMs: 1000 };
const host = (name: string, over: Partial<StoredHost['status']> = {}, labels: Record<string, string> = {}, createdAt = '2026-01-01T00:00:00Z'): StoredHost => ({
  name, createdAt, spec: { redfish: { address: 'http://b', username: 'u', passwordEnc: 'v1:x', insecureSkipVerify: false }, bootMACs: [], labels },
  status: { state: 'Available', nics: [{ mac: '52:54:00:00:00:01' }], ...over },
});
const machine = (over: Partial<StoredMachine['status']> = {}, spec: Partial<StoredMachine['spec']> = {}): StoredMachine => ({
  name: 'm', createdAt: '2026-01-01T00:00:00Z', spec: { inspectionImageURL: 'http://x/i', targetImageURL: 'http://x/t', ...spec },
  status: { phase: 'Pending', attempts: 0, ...over },
});

t.test('requirements: cores, memory, the largest single disk', async (t) => {
  const r = sampleReport('52:54:00:00:00:01', { disks: [{ device: '/dev/a', sizeGB: 100, type: 'SSD', model: '', serial: '' }, { device: '/dev/b', sizeGB: 100, type: 'HDD', model: '', serial: '' }] });
  t.same(unmetRequirements(undefined, r), []);
  t.same(unmetRequirements({ minCPUCores: 4, minMemoryGB: 16, minDiskGB: 100 }, r), [], 'equal is enough');
  t.same(unmetRequirements({ minCPUCores: 8, minMemoryGB: 16, minDiskGB: 150 }, r), ['4 CPU cores < 8 required', 'largest disk 100 GB < 150 GB required'], 'two 100 GB disks are not one 150 GB disk; threads are not cores');
});

t.test('host selection: Available, unclaimed, labels, oldest first', async (t) => {
  const hosts = [host('b', {}, { rack: 'r1' }, '2026-01-02T00:00:00Z'), host('a', {}, { rack: 'r1' }, '2026-01-03T00:00:00Z'), host('c', { state: 'InUse', consumer: 'x' }, { rack: 'r1' }, '2026-01-01T00:00:00Z'), host('d', {}, { rack: 'r2' }, '2026-01-01T00:00:00Z')];
  t.equal(selectHost(machine({}, { hostSelector: { matchLabels: { rack: 'r1' } } }), hosts)?.name, 'b');
  t.equal(selectHost(machine(), hosts)?.name, 'd');
  t.equal(selectHost(machine({}, { hostSelector: { matchLabels: { rack: 'r9' } } }), hosts), undefined);
});

t.test('next step for each state', async (t) => {
  const avail = host('h');
  const mine = (over: Partial<StoredHost['status']>) => host('h', { state: 'Inspecting', consumer: 'm', ...over });
  const rows: [string, StoredMachine, StoredHost | undefined, StoredHost[], string][] = [
    ['pending with a host', machine(), undefined, [avail], 'claim'],
    ['pending without', machine(), undefined, [], 'noHost'],
    ['backing off', machine({ phase: 'Inspecting', hostId: 'h', notBefore: 5000 }), mine({ state: 'InUse' }), [], 'wait'],
    ['claimed', machine({ phase: 'Inspecting', hostId: 'h' }), mine({ state: 'InUse' }), [], 'boot'],
    ['persisted but not powered', machine({ phase: 'Inspecting', hostId: 'h' }), mine({ inspectionPhase: 'Pending' }), [], 'boot'],
    ['booting, in time', machine({ phase: 'Inspecting', hostId: 'h', inspectionDeadline: 2000 }), mine({ inspectionPhase: 'Booting' }), [], 'wait'],
    ['booting, late', machine({ phase: 'Inspecting', hostId: 'h', inspectionDeadline: 500 }), mine({ inspectionPhase: 'InProgress' }), [], 'timeout'],
    ['report in', machine({ phase: 'Inspecting', hostId: 'h', inspectionDeadline: 500 }), mine({ inspectionPhase: 'Complete' }), [], 'validate'],
    ['ready', machine({ phase: 'Inspecting', hostId: 'h' }), mine({ state: 'Ready', inspectionPhase: 'Complete' }), [], 'handoff'],
    ['host taken by another', machine({ phase: 'Inspecting', hostId: 'h' }), host('h', { state: 'InUse', consumer: 'other' }), [], 'release'],
    ['deleting', machine({ phase: 'Deleting' }), undefined, [], 'release'],
    ['provisioned', machine({ phase: 'Provisioned' }), undefined, [avail], 'done'],
    ['failed', machine({ phase: 'Failed' }), undefined, [avail], 'done'],
  ];
  for (const [name, m, h, hosts, want] of rows) t.equal(nextStep(m, h, hosts, 1000).kind, want, name);
});

t.test('attempts: retry with growing backoff, then fail and release', async (t) => {
  const c = claim(machine(), host('h'));
  t.equal(c.host.status.consumer, 'm');
  const a1 = startAttempt(c.machine, c.host, 'hash', 0, policy);
  t.equal(a1.machine.status.attempts, 1);
  t.equal(a1.machine.status.inspectionDeadline, 1000);
  t.equal(a1.host.inspectionTokenHash, 'hash');
  const f1 = attemptFailed(a1.machine, a1.host, 'InspectionTimeout', 'no report', 1000, policy, 'Timeout');
  t.notOk(f1.final);
  t.equal(f1.machine.status.notBefore, 1100);
  t.equal(f1.host.status.state, 'InUse', 'back to InUse: the next step boots again');
  t.notOk(f1.host.inspectionTokenHash, 'the old token is void');
  const a2 = startAttempt(f1.machine, f1.host, 'hash2', 2000, policy);
  const f2 = attemptFailed(a2.machine, a2.host, 'InspectionTimeout', 'no report', 3000, policy, 'Timeout');
  t.ok(f2.final);
  t.same([f2.machine.status.phase, f2.machine.status.failureReason, f2.machine.status.failureMessage], ['Failed', 'InspectionTimeout', 'no report (after 2 attempts)']);
  t.same([f2.host.status.state, f2.host.status.consumer, f2.host.status.inspectionPhase], ['Available', undefined, 'Timeout']);
});

t.test('validation: Ready, or Failed with the reasons and the host released', async (t) => {
  const m = machine({ phase: 'Inspecting', hostId: 'h' }, { hardwareRequirements: { minCPUCores: 2, minMemoryGB: 64, minDiskGB: 0 } });
  const h = host('h', { state: 'Inspecting', consumer: 'm', inspectionPhase: 'Complete' });
  const r = validated(m, h, sampleReport('52:54:00:00:00:01'));
  t.same([r.machine.status.phase, r.machine.status.failureReason, r.machine.status.failureMessage], ['Failed', 'RequirementsNotMet', '16 GB memory < 64 GB required']);
  t.equal(r.host.status.state, 'Available');
  const ok = validated({ ...m, spec: { ...m.spec, hardwareRequirements: { minCPUCores: 2, minMemoryGB: 8, minDiskGB: 0 } } }, h, sampleReport('52:54:00:00:00:01'));
  t.same([ok.machine.status.phase, ok.host.status.state], ['Inspecting', 'Ready']);
});
