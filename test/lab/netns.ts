import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';

/**
 * A private lab network: a network namespace with bridge br0 (the appliance's side, `<prefix>.1/24`), QEMU tap
 * devices on the bridge, and further hosts (each its own namespace) joined to it by veth pairs. Nothing in it
 * has a default route, so no packet can leave. `prefix` is the first three octets of the lab's addresses. Used by the demo lab and the end-to-end tests.
 */
export class Lab {
  readonly ns: string;
  readonly serverIp: string;
  private readonly hosts: string[] = [];
  private readonly procs: ChildProcess[] = [];
  private links = 0;

  constructor(
    name: string,
    readonly prefix = '10.77.0',
    readonly maskBits = 24,
  ) {
    this.ns = name;
    this.serverIp = `${prefix}.1`;
  }

  private static ip(...args: string[]): void {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  /** Labs not yet torn down: removed on the way out when a test ends without reaching down() (tap's timeout). */
  private static readonly live = new Set<Lab>();
  private static exitHook = false;

  /** tap ends a timed-out test with SIGALRM, which skips every `finally` and `teardown` */
  private static hookExit(): void {
    if (Lab.exitHook) return;
    Lab.exitHook = true;
    const signals = ['SIGALRM', 'SIGTERM', 'SIGINT'] as const;
    const downAll = () => {
      for (const l of Lab.live) l.downNow();
    };
    const onSignal = (sig: NodeJS.Signals) => {
      downAll();
      for (const s of signals) process.removeListener(s, onSignal);
      process.kill(process.pid, sig);
    };
    for (const s of signals) process.on(s, onSignal);
    process.once('exit', downAll);
  }

  up(): this {
    Lab.hookExit();
    Lab.live.add(this);
    Lab.delNs(this.ns);
    Lab.ip('netns', 'add', this.ns);
    const n = ['-n', this.ns];
    Lab.ip(...n, 'link', 'set', 'lo', 'up');
    Lab.ip(...n, 'link', 'add', 'br0', 'type', 'bridge', 'forward_delay', '0');
    Lab.ip(...n, 'addr', 'add', `${this.serverIp}/${this.maskBits}`, 'dev', 'br0');
    Lab.ip(...n, 'addr', 'add', `fd77::1/64`, 'dev', 'br0', 'nodad');
    Lab.ip(...n, 'link', 'set', 'br0', 'up');
    // node's dgram sends to 255.255.255.255 only with a route for it
    Lab.ip(...n, 'route', 'add', '255.255.255.255/32', 'dev', 'br0');
    return this;
  }

  /**
   * Makes br0 an IPv6-only segment: the appliance's IPv4 address moves to another interface in the same namespace,
   * (a bridge with no ports) where the test and the fake BMCs still reach it, and nothing on br0 has an IPv4 address.
   */
  ipv6Only(): this {
    const n = ['-n', this.ns];
    Lab.ip(...n, 'addr', 'del', `${this.serverIp}/${this.maskBits}`, 'dev', 'br0');
    Lab.ip(...n, 'link', 'add', 'mgmt0', 'type', 'bridge');
    Lab.ip(...n, 'addr', 'add', `${this.serverIp}/${this.maskBits}`, 'dev', 'mgmt0');
    Lab.ip(...n, 'link', 'set', 'mgmt0', 'up');
    return this;
  }

  /** A tap device on br0 for a QEMU machine. */
  addTap(): string {
    const tap = `tap${this.links++}`;
    const n = ['-n', this.ns];
    Lab.ip(...n, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
    Lab.ip(...n, 'link', 'set', tap, 'master', 'br0');
    Lab.ip(...n, 'link', 'set', tap, 'up');
    return tap;
  }

  /** A second segment inside the lab namespace, e.g. to prove the appliance answers on br0 only. */
  addBridge(name: string, cidr: string): void {
    const n = ['-n', this.ns];
    Lab.ip(...n, 'link', 'add', name, 'type', 'bridge', 'forward_delay', '0');
    Lab.ip(...n, 'addr', 'add', cidr, 'dev', name);
    Lab.ip(...n, 'link', 'set', name, 'up');
  }

  /** Another host on a lab segment: its own namespace with eth0 (given MAC, optional address). */
  addHost(suffix: string, mac: string, address?: string, bridge = 'br0'): string {
    const host = `${this.ns}-${suffix}`;
    const peer = `veth${this.links++}`;
    Lab.delNs(host);
    Lab.ip('netns', 'add', host);
    Lab.ip('-n', host, 'link', 'set', 'lo', 'up');
    Lab.ip('-n', this.ns, 'link', 'add', peer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host);
    Lab.ip('-n', this.ns, 'link', 'set', peer, 'master', bridge);
    Lab.ip('-n', this.ns, 'link', 'set', peer, 'up');
    Lab.ip('-n', host, 'link', 'set', 'eth0', 'address', mac);
    if (address) Lab.ip('-n', host, 'addr', 'add', `${address}/${this.maskBits}`, 'dev', 'eth0');
    Lab.ip('-n', host, 'link', 'set', 'eth0', 'up');
    Lab.ip('-n', host, 'route', 'add', '255.255.255.255/32', 'dev', 'eth0');
    this.hosts.push(host);
    return host;
  }

  /**
   * Every address of `cidr` is local to `host` (AnyIP: a local route, answered by ARP): a simulator there
   * can speak from each address the appliance leases to its machines.
   */
  anyIp(host: string, cidr: string): void {
    Lab.ip('-n', host, 'route', 'add', 'local', cidr, 'dev', 'lo');
  }

  /** Start a long-running process inside a namespace of this lab; stopped by down(). */
  spawn(ns: string, cmd: string, args: string[], opts: { stdout?: 'pipe' | 'ignore' | 'inherit' } = {}): ChildProcess {
    const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
      stdio: ['ignore', opts.stdout ?? 'pipe', opts.stdout === 'inherit' ? 'inherit' : 'pipe'],
    });
    this.procs.push(p);
    return p;
  }

  /** Run a command inside a namespace to completion. */
  async run(
    ns: string,
    cmd: string,
    args: string[],
    timeoutMs = 60_000,
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const p = spawn(
      'timeout',
      ['--kill-after=5', String(Math.ceil(timeoutMs / 1000)), 'ip', 'netns', 'exec', ns, cmd, ...args],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const [code] = (await once(p, 'exit')) as [number | null];
    return { code, stdout, stderr };
  }

  /** IPv6 router advertisements: without one iPXE waits ~13 s for IPv6 autoconfiguration. */
  startRouterAdvertisements(): ChildProcess {
    return this.spawn(this.ns, 'dnsmasq', [
      '--no-daemon',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--port=0',
      '--bind-interfaces',
      '--interface=br0',
      '--leasefile-ro',
      '--enable-ra',
      '--dhcp-range=::,constructor:br0,ra-only',
      '--pid-file=',
    ]);
  }

  async down(): Promise<void> {
    for (const p of this.procs) await stopProcess(p);
    this.downNow();
  }

  private downNow(): void {
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const h of this.hosts) Lab.delNs(h);
    Lab.delNs(this.ns);
    Lab.live.delete(this);
  }

  private static delNs(name: string): void {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch {
      // absent already
    }
  }
}

/** SIGTERM, then SIGKILL after 3 s; resolves at once for a process that has already exited. */
export async function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = once(p, 'exit');
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
