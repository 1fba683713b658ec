// Provisioning storm: N simulated hosts (fake BMCs and simulated PXE/iPXE clients speaking real DHCP, TFTP
// and HTTP) from Machine creation to Provisioned, for each N in STORM_N (default 50,200,1000). Prints
// hosts/minute, p50/p99 per stage, the appliance's peak RSS, and how the cost grows with N. STORM_KILLS=k
// kills the appliance with SIGKILL k times during each storm and restarts it (the machines' POST is then
// spread over 5 s, so the storm lasts long enough to be hit). `make bench-storm`.
import { runStorm } from '../helpers/storm.js';

const NS = (process.env.STORM_N ?? '50,200,1000').split(',').map(Number);
const kills = Number(process.env.STORM_KILLS ?? 0);
const rows: { n: number; seconds: number; rss: number; p99: number }[] = [];
for (const n of NS) {
  const seed = Number(process.env.STORM_SEED ?? Date.now() % 100000);
  const r = await runStorm({
    n,
    kills,
    seed,
    postSpreadMs: kills ? 5000 : 0,
    built: true,
    note: (l) => console.log(`  ${l}`),
  });
  const s = r.summary;
  const a = s.audit;
  rows.push({ n, seconds: s.provisionSeconds, rss: r.peakRssMiB, p99: s.stagesMs['power->report']!.p99 });
  console.log(
    `N=${String(n).padStart(4)}  ${s.hostsPerMinute.toFixed(0).padStart(5)} hosts/min  provision ${s.provisionSeconds.toFixed(1)} s  enrol ${s.enrolSeconds.toFixed(1)} s  ` +
      `phases ${JSON.stringify(s.phases)}  peak RSS ${r.peakRssMiB.toFixed(0)} MiB  appliance CPU ${(r.stormCpuMs / 1000).toFixed(1)} s  driver CPU ${(s.driverCpuMs / 1000).toFixed(1)} s  ` +
      Object.entries(s.stagesMs)
        .map(([k, v]) => `${k} p50 ${v.p50} / p99 ${v.p99} ms`)
        .join('; ') +
      `\n        kills ${r.kills.length} (seed ${seed})  boot retries ${s.bootRetries}  power-ons ${s.powerOns}  DHCPACKs ${s.acks}  reports accepted ${s.accepted}, stored ${s.reportsStored}  ` +
      `audit: lease conflicts ${a.leaseConflicts.length}, lost reports ${a.lostReports.length}, hosts claimed other than once ${a.claimedNotOnce.length}, ` +
      `double claims ${a.doubleClaims}, not provisioned ${a.notProvisioned.length}, host/machine mismatches ${a.mismatched.length}` +
      (s.lastErrors.length ? `\n        client errors seen: ${s.lastErrors.join(' | ')}` : '') +
      `\n        appliance counted: ${Object.entries(r.counters)
        .map(([k, v]) => `${k.replace(/^(tftp_transfers|dhcp_packets)_total/, '$1')} ${v}`)
        .join(', ')}`,
  );
}
if (rows.length > 1) {
  const [lo, hi] = [rows[0]!, rows.at(-1)!];
  const x = (a: number, b: number) => `${(b / a).toFixed(2)}x`;
  console.log(
    `growth N=${lo.n} -> ${hi.n} (${x(lo.n, hi.n)} hosts): provision time ${x(lo.seconds, hi.seconds)}, peak RSS ${x(lo.rss, hi.rss)}, power->report p99 ${x(lo.p99, hi.p99)}`,
  );
}
