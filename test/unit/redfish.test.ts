import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { RedfishClient, RedfishError } from '../../src/redfish/client.js';
import { Limiter } from '../../src/redfish/limiter.js';
import { backoffMs, isRetryable } from '../../src/redfish/retry.js';
import { until } from '../helpers/appliance.js';
import { memoryLogger } from '../helpers/log.js';
import { tempDir } from '../helpers/tmp.js';
import { FakeBmc, type FakeBmcOptions, type Personality } from '../lab/fake-bmc/server.js';

const global = new Limiter(8);

async function setup(
  t: Test,
  personality: Personality = {},
  extra: Partial<FakeBmcOptions> = {},
  conn: Record<string, unknown> = {},
) {
  const bmc = new FakeBmc({ personality, ...extra });
  const address = await bmc.start();
  const { log, lines } = memoryLogger();
  const client = new RedfishClient(
    { address, username: 'admin', password: 'secret', ...conn },
    { timeoutMs: 2000, retries: 4, backoffBaseMs: 20, backoffMaxMs: 200, global, perBmc: 2 },
    log,
  );
  t.teardown(async () => {
    await client.close();
    await bmc.stop();
  });
  return { bmc, client, lines, address };
}

t.test('retry policy is pure and bounded', async (t) => {
  t.ok(isRetryable(409, '', 'POST'));
  t.ok(isRetryable(503, '', 'PATCH'));
  t.ok(isRetryable(500, '{"error":{"code":"SYS518"}}', 'PATCH'));
  t.ok(isRetryable(400, 'UnableToModifyDuringSystemPOST', 'PATCH'));
  t.notOk(isRetryable(400, 'PropertyUnknown', 'PATCH'));
  t.ok(isRetryable(0, 'ECONNRESET', 'GET'));
  t.notOk(isRetryable(0, 'ECONNRESET', 'POST'), 'a POST that may have happened is not repeated');
  t.equal(
    backoffMs(3, 100, 10_000, null, () => 1),
    800,
  );
  t.equal(
    backoffMs(10, 100, 5000, null, () => 1),
    5000,
    'capped',
  );
  t.equal(
    backoffMs(3, 100, 10_000, null, () => 0),
    400,
    'at least half the step',
  );
  t.equal(backoffMs(0, 100, 60_000, '7'), 7000, 'Retry-After wins');
});

t.test('plain BMC: session, one-time PXE with Mode, power on, session closed', async (t) => {
  const { bmc, client } = await setup(t);
  const sys = await client.getSystem();
  t.equal(sys.path, '/redfish/v1/Systems/System.Embedded.1', 'the only member, not /Systems/1');
  t.same(await client.macs(), ['52:54:00:fa:00:01']);
  const checked = await client.setOneTimePxe('UEFI');
  t.same(bmc.boot, { target: 'Pxe', enabled: 'Once', mode: 'UEFI' });
  t.equal(checked.powerState, 'Off', 'the system as read back to check the override');
  const patch = bmc.seen.find((s) => s.method === 'PATCH')!;
  t.same(
    patch.body,
    { Boot: { BootSourceOverrideTarget: 'Pxe', BootSourceOverrideEnabled: 'Once' } },
    'Mode not sent when it already matches',
  );
  t.ok(patch.headers['x-auth-token'], 'session token used');
  t.equal(patch.headers['if-match'], 'W/"1"', 'If-Match from the ETag');
  const before = bmc.seen.length;
  t.equal(await client.powerOnOrRestart(checked), 'On');
  t.same(
    bmc.seen.slice(before).map((s) => s.method),
    ['POST'],
    'with the system just read, only the reset goes to the BMC',
  );
  t.equal(bmc.power, 'On');
  t.equal(await client.powerOnOrRestart(), 'ForceRestart', 'a host already on is restarted');
  t.equal(bmc.sessionCount, 1, 'one cached session');
  await client.close();
  t.equal(bmc.sessionCount, 0, 'session deleted on close');
});

