import { readFileSync } from 'node:fs';

/**
 * The most neighbour (ARP/NDP) entries this kernel keeps, for all its namespaces together: gc_thresh3, 1024 by
 * default. Undefined where it cannot be read (inside a network namespace or a container the file is absent).
 */
export function neighbourLimit(family: 4 | 6, read = (f: string) => readFileSync(f, 'utf8')): number | undefined {
  try {
    const n = Number(read(`/proc/sys/net/ipv${family}/neigh/default/gc_thresh3`).trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Why a pool of `addresses` outgrows the kernel's neighbour table, or undefined when it does not. Every TFTP and
 * HTTP answer goes to the host's own address, so each host booting needs an entry; past the limit Linux drops
 * packets to new addresses ("neighbor table overflow!") and those hosts time out.
 */
export function neighbourAdvice(family: 4 | 6, addresses: number, limit: number | undefined): string | undefined {
  if (limit === undefined || addresses <= limit) return undefined;
  const key = `net.ipv${family}.neigh.default.gc_thresh3`;
  return (
    `the DHCP pool holds ${addresses} addresses, but this kernel keeps neighbour entries for ${limit} hosts at most ` +
    `(${key}): past that many hosts booting at once, packets to the others are dropped. Raise ${key} and ` +
    'gc_thresh1-2 (the package installs /usr/lib/sysctl.d/60-beskar7.conf)'
  );
}
