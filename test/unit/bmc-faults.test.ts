// BMC faults across many hosts at once: hung, resetting, 500-answering, slow, session-capped BMCs and wrong
// passwords, beside healthy ones. The orchestrator must back off, put the reason on the host, and never let
// a broken BMC hold up another host.
import t from 'tap';
import { inProcess, until } from '../helpers/appliance.js';
import { addHost, addMachine, HOSTS, MACHINES } from '../helpers/resources.js';
import { bmcWithMachine, hostBody, machineBody } from '../helpers/workflow.js';
import type { Personality } from '../lab/fake-bmc/server.js';

const PER_CLASS = 4;
const classes: Record<string, { personality?: Personality; password?: string; machine?: boolean }> = {
  healthy: { machine: true },
  slow: { personality: { delayMs: 400 }, machine: true },
  // the first two requests get a bare 500: enrolment fails once, backs off, and then succeeds
  flaky: { personality: { fault: { kind: 'error500', first: 2 } }, machine: true },
  hang: { personality: { fault: { kind: 'hang' } } },
  reset: { personality: { fault: { kind: 'reset' } } },
  denied: { password: 'wrong' },
  sessions: { personality: { sessionCap: 0 } },
  actions500: { personality: { fault: { kind: 'error500', scope: 'actions' } }, machine: true },
  actionsReset: { personality: { fault: { kind: 'reset', scope: 'actions' } }, machine: true },
};

