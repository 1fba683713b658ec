/** Which Redfish answers are worth another try, and how long to wait. Pure. */

/** Message IDs / texts that real BMCs use for "busy, try again" (iDRAC, iLO). */
const BUSY = /SYS518|RAC0218|UnableToModifyDuringSystemPOST|ServiceTemporarilyUnavailable|SessionLimitExceeded|busy/i;

export function isRetryable(status: number, body: string, method: string): boolean {
  if (status === 409 || status === 503 || status === 429) return true;
  if (status >= 500 && BUSY.test(body)) return true;
  if (status === 400 && BUSY.test(body)) return true;
  // a transport error (status 0) is only retried where repeating cannot do harm
  if (status === 0) return method === 'GET';
  return false;
}

/** Exponential backoff with equal jitter (never less than half the step), honouring Retry-After (seconds). */
export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  retryAfter?: string | null,
  rand = Math.random,
): number {
  const ra = retryAfter ? Number(retryAfter) : NaN;
  if (Number.isFinite(ra) && ra >= 0) return Math.min(ra * 1000, maxMs);
  const step = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.floor(step / 2 + (rand() * step) / 2);
}