t.test('Mode is sent only when it differs', async (t) => {
  const { bmc, client } = await setup(t);
  bmc.boot.mode = 'Legacy';
  await client.setOneTimePxe('UEFI');
  t.equal(
    (bmc.seen.find((s) => s.method === 'PATCH')!.body as { Boot: Record<string, string> }).Boot.BootSourceOverrideMode,
    'UEFI',
  );
});

t.test('428 without If-Match (iDRAC, iLO)', async (t) => {
  const { bmc, client } = await setup(t, { requireIfMatch: true });
  await client.setOneTimePxe('UEFI');
  t.equal(bmc.boot.target, 'Pxe');
  t.ok(
    bmc.seen.filter((s) => s.method === 'PATCH').every((s) => s.headers['if-match']),
    'every PATCH carried If-Match',
  );
});

t.test('no BootSourceOverrideMode (old Supermicro): retried without Mode', async (t) => {
  const { bmc, client } = await setup(t, { noMode: true });
  await client.setOneTimePxe('UEFI');
  t.same(bmc.boot, { target: 'Pxe', enabled: 'Once', mode: 'UEFI' });
  t.ok(
    bmc.seen.filter((s) => s.method === 'PATCH').every((s) => !JSON.stringify(s.body).includes('Mode')),
    'Mode never sent: the system shows none',
  );
});

t.test('Once reverts to Disabled when the machine boots', async (t) => {
  const { bmc, client } = await setup(t, { onceRevertsOnBoot: true });
  await client.setOneTimePxe();
  await client.powerOnOrRestart();
  t.equal(bmc.boot.enabled, 'Disabled');
  await client.setOneTimePxe();
  t.equal(bmc.boot.enabled, 'Once', 'set again for the next boot');
});

t.test('412: the PATCH is repeated once with the fresh ETag, not the stale one', async (t) => {
  const { bmc, client } = await setup(t, { staleEtagOnce: true });
  await client.setOneTimePxe();
  t.equal(bmc.boot.target, 'Pxe');
  const patches = bmc.seen.filter((s) => s.method === 'PATCH').map((s) => s.headers['if-match']);
  t.same(patches, ['W/"1"', 'W/"2"'], 'the second PATCH carries the ETag read after the 412');
});

t.test('clearing the override sends Target None with Disabled; Disabled alone where None is refused', async (t) => {
  const { bmc, client } = await setup(t, { requireTargetWithDisabled: true });
  await client.setOneTimePxe();
  await client.clearBootOverride();
  t.same([bmc.boot.target, bmc.boot.enabled], ['None', 'Disabled']);
  t.same(bmc.seen.filter((s) => s.method === 'PATCH').at(-1)!.body, {
    Boot: { BootSourceOverrideEnabled: 'Disabled', BootSourceOverrideTarget: 'None' },
  });
  const { bmc: b2, client: c2 } = await setup(t, { noTargetNone: true });
  await c2.setOneTimePxe();
  await c2.clearBootOverride();
  t.same(
    b2.seen.filter((s) => s.method === 'PATCH').at(-1)!.body,
    { Boot: { BootSourceOverrideEnabled: 'Disabled' } },
    'a BMC without Target None takes Disabled alone',
  );
  t.same([b2.boot.target, b2.boot.enabled], ['Pxe', 'Disabled']);
  const { bmc: b3, client: c3 } = await setup(t, { noTargetNone500: true });
  await c3.setOneTimePxe();
  await c3.clearBootOverride();
  t.same(b3.boot.enabled, 'Disabled', 'a 500 that names Target None falls back too (libvirt-backed emulators)');
  // only the first PATCH fails: a fallback would succeed with the second, so the raise shows there was none
  const { bmc: b4, client: c4 } = await setup(t, { fault: { kind: 'error500', scope: 'actions', first: 1 } });
  await t.rejects(c4.clearBootOverride(), /HTTP 500/, 'a 500 that does not is the BMC failing: raised');
  t.equal(b4.seen.filter((s) => s.method === 'PATCH').length, 1, 'and no fallback PATCH followed');
});

