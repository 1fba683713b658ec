// Provisioning storm: N simulated hosts (fake BMCs and simulated PXE/iPXE clients speaking real DHCP, TFTP
// and HTTP) from Machine creation to Provisioned, for each N in STORM_N (default 50,200,1000). Prints
// hosts/minute, p50/p99 per stage, the appliance's peak RSS, and how the cost grows with N. `make bench-storm`.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot } from '../../src/config.js';
import { ApplianceProcess } from '../../src/lab/appliance-process.js';
import { Lab } from '../../src/lab/netns.js';

const NS = (process.env.STORM_N ?? '50,200,1000').split(',').map(Number);
const TOKEN = 'storm-admin-token-0123456789';
const rows: string[] = [];
for (const n of NS) {
  const work = mkdtempSync(path.join(tmpdir(), 'b7storm-'));
  const lab = new Lab('b7storm', '10.92.0', 16).up();
  const sim = lab.addHost('sim', '52:54:00:92:00:02', '10.92.0.2');
  try {
    const app = new ApplianceProcess(lab, {
      dataDir: path.join(work, 'data'), logLevel: 'warn', advertiseAddress: lab.serverIp, http: { address: lab.serverIp, port: 8080 },
      api: { adminToken: TOKEN },
      dhcp: { mode: 'full', probeSeconds: 0, full: { poolStart: '10.92.1.0', poolEnd: '10.92.40.255', subnetMask: '255.255.0.0', leaseSeconds: 3600 } },
      orchestrator: { tickSeconds: 0.5, inspectionTimeoutSeconds: 300, powerDeadlineSeconds: 60 },
      redfish: { perBmcConcurrency: 2, globalConcurrency: 64 },
    }, work);
    await app.start();
    const pid = app.pid; // `ip netns exec` execs the appliance, so this is node itself
    let peakKb = 0;
    const sampler = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (m) peakKb = Math.max(peakKb, Number(m[1]));
      } catch {
        // exited
      }
    }, 500);
    const r = await lab.run(sim, process.execPath, ['--import', 'tsx', path.join(repoRoot, 'test/bench/storm-driver.ts'), String(n), lab.serverIp, '10.92.0.2', TOKEN], 40 * 60_000);
    clearInterval(sampler);
    const line = r.stdout.trim().split('\n').pop() ?? '';
    let res: any;
    try {
      res = JSON.parse(line);
    } catch {
      throw new Error(`driver failed (${r.code}): ${r.stderr.slice(-2000)}`);
    }
    const s = res.stagesMs;
    rows.push(`N=${String(n).padStart(4)}  ${res.hostsPerMinute.toFixed(0).padStart(5)} hosts/min  provision ${res.provisionSeconds.toFixed(1)} s  enrol ${res.enrolSeconds.toFixed(1)} s  ` +
      `phases ${JSON.stringify(res.phases)}  double claims ${res.doubleClaims}  peak RSS ${(peakKb / 1024).toFixed(0)} MiB  ` +
      Object.entries(s).map(([k, v]: [string, any]) => `${k} p50 ${v.p50} / p99 ${v.p99} ms`).join('; ') + (res.errors.length ? `  errors: ${res.errors.join(' | ')}` : ''));
    console.log(rows.at(-1));
    await app.stop();
  } finally {
    await lab.down();
    rmSync(work, { recursive: true, force: true });
  }
}
