import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { intToIp, ipToInt } from '../../domain/ipv4.js';
import { bigIntToIpv6, ipv6ToBigInt } from '../../domain/ipv6.js';
import type { Lease } from '../../domain/lease.js';

export interface PoolSpec {
  poolStart: string;
  poolEnd: string;
  leaseSeconds: number;
  offerHoldSeconds: number;
  reservations: { mac: string; ip: string; hostname?: string | undefined }[];
}

/** The pool's addresses by index, IPv4 or IPv6 alike; -1 for an address outside it (or of the other family). */
interface AddressRange {
  size: number;
  indexOf(ip: string): number;
  at(n: number): string;
}

/** How many addresses a pool holds. */
export const poolSize = (p: Pick<PoolSpec, 'poolStart' | 'poolEnd'>): number => rangeOf(p.poolStart, p.poolEnd).size;

function rangeOf(first: string, last: string): AddressRange {
  if (isIPv6(first)) {
    const start = ipv6ToBigInt(first);
    const size = Number(ipv6ToBigInt(last) - start + 1n);
    return {
      size,
      indexOf: (ip) => {
        const n = isIPv6(ip) ? ipv6ToBigInt(ip) - start : -1n;
        return n >= 0n && n < BigInt(size) ? Number(n) : -1;
      },
      at: (n) => bigIntToIpv6(start + BigInt(n)),
    };
  }
  const start = ipToInt(first);
  const size = ipToInt(last) - start + 1;
  return {
    size,
    indexOf: (ip) => {
      const n = isIPv4(ip) ? ipToInt(ip) - start : -1;
      return n >= 0 && n < size ? n : -1;
    },
    at: (n) => intToIp(start + n),
  };
}

export type LeaseOp =
  | { kind: 'offer'; ip: string }
  /** `mac`: the host's, when the lease is keyed by a DHCPv6 client */
  | { kind: 'bind'; ip: string; hostname?: string | undefined; mac?: string }
  /** the stored lease stands (a renewal within LEASE_REUSE of its bind): answered with what is left of it */
  | { kind: 'keep'; ip: string; seconds: number }
  | { kind: 'release'; ip: string }
  | { kind: 'decline'; ip: string };

const keyOf = (l: Lease): string => l.client ?? l.mac;

/** Declined addresses (someone else answers ARP for them) stay out of the pool this long. */
const DECLINE_HOLD_MS = 10 * 60_000;

/**
 * In-memory view of the full-mode address pool. No I/O: the DHCP server persists the lease a bind()
 * returns before it sends the ACK, and loads the stored leases into a new table at start.
 * Every mutation happens synchronously, so two clients can never be handed the same address. One table serves one
 * family: DHCPv4 and DHCPv6 leases share the store, and each table keeps to its pool's. A lease's key (the `mac`
 * parameters) is the MAC for DHCPv4, and the client (Lease.client) for DHCPv6.
 * The maps by MAC mirror the maps by address: `boundByMac` has mac → ip exactly when `bound` has ip → mac's
 * lease, and `offerByMac` likewise `offers`; every method keeps both sides in step.
 */
export class LeaseTable {
  private readonly bound = new Map<string, Lease>(); // ip -> lease
  private readonly boundByMac = new Map<string, string>(); // mac -> ip
  private readonly offers = new Map<string, { mac: string; until: number }>(); // ip -> hold
  private readonly offerByMac = new Map<string, string>();
  private readonly declined = new Map<string, number>(); // ip -> until
  private readonly reservedByMac = new Map<string, string>();
  private readonly reservedIps = new Set<string>();
  private readonly range: AddressRange;
  private readonly sameFamily: (ip: string) => boolean;
  private cursor = 0;

  constructor(
    private readonly pool: PoolSpec,
    leases: Iterable<Lease> = [],
  ) {
    this.range = rangeOf(pool.poolStart, pool.poolEnd);
    this.sameFamily = isIPv6(pool.poolStart) ? isIPv6 : isIPv4;
    if (this.range.size < 1) throw new Error(`empty pool ${pool.poolStart}-${pool.poolEnd}`);
    for (const r of pool.reservations) {
      this.reservedByMac.set(r.mac, r.ip);
      this.reservedIps.add(r.ip);
    }
    for (const l of leases) this.learn(l);
  }

  /** Offers held (expired ones included until their address is offered again): at most the pool size. */
  get offerCount(): number {
    return this.offerByMac.size;
  }

  get leaseCount(): number {
    return this.bound.size;
  }

  inPool(ip: string): boolean {
    return this.range.indexOf(ip) >= 0;
  }

  leaseOf(mac: string): Lease | undefined {
    const ip = this.boundByMac.get(mac);
    return ip === undefined ? undefined : this.bound.get(ip);
  }

  isReserved(mac: string): boolean {
    return this.reservedByMac.has(mac);
  }

  hostnameFor(mac: string): string | undefined {
    return this.pool.reservations.find((r) => r.mac === mac)?.hostname;
  }

  /** Why `mac` may not use `ip` now, or undefined when it may. */
  conflict(mac: string, ip: string, now: number): string | undefined {
    const reserved = this.reservedByMac.get(mac);
    if (reserved !== undefined) return reserved === ip ? undefined : `reserved address is ${reserved}`;
    if (this.reservedIps.has(ip)) return `${ip} is reserved for another host`;
    if (!this.inPool(ip)) return `${ip} is outside the pool`;
    const l = this.bound.get(ip);
    if (l && keyOf(l) !== mac && l.expiresAt > now) return `${ip} is leased to ${l.mac}`;
    const o = this.offers.get(ip);
    if (o && o.mac !== mac && o.until > now) return `${ip} is offered to ${o.mac}`;
    if ((this.declined.get(ip) ?? 0) > now) return `${ip} was declined`;
    return undefined;
  }