t.test(
  'setting one-time PXE: a PATCH that failed is not repeated but for a stale ETag; one dropped is an error',
  async (t) => {
    const { bmc, client } = await setup(t, { fault: { kind: 'error500', scope: 'actions', first: 1 } });
    await t.rejects(client.setOneTimePxe(), /HTTP 500/);
    t.equal(bmc.seen.filter((s) => s.method === 'PATCH').length, 1, 'a 500 is not retried with a fresh ETag');
    const { client: dropped } = await setup(t, { dropsBootPatch: true });
    await t.rejects(dropped.setOneTimePxe(), /boot override did not stick: target None, enabled Disabled/);
  },
);

t.test('Mode is left out when the BMC already boots that way', async (t) => {
  const { bmc, client } = await setup(t);
  bmc.boot.mode = 'UEFI';
  await client.setOneTimePxe('UEFI');
  t.same(bmc.seen.find((s) => s.method === 'PATCH')!.body, {
    Boot: { BootSourceOverrideTarget: 'Pxe', BootSourceOverrideEnabled: 'Once' },
  });
});

t.test('a 500 on a PATCH that names Mode is the BMC failing: raised, not sent again without Mode', async (t) => {
  const { bmc, client } = await setup(t, { fault: { kind: 'error500', scope: 'actions', first: 1 } });
  bmc.boot.mode = 'Legacy';
  await t.rejects(client.setOneTimePxe('UEFI'), /HTTP 500/);
  t.equal(bmc.seen.filter((s) => s.method === 'PATCH').length, 1);
});

t.test('the read-back: either half of the override missing is an error; Continuous for Once is not', async (t) => {
  const { client: noTarget } = await setup(t, { dropsBootPatch: 'target' });
  await t.rejects(noTarget.setOneTimePxe(), /did not stick: target None, enabled Once/);
  const { client: noEnabled } = await setup(t, { dropsBootPatch: 'enabled' });
  await t.rejects(noEnabled.setOneTimePxe(), /did not stick: target Pxe, enabled Disabled/);
  const { client } = await setup(t, { onceShownAsContinuous: true });
  t.match(await client.setOneTimePxe(), { overrideTarget: 'Pxe', overrideEnabled: 'Continuous' });
});

t.test('428 from a BMC that gives no ETag to send: raised after one PATCH', async (t) => {
  const { bmc, client } = await setup(t, { requireIfMatch: true, noEtag: true });
  await t.rejects(client.setOneTimePxe(), /428|If-Match/);
  t.equal(bmc.seen.filter((s) => s.method === 'PATCH').length, 1, 'nothing fresher to send it with');
});

t.test('Mode refused (400) by a BMC that shows it: sent again without Mode', async (t) => {
  const { bmc, client } = await setup(t, { modeReadOnly: true });
  bmc.boot.mode = 'Legacy';
  await client.setOneTimePxe('UEFI');
  t.same(
    bmc.seen.filter((s) => s.method === 'PATCH').map((s) => Object.keys((s.body as { Boot: object }).Boot).sort()),
    [
      ['BootSourceOverrideEnabled', 'BootSourceOverrideMode', 'BootSourceOverrideTarget'],
      ['BootSourceOverrideEnabled', 'BootSourceOverrideTarget'],
    ],
  );
  t.same([bmc.boot.target, bmc.boot.enabled, bmc.boot.mode], ['Pxe', 'Once', 'Legacy']);
});

t.test('428 when the system was read without an ETag: read again, sent with the one it has now', async (t) => {
  const { bmc, client } = await setup(t, { requireIfMatch: true, etagFromSecondRead: true });
  await client.setOneTimePxe();
  const sent = bmc.seen.filter((s) => s.method === 'PATCH').map((s) => s.headers['if-match'] ?? 'none');
  t.match(sent, ['none', /^W\/"\d+"$/], 'first without If-Match (428), then with the ETag read after it');
  t.equal(sent.length, 2);
  t.equal(bmc.boot.target, 'Pxe');
});

t.test('clearing: a refusal of Target None that is neither 400 nor 500 is raised, with no fallback', async (t) => {
  const { bmc, client } = await setup(t, { noTargetNone403: true });
  await client.setOneTimePxe();
  await t.rejects(client.clearBootOverride(), /HTTP 403/);
  t.equal(bmc.seen.filter((s) => s.method === 'PATCH').length, 2, 'the set and the one clear');
});

