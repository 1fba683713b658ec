import { type Context, Hono } from 'hono';
import { type SSEStreamingApi, streamSSE } from 'hono/streaming';
import { z } from 'zod';
import type { BootTimeline } from '../boot/timeline.js';
import { MacSchema } from '../domain/mac.js';
import { DEFAULT_NAMESPACE, HostActionSchema } from '../domain/resources.js';
import { formatZodError } from '../domain/zod-error.js';
import type { Metrics } from '../metrics.js';
import { answer, bad, bearer, bodyCap, bodyText, capBody, parseBody } from '../net/respond.js';
import { BackupSchema, takeBackup } from '../store/backup.js';
import { sameSecret } from '../store/secrets.js';
import type { Store } from '../store/store.js';
import type { AdminCommands } from './commands.js';
import type { FileItem } from './kube/apply-file.js';
import { openApi, type Route } from './openapi.js';
import type { StreamSlots } from './stream-slots.js';

export interface ApiDeps {
  /** read side: handlers read records directly; every change goes through `commands` */
  store: Store;
  commands: AdminCommands;
  adminToken: string;
  /** may GET, as on the resource API */
  readOnlyToken: string;
  maxBodyBytes: number;
  metrics: Metrics;
  timeline: BootTimeline;
  /** the addresses our DHCP leased to these MACs now */
  leasedAddresses: (macs: string[]) => string[];
  /** live streams open at once, shared with the resource API's watches */
  streams: StreamSlots;
  /** the routes of the other apps under /api/v1 (the inspector contract), for the OpenAPI document */
  otherRoutes?: () => readonly Route[];
  /** a manifest file applied as kubectl apply -f does (the resource API's kinds) */
  applyFile: (text: string) => Promise<FileItem[]>;
}

const EventsQuery = z.object({ limit: z.coerce.number().int().min(1).max(1_000_000).default(200) });

/** The admin API under /api/v1: every route needs the admin token in the Authorization header. */
export function createAdminApi(d: ApiDeps): Hono {
  const api = new Hono();
  const prefixed = (r: Route) => ({ method: r.method, path: `/api/v1${r.path}` });
  api.use('*', async (c, next) => {
    // a header only: a token in a URL ends up in logs and browser history
    const t = bearer(c);
    const reads = c.req.method === 'GET' && sameSecret(t, d.readOnlyToken);
    if (!reads && !sameSecret(t, d.adminToken)) return bad(c, 401, 'unauthorized');
    await next();
  });
  api.get('/openapi.json', (c) => c.json(openApi([...api.routes.map(prefixed), ...(d.otherRoutes?.() ?? [])])));
  // what the dashboard offers: the read-only token gets no action buttons
  api.get('/whoami', (c) => c.json({ role: sameSecret(bearer(c), d.adminToken) ? 'admin' : 'read-only' }));
  api.route('/', hostRoutes(d));
  api.post('/apply', bodyCap(d), async (c) => {
    let items: FileItem[];
    try {
      items = await d.applyFile(bodyText(c));
    } catch (e) {
      return bad(c, 400, (e as Error).message);
    }
    return c.json({ items }, items.some((i) => i.status) ? 422 : 200);
  });
  api.route('/', storeRoutes(d));
  return api;
}

/** What kubectl cannot do: act through a host's BMC. Hosts and machines themselves are the resource API's. */
function hostRoutes(d: ApiDeps): Hono {
  const api = new Hono();
  const act = async (c: Context, namespace: string) => {
    const body = await parseBody(c, HostActionSchema);
    if (!body.ok) return body.res;
    return answer(c, await d.commands.hostAction(namespace, c.req.param('name') ?? '', body.data), (r) => c.json(r));
  };
  api.post('/namespaces/:namespace/hosts/:name/actions', bodyCap(d), (c) => act(c, c.req.param('namespace')));
  api.post('/hosts/:name/actions', bodyCap(d), (c) => act(c, DEFAULT_NAMESPACE));
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
  api.get('/stream', (c) => {
    const slot = d.streams.take(sameSecret(bearer(c), d.adminToken) ? 'admin' : 'read-only');
    if ('refused' in slot) {
      c.header('Retry-After', '5');
      return bad(c, 503, slot.refused);
    }
    return streamSSE(c, (stream) => liveStream(d, stream).finally(slot.release));
  });
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
  // the workflow's events as stored, newest last (the resource API serves them as core v1 Events too)
  api.get('/journal', async (c) => {
    const q = EventsQuery.safeParse({ limit: c.req.query('limit') });
    if (!q.success) return bad(c, 400, formatZodError(q.error));
    return c.json({ items: await d.store.events.last(q.data.limit) });
  });
  return api;
}

/** Writes a stream may have waiting; a reader that falls this far behind is dropped, not buffered for. */
const MAX_BACKLOG = 1000;

/** Timeline entries and workflow events as they happen, for the dashboard. */
async function liveStream(d: ApiDeps, stream: SSEStreamingApi): Promise<void> {
  let backlog = 0;
  const send = (event: string) => (data: unknown) => {
    if (backlog >= MAX_BACKLOG) return stream.abort();
    backlog++;
    void stream
      .writeSSE({ event, data: JSON.stringify(data) })
      .catch(() => undefined)
      .finally(() => backlog--);
  };
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
