import { createHash } from 'node:crypto';
import { intToIp, ipToInt } from '../../domain/ipv4.js';
import type { Lease } from '../../domain/lease.js';

export interface PoolSpec {
  poolStart: string;
  poolEnd: string;
  leaseSeconds: number;
  offerHoldSeconds: number;
  reservations: { mac: string; ip: string; hostname?: string | undefined }[];
}

/** Declined addresses (someone else answers ARP for them) stay out of the pool this long. */
const DECLINE_HOLD_MS = 10 * 60_000;

/**
 * In-memory view of the full-mode address pool. No I/O: the DHCP server persists the lease a bind()
 * returns before it sends the ACK, and loads the stored leases into a new table at start.
 * Every mutation happens synchronously, so two clients can never be handed the same address.
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
  private readonly start: number;
  private readonly size: number;
  private cursor = 0;

  constructor(
    private readonly pool: PoolSpec,
    leases: Iterable<Lease> = [],
  ) {
    this.start = ipToInt(pool.poolStart);
    this.size = ipToInt(pool.poolEnd) - this.start + 1;
    if (this.size < 1) throw new Error(`empty pool ${pool.poolStart}-${pool.poolEnd}`);
    for (const r of pool.reservations) {
      this.reservedByMac.set(r.mac, r.ip);
      this.reservedIps.add(r.ip);
    }
    for (const l of leases) this.setBound(l);
  }

  /** Offers held (expired ones included until their address is offered again): at most the pool size. */
  get offerCount(): number {
    return this.offerByMac.size;
  }

  get leaseCount(): number {
    return this.bound.size;
  }

  inPool(ip: string): boolean {
    const n = ipToInt(ip) - this.start;
    return n >= 0 && n < this.size;
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
    if (l && l.mac !== mac && l.expiresAt > now) return `${ip} is leased to ${l.mac}`;
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
    for (let i = 0; i < this.size; i++) {
      const n = (this.cursor + i) % this.size;
      const ip = intToIp(this.start + n);
      if (!takeExpired && this.bound.has(ip)) continue;
      if (this.conflict(mac, ip, now) === undefined) {
        this.cursor = (n + 1) % this.size;
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
  bind(mac: string, ip: string, now: number, hostname?: string): { lease: Lease; replaced?: string } {
    const prev = this.boundByMac.get(mac);
    this.dropOffer(mac);
    const lease: Lease = {
      ip,
      mac,
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
    if (l?.mac !== mac) return undefined;
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
    this.setBound(l);
  }

  /** A lease another appliance released or replaced. */
  forget(ip: string): void {
    const l = this.bound.get(ip);
    if (l) this.release(l.mac, ip);
  }

  /**
   * Appliances sharing a pool start looking for free addresses at different places (by their own address), so
   * two of them rarely offer the same address at once; the store's transaction decides when they do.
   */
  spreadFrom(serverIp: string): void {
    // hashed: neighbours on the segment (.1, .3) would otherwise start side by side and collide at once
    this.cursor = createHash('sha256').update(serverIp).digest().readUInt32BE(0) % this.size;
  }

  private setBound(l: Lease): void {
    const prevIp = this.boundByMac.get(l.mac);
    if (prevIp !== undefined) this.bound.delete(prevIp);
    const evicted = this.bound.get(l.ip);
    if (evicted) this.boundByMac.delete(evicted.mac);
    this.bound.set(l.ip, l);
    this.boundByMac.set(l.mac, l.ip);
  }
}