t.test('a task monitor answering a bare 202 while it runs is polled to its end', async (t) => {
  const { bmc, client } = await setup(t, { taskPolls: 3, bareTaskMonitor: true });
  await client.reset('On');
  t.equal(bmc.seen.filter((s) => s.path.startsWith('/redfish/v1/TaskService/Tasks/')).length, 3);
  // with no Retry-After it waits its own backoff (500 ms and more) between polls: however slow this machine,
  // no more than three fit in 1.2 s
  const running = bmc.task(1e9);
  await t.rejects(client.waitTask(running, 1200), /not done within 1200 ms/);
  const polls = bmc.seen.filter((s) => s.path === running).length;
  t.ok(polls >= 1 && polls <= 3, `${polls} polls in 1.2 s`);
});

t.test('a Location on a Reset answered 204 is not a task to wait for', async (t) => {
  const { bmc, client } = await setup(t, { locationOnReset: true });
  const sys = await client.getSystem();
  const reads = bmc.seen.length;
  await client.reset('On', sys);
  t.same(
    bmc.seen.slice(reads).map((s) => s.method),
    ['POST'],
    'the POST alone',
  );
});

t.test('systemId names a member by path, Id or Name (systems listed by UUID)', async (t) => {
  const { bmc, client } = await setup(t, { membersByUuid: true }, {}, { systemId: 'node-0' });
  t.equal((await client.getSystem()).path, `/redfish/v1/Systems/${bmc.uuid}`);
  const { client: byId } = await setup(t, { membersByUuid: true }, {}, { systemId: bmc.uuid });
  t.equal((await byId.getSystem()).path, `/redfish/v1/Systems/${bmc.uuid}`);
  const { client: none } = await setup(t, { membersByUuid: true }, {}, { systemId: 'node-9' });
  await t.rejects(none.getSystem(), /system node-9 not among/);
});

t.test('links to another origin are not followed with our credentials', async (t) => {
  const { bmc, client } = await setup(t);
  const elsewhere = new FakeBmc();
  const other = await elsewhere.start();
  t.teardown(() => elsewhere.stop());
  await t.rejects(
    client.call('GET', `${other}/redfish/v1/Systems`),
    /refusing to follow http:\/\/127\.0\.0\.1:\d+: not the BMC's origin/,
  );
  t.equal(elsewhere.seen.length, 0, 'the other origin saw nothing');
  t.notOk(
    bmc.seen.some((x) => x.path.includes('127.0.0.1')),
    'nor was it asked of our BMC',
  );
});

t.test('close() during retries and power polls ends every call at once', async (t) => {
  const { client, bmc } = await setup(t, { powerLagMs: 60_000, sessionCap: 0 });
  const calls = [client.getSystem(), client.waitPowerState('On', 60_000, 500)].map((p) =>
    p.then(
      () => 'resolved',
      (e: Error) => e.message,
    ),
  );
  // both under way: the BMC has refused a first try of each (sessionCap 0), so they are retrying or polling
  await until('both calls under way', async () => (bmc.seen.length >= 2 ? true : undefined));
  await client.close();
  // both would otherwise go on for a minute: they end with the close, not with their own deadlines
  const results = await Promise.all(calls);
  t.ok(
    results.every((r) => /client closed/.test(r)),
    results.join(' | '),
  );
});

