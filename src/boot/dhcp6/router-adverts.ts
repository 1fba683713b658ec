import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { prefix64 } from '../../domain/ipv6.js';
import type { Logger } from '../../log.js';

/**
 * radvd's configuration: the managed flag sends firmware and iPXE to DHCPv6 for an address and the boot file;
 * the prefix is on-link and autonomous, so Linux (the inspector) forms its address by SLAAC; lifetime 0 says
 * the appliance is no default router.
 */
export function radvdConfig(ifname: string, poolStart: string): string {
  return [
    `interface ${ifname} {`,
    '  AdvSendAdvert on;',
    '  AdvManagedFlag on;',
    '  AdvOtherConfigFlag on;',
    '  MinRtrAdvInterval 3;',
    '  MaxRtrAdvInterval 10;',
    '  AdvDefaultLifetime 0;',
    `  prefix ${prefix64(poolStart)}/64 {`,
    '    AdvOnLink on;',
    '    AdvAutonomous on;',
    '  };',
    '};',
    '',
  ].join('\n');
}

/**
 * Router advertisements for a full-mode IPv6 segment. Node has no raw ICMPv6 socket, so radvd (a Debian package)
 * sends them, as the appliance's child: started with it, stopped with it, its lines in our log.
 */
export class RouterAdverts {
  private proc?: ChildProcess;
  private stopping = false;

  constructor(
    private readonly ifname: string,
    private readonly poolStart: string,
    private readonly dataDir: string,
    private readonly log: Logger,
    private readonly binary = 'radvd',
  ) {}

  async start(): Promise<void> {
    const conf = path.join(this.dataDir, 'radvd.conf');
    writeFileSync(conf, radvdConfig(this.ifname, this.poolStart), { mode: 0o644 });
    const args = [
      '--nodaemon',
      '--config',
      conf,
      '--pidfile',
      path.join(this.dataDir, 'radvd.pid'),
      '--logmethod',
      'stderr',
    ];
    const p = spawn(this.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = p;
    p.stderr?.on('data', (c: Buffer) => {
      for (const line of c.toString().split('\n').filter(Boolean)) this.log.info({ radvd: line.trim() }, 'radvd');
    });
    p.once('exit', (code, signal) => {
      if (!this.stopping) this.log.error({ code, signal }, 'radvd exited: no router advertisements on the segment');
    });
    await new Promise<void>((resolve, reject) => {
      p.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new Error(
            e.code === 'ENOENT'
              ? "dhcp6 full mode sends router advertisements with radvd, which is not installed: apt-get install radvd, or set dhcp6.full.routerAdvertisements: false where the site's router sends them with the managed flag"
              : `radvd: ${e.message}`,
          ),
        ),
      );
      p.once('spawn', () => resolve());
    });
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.stopping = true;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    await exited;
  }
}
