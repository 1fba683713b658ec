// DHCP: each server's highest rate of DORA exchanges with no drops, found by bisection to within 5% with
// perfdhcp acting as a relay: ours (every lease durable in LevelDB before its ACK) against dnsmasq with
// --leasefile-ro (leases in memory) and with its lease file.
import path from 'node:path';
import type { Lab } from '../lab/netns.js';
import { type Pool, type Stop, startDnsmasq, startOurs } from './peers.js';

export interface Probe {
  rate: number;
  achieved: number;
  dropPct: number;
}
export interface DhcpResult {
  /** the highest rate (offered, per second) answered with 0% drops, and what it achieved */
  best?: Probe;
  /** the lowest rate that dropped: best.rate < bound within the precision */
  failedAt?: number;
  probes: Probe[];
}

export const POOL: Pool & { leaseSeconds: number } = {
  poolStart: '10.90.1.0',
  poolEnd: '10.90.250.255',
  subnetMask: '255.255.0.0',
  leaseSeconds: 3600,
};

async function perfdhcp(lab: Lab, perfHost: string, rate: number, periodS: number): Promise<Probe> {
  const r = await lab.run(
    perfHost,
    'perfdhcp',
    ['-4', '-l', '10.90.0.2', '-r', String(rate), '-R', '60000', '-p', String(periodS), '-W', '200000', '10.90.0.1'],
    (periodS + 30) * 1000,
  );
  const sections = r.stdout.split('***Statistics for: ');
  const stat = (name: string, key: string) =>
    Number(new RegExp(`${key}: ([\\d.]+)`).exec(sections.find((s) => s.startsWith(name)) ?? '')?.[1] ?? Number.NaN);
  const sent = stat('DISCOVER-OFFER', 'sent packets');
  const acks = stat('REQUEST-ACK', 'received packets');
  return { rate, achieved: acks / periodS, dropPct: sent ? (100 * (sent - acks)) / sent : 100 };
}

/**
 * Doubling (or halving) from `start` brackets the highest 0%-drop rate, then bisection narrows the bracket to
 * `precision`; every probe runs on a freshly started server.
 */
export async function bisect(
  lab: Lab,
  perfHost: string,
  start: () => Promise<Stop>,
  o: { from: number; precision: number; periodS: number; note: (p: Probe) => void },
): Promise<DhcpResult> {
  const probes: Probe[] = [];
  const probe = async (rate: number) => {
    const stop = await start();
    try {
      const p = await perfdhcp(lab, perfHost, Math.round(rate), o.periodS);
      probes.push(p);
      o.note(p);
      return p;
    } finally {
      await stop();
    }
  };
  let ok: Probe | undefined;
  let bad: number | undefined;
  let rate = o.from;
  while (rate <= 64_000 && rate >= 50) {
    const p = await probe(rate);
    if (p.dropPct === 0) {
      ok = p;
      if (bad !== undefined) break;
      rate *= 2;
    } else {
      bad = rate;
      if (ok) break;
      rate /= 2;
    }
  }
  while (ok && bad !== undefined && (bad - ok.rate) / ok.rate > o.precision) {
    const mid = Math.round((ok.rate + bad) / 2);
    const p = await probe(mid);
    if (p.dropPct === 0) ok = p;
    else bad = mid;
  }
  return { ...(ok ? { best: ok } : {}), ...(bad !== undefined ? { failedAt: bad } : {}), probes };
}

export async function dhcpBench(
  lab: Lab,
  work: string,
  perfHost: string,
  o: { periodS: number; note: (line: string) => void },
): Promise<Record<string, DhcpResult>> {
  const servers: [string, () => Promise<Stop>][] = [
    [
      'beskar7',
      async () =>
        (
          await startOurs(lab, work, {
            http: { address: lab.serverIp, port: 8080 },
            tftp: { enabled: false },
            dhcp: { mode: 'full', full: POOL, probeSeconds: 0 },
          })
        ).stop,
    ],
    ['dnsmasq --leasefile-ro', () => startDnsmasq(lab, POOL)],
    ['dnsmasq (lease file)', () => startDnsmasq(lab, POOL, path.join(work, `dnsmasq-${Date.now()}.leases`))],
  ];
  const out: Record<string, DhcpResult> = {};
  for (const [name, start] of servers) {
    out[name] = await bisect(lab, perfHost, start, {
      from: 1000,
      precision: 0.05,
      periodS: o.periodS,
      note: (p) =>
        o.note(
          `  ${name.padEnd(22)} offered ${String(p.rate).padStart(6)}/s  ${p.achieved.toFixed(0).padStart(6)} DORA/s  drops ${p.dropPct.toFixed(2)}%`,
        ),
    });
  }
  return out;
}