t.test(
  `${PER_CLASS * Object.keys(classes).length} hosts, ${Object.keys(classes).length - 1} kinds of broken BMC: backoff, reasons, no host held up`,
  async (t) => {
    let base = '';
    const a = await inProcess(t, {
      // hung calls never time out during this test; 3 global slots would all be theirs if they kept them
      redfish: {
        timeoutSeconds: 300,
        retries: 2,
        backoffBaseSeconds: 0.02,
        backoffMaxSeconds: 0.2,
        perBmcConcurrency: 2,
        globalConcurrency: 3,
        slowCallSeconds: 0.2,
      },
      orchestrator: {
        tickSeconds: 0.1,
        retryBaseSeconds: 0.2,
        retryMaxSeconds: 1,
        maxAttempts: 2,
        inspectionTimeoutSeconds: 60,
        powerDeadlineSeconds: 5,
      },
    });
    base = a.base;
    const bmcs: Record<string, Awaited<ReturnType<typeof bmcWithMachine>>[]> = {};
    let n = 0;
    // the hung ones first, so their calls are the first to take the global slots
    for (const [cls, c] of Object.entries(classes)) {
      bmcs[cls] = [];
      for (let i = 0; i < PER_CLASS; i++) {
        const mac = `52:54:00:66:${(n >> 8).toString(16).padStart(2, '0')}:${(n++ & 255).toString(16).padStart(2, '0')}`;
        const b = await bmcWithMachine(t, () => base, mac, {
          ...(c.personality ? { personality: c.personality } : {}),
        });
        bmcs[cls].push(b);
        const body = hostBody(`${cls.toLowerCase()}-${i}`, b.address, { labels: { class: cls } });
        if (c.password) body.spec.redfish.password = c.password;
        t.equal((await addHost(a.kube, body)).status, 201);
      }
    }
    const withMachines = Object.keys(classes).filter((c) => classes[c]!.machine);
    for (const cls of withMachines) {
      for (let i = 0; i < PER_CLASS; i++)
        await addMachine(
          a.kube,
          machineBody(`m-${cls.toLowerCase()}-${i}`, undefined, { hostSelector: { matchLabels: { class: cls } } }),
        );
    }
    const phases = async () =>
      Object.fromEntries(((await a.kube('GET', MACHINES)).json.items as any[]).map((m) => [m.metadata.name, m]));
    const settled = await until(
      'every machine on a working BMC Provisioned, every one on a failing BMC Failed',
      async () => {
        const ms = await phases();
        const ok = Object.values(ms).every((m: any) =>
          /actions/.test(m.metadata.name) ? m.status.phase === 'Failed' : m.status.phase === 'Provisioned',
        );
        return ok ? ms : undefined;
      },
      60_000,
    );
    const hosts = Object.fromEntries(
      ((await a.kube('GET', HOSTS)).json.items as any[]).map((h) => [h.metadata.name, h]),
    );

    // the hung BMCs never answered, and everything above finished anyway
    for (const [i, b] of bmcs.hang!.entries()) {
      t.ok(b.bmc.hanging > 0, `hang-${i}: its BMC still holds ${b.bmc.hanging} unanswered request(s)`);
      t.equal(hosts[`hang-${i}`].status.state, 'Enrolling', `hang-${i} is still enrolling`);
    }
    for (const cls of ['healthy', 'slow', 'flaky']) {
      for (const [i, b] of bmcs[cls]!.entries()) {
        t.same(b.posts, [202], `${cls}-${i}: one boot, one report`);
        t.equal(
          b.bmc.seen.filter((s) => s.method === 'POST' && s.path.endsWith('ComputerSystem.Reset')).length,
          1,
          `${cls}-${i}: powered on once`,
        );
      }
    }
    const events = (await a.api('GET', '/journal?limit=100000')).json.items as {
      kind: string;
      host?: string;
      message: string;
    }[];
    for (let i = 0; i < PER_CLASS; i++) {
      t.match(
        events.filter((e) => e.host === `flaky-${i}`).map((e) => e.kind),
        ['HostCreated', 'EnrolFailed', 'Enrolled'],
        `flaky-${i}: failed once, backed off, enrolled`,
      );
    }
    for (const [cls, reason] of [
      ['actions500', /HTTP 500/],
      ['actionsReset', /transport error/],
    ] as const) {
      for (let i = 0; i < PER_CLASS; i++) {
        const m = settled[`m-${cls.toLowerCase()}-${i}`];
        t.equal(m.status.failureReason, 'BMCError', `${cls}-${i}: failed for its BMC`);
        t.match(m.status.failureMessage, reason);
        t.match(m.status.failureMessage, /after 2 attempts/);
        const h = hosts[`${cls.toLowerCase()}-${i}`];
        t.equal(h.status.state, 'Available', `${cls}-${i}: host released`);
        t.match(h.status.errorMessage, reason, `${cls}-${i}: the reason is on the host`);
        const pxe = bmcs[cls]![i]!.bmc.seen.filter(
          (s) => s.method === 'PATCH' && JSON.stringify(s.body).includes('"Pxe"'),
        ).length;
        t.equal(pxe, 2, `${cls}-${i}: one PXE override per attempt, no hammering`);
        t.ok(
          events.some((e) => e.kind === 'Retry' && e.host === h.metadata.name && /retrying in/.test(e.message)),
          `${cls}-${i}: a Retry event with its backoff`,
        );
      }
    }

    // enrolment failures: Error with the reason, retried with a growing backoff
    const enrolErrors = async (cls: string, reason: RegExp, minFailures: number) => {
      for (let i = 0; i < PER_CLASS; i++) {
        const h = await until(`${cls}-${i} failed ${minFailures} times`, async () => {
          const h = (await a.kube('GET', `${HOSTS}/${cls}-${i}`)).json;
          return (h.status.errorCount ?? 0) >= minFailures ? h : undefined;
        });
        t.equal(h.status.state, 'Error', `${cls}-${i}: Error`);
        t.match(h.status.errorMessage, reason, `${cls}-${i}: ${h.status.errorMessage}`);
        // the failure that set this nextRetryAt: a newer one may have been recorded since the host was read
        const next = Date.parse(h.status.nextRetryAt);
        const failed = (
          (await a.api('GET', '/journal?limit=100000')).json.items as { at: string; kind: string; host?: string }[]
        )
          .filter((e) => e.kind === 'EnrolFailed' && e.host === h.metadata.name && Date.parse(e.at) < next)
          .at(-1)!;
        const wait = next - Date.parse(failed.at);
        t.ok(wait > 0 && wait <= 1000, `${cls}-${i}: next try ${wait} ms after the failure, within retryMaxSeconds`);
      }
    };
    await enrolErrors('denied', /HTTP 401/, 2);
    await enrolErrors('sessions', /HTTP 503.*maximum number of user sessions/, 2);
    await enrolErrors('reset', /transport error/, 2);
    const sessionLogins = bmcs.sessions!.map((b) => b.bmc.seen.filter((s) => s.path.endsWith('/Sessions')).length);
    const failures = await Promise.all(
      bmcs.sessions!.map(
        async (_, i) => (await a.kube('GET', `${HOSTS}/sessions-${i}`)).json.status.errorCount as number,
      ),
    );
    for (const [i, logins] of sessionLogins.entries())
      t.ok(
        logins <= 3 * (failures[i]! + 1),
        `sessions-${i}: ${logins} logins over ${failures[i]} enrolments: bounded by retries per enrolment`,
      );

    // a hung BMC that goes away: its host gets the reason too
    for (const b of bmcs.hang!) await b.bmc.stop();
    await enrolErrors('hang', /transport error/, 1);
  },
);
