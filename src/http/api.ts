import { timingSafeEqual } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { formatZodError } from '../config.js';
import {
  HostCreateSchema,
  InspectionReportSchema,
  MachineCreateSchema,
  type StoredHost,
  StoredHostSchema,
  StoredMachineSchema,
} from '../domain/resources.js';
import type { Metrics } from '../metrics.js';
import { MacSchema } from '../domain/mac.js';
import type { Orchestrator } from '../orchestrator/reconciler.js';
import type { BootTimeline } from '../timeline.js';
import { BackupSchema, restoreBackup, takeBackup } from '../store/backup.js';
import type { SecretBox } from '../store/secrets.js';
import type { Store } from '../store/store.js';

export interface ApiDeps {
  store: Store;
  secrets: SecretBox;
  orchestrator: Orchestrator;
  adminToken: string;
  maxBodyBytes: number;
  metrics: Metrics;
  timeline: BootTimeline;
  /** why a machine's inspection image cannot boot, checked when the machine is created */
  imageProblem: (inspectionImageURL: string) => Promise<string | undefined>;
}

/** The API view of a host: the password is never returned, not even encrypted. */
export function publicHost(h: StoredHost) {
  const { passwordEnc: _, ...redfish } = h.spec.redfish;
  return { name: h.name, spec: { ...h.spec, redfish }, status: h.status, createdAt: h.createdAt };
}

const EventsQuery = z.object({ limit: z.coerce.number().int().min(1).max(1_000_000).default(200) });
const bad = (c: Context, status: 400 | 401 | 404 | 409 | 413 | 415, error: string) => c.json({ error }, status);

async function parseBody<S extends z.ZodType>(c: Context, schema: S): Promise<{ ok: true; data: z.infer<S> } | { ok: false; res: Response }> {
  if (!(c.req.header('content-type') ?? '').includes('application/json')) return { ok: false, res: bad(c, 415, 'Content-Type must be application/json') };
  let raw: unknown;
  try {
    raw = await c.req.json();
  } catch {
    return { ok: false, res: bad(c, 400, 'body is not valid JSON') };
  }
  const r = schema.safeParse(raw);
  return r.success ? { ok: true, data: r.data } : { ok: false, res: bad(c, 400, formatZodError(r.error)) };
}

const ProgressSchema = z.object({ step: z.string().min(1).max(64), ok: z.boolean(), message: z.string().max(4096).default('') }).strict();

const bearer = (c: Context) => /^Bearer (.+)$/.exec(c.req.header('authorization') ?? '')?.[1];