t.test('an appliance that no longer leads sends no BMC request, not even the logout', async (t) => {
  const bmc = new FakeBmc();
  const address = await bmc.start();
  t.teardown(() => bmc.stop());
  let leads = true;
  const opts = { timeoutMs: 2000, retries: 4, backoffBaseMs: 20, backoffMaxMs: 200, global, perBmc: 1 };
  const open = () =>
    new RedfishClient(
      { address, username: 'admin', password: 'secret' },
      { ...opts, mayCall: () => leads },
      memoryLogger().log,
    );
  const leader = open();
  await leader.getSystem();
  t.equal(bmc.sessionCount, 1, 'a session is open');
  await leader.close();
  t.equal(bmc.sessionCount, 0, "a leader's close logs out");

  const deposed = open();
  await deposed.getSystem();
  const before = bmc.seen.length;
  leads = false;
  const refused = await deposed.getSystem().catch((e: RedfishError) => e);
  t.match(refused, { message: /not the leader/, permanent: true }, 'refused at once, no retry');
  await deposed.close();
  t.equal(bmc.seen.length, before, 'nothing reached the BMC: neither the call nor the logout');
  t.equal(bmc.sessionCount, 1, 'the session is left to time out on the BMC');
});

t.test('close() ends a call queued behind a hung one: it never leaves', async (t) => {
  // the first request (the login) hangs and holds the BMC's only slot
  const { client, bmc } = await setup(t, { fault: { kind: 'hang', first: 1 } });
  const q = new RedfishClient(
    { address: client.conn.address, username: 'admin', password: 'secret' },
    { timeoutMs: 30_000, retries: 0, backoffBaseMs: 20, backoffMaxMs: 200, global, perBmc: 1 },
    memoryLogger().log,
  );
  const first = q.getSystem().catch((e: Error) => e.message);
  await until('the login hangs', async () => (bmc.hanging === 1 ? true : undefined));
  const queued = q.setOneTimePxe().catch((e: Error) => e.message);
  await q.close();
  t.match(await Promise.all([first, queued]), [/client closed/, /client closed/]);
  t.equal(bmc.seen.length, 1, 'only the hung login reached the BMC: the queued call and a logout never left');
});

t.test('200 with an error body is success (iLO)', async (t) => {
  const { bmc, client } = await setup(t, { okWithErrorBody: true });
  await client.setOneTimePxe();
  t.equal(bmc.boot.target, 'Pxe');
});

t.test('409 on On right after off (iDRAC10) is retried with backoff', async (t) => {
  const { bmc, client, lines } = await setup(t, { conflictAfterOffMs: 100 });
  bmc['setPower']('On');
  await client.reset('ForceOff');
  await client.powerOnOrRestart();
  t.equal(bmc.power, 'On');
  t.ok(bmc.seen.filter((s) => s.method === 'POST' && s.path.endsWith('Reset')).length > 2, 'the On was repeated');
  t.ok(lines.some((l) => l.msg === 'redfish: retrying' && l.status === 409));
});

t.test('session cap 503 (RAC0218): waits for a free session', async (t) => {
  const { bmc, client } = await setup(t, { sessionCap: 0 });
  setTimeout(() => (bmc.p.sessionCap = 1), 100);
  await client.getSystem();
  t.equal(bmc.sessionCount, 1);
  t.ok(bmc.seen.filter((s) => s.path.endsWith('/Sessions')).length >= 2, 'login retried');
});

t.test('PowerState lag: polled until it shows, or a deadline error', async (t) => {
  const { bmc, client } = await setup(t, { powerLagMs: 300 });
  await client.powerOnOrRestart();
  const looks = () => bmc.seen.filter((x) => x.method === 'GET').length;
  const before = looks();
  t.equal(await client.waitPowerState('On', 3000), true, 'shown');
  t.equal(looks() - before, 1, 'one look: the first waits out the lag');
  t.equal(bmc.power, 'On');
  t.equal(await client.waitPowerState('Off', 3000, 50, async () => true), false, 'moot: ended by the caller');
  t.equal(looks() - before, 1, 'a moot wait asks the BMC nothing');
  bmc.p.powerLagMs = 5000;
  await t.rejects(client.powerOff(400), /PowerState still On after 400 ms/);
});

t.test("one BMC's calls, one after another, share one keep-alive connection", async (t) => {
  const { bmc, client } = await setup(t);
  await client.getSystem();
  await client.macs();
  await client.powerOnOrRestart(await client.setOneTimePxe());
  t.ok(bmc.seen.length >= 8, `${bmc.seen.length} requests`);
  t.equal(bmc.connections, 1, 'no second connection (TLS handshake) for a call right after another');
});

