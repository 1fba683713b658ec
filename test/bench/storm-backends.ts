// The same provisioning storm on the embedded LevelDB (one appliance) and on etcd (two appliances sharing a
// 3-member cluster), one after the other in one run: storm time, p50/p99 per stage and appliance CPU per host,
// with the etcd/LevelDB ratio. STORM_N (default 200). `make bench-ha`.
import { runStorm, type StormResult } from '../helpers/storm.js';

interface Row {
  name: string;
  s: StormResult['summary'];
  cpuPerHost: number;
  clean: boolean;
}

const n = Number(process.env.STORM_N ?? 200);
const runs = [
  { name: 'leveldb, 1 appliance', ha: undefined },
  { name: 'etcd, 2 appliances', ha: { etcdKills: 0 } },
] as const;
const results: Row[] = [];
for (const r of runs) {
  console.log(`${r.name}: ${n} hosts...`);
  const out = await runStorm({ n, ...(r.ha ? { ha: r.ha } : {}), built: true, note: (l) => console.log(`  ${l}`) });
  const a = out.summary.audit;
  const clean =
    !a.leaseConflicts.length && !a.lostReports.length && !a.claimedNotOnce.length && !a.notProvisioned.length;
  results.push({ name: r.name, s: out.summary, cpuPerHost: out.stormCpuMs / n, clean });
}
const [lev, etc] = results as [Row, Row];
const ratio = (a: number, b: number) => `${(b / a).toFixed(2)}x`;
const row = (label: string, f: (x: Row) => number, unit: string) =>
  console.log(
    `${label.padEnd(26)} ${`${f(lev).toFixed(1)} ${unit}`.padStart(14)} ${`${f(etc).toFixed(1)} ${unit}`.padStart(14)} ${ratio(f(lev), f(etc)).padStart(8)}`,
  );
console.log(`\n${n} hosts, Machine creation to Provisioned${' '.repeat(4)}   leveldb           etcd   etcd/leveldb`);
row('storm time', (x) => x.s.provisionSeconds, 's');
// all appliances together, less their start-up; etcd's own CPU is not in it
row('appliance CPU per host', (x) => x.cpuPerHost, 'ms');
for (const stage of Object.keys(lev.s.stagesMs)) {
  row(`${stage} p50`, (x) => x.s.stagesMs[stage]?.p50 ?? Number.NaN, 'ms');
  row(`${stage} p99`, (x) => x.s.stagesMs[stage]?.p99 ?? Number.NaN, 'ms');
}
for (const x of results)
  console.log(`${x.name}: audit ${x.clean ? 'clean' : 'FAILED'}, phases ${JSON.stringify(x.s.phases)}`);
