import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context, MiddlewareHandler } from 'hono';

export interface Bucket {
  tokens: number;
  at: number;
}

export interface RateLimit {
  /** requests a second, sustained */
  perSecond: number;
  /** requests at once after a quiet spell */
  burst: number;
}

/** Token bucket: refills at `perSecond` up to `burst`; a request takes one token. Pure. */
export function take(
  b: Bucket | undefined,
  now: number,
  r: RateLimit,
): { bucket: Bucket; ok: boolean; retryAfterS: number } {
  const refilled = b ? Math.min(r.burst, b.tokens + ((now - b.at) / 1000) * r.perSecond) : r.burst;
  if (refilled >= 1) return { bucket: { tokens: refilled - 1, at: now }, ok: true, retryAfterS: 0 };
  return { bucket: { tokens: refilled, at: now }, ok: false, retryAfterS: Math.ceil((1 - refilled) / r.perSecond) };
}

/** The client's address; app.request() in tests has no socket. */
export function remoteAddress(c: Context): string | undefined {
  try {
    // an IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d: the lease table knows it as a.b.c.d
    return getConnInfo(c).remote.address?.replace(/^::ffff:(?=\d+\.)/, '');
  } catch {
    return undefined;
  }
}

/**
 * Per source address, for the routes anyone on the segment can call (boot scripts, report intake). The table of
 * addresses is bounded: the least recently seen go first, so spoofed sources cannot grow it.
 */
export function rateLimit(r: RateLimit, onLimited: (c: Context) => void, maxAddresses = 10_000): MiddlewareHandler {
  const buckets = new Map<string, Bucket>();
  return async (c, next) => {
    const key = remoteAddress(c) ?? 'local';
    const t = take(buckets.get(key), Date.now(), r);
    buckets.delete(key);
    buckets.set(key, t.bucket);
    if (buckets.size > maxAddresses) buckets.delete(buckets.keys().next().value as string);
    if (!t.ok) {
      onLimited(c);
      c.header('Retry-After', String(t.retryAfterS));
      return c.json({ error: 'too many requests' }, 429);
    }
    await next();
  };
}
