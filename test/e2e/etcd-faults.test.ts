// Two appliances on a 3-member etcd cluster during a 200-host storm, and three faults one after the other:
// every etcd member down for 30 s, the leader cut off from etcd for 15 s, the leader paused (SIGSTOP) for three
// lease TTLs. Audit: every machine Provisioned, no accepted report lost, each host claimed once, no address
// acknowledged to two MACs, no attempt booted twice.
import t from 'tap';
import { assertCleanStorm, runStorm } from '../helpers/storm.js';

const N = 200;

t.test(`${N} hosts on two appliances sharing etcd: etcd down, the leader partitioned, the leader paused`, async (t) => {
  const seed = Number(process.env.STORM_SEED ?? Date.now() % 100000);
  t.comment(`seed ${seed}`);
  const r = await runStorm({
    n: N,
    kills: 0,
    seed,
    // a storm long enough for all three faults to land while hosts are being provisioned
    postSpreadMs: 90_000,
    ha: { etcdKills: 0, faults: ['outage', 'partition', 'pause'] },
    // under the test's 900 s timeout: a stuck storm fails its audit with what did not finish
    deadlineS: 600,
    note: (l) => t.comment(l),
  });
  const s = r.summary;
  t.same(
    r.faults.map((f) => f.kind),
    ['outage', 'partition', 'pause'],
    'each fault landed mid-storm',
  );
  assertCleanStorm(t, r, N);
  t.comment(
    `storm: ${s.provisionSeconds} s; faults ${JSON.stringify(r.faults)}; last errors ${JSON.stringify(s.lastErrors)}`,
  );
});
