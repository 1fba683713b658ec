import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** The process holding a local port, from /proc: its listening socket's inode, then the fd that points to it. */
export function portOwner(proto: 'udp' | 'tcp', port: number): string | undefined {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const file of [`/proc/net/${proto}`, `/proc/net/${proto}6`]) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is ADDR:PORT; tcp sockets must be listening (state 0A)
      if (f[1]?.endsWith(`:${hex}`) && (proto === 'udp' || f[3] === '0A') && f[9]) inodes.add(f[9]);
    }
  }
  if (!inodes.size) return undefined;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link = '';
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode && inodes.has(inode)) return `${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()} (pid ${pid})`;
    }
  }
  return 'a process this user cannot see';
}

/** Start-up cannot go on; the message says what to change. */
export class StartupError extends Error {}

export interface Binding {
  /** what listens there, e.g. "DHCP" */
  what: string;
  /** the config key that chooses the port, e.g. "dhcp.port" */
  setting: string;
  proto: 'udp' | 'tcp';
  address: string;
  port: number;
}

/** Which port could not be had, and what is missing (the capability, or the process holding it). */
export function bindFailure(e: unknown, b: Binding): StartupError {
  const code = (e as NodeJS.ErrnoException).code;
  const where = `${b.what} ${b.address}:${b.port}/${b.proto}`;
  if (code === 'EACCES') {
    return new StartupError(
      `${where}: permission denied: ports below 1024 need CAP_NET_BIND_SERVICE (run as root, or as systemd/beskar7.service, which grants it), or set ${b.setting} to a port above 1023`,
    );
  }
  if (code === 'EADDRINUSE') {
    return new StartupError(
      `${where} is in use by ${portOwner(b.proto, b.port) ?? 'another process'}; stop it or set ${b.setting}`,
    );
  }
  if (code === 'EADDRNOTAVAIL') return new StartupError(`${where}: ${b.address} is not an address of this machine`);
  return new StartupError(`${where}: ${(e as Error).message}`);
}
