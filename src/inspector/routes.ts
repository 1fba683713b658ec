import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { remoteAddress } from '../boot/rate-limit.js';
import { ContractReportSchema, normaliseReport } from '../domain/inspection.js';
import { MacSchema } from '../domain/mac.js';
import { type Result, refusal } from '../domain/refusal.js';
import { formatZodError } from '../domain/zod-error.js';
import type { Metrics } from '../metrics.js';
import { answer, bad, bearer, bodyCap, capBody, IPXE, parseBody, readJson, statusOf } from '../net/respond.js';
import { type InspectorCaller, type InspectorCommands, redemptionResult } from './commands.js';

export interface IntakeDeps {
  commands: InspectorCommands;
  maxBodyBytes: number;
  metrics: Metrics;
}

export const ProgressSchema = z
  .object({ step: z.string().min(1).max(64), ok: z.boolean(), message: z.string().max(4096).default('') })
  .strict();

/** Contract §4.2's answer; `approved` is ours: false means the host failed the requirements, do not go on. */
const ACCEPTED = { status: 'accepted' } as const;

/**
 * The inspector contract v4.2 under /api/v1, on the boot plane: the nonce-gated boot script, the report, the
 * bootstrap gate, the provisioned and provision-failed callbacks, and our progress extension.
 */
export function createIntakeApi(d: IntakeDeps): Hono {
  const api = new Hono();
  const limit = bodyCap(d);
  const caller = (c: Context): InspectorCaller => ({
    namespace: c.req.param('ns') ?? '',
    name: c.req.param('host') ?? '',
    token: bearer(c),
    from: remoteAddress(c) ?? '',
  });
  /** every call is counted by its answer; a right token from the wrong address also as misuse */
  const count = <T>(r: Result<T> & { misuse?: boolean }, endpoint: string, okStatus = 202) => {
    if (r.misuse) d.metrics.credentials.inc({ result: 'misuse' });
    d.metrics.inspectorCalls.inc({ endpoint, status: String(r.ok ? okStatus : statusOf(r.code)) });
  };

  api.get('/boot/:ns/:host/:nonce', async (c) => {
    const mac = MacSchema.safeParse(c.req.query('mac') ?? '').data;
    const r = await d.commands.redeemNonce({ ...caller(c), nonce: c.req.param('nonce'), mac });
    d.metrics.credentials.inc({ result: redemptionResult(r) });
    if (!r.ok || r.value.kind === 'unknown') {
      // one answer for no such host, wrong, expired and consumed nonces: no oracle (§4.1)
      return c.text('#!ipxe\necho Beskar7: no boot script here\nexit 1\n', 404, IPXE);
    }
    if (r.value.kind === 'conflict') {
      return c.text(
        '#!ipxe\necho Beskar7: this boot was claimed already; the attempt starts over\nexit 1\n',
        409,
        IPXE,
      );
    }
    return c.body(r.value.script, 200, IPXE);
  });

  api.post('/inspection/:ns/:host', limit, async (c) => {
    const who = caller(c);
    const raw = await readJson(c);
    const parsed = raw.ok ? ContractReportSchema.safeParse(raw.data) : undefined;
    if (!parsed?.success) {
      const why = raw.ok ? formatZodError(parsed?.error as z.ZodError) : raw.error;
      // only an authorized inspector's bad report is remembered; anyone else gets the same 401 as always
      const r = await d.commands.reportInvalid(who, why);
      count(r, 'report', 400);
      return r.ok ? bad(c, 400, why) : bad(c, statusOf(r.code), r.error);
    }
    const r = await d.commands.acceptReport(who, normaliseReport(parsed.data));
    count(r, 'report');
    return answer(c, r, (v) => c.json({ ...ACCEPTED, approved: v.approved }, 202));
  });

  api.get('/bootstrap/:ns/:host', async (c) => {
    const r = await d.commands.bootstrap(caller(c));
    // validated, but its user-data is not there yet: the same 404 as before validation, and the inspector polls
    const ready: Result<string> =
      r.ok && r.value === undefined ? { ok: false, ...refusal('notFound', 'not found') } : (r as Result<string>);
    count(ready, 'bootstrap', 200);
    return answer(c, ready, (data) =>
      c.body(data, 200, { 'Content-Type': 'application/octet-stream', 'Cache-Control': 'no-store' }),
    );
  });

  const small = capBody(64 * 1024, 'body larger than 64 KiB');
  api.post('/provisioned/:ns/:host', small, async (c) => {
    const r = await d.commands.provisioned(caller(c));
    count(r, 'provisioned');
    return answer(c, r, () => c.json(ACCEPTED, 202));
  });

  api.post('/provision-failed/:ns/:host', small, async (c) => {
    // the reason is advisory: a missing or broken body still fails the deployment (§4.5)
    const body = await readJson(c);
    const reason = body.ok ? FailedBody.safeParse(body.data).data?.reason : undefined;
    const r = await d.commands.provisionFailed(caller(c), reason ?? '');
    count(r, 'provision_failed');
    return answer(c, r, () => c.json(ACCEPTED, 202));
  });

  api.post('/cleaned/:ns/:host', small, async (c) => {
    const body = await parseBody(c, CleanedSchema);
    if (!body.ok) return body.res;
    const r = await d.commands.cleaned(caller(c), body.data);
    count(r, 'cleaned');
    return answer(c, r, () => c.json(ACCEPTED, 202));
  });

  api.post('/progress/:ns/:host', small, async (c) => {
    const body = await parseBody(c, ProgressSchema);
    if (!body.ok) return body.res;
    const r = await d.commands.acceptProgress(caller(c), body.data);
    count(r, 'progress');
    return answer(c, r, () => c.json(ACCEPTED, 202));
  });
  return api;
}

export const FailedBody = z.object({ reason: z.string() });

export const CleanedSchema = z.object({ ok: z.boolean(), message: z.string().max(4096).default('') }).strict();
