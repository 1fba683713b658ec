// Provisioning storm: N simulated hosts (fake BMCs and simulated PXE/iPXE clients speaking real DHCP, TFTP
// and HTTP) from Machine creation to Provisioned, for each N in STORM_N (default 50,200,1000). Prints
// hosts/minute, p50/p99 per stage, the appliance's peak RSS, and how the cost grows with N. STORM_KILLS=k
// kills the appliance with SIGKILL k times during each storm and restarts it (the machines' POST is then
// spread over 5 s, so the storm lasts long enough to be hit). `make bench-storm`.
import { runStorm } from '../helpers/storm.js';

const NS = (process.env.STORM_N ?? '50,200,1000').split(',').map(Number);
const kills = Number(process.env.STORM_KILLS ?? 0);
for (const n of NS) {
  const seed = Number(process.env.STORM_SEED ?? Date.now() % 100000);
  const r = await runStorm({ n, kills, seed, postSpreadMs: kills ? 5000 : 0, note: (l) => console.log(`  ${l}`) });
  const s = r.summary;
  const a = s.audit;
  console.log(
    `N=${String(n).padStart(4)}  ${s.hostsPerMinute.toFixed(0).padStart(5)} hosts/min  provision ${s.provisionSeconds.toFixed(1)} s  enrol ${s.enrolSeconds.toFixed(1)} s  ` +
      `phases ${JSON.stringify(s.phases)}  peak RSS ${r.peakRssMiB.toFixed(0)} MiB  ` +
      Object.entries(s.stagesMs).map(([k, v]) => `${k} p50 ${v.p50} / p99 ${v.p99} ms`).join('; ') +
      `\n        kills ${r.kills.length} (seed ${seed})  boot retries ${s.bootRetries}  power-ons ${s.powerOns}  DHCPACKs ${s.acks}  reports accepted ${s.accepted}, stored ${s.reportsStored}  ` +
      `audit: lease conflicts ${a.leaseConflicts.length}, lost reports ${a.lostReports.length}, hosts claimed other than once ${a.claimedNotOnce.length}, ` +
      `double claims ${a.doubleClaims}, not provisioned ${a.notProvisioned.length}, host/machine mismatches ${a.mismatched.length}` +
      (s.lastErrors.length ? `\n        client errors seen: ${s.lastErrors.join(' | ')}` : ''),
  );
}
