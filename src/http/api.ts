import { type Context, Hono } from 'hono';
import { type SSEStreamingApi, streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { ContractReportSchema, normaliseReport } from '../domain/inspection.js';
import { MacSchema } from '../domain/mac.js';
import { HostActionSchema, HostCreateSchema, MachineCreateSchema, type StoredHost } from '../domain/resources.js';
import { formatZodError } from '../domain/zod-error.js';
import type { Metrics } from '../metrics.js';
import type { Commands, InspectorCaller, Outcome } from '../orchestrator/commands.js';
import { BackupSchema, takeBackup } from '../store/backup.js';
import { sameSecret } from '../store/secrets.js';
import type { Store } from '../store/store.js';
import type { BootTimeline } from '../timeline.js';
import { createManifestApi } from './manifest-api.js';
import { remoteAddress } from './rate-limit.js';
import { answer, bad, bodyCap, capBody, IPXE, parseBody, readJson } from './respond.js';

export interface ApiDeps {
  /** read side: handlers read records directly; every change goes through `commands` */
  store: Store;
  commands: Commands;
  adminToken: string;
  maxBodyBytes: number;
  metrics: Metrics;
  timeline: BootTimeline;
  /** the addresses our DHCP leased to these MACs now */
  leasedAddresses: (macs: string[]) => string[];
}

/** The API view of a host: the password is never returned, not even encrypted. */
export function publicHost(h: StoredHost) {
  const { passwordEnc: _, ...redfish } = h.spec.redfish;
  return { name: h.name, spec: { ...h.spec, redfish }, status: h.status, createdAt: h.createdAt };
}

const EventsQuery = z.object({ limit: z.coerce.number().int().min(1).max(1_000_000).default(200) });

const ProgressSchema = z
  .object({ step: z.string().min(1).max(64), ok: z.boolean(), message: z.string().max(4096).default('') })
  .strict();

const bearer = (c: Context) => /^Bearer (.+)$/.exec(c.req.header('authorization') ?? '')?.[1];

/** The admin API under /api/v1: every route needs the admin token in the Authorization header. */
export function createAdminApi(d: ApiDeps): Hono {
  const api = new Hono();
  api.get('/openapi.json', (c) => c.json(openApi()));
  api.use('*', async (c, next) => {
    // a header only: a token in a URL ends up in logs and browser history
    const t = bearer(c);
    if (!sameSecret(t, d.adminToken)) return bad(c, 401, 'unauthorized');
    await next();
  });
  api.route('/', hostRoutes(d));
  api.route('/', machineRoutes(d));
  api.route('/', storeRoutes(d));
  api.route('/', createManifestApi(d));
  return api;
}

/** Contract §4.2's answer; `approved` is ours: false means the host failed the requirements, do not go on. */
const ACCEPTED = { status: 'accepted' } as const;

/**
 * The inspector contract v4.2 under /api/v1, on the boot plane: the nonce-gated boot script, the report, the
 * bootstrap gate, the provisioned and provision-failed callbacks, and our progress extension.
 */
export function createIntakeApi(d: ApiDeps): Hono {
  const api = new Hono();
  const limit = bodyCap(d);
  const caller = (c: Context): InspectorCaller => ({
    namespace: c.req.param('ns') ?? '',
    name: c.req.param('host') ?? '',
    token: bearer(c),
    from: remoteAddress(c) ?? '',
  });
  /** every call is counted by its answer; a right token from the wrong address also as misuse */
  const count = <T>(r: Outcome<T> & { misuse?: boolean }, endpoint: string, okStatus = 202) => {
    if (r.misuse) d.metrics.credentials.inc({ result: 'misuse' });
    d.metrics.inspectorCalls.inc({ endpoint, status: String(r.ok ? okStatus : r.status) });
  };

  api.get('/boot/:ns/:host/:nonce', async (c) => {
    const mac = MacSchema.safeParse(c.req.query('mac') ?? '').data;
    const r = await d.commands.claimBoot({ ...caller(c), nonce: c.req.param('nonce'), mac });
    if (!r.ok || r.value.kind === 'unknown') {
      d.metrics.credentials.inc({ result: 'unknown' });
      // one answer for no such host, wrong, expired and consumed nonces: no oracle (§4.1)
      return c.text('#!ipxe\necho Beskar7: no boot script here\nexit 1\n', 404, IPXE);
    }
    d.metrics.credentials.inc({ result: r.value.kind === 'ok' ? 'claimed' : 'conflict' });
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
      return r.ok ? bad(c, 400, why) : bad(c, r.status, r.error);
    }
    const r = await d.commands.acceptReport(who, normaliseReport(parsed.data));
    count(r, 'report');
    return answer(c, r, (v) => c.json({ ...ACCEPTED, approved: v.approved }, 202));
  });

  api.get('/bootstrap/:ns/:host', async (c) => {
    const r = await d.commands.bootstrap(caller(c));
    count(r, 'bootstrap', 200);
    // no CAPI user-data here: the OS gets its configuration from config_url on its command line
    return answer(c, r, () =>
      c.body(null, 200, { 'Content-Type': 'application/octet-stream', 'Cache-Control': 'no-store' }),
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

  api.post('/progress/:ns/:host', small, async (c) => {
    const body = await parseBody(c, ProgressSchema);
    if (!body.ok) return body.res;
    const r = await d.commands.acceptProgress(caller(c), body.data);
    count(r, 'progress');
    return answer(c, r, () => c.json(ACCEPTED, 202));
  });
  return api;
}

const FailedBody = z.object({ reason: z.string() });

function hostRoutes(d: ApiDeps): Hono {
  const api = new Hono();
  const limit = bodyCap(d);
  api.post('/hosts', limit, async (c) => {
    const body = await parseBody(c, HostCreateSchema);
    if (!body.ok) return body.res;
    return answer(c, await d.commands.createHost(body.data), (h) => c.json(publicHost(h), 201));
  });
  api.get('/hosts', async (c) => c.json({ items: (await d.store.hosts.all()).map(publicHost) }));
  api.get('/hosts/:name', async (c) => {
    const h = await d.store.hosts.get(c.req.param('name'));
    return h ? c.json(publicHost(h)) : bad(c, 404, `no host ${c.req.param('name')}`);
  });
  api.get('/hosts/:name/report', async (c) => {
    const h = await d.store.hosts.get(c.req.param('name'));
    const r = h?.status.inspectionReportId ? await d.store.reports.get(h.status.inspectionReportId) : undefined;
    return r ? c.json(r) : bad(c, 404, `no report for ${c.req.param('name')}`);
  });
  api.post('/hosts/:name/actions', limit, async (c) => {
    const body = await parseBody(c, HostActionSchema);
    if (!body.ok) return body.res;
    return answer(c, await d.commands.hostAction(c.req.param('name'), body.data), (r) => c.json(r));
  });
  api.delete('/hosts/:name', async (c) =>
    answer(c, await d.commands.deleteHost(c.req.param('name')), () => c.body(null, 204)),
  );
  return api;
}

function machineRoutes(d: ApiDeps): Hono {
  const api = new Hono();
  const limit = bodyCap(d);
  api.post('/machines', limit, async (c) => {
    const body = await parseBody(c, MachineCreateSchema);
    if (!body.ok) return body.res;
    return answer(c, await d.commands.createMachine(body.data), (m) => c.json(m, 201));
  });
  api.get('/machines', async (c) => c.json({ items: await d.store.machines.all() }));
  api.get('/machines/:name', async (c) => {
    const m = await d.store.machines.get(c.req.param('name'));
    return m ? c.json(m) : bad(c, 404, `no machine ${c.req.param('name')}`);
  });
  api.delete('/machines/:name', async (c) =>
    answer(c, await d.commands.deleteMachine(c.req.param('name')), (name) => c.json({ deleting: name }, 202)),
  );
  return api;
}

/** Events, the boot timeline (also live), backup and restore. */
function storeRoutes(d: ApiDeps): Hono {
  const api = new Hono();
  api.get('/timeline', (c) => c.json({ items: d.timeline.latest() }));
  api.get('/timeline/:key', (c) => {
    const key = c.req.param('key');
    return c.json({ key, items: d.timeline.get(MacSchema.safeParse(key).data ?? key) });
  });
  api.get('/stream', (c) => streamSSE(c, (stream) => liveStream(d, stream)));
  api.get('/backup', async (c) => {
    const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, '');
    c.header('Content-Disposition', `attachment; filename="beskar7-backup-${stamp}.json"`);
    return c.json(await takeBackup(d.store));
  });
  const big = capBody(256 * 1024 * 1024, 'backup larger than 256 MiB');
  api.post('/restore', big, async (c) => {
    const body = await parseBody(c, BackupSchema);
    if (!body.ok) return body.res;
    return answer(c, await d.commands.restore(body.data), (restored) => c.json({ restored }));
  });
  api.get('/events', async (c) => {
    const q = EventsQuery.safeParse({ limit: c.req.query('limit') });
    if (!q.success) return bad(c, 400, formatZodError(q.error));
    return c.json({ items: await d.store.events.last(q.data.limit) });
  });
  return api;
}

/** Timeline entries and workflow events as they happen, for the dashboard. */
async function liveStream(d: ApiDeps, stream: SSEStreamingApi): Promise<void> {
  const send = (event: string) => (data: unknown) =>
    void stream.writeSSE({ event, data: JSON.stringify(data) }).catch(() => undefined);
  const onEntry = send('timeline');
  const onEvent = send('event');
  d.timeline.on('entry', onEntry);
  d.store.on('event', onEvent);
  let wake = () => {};
  stream.onAbort(() => {
    d.timeline.off('entry', onEntry);
    d.store.off('event', onEvent);
    wake();
  });
  while (!stream.aborted) {
    await stream.writeSSE({ event: 'ping', data: '{}' });
    // a ping keeps proxies from closing an idle stream; an abort ends the wait at once
    await new Promise<void>((r) => {
      const timer = setTimeout(r, 15_000);
      wake = () => {
        clearTimeout(timer);
        r();
      };
    });
  }
}

/** OpenAPI 3.1 document; the schemas are the zod ones, converted, so they cannot drift. */
function openApi() {
  const schema = (s: z.ZodType) => z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' });
  const json = (s: z.ZodType) => ({ content: { 'application/json': { schema: schema(s) } } });
  return {
    openapi: '3.1.0',
    info: { title: 'Beskar7 API', version: '1.0' },
    components: {
      securitySchemes: { admin: { type: 'http', scheme: 'bearer' }, hostToken: { type: 'http', scheme: 'bearer' } },
    },
    security: [{ admin: [] }],
    paths: {
      '/api/v1/hosts': {
        get: { summary: 'List hosts' },
        post: { summary: 'Enrol a host by its BMC', requestBody: json(HostCreateSchema) },
      },
      '/api/v1/hosts/{name}': { get: { summary: 'Get a host' }, delete: { summary: 'Delete a host not in use' } },
      '/api/v1/hosts/{name}/report': { get: { summary: 'Latest inspection report' } },
      '/api/v1/hosts/{name}/actions': {
        post: {
          summary: "Reset, power on or off, or PXE once through the host's BMC",
          requestBody: json(HostActionSchema),
        },
      },
      '/api/v1/boot/{namespace}/{host}/{nonce}': {
        get: {
          summary: "Inspector contract §4.1: claim the boot nonce once; the inspector's iPXE script",
          security: [],
        },
      },
      '/api/v1/inspection/{namespace}/{host}': {
        post: {
          summary: 'Inspector contract §4.2: the hardware report (202 {status, approved})',
          security: [{ hostToken: [] }],
          requestBody: json(ContractReportSchema),
        },
      },
      '/api/v1/bootstrap/{namespace}/{host}': {
        get: {
          summary: 'Inspector contract §4.3: 200 once the report passed validation, else 404',
          security: [{ hostToken: [] }],
        },
      },
      '/api/v1/provisioned/{namespace}/{host}': {
        post: { summary: 'Inspector contract §4.4: target verified, kexec next', security: [{ hostToken: [] }] },
      },
      '/api/v1/provision-failed/{namespace}/{host}': {
        post: {
          summary: 'Inspector contract §4.5: deployment failed',
          security: [{ hostToken: [] }],
          requestBody: json(FailedBody),
        },
      },
      '/api/v1/progress/{namespace}/{host}': {
        post: {
          summary: "The inspector's steps (extension)",
          security: [{ hostToken: [] }],
          requestBody: json(ProgressSchema),
        },
      },
      '/api/v1/machines': {
        get: { summary: 'List machines' },
        post: { summary: 'Create a machine (claims a host)', requestBody: json(MachineCreateSchema) },
      },
      '/api/v1/machines/{name}': {
        get: { summary: 'Get a machine' },
        delete: { summary: 'Power off, release the host, delete' },
      },
      '/api/v1/events': { get: { summary: 'Recent events' } },
    },
  };
}
