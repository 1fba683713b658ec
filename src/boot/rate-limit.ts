import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context, MiddlewareHandler } from 'hono';

export interface Bucket {
  tokens: number;
  at: number;
}

export interface Rate {
  /** requests a second, sustained */
  perSecond: number;
  /** requests at once after a quiet spell */
  burst: number;
}

/** Per source address, and for all of them together. */
export interface RateLimit extends Rate {
  global?: Rate | undefined;
}

/** Token bucket: refills at `perSecond` up to `burst`; a request takes one token. Pure. */
export function take(
  b: Bucket | undefined,
  now: number,
  r: Rate,
): { bucket: Bucket; ok: boolean; retryAfterS: number } {
  const refilled = b ? Math.min(r.burst, b.tokens + ((now - b.at) / 1000) * r.perSecond) : r.burst;
  if (refilled >= 1) return { bucket: { tokens: refilled - 1, at: now }, ok: true, retryAfterS: 0 };
  return { bucket: { tokens: refilled, at: now }, ok: false, retryAfterS: Math.ceil((1 - refilled) / r.perSecond) };
}

/** An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d: the lease table knows it as a.b.c.d. */
export const unmappedAddress = (a: string): string => a.replace(/^::ffff:(?=\d+\.)/, '');

/** The client's address; app.request() in tests has no socket. */
export function remoteAddress(c: Context): string | undefined {
  try {
    const a = getConnInfo(c).remote.address;
    return a === undefined ? undefined : unmappedAddress(a);
  } catch {
    return undefined;
  }
}

/**
 * The budget of the routes anyone on the segment can call (boot scripts, report intake): a bucket per source
 * address and one for all of them. The table of addresses is bounded, the least recently seen going first, so
 * spoofed sources cannot grow it; while it is full, a new address (an evicted one coming back among them)
 * starts with one second's worth, not a whole burst. Pure but for the clock it is given.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private global?: Bucket;

  constructor(
    private readonly r: RateLimit,
    private readonly maxAddresses = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  admit(key: string): { ok: boolean; retryAfterS: number } {
    const now = this.now();
    const known = this.buckets.get(key);
    const full = this.buckets.size >= this.maxAddresses;
    const start = known ?? (full ? { tokens: Math.min(this.r.burst, this.r.perSecond), at: now } : undefined);
    const mine = take(start, now, this.r);
    this.buckets.delete(key);
    this.buckets.set(key, mine.bucket);
    if (this.buckets.size > this.maxAddresses) this.buckets.delete(this.buckets.keys().next().value as string);
    if (!mine.ok) return mine;
    if (!this.r.global) return mine;
    const all = take(this.global, now, this.r.global);
    this.global = all.bucket;
    // a request the global budget refuses does not use up the address's token
    if (!all.ok) this.buckets.set(key, { ...mine.bucket, tokens: mine.bucket.tokens + 1 });
    return all;
  }
}

/** The limiter as middleware: 429 with Retry-After when it refuses. */
export function rateLimit(r: RateLimit, onLimited: (c: Context) => void, maxAddresses = 10_000): MiddlewareHandler {
  const limiter = new RateLimiter(r, maxAddresses);
  return async (c, next) => {
    const t = limiter.admit(remoteAddress(c) ?? 'local');
    if (!t.ok) {
      onLimited(c);
      c.header('Retry-After', String(t.retryAfterS));
      return c.json({ error: 'too many requests' }, 429);
    }
    await next();
  };
}