  /** The address to offer: reservation, current lease, current offer, the requested one, then a free one. */
  pickOffer(mac: string, requested: string | undefined, now: number): string | undefined {
    const reserved = this.reservedByMac.get(mac);
    if (reserved !== undefined) return reserved;
    for (const ip of [this.boundByMac.get(mac), this.offerByMac.get(mac), requested]) {
      if (ip !== undefined && this.conflict(mac, ip, now) === undefined) return ip;
    }
    return this.findFree(mac, now, false) ?? this.findFree(mac, now, true);
  }

  /** First pass takes only never-leased addresses, so an expired lease keeps its address as long as possible. */
  private findFree(mac: string, now: number, takeExpired: boolean): string | undefined {
    const { size } = this.range;
    for (let i = 0; i < size; i++) {
      const n = (this.cursor + i) % size;
      const ip = this.range.at(n);
      if (!takeExpired && this.bound.has(ip)) continue;
      if (this.conflict(mac, ip, now) === undefined) {
        this.cursor = (n + 1) % size;
        return ip;
      }
    }
    return undefined;
  }

  /** One offer per MAC and per address: the offer state never outgrows the pool, whatever MACs are spoofed. */
  holdOffer(mac: string, ip: string, now: number): void {
    this.dropOffer(mac);
    const taken = this.offers.get(ip);
    if (taken) this.offerByMac.delete(taken.mac);
    this.offers.set(ip, { mac, until: now + this.pool.offerHoldSeconds * 1000 });
    this.offerByMac.set(mac, ip);
  }

  /** Binds and returns the new lease plus the address it replaces (to delete from the store). */
  bind(
    mac: string,
    ip: string,
    now: number,
    hostname?: string,
    /** the host's MAC when `mac` is a DHCPv6 client's key */
    hostMac?: string,
  ): { lease: Lease; replaced?: string } {
    const prev = this.boundByMac.get(mac);
    this.dropOffer(mac);
    const lease: Lease = {
      ip,
      ...(hostMac ? { mac: hostMac, client: mac } : { mac }),
      expiresAt: now + this.pool.leaseSeconds * 1000,
      boundAt: now,
      ...(hostname ? { hostname } : {}),
    };
    this.setBound(lease);
    return prev !== undefined && prev !== ip ? { lease, replaced: prev } : { lease };
  }

  /** Undo a bind whose write failed: the client got no ACK, so the address must not stay taken. */
  unbind(lease: Lease): void {
    this.release(lease.mac, lease.ip);
  }

  /** Returns the released lease when `mac` held `ip`. */
  release(mac: string, ip: string): Lease | undefined {
    const l = this.bound.get(ip);
    if (!l || keyOf(l) !== mac) return undefined;
    this.bound.delete(ip);
    this.boundByMac.delete(mac);
    return l;
  }

  /** Only the client that holds `ip` may decline it (RFC 2131 4.3.3, as Kea does): anyone else changes nothing. */
  decline(mac: string, ip: string, now: number): Lease | undefined {
    const held = this.release(mac, ip);
    if (!held) return undefined;
    this.dropOffer(mac);
    this.declined.set(ip, now + DECLINE_HOLD_MS);
    return held;
  }

  dropOffer(mac: string): void {
    const ip = this.offerByMac.get(mac);
    if (ip === undefined) return;
    this.offerByMac.delete(mac);
    this.offers.delete(ip);
  }

  /** A lease another appliance bound (shared store): this table no longer offers its address to anyone else. */
  learn(l: Lease): void {
    if (this.sameFamily(l.ip)) this.setBound(l);
  }

  /** A lease another appliance released or replaced. */
  forget(ip: string): void {
    const l = this.bound.get(ip);
    if (l) this.release(keyOf(l), ip);
  }

  /** The live addresses of these hosts' MACs (a DHCPv6 host may hold several: one per client). */
  addressesOf(macs: readonly string[], now: number): string[] {
    const live = (l: Lease | undefined) => (l && l.expiresAt > now ? [l.ip] : []);
    if (this.sameFamily === isIPv4) return macs.flatMap((m) => live(this.leaseOf(m)));
    const want = new Set(macs);
    return [...this.bound.values()].filter((l) => want.has(l.mac)).flatMap(live);
  }

  /**
   * Appliances sharing a pool start looking for free addresses at different places (by their own address), so
   * two of them rarely offer the same address at once; the store's transaction decides when they do.
   */
  spreadFrom(serverIp: string): void {
    // hashed: neighbours on the segment (.1, .3) would otherwise start side by side and collide at once
    this.cursor = createHash('sha256').update(serverIp).digest().readUInt32BE(0) % this.range.size;
  }

  private setBound(l: Lease): void {
    const prevIp = this.boundByMac.get(keyOf(l));
    if (prevIp !== undefined) this.bound.delete(prevIp);
    const evicted = this.bound.get(l.ip);
    if (evicted) this.boundByMac.delete(keyOf(evicted));
    this.bound.set(l.ip, l);
    this.boundByMac.set(keyOf(l), l.ip);
  }
}