/** REST API under /api/v1: hosts, machines, reports, events; report intake with the host's one-time token. */
export function createApi(d: ApiDeps): Hono {
  const api = new Hono();
  const limit = bodyLimit({ maxSize: d.maxBodyBytes, onError: (c) => bad(c, 413, `body larger than ${d.maxBodyBytes} bytes`) });

  api.get('/openapi.json', (c) => c.json(openApi()));

  // report intake: authorised by the host's one-time token, not the admin token
  api.post('/hosts/:name/inspection', limit, async (c) => {
    const body = await parseBody(c, InspectionReportSchema);
    if (!body.ok) {
      d.metrics.reports.inc({ result: 'invalid' });
      await d.store.batch([d.store.event({ kind: 'ReportRejected', host: c.req.param('name'), message: 'invalid report body' })]);
      return body.res;
    }
    const v = await d.orchestrator.acceptReport(c.req.param('name'), bearer(c), body.data);
    d.metrics.reports.inc({ result: v.ok ? 'accepted' : `rejected_${v.status}` });
    return v.ok ? c.json({ accepted: true }, 202) : bad(c, v.status, v.error);
  });

  api.post('/hosts/:name/inspection/progress', bodyLimit({ maxSize: 16 * 1024, onError: (c) => bad(c, 413, 'progress body too large') }), async (c) => {
    const body = await parseBody(c, ProgressSchema);
    if (!body.ok) return body.res;
    const v = await d.orchestrator.acceptProgress(c.req.param('name'), bearer(c), body.data);
    return v.ok ? c.json({ accepted: true }, 202) : bad(c, v.status, v.error);
  });

  api.use('*', async (c, next) => {
    // EventSource cannot send headers: the stream alone also takes the token as a query parameter
    const t = bearer(c) ?? (c.req.path.endsWith('/stream') ? c.req.query('token') : undefined);
    if (!t || t.length !== d.adminToken.length || !timingSafeEqual(Buffer.from(t), Buffer.from(d.adminToken))) {
      return bad(c, 401, 'admin bearer token required');
    }
    await next();
  });

  api.post('/hosts', limit, async (c) => {
    const body = await parseBody(c, HostCreateSchema);
    if (!body.ok) return body.res;
    const { name, spec } = body.data;
    const { password, ...redfish } = spec.redfish;
    const host = StoredHostSchema.parse({
      name,
      spec: { ...spec, redfish: { ...redfish, passwordEnc: d.secrets.seal(password) } },
      status: { state: 'Enrolling', nics: [] },
      createdAt: new Date().toISOString(),
    });
    const created = await d.store.transact(async () => {
      if (await d.store.hosts.get(name)) return false;
      await d.store.batch([d.store.hosts.put(name, host), d.store.event({ kind: 'HostCreated', host: name, message: `BMC ${redfish.address}` })]);
      return true;
    });
    if (!created) return bad(c, 409, `host ${name} exists`);
    d.orchestrator.kick();
    return c.json(publicHost(host), 201);
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
  api.delete('/hosts/:name', async (c) => {
    const name = c.req.param('name');
    const refusal = await d.store.transact(async () => {
      const h = await d.store.hosts.get(name);
      if (!h) return bad(c, 404, `no host ${name}`);
      if (h.status.consumer) return bad(c, 409, `host ${name} is used by machine ${h.status.consumer}; delete the machine first`);
      await d.store.batch([d.store.hosts.del(name), d.store.event({ kind: 'HostDeleted', host: name, message: 'deleted' })]);
      return undefined;
    });
    if (refusal) return refusal;
    await d.orchestrator.forgetBmc(name);
    return c.body(null, 204);
  });

  api.post('/machines', limit, async (c) => {
    const body = await parseBody(c, MachineCreateSchema);
    if (!body.ok) return body.res;
    const { name, spec } = body.data;
    const problem = await d.imageProblem(spec.inspectionImageURL);
    if (problem) return bad(c, 400, `spec.inspectionImageURL: ${problem}`);
    const m = StoredMachineSchema.parse({ name, spec, status: { phase: 'Pending', attempts: 0 }, createdAt: new Date().toISOString() });
    const created = await d.store.transact(async () => {
      if (await d.store.machines.get(name)) return false;
      await d.store.batch([d.store.machines.put(name, m), d.store.event({ kind: 'MachineCreated', machine: name, message: 'created' })]);
      return true;
    });
    if (!created) return bad(c, 409, `machine ${name} exists`);
    d.orchestrator.kick();
    return c.json(m, 201);
  });
  api.get('/machines', async (c) => c.json({ items: await d.store.machines.all() }));
  api.get('/machines/:name', async (c) => {
    const m = await d.store.machines.get(c.req.param('name'));
    return m ? c.json(m) : bad(c, 404, `no machine ${c.req.param('name')}`);
  });
  api.delete('/machines/:name', async (c) => {
    const name = c.req.param('name');
    const found = await d.store.transact(async () => {
      const m = await d.store.machines.get(name);
      if (m) await d.store.batch([d.store.machines.put(m.name, { ...m, status: { ...m.status, phase: 'Deleting' } })]);
      return !!m;
    });
    if (!found) return bad(c, 404, `no machine ${name}`);
    d.orchestrator.kick();
    return c.json({ deleting: name }, 202);
  });
  api.get('/timeline', (c) => c.json({ items: d.timeline.latest() }));
  api.get('/timeline/:key', (c) => {
    const key = c.req.param('key');
    return c.json({ key, items: d.timeline.get(MacSchema.safeParse(key).data ?? key) });
  });
  // live updates for the dashboard: timeline entries and workflow events as they happen
  api.get('/stream', (c) =>
    streamSSE(c, async (stream) => {
      const send = (event: string) => (data: unknown) => void stream.writeSSE({ event, data: JSON.stringify(data) }).catch(() => undefined);
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
          wake = () => (clearTimeout(timer), r());
        });
      }
    }),
  );
  api.get('/backup', async (c) => {
    c.header('Content-Disposition', `attachment; filename="beskar7-backup-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.json"`);
    return c.json(await takeBackup(d.store));
  });
  api.post('/restore', bodyLimit({ maxSize: 256 * 1024 * 1024, onError: (c) => bad(c, 413, 'backup larger than 256 MiB') }), async (c) => {
    const body = await parseBody(c, BackupSchema);
    if (!body.ok) return body.res;
    try {
      const restored = await restoreBackup(d.store, body.data);
      d.orchestrator.kick();
      return c.json({ restored });
    } catch (e) {
      return bad(c, 400, (e as Error).message);
    }
  });
  api.get('/events', async (c) => {
    const q = EventsQuery.safeParse({ limit: c.req.query('limit') });
    if (!q.success) return bad(c, 400, formatZodError(q.error));
    return c.json({ items: await d.store.events.last(q.data.limit) });
  });
  return api;
}

/** OpenAPI 3.1 document; the schemas are the zod ones, converted, so they cannot drift. */
function openApi() {
  const schema = (s: z.ZodType) => z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' });
  const json = (s: z.ZodType) => ({ content: { 'application/json': { schema: schema(s) } } });
  return {
    openapi: '3.1.0',
    info: { title: 'Beskar7 API', version: '1.0' },
    components: { securitySchemes: { admin: { type: 'http', scheme: 'bearer' }, hostToken: { type: 'http', scheme: 'bearer' } } },
    security: [{ admin: [] }],
    paths: {
      '/api/v1/hosts': { get: { summary: 'List hosts' }, post: { summary: 'Enrol a host by its BMC', requestBody: json(HostCreateSchema) } },
      '/api/v1/hosts/{name}': { get: { summary: 'Get a host' }, delete: { summary: 'Delete a host not in use' } },
      '/api/v1/hosts/{name}/report': { get: { summary: 'Latest inspection report' } },
      '/api/v1/hosts/{name}/inspection': { post: { summary: 'Inspector posts its report', security: [{ hostToken: [] }], requestBody: json(InspectionReportSchema) } },
      '/api/v1/machines': { get: { summary: 'List machines' }, post: { summary: 'Create a machine (claims a host)', requestBody: json(MachineCreateSchema) } },
      '/api/v1/machines/{name}': { get: { summary: 'Get a machine' }, delete: { summary: 'Power off, release the host, delete' } },
      '/api/v1/events': { get: { summary: 'Recent events' } },
    },
  };
}
