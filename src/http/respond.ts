import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { z } from 'zod';
import { formatZodError } from '../domain/zod-error.js';
import type { Outcome } from '../orchestrator/commands.js';

/** How an iPXE script goes out: text, never cached (each fetch may get another script). */
export const IPXE = { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' };

/** How the API answers: errors as {error}, bodies parsed by zod, sizes capped. */
export const bad = (c: Context, status: 400 | 401 | 404 | 409 | 413 | 415 | 502 | 503, error: string) =>
  c.json({ error }, status);

type Parsed<T> = { ok: true; data: T } | { ok: false; res: Response; error: string };

/** The body as JSON, or why not (415 without the JSON content type, 400 when it does not parse). */
export async function readJson(c: Context): Promise<Parsed<unknown>> {
  const fail = (status: 400 | 415, error: string) => ({ ok: false as const, res: bad(c, status, error), error });
  if (!(c.req.header('content-type') ?? '').includes('application/json')) {
    return fail(415, 'Content-Type must be application/json');
  }
  try {
    return { ok: true, data: await c.req.json() };
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
  bodyLimit({ maxSize: d.maxBodyBytes, onError: (c) => bad(c, 413, `body larger than ${d.maxBodyBytes} bytes`) });

export const answer = <T>(c: Context, r: Outcome<T>, render: (v: T) => Response): Response =>
  r.ok ? render(r.value) : bad(c, r.status, r.error);