t.test("one BMC's calls at once: a connection each, up to perBmc, kept for the calls after them", async (t) => {
  const { bmc, client } = await setup(t, { delayMs: 100 });
  await Promise.all([1, 2, 3, 4, 5].map(() => client.getSystem()));
  t.equal(bmc.connections, 2, 'five calls at once on perBmc: 2 connections');
  await client.getSystem();
  await Promise.all([client.macs(), client.getSystem()]);
  t.equal(bmc.connections, 2, 'reused by the calls after them');
});

t.test('202 with a task monitor is followed to completion', async (t) => {
  const { bmc, client } = await setup(t, { taskPolls: 3 });
  await client.reset('On');
  t.equal(bmc.seen.filter((s) => s.path.startsWith('/redfish/v1/TaskService/Tasks/')).length, 3);
});

t.test('a task monitor that fails, or outlasts its deadline, is an error that says which', async (t) => {
  for (const end of ['Exception', 'Killed', 'Cancelled'] as const) {
    const { client } = await setup(t, { taskPolls: 2, taskEnd: end });
    await t.rejects(client.reset('On'), new RegExp(`task /redfish/v1/TaskService/Tasks/\\w+ ended ${end}`), end);
  }
  const { bmc, client } = await setup(t);
  const running = bmc.task(1e9);
  const err = await client.waitTask(running, 200).catch((e: unknown) => e);
  t.ok(err instanceof RedfishError && err.status === 504, 'a 504 of our own');
  t.match(String(err), /not done within 200 ms/);
  t.ok(bmc.seen.filter((s) => s.path === running).length >= 1, 'it was polled until then');
});

t.test('no session service: Basic auth', async (t) => {
  const { bmc, client } = await setup(t, { noSessions: true });
  await client.getSystem();
  t.match(String(bmc.seen.at(-1)!.headers.authorization), /^Basic /);
});

t.test('several systems need a systemId', async (t) => {
  const { client } = await setup(t, { twoSystems: true });
  await t.rejects(client.getSystem(), /2 systems .* set redfish\.systemId/);
  const { client: c2 } = await setup(t, { twoSystems: true }, {}, { systemId: 'B' });
  t.equal((await c2.getSystem()).path, '/redfish/v1/Systems/B');
});

t.test('401 re-login once; wrong password is an error that hides the password', async (t) => {
  const { bmc, client } = await setup(t);
  await client.getSystem();
  bmc['sessions'].clear(); // the BMC forgot our session
  await client.getSystem();
  t.equal(bmc.sessionCount, 1, 'logged in again');
  const { client: bad, lines } = await setup(t, {}, {}, { password: 'hunter2-wrong' });
  const err = await bad.getSystem().catch((e: unknown) => e);
  t.ok(err instanceof RedfishError && err.status === 401, 'HTTP 401 surfaced');
  t.notMatch(JSON.stringify(lines) + String(err), /hunter2/, 'password in no log line or error');
});

t.test('timeouts on every call', async (t) => {
  const { client } = await setup(t, { delayMs: 3000 });
  await t.rejects(client.getSystem(), /transport error: no answer within 2000 ms/, 'each try ends at the timeout');
});

t.test(
  'a BMC that takes the connection and never finishes the TLS handshake: the call ends at its timeout',
  async (t) => {
    // undici gives a request to its handler only once the connection is up (after 10 s of connect timeout here)
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => sockets.add(s.on('error', () => undefined)));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.teardown(() => {
      for (const s of sockets) s.destroy();
      server.close();
    });
    const port = (server.address() as net.AddressInfo).port;
    const client = new RedfishClient(
      { address: `https://127.0.0.1:${port}`, username: 'admin', password: 'secret' },
      { timeoutMs: 300, retries: 0, backoffBaseMs: 20, backoffMaxMs: 200, global, perBmc: 2 },
      memoryLogger().log,
    );
    const err = (await client.getSystem().catch((e: unknown) => e)) as RedfishError;
    t.match(
      err.message,
      /transport error: no answer within 300 ms/,
      'ended by its timeout, not by the connect timeout',
    );
    t.ok(sockets.size >= 1, 'the connection was taken');
    await client.close();
    t.pass('close() returns with the connection attempt still open');
  },
);

