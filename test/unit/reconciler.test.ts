// The reconciler driven pass by pass, with no HTTP, no sockets and no sleeps: a store in a temp dir, a BMC
// driver whose calls the test holds and releases, and a clock the test moves.
import t, { type Test } from 'tap';
import type { StoredHost, StoredMachine } from '../../src/domain/resources.js';
import { SecretBox } from '../../src/store/secrets.js';
import { Store } from '../../src/store/store.js';
import { Pipeline } from '../../src/workflow/pipeline.js';
import { type BmcDriver, Orchestrator } from '../../src/workflow/reconciler.js';
import { memoryLogger } from '../helpers/log.js';
import { tempDir } from '../helpers/tmp.js';

/** A BMC that records every call; `hold(kind)` makes the next such call wait until the test lets it go. */
class ScriptedBmc {
  readonly calls: string[] = [];
  /** clients made and closed */
  made = 0;
  closed = 0;
  power: 'On' | 'Off' = 'Off';
  private readonly gates = new Map<string, { started: () => void; gate: Promise<void> }>();

  hold(kind: string): { release: () => void; started: Promise<void> } {
    let release = () => {};
    let started = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const begun = new Promise<void>((r) => {
      started = r;
    });
    this.gates.set(kind, { started, gate });
    return { release, started: begun };
  }

  private async step(kind: string): Promise<void> {
    this.calls.push(kind);
    const g = this.gates.get(kind);
    if (!g) return;
    this.gates.delete(kind);
    g.started();
    await g.gate;
  }

  driver(): BmcDriver {
    this.made++;
    const info = () => ({ powerState: this.power, manufacturer: 'M', model: 'X', serialNumber: 'S', uuid: 'u' });
    return {
      getSystem: async () => info() as never,
      macs: async () => ['52:54:00:0f:00:01'],
      secureBoot: async () => undefined,
      setOneTimePxe: async () => {
        await this.step('pxe');
        return info() as never;
      },
      powerOnOrRestart: async () => {
        await this.step('boot');
        const was = this.power;
        this.power = 'On';
        return was === 'On' ? 'ForceRestart' : 'On';
      },
      waitPowerState: async () => true,
      powerOff: async () => {
        await this.step('off');
        this.power = 'Off';
      },
      powerOn: async () => {
        this.power = 'On';
      },
      reset: async () => {},
      clearBootOverride: async () => {
        await this.step('clear');
      },
      close: async () => {
        this.closed++;
      },
    };
  }
}

const policy = {
  inspectionTimeoutMs: 60_000,
  deploymentTimeoutMs: 60_000,
  tryOtherHosts: false,
  maxAttempts: 2,
  retryBaseMs: 1000,
  retryMaxMs: 1000,
};

