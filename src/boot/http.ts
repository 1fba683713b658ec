import { readFileSync } from 'node:fs';
import { type Context, Hono, type MiddlewareHandler } from 'hono';
import { z } from 'zod';
import type { BootInstruction } from '../domain/boot.js';
import { MacSchema } from '../domain/mac.js';
import { resolveInside } from '../domain/safe-path.js';
import { formatZodError } from '../domain/zod-error.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { HttpBases } from '../net/bases.js';
import { bearer, IPXE } from '../net/respond.js';
import { StoreUnavailable } from '../store/backend.js';
import { sameSecret } from '../store/secrets.js';
import { StoreConflict } from '../store/store.js';
import { render, selectInstruction, type Templates, templateFor } from './ipxe.js';
import { type RateLimit, rateLimit, remoteAddress } from './rate-limit.js';
import { sendFile } from './send-file.js';
import type { BootTimeline } from './timeline.js';

export interface HttpDeps {
  /** scripts name the base of the family the client came by */
  bases: HttpBases;
  assetsDir: string;
  tftpRoot: string;
  templates: Templates;
  log: Logger;
  metrics: Metrics;
  /** per-MAC instruction from the store (orchestrator) */
  storedInstruction: (mac: string) => Promise<BootInstruction | undefined>;
  configuredInstruction: (mac: string) => BootInstruction | undefined;
  unknownHosts: BootInstruction;
  health: () => Promise<Record<string, unknown>>;
  /** per source address on the unauthenticated routes */
  rateLimit: RateLimit;
  /** the boot nonce URL of a host's live, unclaimed inspection attempt */
  /** the nonce URL of a host's live attempt; 'claimed' when someone at another address claimed it */
  claimUrl: (host: string, from: string | undefined) => Promise<string | 'claimed' | undefined>;
  /** the inspector's report intake, mounted at /api/v1 */
  intake?: Hono;
  /** the management plane (admin API, dashboard, metrics) when it shares this listener */
  management?: Hono;
  timeline?: BootTimeline;
}

export interface ManagementDeps {
  /** the admin API, mounted at /api/v1 */
  admin: Hono;
  metrics: Metrics;
  health: () => Promise<Record<string, unknown>>;
  log: Logger;
  /** /metrics needs a token as the API does (it tells who is inspecting when): either will do */
  adminToken: string;
  readOnlyToken: string;
  /** the Kubernetes-shaped resource API, at the root as kubectl expects it */
  kube: Hono;
}

/** The management plane: admin API, dashboard and metrics; on the boot listener or one of its own (api.port). */
export function createManagementApp(d: ManagementDeps): Hono {
  const app = new Hono();
  // the dashboard: one static page that talks to /api/v1 and follows /api/v1/stream
  // beside this module in src/ and in dist/ alike (make build copies it)
  const dashboard = readFileSync(new URL('../admin/ui/dashboard.html', import.meta.url), 'utf8');
  app.get('/', (c) => c.redirect('/ui'));
  app.get('/ui', (c) => c.html(dashboard));
  app.get('/healthz', async (c) => c.json({ status: 'ok', ...(await d.health()) }));
  app.get('/metrics', async (c) => {
    const t = bearer(c);
    if (!sameSecret(t, d.adminToken) && !sameSecret(t, d.readOnlyToken)) return c.json({ error: 'unauthorized' }, 401);
    return c.text(await d.metrics.registry.metrics(), 200, { 'Content-Type': d.metrics.registry.contentType });
  });
  app.route('/', d.kube);
  app.route('/api/v1', d.admin);
  app.onError(internalError(d.log));
  return app;
}

/** A boot nonce is a credential until it is claimed: it never reaches a log line (contract §4.1). */
const loggable = (p: string) => p.replace(/^(\/api\/v1\/boot\/[^/]+\/[^/]+\/).+$/, '$1<nonce>');

/** The reason goes to the log; a caller learns nothing from it. */
const internalError = (log: Logger) => (err: Error, c: Context) => {
  if (err instanceof StoreUnavailable || err instanceof StoreConflict) {
    // etcd away (or writers racing past every retry): the boot plane goes on from memory, writes wait
    log.warn({ err: err.message, path: loggable(c.req.path) }, 'store write refused');
    c.header('Retry-After', '2');
    return c.json({ error: `store unavailable: ${err.message}` }, 503);
  }
  log.error({ err: err.message, path: loggable(c.req.path) }, 'http handler failed');
  return c.text('internal error\n', 500);
};

/** The inspector's unauthenticated or token-gated routes: one rate-limit budget per address. */
const INTAKE_ROUTES = [
  '/api/v1/boot/*',
  '/api/v1/inspection/*',
  '/api/v1/bootstrap/*',
  '/api/v1/provisioned/*',
  '/api/v1/provision-failed/*',
  '/api/v1/progress/*',
  '/api/v1/cleaned/*',
];

/** What iPXE reports about itself in the entry script's query string (all but mac optional). */
const HostQuery = z.object({
  mac: MacSchema,
  uuid: z.string().max(64).optional(),
  arch: z.string().max(32).optional(),
  platform: z.string().max(32).optional(),
  serial: z.string().max(128).optional(),
  manufacturer: z.string().max(128).optional(),
  product: z.string().max(128).optional(),
});

