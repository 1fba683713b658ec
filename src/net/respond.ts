import type { IncomingMessage } from 'node:http';
import type { HttpBindings } from '@hono/node-server';
import type { Context, MiddlewareHandler } from 'hono';
import type { z } from 'zod';
import type { RefusalCode, Result } from '../domain/refusal.js';
import { formatZodError } from '../domain/zod-error.js';
import { readCapped } from './read-capped.js';

/** How an iPXE script goes out: text, never cached (each fetch may get another script). */
export const IPXE = { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' };

/** How the API answers: errors as {error}, bodies parsed by zod, sizes capped. */
export const bad = (c: Context, status: 400 | 401 | 403 | 404 | 409 | 413 | 415 | 502 | 503, error: string) =>
  c.json({ error }, status);

type Parsed<T> = { ok: true; data: T } | { ok: false; res: Response; error: string };

/** Bodies read by `capBody`, for `readJson`. */
const bodies = new WeakMap<Context, Buffer>();

/** The body, or undefined once it is over `max` bytes (declared or sent): nothing past the cap is kept. */
export async function bodyUpTo(c: Context, max: number): Promise<Buffer | undefined> {
  const incoming = (c.env as Partial<HttpBindings> | undefined)?.incoming as IncomingMessage | undefined;
  if (!incoming) {
    // no node socket (app.request in tests): the web body
    const b = Buffer.from(await c.req.arrayBuffer());
    return b.length > max ? undefined : b;
  }
  if (Number(incoming.headers['content-length'] ?? 0) > max) return undefined;
  return readCapped(incoming as AsyncIterable<Buffer>, max);
}

/**
 * Caps a route's body at `max` bytes (413 with `tooBig`) and reads it straight from the node request, not
 * through a web Request and its ReadableStream as hono's bodyLimit and c.req.json() do. The connection closes
 * after a 413, so the rest is not read.
 */
export const capBody =
  (max: number, tooBig: string): MiddlewareHandler =>
  async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    const body = await bodyUpTo(c, max);
    if (!body) {
      c.header('Connection', 'close');
      return bad(c, 413, tooBig);
    }
    bodies.set(c, body);
    await next();
  };

/** The body capBody read, as text. */
export const bodyText = (c: Context): string => (bodies.get(c) ?? Buffer.alloc(0)).toString('utf8');

/** The body as JSON, or why not (415 without the JSON content type, 400 when it does not parse). */
export async function readJson(c: Context): Promise<Parsed<unknown>> {
  const fail = (status: 400 | 415, error: string) => ({ ok: false as const, res: bad(c, status, error), error });
  if (!(c.req.header('content-type') ?? '').includes('application/json')) {
    return fail(415, 'Content-Type must be application/json');
  }
  try {
    const body = bodies.get(c);
    return { ok: true, data: body ? JSON.parse(body.toString('utf8')) : await c.req.json() };
  } catch {
    return fail(400, 'body is not valid JSON');
  }
}

export async function parseBody<S extends z.ZodType>(c: Context, schema: S): Promise<Parsed<z.infer<S>>> {
  const raw = await readJson(c);
  if (!raw.ok) return raw;
  const r = schema.safeParse(raw.data);
  return r.success
    ? { ok: true, data: r.data }
    : { ok: false, res: bad(c, 400, formatZodError(r.error)), error: formatZodError(r.error) };
}

/** The body limit of api.maxBodyBytes, with a 413 that says it. */
export const bodyCap = (d: { maxBodyBytes: number }) =>
  capBody(d.maxBodyBytes, `body larger than ${d.maxBodyBytes} bytes`);

/** The one place a refusal becomes an HTTP status. */
const STATUS = {
  invalid: 400,
  unauthorized: 401,
  quota: 403,
  notFound: 404,
  conflict: 409,
  exists: 409,
  bmcFailed: 502,
} as const;
export const statusOf = (code: RefusalCode) => STATUS[code];

export const answer = <T>(c: Context, r: Result<T>, render: (v: T) => Response): Response =>
  r.ok ? render(r.value) : bad(c, statusOf(r.code), r.error);

/** The bearer token of the Authorization header (never a query parameter: URLs end up in logs). */
export const bearer = (c: Context) => /^Bearer (.+)$/.exec(c.req.header('authorization') ?? '')?.[1];