async function world(t: Test) {
  const dir = tempDir(t);
  const store = await Store.open(`${dir}/db`);
  t.teardown(() => store.close());
  const secrets = SecretBox.inDir(dir);
  const bmc = new ScriptedBmc();
  let now = Date.parse('2026-01-01T00:00:00Z');
  const clock = {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
  const orchestrator = (): Orchestrator => {
    const o = new Orchestrator(
      store,
      secrets,
      () => bmc.driver(),
      { ...policy, tickMs: 1e9, powerDeadlineMs: 1000, clock: clock.now },
      memoryLogger().log,
    );
    t.teardown(() => o.stop());
    return o;
  };
  const p = new Pipeline(store);
  const put = (...records: (StoredHost | StoredMachine)[]) =>
    p.run(() => ({
      plan: {
        writes: records.map((r) =>
          'spec' in r && 'redfish' in r.spec ? p.host(r as StoredHost) : p.machine(r as StoredMachine),
        ),
      },
      value: undefined,
    }));
  return { store, secrets, bmc, clock, orchestrator, put };
}

const host = (name: string, secrets: SecretBox, over: Partial<StoredHost['status']> = {}): StoredHost => ({
  name,
  namespace: 'default',
  spec: {
    redfish: {
      address: 'http://bmc.invalid',
      username: 'u',
      passwordEnc: secrets.seal('p'),
      insecureSkipVerify: false,
      allowPlainHttp: true,
    },
    bootMACs: [],
    bootChain: 'Auto',
    labels: {},
  },
  status: { state: 'Available', nics: [{ mac: '52:54:00:0f:00:01' }], ...over },
  createdAt: '2026-01-01T00:00:00.000Z',
});

const machine = (name: string, over: Partial<StoredMachine['status']> = {}): StoredMachine => ({
  name,
  namespace: 'default',
  spec: { inspectionImageURL: 'http://x/i', targetImageURL: 'http://x/t' },
  status: { phase: 'Pending', attempts: 0, conditions: [], rejectedHosts: [], ...over },
  createdAt: '2026-01-01T00:00:00.000Z',
});

const phases = async (s: Store) =>
  (await s.machines.all()).map((m) => `${m.name}:${m.status.phase}:${m.status.hostName ?? '-'}`);

t.test('one host, two machines: each pass claims at most once, and never the same host twice', async (t) => {
  const w = await world(t);
  await w.put(host('h', w.secrets), machine('x1'), machine('x2'));
  const o = w.orchestrator();
  for (let i = 0; i < 5; i++) {
    await o.passOnce();
    await o.settle();
    const held = (await w.store.machines.all()).filter((m) => m.status.hostName === 'h');
    t.equal(held.length, 1, `pass ${i + 1}: exactly one machine holds the host`);
  }
  t.same(await phases(w.store), ['x1:Inspecting:h', 'x2:Pending:-'], 'the older name claims; the other waits');
  t.same(w.bmc.calls, ['pxe', 'boot'], 'and the host was booted once');
});

t.test("a storm's claims: every machine its own host, in a few commits rather than two each", async (t) => {
  const w = await world(t);
  const n = 40;
  const mac = (i: number) => `52:54:00:0f:01:${i.toString(16).padStart(2, '0')}`;
  await w.put(
    ...Array.from({ length: n }, (_, i) => host(`h${i}`, w.secrets, { nics: [{ mac: mac(i) }] })),
    ...Array.from({ length: n }, (_, i) => machine(`m${i}`)),
  );
  const batch = w.store.batch.bind(w.store);
  let claimCommits = 0;
  w.store.batch = (ops, guards) => {
    if (ops.some((op) => op.collection === 'machines')) claimCommits++;
    return batch(ops, guards);
  };
  const o = w.orchestrator();
  await o.passOnce();
  await o.settle();
  const ms = await w.store.machines.all();
  t.same(
    ms.filter((m) => m.status.phase === 'Inspecting').length,
    n,
    'every machine claimed a host and started inspecting',
  );
  t.equal(new Set(ms.map((m) => m.status.hostName)).size, n, 'no host claimed twice');
  t.equal((await w.store.bootInstructions.all()).length, n, "each host's MAC has its inspect script");
  // six writes a claim (machine, host, a MAC's script, two events, the boot), at most 100 a commit
  t.equal(claimCommits, 3, 'claims and first boots went in 3 commits, not 80');
  t.equal(w.bmc.calls.filter((c) => c === 'boot').length, n, 'each host booted once');
});

t.test('a host that owes a power-off is not claimed until its BMC has done it', async (t) => {
  const w = await world(t);
  // the state a rejected report leaves: host released with its power-off stored in the same batch
  const p = new Pipeline(w.store);
  await p.run(() => ({
    plan: {
      writes: [p.host(host('h', w.secrets)), p.machine(machine('next'))],
      effects: [{ kind: 'powerOff', host: 'default/h', reason: 'released' }],
    },
    value: undefined,
  }));
  w.bmc.power = 'On';
  const off = w.bmc.hold('off');
  const o = w.orchestrator();
  await o.passOnce();
  await off.started;
  await o.passOnce();
  t.same(await phases(w.store), ['next:Pending:-'], 'the BMC is still powering off: the machine waits');
  t.same(w.bmc.calls, ['off'], 'nothing else was sent to the BMC');
  off.release();
  await o.settle();
  t.same(await w.store.effects.keys(), [], 'the power-off is done and its effect deleted');
  await o.passOnce();
  await o.settle();
  t.same(await phases(w.store), ['next:Inspecting:h'], 'now the machine claims the host');
  t.same(w.bmc.calls, ['off', 'clear', 'pxe', 'boot'], 'power-off and clear, then the boot: never interleaved');
});

t.test(
  'a boot stored by an orchestrator that died mid-call is carried out by the next, with fresh credentials',
  async (t) => {
    const w = await world(t);
    await w.put(host('h', w.secrets), machine('m'));
    const pxe = w.bmc.hold('pxe');
    const first = w.orchestrator();
    await first.passOnce();
    await pxe.started;
    const stored = await w.store.effects.all();
    t.same(
      stored.map((e) => e.kind),
      ['bootInspector'],
      'the attempt and its boot were committed together',
    );
    const attempt = (await w.store.hosts.get('default/h'))?.attempt?.id;
    // the first orchestrator dies here: its BMC call never returns, its outcome is never committed
    const second = w.orchestrator();
    await second.passOnce();
    await second.settle();
    t.same(await w.store.effects.keys(), [], 'the second one carried the stored boot out');
    const h = await w.store.hosts.get('default/h');
    t.not(
      h?.attempt?.id,
      attempt,
      'with new credentials: the first call may have reached the BMC (no attempt boots twice)',
    );
    t.equal(h?.status.inspectionPhase, 'Booting');
    t.equal((await w.store.machines.get('default/m'))?.status.attempts, 1, 'the same attempt, counted once');
    const kinds = (await w.store.events.all()).map((e) => e.kind);
    t.same(
      kinds.filter((k) => k.startsWith('Inspection')),
      ['InspectionStarted', 'InspectionResumed'],
    );
    pxe.release();
  },
);

t.test('deadlines follow the clock: no report in time ends the attempt, then the machine', async (t) => {
  const w = await world(t);
  await w.put(host('h', w.secrets), machine('m'));
  const o = w.orchestrator();
  await o.passOnce();
  await o.settle();
  t.same(await phases(w.store), ['m:Inspecting:h']);
  w.clock.advance(policy.inspectionTimeoutMs - 1);
  await o.passOnce();
  t.equal(
    (await w.store.machines.get('default/m'))?.status.attempts,
    1,
    'a millisecond before the deadline: still waiting',
  );
  w.clock.advance(1);
  await o.passOnce();
  const m = await w.store.machines.get('default/m');
  t.match(m?.status.failureMessage, /no inspection report within 60 s; retrying in 1 s/);
  w.clock.advance(policy.retryBaseMs);
  await o.passOnce();
  await o.settle();
  t.equal((await w.store.machines.get('default/m'))?.status.attempts, 2, 'the retry is a new attempt');
  w.clock.advance(policy.inspectionTimeoutMs);
  await o.passOnce();
  await o.settle();
  const failed = await w.store.machines.get('default/m');
  t.same([failed?.status.phase, failed?.status.failureReason], ['Failed', 'InspectionTimeout']);
  t.same(w.bmc.calls.slice(-2), ['off', 'clear'], 'the released host was powered off');
});

t.test("an idle BMC's client is closed, and made again for its next call", async (t) => {
  const w = await world(t);
  await w.put(host('h', w.secrets), machine('m'));
  const o = w.orchestrator();
  await o.passOnce();
  await o.settle();
  t.same([w.bmc.made, w.bmc.closed], [1, 0], 'one client booted the host');
  w.clock.advance(14_999);
  await o.passOnce();
  t.equal(w.bmc.closed, 0, 'used 15 s ago less a millisecond: kept');
  // idle clients are looked for once a second
  w.clock.advance(1000);
  await o.passOnce();
  t.equal(w.bmc.closed, 1, 'idle for 15 s: closed at the next look');
  // no report in time: the attempt ends, and the host's power-off needs a client again
  w.clock.advance(policy.inspectionTimeoutMs);
  await o.passOnce();
  await o.settle();
  w.clock.advance(policy.retryBaseMs);
  await o.passOnce();
  await o.settle();
  t.equal(w.bmc.made, 2, 'a new client for the next call');
  t.same(w.bmc.calls, ['pxe', 'boot', 'pxe', 'boot'], 'which reached the BMC');
});

t.test('a stopped reconciler starts no BMC call: a pass after stop() reaches no BMC', async (t) => {
  const w = await world(t);
  await w.put(host('h', w.secrets), machine('x'));
  const o = w.orchestrator();
  const boot = w.bmc.hold('pxe');
  const first = o.passOnce();
  await boot.started;
  const stopping = o.stop();
  boot.release();
  await Promise.all([first, stopping]);
  const calls = w.bmc.calls.length;
  // what a tick or a kick would do now, done by hand: the machine still wants its host booted
  await o.passOnce();
  await o.settle();
  t.equal(w.bmc.calls.length, calls, 'no BMC call after stop');
  t.same(await phases(w.store), ['x:Inspecting:h'], 'and the record is as the stop left it');
});