t.test('TLS: CA bundle trusted, unknown CA refused, insecure only when asked', async (t) => {
  const dir = tempDir(t);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      path.join(dir, 'key.pem'),
      '-out',
      path.join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  const tls = {
    key: readFileSync(path.join(dir, 'key.pem'), 'utf8'),
    cert: readFileSync(path.join(dir, 'cert.pem'), 'utf8'),
  };
  const { client: trusted } = await setup(t, {}, { tls }, { caBundle: tls.cert });
  t.equal((await trusted.getSystem()).manufacturer, 'Beskar7 Fake');
  const { client: strict, bmc: strictBmc, lines } = await setup(t, {}, { tls });
  const err = (await strict.getSystem().catch((e: unknown) => e)) as RedfishError;
  t.match(err.message, /transport error: TLS: DEPTH_ZERO_SELF_SIGNED_CERT .*caBundle/, err.message);
  t.ok(err.permanent, 'an untrusted certificate is permanent');
  t.equal(lines.filter((l) => l.msg === 'redfish: retrying').length, 0, 'and never retried: reported at once');
  t.equal(strictBmc.seen.length, 0, 'no request reached the BMC');
  const { client: insecure } = await setup(t, {}, { tls }, { insecureSkipVerify: true });
  t.equal((await insecure.getSystem()).model, 'FB-1');
});

t.test('per-BMC concurrency cap', async (t) => {
  const { bmc, client } = await setup(t, { delayMs: 50 });
  let peak = 0;
  let now = 0;
  const orig = bmc['handle'].bind(bmc);
  bmc['handle'] = async (req: never, res: never) => {
    now++;
    peak = Math.max(peak, now);
    await orig(req, res);
    now--;
  };
  await client.getSystem();
  await Promise.all(Array.from({ length: 8 }, () => client.getSystem()));
  t.ok(peak <= 2, `at most 2 calls in flight to one BMC (saw ${peak})`);
});

t.test('limiter: a call that outlives holdMs gives its slot back and runs on', async (t) => {
  const l = new Limiter(1, 50);
  let releaseHung!: () => void;
  const hung = l.run(() => new Promise<string>((r) => (releaseHung = () => r('hung done'))));
  const order: string[] = [];
  await l.run(async () => order.push('second ran while the first was still waiting'));
  t.same(order, ['second ran while the first was still waiting']);
  releaseHung();
  t.equal(await hung, 'hung done', 'the first call still completes');
  t.equal(l.inFlight, 0, 'no slot leaked or counted twice');
  const strict = new Limiter(1);
  let second = false;
  let releaseFirst!: () => void;
  const first = strict.run(() => new Promise<void>((r) => (releaseFirst = r)));
  const next = strict.run(async () => {
    second = true;
  });
  // no timer is involved without holdMs: one turn of the event loop runs whatever the limiter let through
  await new Promise((r) => setImmediate(r));
  t.notOk(second, 'without holdMs the cap holds');
  releaseFirst();
  await Promise.all([first, next]);
  t.ok(second);
  t.equal(strict.inFlight, 0);
});

t.test('a BMC body over 1 MiB is cut off, not buffered, and not asked for again', async (t) => {
  let asked = 0;
  const server = http.createServer((_req, res) => {
    asked++;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(`{"Members":[${'"x",'.repeat(600_000)}"x"]}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const { log } = memoryLogger();
  const client = new RedfishClient(
    { address: `http://127.0.0.1:${(server.address() as { port: number }).port}`, username: 'u', password: 'p' },
    { timeoutMs: 2000, retries: 4, backoffBaseMs: 20, backoffMaxMs: 200, global, perBmc: 2 },
    log,
  );
  t.teardown(() => client.close());
  const err = (await client.getSystem().catch((e: unknown) => e)) as RedfishError;
  t.match(err.message, /response body over 1048576 bytes/);
  t.ok(err.permanent);
  t.ok(asked <= 2, `${asked} requests: no retries`);
});
