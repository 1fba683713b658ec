// kill -9 of the appliance at random points of a provisioning storm, then a restart on the same data dir:
// every host ends in the right state, no accepted report is lost, no host is claimed twice, and no address
// is acknowledged to two MACs. The clients speak real DHCP (relay), TFTP and HTTP from their own namespace.
import t from 'tap';
import { runStorm } from '../helpers/storm.js';

const N = 150;
const KILLS = 4;

t.test(`${N} hosts, ${KILLS} SIGKILLs of the appliance during the storm`, async (t) => {
  const seed = Number(process.env.STORM_SEED ?? Date.now() % 100000);
  t.comment(`seed ${seed} (STORM_SEED=${seed} repeats the kill schedule)`);
  const r = await runStorm({ n: N, kills: KILLS, seed, postSpreadMs: 5000, deadlineS: 600, note: (l) => t.comment(l) });
  const s = r.summary;
  const a = s.audit;
  t.equal(r.kills.length, KILLS, `killed ${KILLS} times`);
  t.equal(
    r.kills[0]!.state.progress,
    'creating hosts',
    `the first kill hit while hosts were created and enrolled (${r.kills[0]!.state.created} of ${N} created)`,
  );
  const mid = r.kills
    .slice(1)
    .filter(
      (k) => k.state.progress === 'provisioning' && ((k.state.machines as Record<string, number>).Provisioned ?? 0) < N,
    );
  t.equal(mid.length, KILLS - 1, 'every other kill hit while machines were still being provisioned');
  t.same(s.phases, { Provisioned: N }, 'every machine Provisioned');
  t.same(a.notProvisioned, [], 'every host Provisioned');
  t.same(a.mismatched, [], "every machine's host names it as consumer");
  t.same(a.claimedNotOnce, [], 'each host claimed exactly once (one Claimed event each)');
  t.equal(a.doubleClaims, 0, 'no two machines on one host');
  t.same(a.leaseConflicts, [], `no address acknowledged to two MACs (${s.acks} DHCPACKs)`);
  t.same(a.lostReports, [], `every report answered 202 is the one stored (${s.accepted} accepted)`);
  t.equal(s.reportsStored, N, 'a stored report for every host');
  t.same(
    a.bootsBeyondAttempts,
    [],
    `no attempt booted twice (${s.powerOns} PXE power-ons, ${s.attempts} attempt boots)`,
  );
  t.ok(
    s.powerOns >= N,
    `${s.powerOns} power-ons for ${N} hosts (a host caught between its record and its BMC call is powered again)`,
  );
});
