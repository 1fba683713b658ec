/** How long an address a MAC showed in proxy mode counts as the one it holds: a PXE boot's whole inspection. */
const OBSERVED_FOR_MS = 3600_000;
/** MACs whose address is kept at once; spoofed MACs cannot grow the table past it. */
const MAX_OBSERVED = 10_000;

/**
 * Proxy mode, beside a site's DHCP server: the address each MAC last showed on the segment (asked the site's
 * server for, or came to us from), the newest kept. What a claim or a callback of that host may come from.
 */
export class ObservedAddresses {
  private readonly seen = new Map<string, { ip: string; at: number }>();

  observe(mac: string, ip: string | undefined, now: number): void {
    if (!ip) return;
    this.seen.delete(mac);
    this.seen.set(mac, { ip, at: now });
    if (this.seen.size > MAX_OBSERVED) this.seen.delete(this.seen.keys().next().value as string);
  }

  /** The addresses these MACs showed within the hour; empty when nothing was seen. */
  of(macs: readonly string[], now: number): string[] {
    return macs.flatMap((mac) => {
      const o = this.seen.get(mac);
      return o && now - o.at < OBSERVED_FOR_MS ? [o.ip] : [];
    });
  }
}
