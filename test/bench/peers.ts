// The servers a benchmark compares, each started inside the bench's lab namespace and stopped by the function
// its start returns: ours (the appliance process), atftpd, tftpd-hpa, dnsmasq and nginx.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../src/paths.js';
import { ApplianceProcess, builtCommand } from '../lab/appliance-process.js';
import { type Lab, stopProcess } from '../lab/netns.js';

export { cpuMs, peakRssMiB } from '../helpers/proc.js';

export type Stop = () => Promise<void>;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The compiled appliance with `config` over a fresh data dir; `pid` for its RSS and CPU time. */
export async function startOurs(lab: Lab, work: string, config: Record<string, unknown>) {
  const dir = mkdtempSync(path.join(work, 'ours-'));
  const app = new ApplianceProcess(
    lab,
    { dataDir: path.join(dir, 'data'), logLevel: 'warn', advertiseAddress: lab.serverIp, ...config },
    dir,
    false,
    builtCommand,
  );
  await app.start();
  return { pid: app.pid as number, stop: () => app.stop() };
}

export async function startAtftpd(lab: Lab, port: number, root: string): Promise<Stop> {
  const p = lab.spawn(lab.ns, path.join(repoRoot, '.cache/atftpd/usr/sbin/atftpd'), [
    '--daemon',
    '--no-fork',
    '--port',
    String(port),
    '--bind-address',
    '127.0.0.1',
    '--user',
    'root',
    '--group',
    'root',
    '--logfile',
    '/dev/null',
    '--maxthread',
    '1000',
    root,
  ]);
  await sleep(500);
  return () => stopProcess(p);
}

export async function startTftpdHpa(lab: Lab, port: number, root: string): Promise<Stop> {
  const p = lab.spawn(lab.ns, '/usr/sbin/in.tftpd', ['-L', '-s', root, '-a', `127.0.0.1:${port}`, '-u', 'root']);
  await sleep(500);
  return () => stopProcess(p);
}

export interface Pool {
  poolStart: string;
  poolEnd: string;
  subnetMask: string;
}

/** dnsmasq as a DHCP server only; `leaseFile` undefined: --leasefile-ro (leases in memory only). */
export async function startDnsmasq(lab: Lab, pool: Pool, leaseFile?: string): Promise<Stop> {
  const p = lab.spawn(lab.ns, 'dnsmasq', [
    '--no-daemon',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--port=0',
    leaseFile ? `--dhcp-leasefile=${leaseFile}` : '--leasefile-ro',
    '--no-ping',
    '--dhcp-lease-max=200000',
    '--dhcp-authoritative',
    `--dhcp-range=${pool.poolStart},${pool.poolEnd},${pool.subnetMask},1h`,
    '--pid-file=',
  ]);
  let err = '';
  p.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  await sleep(700);
  return async () => {
    if (p.exitCode !== null) throw new Error(`dnsmasq exited early (${p.exitCode}): ${err}`);
    await stopProcess(p);
  };
}

/** Debian's nginx binary, unpacked once into .cache/nginx (installing the package would start a service). */
function nginxBinary(): string {
  const bin = path.join(repoRoot, '.cache/nginx/usr/sbin/nginx');
  if (existsSync(bin)) return bin;
  const cache = path.join(repoRoot, '.cache');
  mkdirSync(cache, { recursive: true });
  execFileSync(
    'sh',
    ['-c', 'apt-get download nginx >/dev/null && dpkg-deb -x nginx_*.deb nginx && rm -f nginx_*.deb'],
    {
      cwd: cache,
    },
  );
  return bin;
}

/** nginx serving `root` on 127.0.0.1:`port`, sendfile on, one worker per core, no access log. */
export async function startNginx(lab: Lab, work: string, port: number, root: string) {
  const dir = mkdtempSync(path.join(work, 'nginx-'));
  mkdirSync(path.join(dir, 'logs'));
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `user root; daemon off; master_process on; worker_processes auto; pid ${dir}/nginx.pid; error_log stderr warn;
events { worker_connections 4096; }
http { default_type application/octet-stream; sendfile on; tcp_nopush on; access_log off; keepalive_timeout 5;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server { listen 127.0.0.1:${port}; root ${root}; } }
`,
  );
  const p = lab.spawn(lab.ns, nginxBinary(), ['-p', dir, '-c', conf]);
  await sleep(500);
  if (p.exitCode !== null) throw new Error(`nginx exited (${p.exitCode})`);
  const pids = () => {
    // the master's pid file; the workers are its children
    const master = Number(readFileSync(path.join(dir, 'nginx.pid'), 'utf8'));
    const kids = execFileSync('pgrep', ['-P', String(master)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map(Number);
    return [master, ...kids];
  };
  return { pids, stop: () => stopProcess(p) };
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2
    ? (s[(s.length - 1) / 2] as number)
    : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};