/** Files under `root`: symlink-safe, strong ETag with If-None-Match, Range and streaming (send-file.ts). */
function files(root: string, prefix: string, log: Logger, timeline?: BootTimeline): MiddlewareHandler {
  return async (c) => {
    let rel: string;
    try {
      rel = decodeURIComponent(c.req.path.slice(prefix.length));
    } catch {
      return c.text('bad path encoding\n', 400);
    }
    const target = resolveInside(root, rel);
    const from = remoteAddress(c);
    if (!target.ok) {
      if (from)
        timeline?.add(timeline.keyForIp(from), 'http', `GET ${c.req.path}: ${target.status} ${target.reason}`, false);
      return c.text(`${target.reason}\n`, target.status);
    }
    const etag = `"${target.size.toString(16)}-${Math.floor(target.mtimeMs).toString(16)}"`;
    const inm = c.req.header('if-none-match');
    if (inm?.split(',').some((t) => t.trim().replace(/^W\//, '') === etag || t.trim() === '*'))
      return c.body(null, 304, { ETag: etag });
    // one line per download: the boot timeline needs when a kernel or initrd was fetched, how long it took, and by whom
    log.info({ path: c.req.path, bytes: target.size, range: c.req.header('range'), from }, 'asset served');
    const started = Date.now();
    return sendFile(c, target, { ETag: etag }, (e) => {
      const detail = { stage: 'download' as const, ms: Date.now() - started, bytes: target.size };
      const key = from && timeline?.keyForIp(from);
      // a client that leaves mid-download is no error of ours
      if (e) log.debug({ path: c.req.path, from, err: e.message }, 'download ended early');
      if (key) timeline?.add(key, 'http', `GET ${c.req.path}${e ? ': ended early' : ''}`, !e, detail);
    });
  };
}

export function createHttpApp(d: HttpDeps): Hono {
  const app = new Hono();

  app.get('/healthz', async (c) => c.json({ status: 'ok', ...(await d.health()) }));

  // one budget per address across every route a machine on the segment can call without a credential
  const limited = rateLimit(d.rateLimit, () => d.metrics.httpLimited.inc());
  for (const p of ['/boot.ipxe', '/boot/*', '/beskar7-inspector/*', ...INTAKE_ROUTES]) app.use(p, limited);
  app.get('/boot.ipxe', (c) => {
    d.metrics.scripts.inc({ script: 'entry' });
    const from = remoteAddress(c);
    if (from) d.timeline?.add(d.timeline.keyForIp(from), 'http', 'entry script /boot.ipxe', true, { stage: 'script' });
    return c.body(render(d.templates.get('entry') as string, { httpBase: d.bases.for(from) }), 200, IPXE);
  });

  app.get('/boot/host.ipxe', async (c) => {
    const q = HostQuery.safeParse(c.req.query());
    if (!q.success)
      return c.text(`#!ipxe\necho Beskar7: bad host query: ${formatZodError(q.error)}\nexit 1\n`, 400, IPXE);
    const { mac, uuid, serial } = q.data;
    const { instruction, known } = selectInstruction(
      await d.storedInstruction(mac),
      d.configuredInstruction(mac),
      d.unknownHosts,
    );
    // an inspecting host's script carries its boot nonce, to its claimant only once claimed; once the attempt
    // is gone the host is sent away
    const claim =
      instruction.script === 'inspect' && instruction.host
        ? await d.claimUrl(instruction.host, remoteAddress(c))
        : undefined;
    const claimURL = claim === 'claimed' ? undefined : claim;
    const tpl =
      instruction.script !== 'inspect'
        ? templateFor(instruction)
        : claim === 'claimed'
          ? 'inspect-claimed'
          : claimURL
            ? templateFor(instruction)
            : 'exit';
    const script = tpl ?? 'http404';
    d.metrics.scripts.inc({ script });
    d.log.info({ mac, uuid, serial, script, known, arch: q.data.arch, platform: q.data.platform }, 'ipxe script');
    // the local-disk script is where a provisioned host leaves the network boot for its disk
    d.timeline?.add(mac, 'http', `host script: ${script}${known ? '' : ' (not enrolled)'}`, true, {
      stage: script === 'local-disk' ? 'disk' : 'script',
    });
    if (tpl === undefined) return c.text('local disk\n', 404);
    const body = render(d.templates.get(tpl) as string, {
      ...q.data,
      httpBase: d.bases.for(remoteAddress(c)),
      kernelURL: instruction.kernelURL,
      initrdURL: instruction.initrdURL,
      cmdline: instruction.cmdline,
      claimURL,
    });
    return c.body(body, 200, IPXE);
  });

  // the bundled inspector as a chainable script (the v1.0 inspectionImageURL form): its kernel parameters
  // come from the claim's answer, in the iPXE setting beskar7-params
  app.get('/beskar7-inspector/boot', (c) =>
    c.body(render(d.templates.get('inspector') as string, { httpBase: d.bases.for(remoteAddress(c)) }), 200, IPXE),
  );

  if (d.intake) app.route('/api/v1', d.intake);
  if (d.management) app.route('/', d.management);
  app.get('/ipxe/*', files(d.tftpRoot, '/ipxe/', d.log, d.timeline));
  app.on(['GET', 'HEAD'], '/assets/*', files(d.assetsDir, '/assets/', d.log, d.timeline));

  app.onError(internalError(d.log));
  return app;
}
