// Two appliances on a 3-member etcd cluster, one segment, a 200-host storm: the leader appliance is SIGKILLed
// twice (and restarted, as systemd would) and one etcd member is killed for good. Audit: every machine
// Provisioned, no accepted report lost, each host claimed once, no address acknowledged to two MACs.
import t from 'tap';
import { assertCleanStorm, runStorm } from '../helpers/storm.js';

const N = 200;

t.test(`${N} hosts on two appliances sharing etcd; the leader killed twice, one etcd member killed`, async (t) => {
  const seed = Number(process.env.STORM_SEED ?? Date.now() % 100000);
  t.comment(`seed ${seed} (STORM_SEED=${seed} repeats the kill schedule)`);
  const r = await runStorm({
    n: N,
    kills: 2,
    seed,
    postSpreadMs: 5000,
    ha: { etcdKills: 1 },
    // under the test's 900 s timeout: a stuck storm fails its audit with what did not finish
    deadlineS: 600,
    note: (l) => t.comment(l),
  });
  const s = r.summary;
  t.equal(r.kills.length, 2, 'the leader was killed twice');
  t.equal(r.etcdKilledAtMs.length, 1, 'one etcd member was killed');
  for (const k of r.takeovers)
    t.ok(k.takeoverMs < 10_000, `an appliance ran the orchestrator again ${k.takeoverMs} ms after the leader's kill`);
  assertCleanStorm(t, r, N);
  t.comment(`storm: ${s.provisionSeconds} s; stages ${JSON.stringify(s.stagesMs)}`);
});
