import type { Context, Next } from 'hono';
import { Hono } from 'hono';
import { bearer, bodyUpTo } from '../../net/respond.js';
import { sameSecret } from '../../store/secrets.js';
import type { WriteMode } from '../commands.js';
import type { StreamSlots } from '../stream-slots.js';
import {
  apiVersionOf,
  GROUP,
  KIND_INFO,
  KIND_NAMES,
  type KindInfo,
  type KindName,
  type Obj,
  VERSION,
} from './kinds.js';
import { openApiRoot, openApiV2, openApiV2Protobuf, openApiV3 } from './openapi.js';
import { applyPatch, PATCH_TYPES } from './patch.js';
import type { Kind, Written } from './resources.js';
import { fieldSelector, labelSelector } from './selectors.js';
import { failure, invalid, refused, type StatusBody, subject } from './status.js';
import type { Seen, WatchHub } from './watch.js';

export interface KubeApiDeps {
  /** every kind over the store (kinds()), shared with the admin API's file apply */
  resources: Record<KindName, Kind>;
  hub: WatchHub;
  adminToken: string;
  /** reads and watches only: dashboards and monitoring */
  readOnlyToken: string;
  maxBodyBytes: number;
  /** live streams open at once (watches), shared with the dashboard's event stream */
  streams: StreamSlots;
  /** this appliance's version, for /version */
  version: string;
}

/** What a request names: a kind, and perhaps a namespace, a name and a subresource. */
interface Target {
  kind: KindName;
  namespace?: string;
  name?: string;
  sub?: string;
}

const CORE: KindName[] = ['Namespace', 'Secret', 'Event'];
const GROUP_KINDS: KindName[] = KIND_NAMES.filter((k) => !CORE.includes(k));
const GROUP_PREFIX = `/apis/${GROUP}/${VERSION}/`;

const decoded = (s: string): string | undefined => {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
};

function target(path: string): Target | undefined {
  const core = path.startsWith('/api/v1/');
  if (!core && !path.startsWith(GROUP_PREFIX)) return undefined;
  const raw = path
    .slice(core ? '/api/v1/'.length : GROUP_PREFIX.length)
    .split('/')
    .filter(Boolean);
  const segs = raw.map(decoded);
  // a malformed escape is nobody's resource: the routes after this one answer it
  if (!segs.every((x): x is string => x !== undefined)) return undefined;
  const among = core ? CORE : GROUP_KINDS;
  const byPlural = (p: string | undefined) => among.find((k) => KIND_INFO[k].plural === p);
  if (segs[0] === 'namespaces' && segs.length >= 3) {
    const kind = byPlural(segs[2]);
    if (!kind || !KIND_INFO[kind].namespaced || segs.length > 5) return undefined;
    return {
      kind,
      namespace: segs[1] as string,
      ...(segs[3] ? { name: segs[3] } : {}),
      ...(segs[4] ? { sub: segs[4] } : {}),
    };
  }
  const kind = byPlural(segs[0]);
  if (!kind || segs.length > 3) return undefined;
  if (KIND_INFO[kind].namespaced && segs.length > 1) return undefined;
  return { kind, ...(segs[1] ? { name: segs[1] } : {}), ...(segs[2] ? { sub: segs[2] } : {}) };
}

const send = (c: Context, s: StatusBody) => c.json(s, s.code as 401);
const truthy = (v: string | undefined) => v === 'true' || v === '1';

/** Kubernetes' discovery, OpenAPI and resource routes, for kubectl and any client-go program. */
export function createKubeApi(d: KubeApiDeps): Hono {
  const app = new Hono();
  const all = d.resources;

  const authorised = (c: Context): StatusBody | undefined => {
    const t = bearer(c);
    if (sameSecret(t, d.adminToken)) return undefined;
    if (sameSecret(t, d.readOnlyToken)) {
      if (c.req.method === 'GET' || c.req.method === 'HEAD') return undefined;
      return failure('forbidden', 'the read-only token reads and watches; writes need the admin token');
    }
    return failure('unauthorized', 'Unauthorized');
  };
  const guard = async (c: Context, next: Next) => {
    const no = authorised(c);
    return no ? send(c, no) : next();
  };

  app.get('/version', guard, (c) =>
    c.json({
      major: '1',
      minor: '32',
      gitVersion: `v1.32.0+beskar7-${d.version}`,
      platform: `${process.platform}/${process.arch}`,
    }),
  );
  app.get('/api', guard, (c) =>
    c.json({
      kind: 'APIVersions',
      versions: ['v1'],
      serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: new URL(c.req.url).host }],
    }),
  );
  app.get('/api/v1', guard, (c) => c.json(resourceList('v1', CORE)));
  const group = {
    name: GROUP,
    versions: [{ groupVersion: `${GROUP}/${VERSION}`, version: VERSION }],
    preferredVersion: { groupVersion: `${GROUP}/${VERSION}`, version: VERSION },
  };
  app.get('/apis', guard, (c) => c.json({ kind: 'APIGroupList', apiVersion: 'v1', groups: [group] }));
  app.get(`/apis/${GROUP}`, guard, (c) => c.json({ kind: 'APIGroup', apiVersion: 'v1', ...group }));
  app.get(`/apis/${GROUP}/${VERSION}`, guard, (c) => c.json(resourceList(`${GROUP}/${VERSION}`, GROUP_KINDS)));
  app.get('/openapi/v2', guard, (c) =>
    /protobuf/.test(c.req.header('accept') ?? '')
      ? c.body(new Uint8Array(openApiV2Protobuf()), 200, {
          'Content-Type': 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf',
        })
      : c.json(openApiV2()),
  );
  app.get('/openapi/v3', guard, (c) => c.json(openApiRoot()));
  app.get('/openapi/v3/*', guard, (c) => {
    const doc = openApiV3(c.req.path.slice('/openapi/v3/'.length));
    return doc ? c.json(doc) : send(c, failure('notFound', `no OpenAPI document at ${c.req.path}`));
  });

  app.all('*', async (c, next) => {
    const t = target(c.req.path);
    if (!t) return next();
    const no = authorised(c);
    if (no) return send(c, no);
    const k = all[t.kind];
    if (t.sub && t.sub !== 'status')
      return send(c, failure('notFound', `no subresource ${t.sub}`, subject(k.info, t.name)));
    if (t.sub === 'status' && !k.info.status)
      return send(c, failure('notFound', `${k.info.kind} has no status`, subject(k.info, t.name)));
    if (c.req.query('dryRun'))
      return send(
        c,
        failure('invalid', 'dryRun is not supported by this server: nothing was written', subject(k.info, t.name)),
      );
    const m = c.req.method;
    if (m === 'GET' && truthy(c.req.query('watch'))) return watch(c, k, t);
    if (m === 'GET') return t.name ? getOne(c, k, t) : list(c, k, t);
    if (t.sub === 'status') {
      return send(
        c,
        failure(
          'methodNotAllowed',
          `the status of a ${k.info.kind} is the appliance's to set`,
          subject(k.info, t.name),
        ),
      );
    }
    if (!k.write)
      return send(c, failure('methodNotAllowed', `${k.info.plural} are read-only here`, subject(k.info, t.name)));
    if (m === 'POST' && !t.name) return create(c, k, t);
    if (m === 'PUT' && t.name) return replace(c, k, t);
    if (m === 'PATCH' && t.name) return patch(c, k, t);
    if (m === 'DELETE' && t.name) return remove(c, k, t);
    return send(c, failure('methodNotAllowed', `${m} is not supported here`, subject(k.info, t.name)));
  });

  /** An object with the watch position in its resourceVersion. */
  const versioned = (k: Kind, key: string, value: unknown, o: Obj, seq?: number): Obj => ({
    ...o,
    metadata: {
      ...o.metadata,
      resourceVersion: seq === undefined ? d.hub.versionOf(k.collection, key, value) : d.hub.versionAt(seq, value),
    },
  });
  const objects = async (k: Kind, key: string, value: unknown, seq?: number) =>
    (await k.view(key, value)).map((o) => versioned(k, key, value, o, seq));

  async function getOne(c: Context, k: Kind, t: Target) {
    const found = await k.find(t.namespace ?? '', t.name as string);
    const o = found && (await objects(k, found[0], found[1]))[0];
    if (!o) return send(c, failure('notFound', '', subject(k.info, t.name)));
    return c.json(wantsTable(c) ? table(k.info, [o], c, d.hub.position()) : o);
  }

  async function list(c: Context, k: Kind, t: Target) {
    const keep = selection(c, k, t);
    if (typeof keep !== 'function') return send(c, keep);
    const limit = Number(c.req.query('limit') ?? 0);
    const after = c.req.query('continue') ? Buffer.from(c.req.query('continue') as string, 'base64url').toString() : '';
    const items: Obj[] = [];
    let more = '';
    // the position before the records are read: a change made while the list is built is in it or after it, and a
    // watch from here delivers it (taken after, a change between read and position was in neither)
    const position = d.hub.position();
    for (const [key, value] of await k.entries()) {
      for (const o of await objects(k, key, value)) {
        if (!keep(o)) continue;
        const at = `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
        if (after && at <= after) continue;
        if (limit > 0 && items.length >= limit) {
          more = `${items.at(-1)?.metadata.namespace ?? ''}/${items.at(-1)?.metadata.name}`;
          break;
        }
        items.push(o);
      }
      if (more) break;
    }
    if (!after) items.sort((a, b) => sortKey(a).localeCompare(sortKey(b)));
    const meta = {
      resourceVersion: position,
      ...(more ? { continue: Buffer.from(more).toString('base64url') } : {}),
    };
    if (wantsTable(c)) return c.json({ ...table(k.info, items, c, meta.resourceVersion), metadata: meta });
    return c.json({ kind: `${k.info.kind}List`, apiVersion: apiVersionOf(k.info), metadata: meta, items });
  }

  /** The objects a request selects, or why its selectors do not parse. */
  const selection = (c: Context, k: Kind, t: Target): ((o: Obj) => boolean) | StatusBody => {
    try {
      return selector(c, k, t);
    } catch (e) {
      return failure('invalid', (e as Error).message, subject(k.info));
    }
  };
  const selector = (c: Context, k: Kind, t: Target) => {
    const labels = labelSelector(c.req.query('labelSelector'));
    const fieldsAllowed = [
      'metadata.name',
      'metadata.namespace',
      ...(k.info.kind === 'Event'
        ? [
            'involvedObject.kind',
            'involvedObject.name',
            'involvedObject.namespace',
            'involvedObject.uid',
            'involvedObject.apiVersion',
            'reason',
            'type',
          ]
        : []),
      ...(k.info.kind === 'Secret' ? ['type'] : []),
    ];
    const fields = fieldSelector(c.req.query('fieldSelector'), fieldsAllowed);
    return (o: Obj) =>
      (t.namespace === undefined || o.metadata.namespace === t.namespace) &&
      (t.name === undefined || o.metadata.name === t.name) &&
      labels(o.metadata.labels ?? {}) &&
      fields(o);
  };

  /** The body as text, at most api.maxBodyBytes (the connection closes after a 413, so the rest is not read). */
  async function text(c: Context, k: Kind, t: Target): Promise<string | StatusBody> {
    const b = await bodyUpTo(c, d.maxBodyBytes);
    if (b) return b.toString('utf8');
    c.header('Connection', 'close');
    return failure('tooLarge', `request body larger than ${d.maxBodyBytes} bytes`, subject(k.info, t.name));
  }

  /** The body as an object of this kind, its namespace and name those of the URL. */
  async function body(c: Context, k: Kind, t: Target): Promise<Obj | StatusBody> {
    if (!/json/.test(c.req.header('content-type') ?? ''))
      return failure('unsupportedMedia', 'Content-Type must be application/json', subject(k.info, t.name));
    const raw = await text(c, k, t);
    if (typeof raw !== 'string') return raw;
    let o: unknown;
    try {
      o = JSON.parse(raw);
    } catch (e) {
      return failure('badRequest', `the body is not JSON: ${(e as Error).message}`, subject(k.info, t.name));
    }
    return fit(o, k, t);
  }

  function fit(o: unknown, k: Kind, t: Target): Obj | StatusBody {
    if (!o || typeof o !== 'object' || Array.isArray(o))
      return failure('invalid', 'the body is not an object', subject(k.info, t.name));
    const obj = o as Obj;
    const meta = (obj.metadata && typeof obj.metadata === 'object' ? obj.metadata : {}) as Obj;
    if (t.namespace !== undefined) {
      if (meta.namespace !== undefined && meta.namespace !== t.namespace)
        return failure(
          'invalid',
          'the namespace of the provided object does not match the namespace sent on the request',
          subject(k.info, t.name),
        );
      meta.namespace = t.namespace;
    }
    if (t.name !== undefined && meta.name !== undefined && meta.name !== t.name)
      return failure(
        'invalid',
        `the name of the object (${meta.name}) does not match the name on the URL (${t.name})`,
        subject(k.info, t.name),
      );
    if (t.name !== undefined) meta.name = t.name;
    return { ...obj, metadata: meta };
  }

  const isStatus = (x: Obj | StatusBody): x is StatusBody => x.kind === 'Status' && 'code' in x;

  /** A write's answer: the object as stored now, or the Status that says why not. */
  async function written(c: Context, k: Kind, t: Target, name: string, w: Written) {
    if (!w.ok) {
      const s = subject(k.info, name);
      return send(c, 'zod' in w ? invalid(w.zod, s) : refused(w.code, w.error, s));
    }
    const found = await k.find(t.namespace ?? '', name);
    const o = found && (await objects(k, found[0], found[1]))[0];
    if (!o) return send(c, failure('notFound', '', subject(k.info, name)));
    return c.json(o, w.value === 'created' ? 201 : 200);
  }

  async function create(c: Context, k: Kind, t: Target) {
    const o = await body(c, k, t);
    if (isStatus(o)) return send(c, o);
    const name = String(o.metadata?.name ?? '');
    return written(c, k, t, name, await (k.write as NonNullable<Kind['write']>)(o, 'create'));
  }

  async function replace(c: Context, k: Kind, t: Target) {
    const o = await body(c, k, t);
    if (isStatus(o)) return send(c, o);
    return written(c, k, t, t.name as string, await (k.write as NonNullable<Kind['write']>)(o, 'update'));
  }

  async function patch(c: Context, k: Kind, t: Target) {
    const type = PATCH_TYPES[(c.req.header('content-type') ?? '').split(';')[0]?.trim() ?? ''];
    const s = subject(k.info, t.name);
    if (!type) return send(c, failure('unsupportedMedia', `unsupported patch type ${c.req.header('content-type')}`, s));
    const raw = await text(c, k, t);
    if (typeof raw !== 'string') return send(c, raw);
    const found = await k.find(t.namespace ?? '', t.name as string);
    const current = found && (await objects(k, found[0], found[1]))[0];
    if (!current && type !== 'apply') return send(c, failure('notFound', '', s));
    const p = applyPatch(current ?? {}, type, raw);
    if (!p.ok) return send(c, failure('invalid', `the patch does not apply: ${p.error}`, s));
    const o = fit(p.value, k, t);
    if (isStatus(o)) return send(c, o);
    const mode: WriteMode = current ? 'update' : 'create';
    return written(c, k, t, t.name as string, await (k.write as NonNullable<Kind['write']>)(o, mode));
  }

  async function remove(c: Context, k: Kind, t: Target) {
    const found = await k.find(t.namespace ?? '', t.name as string);
    const s = subject(k.info, t.name);
    if (!found) return send(c, failure('notFound', '', s));
    const [before] = await objects(k, found[0], found[1]);
    const r = await (k.remove as NonNullable<Kind['remove']>)(t.namespace ?? '', t.name as string);
    if (!r.ok) return send(c, refused(r.code, r.error, s));
    if (r.value === 'pending') {
      const now = await k.find(t.namespace ?? '', t.name as string);
      const o = now && (await objects(k, now[0], now[1]))[0];
      if (o) return c.json(o, 200);
    }
    return c.json({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Success',
      details: { name: t.name, group: k.info.group, kind: k.info.plural, uid: before?.metadata.uid },
    });
  }

  /**
   * A watch: the changes after the given resourceVersion (or every object as ADDED, then the changes), one JSON
   * line each, as long as the client reads and at most timeoutSeconds.
   */
  async function watch(c: Context, k: Kind, t: Target) {
    const keep = selection(c, k, t);
    if (typeof keep !== 'function') return send(c, keep);
    const slot = d.streams.take(sameSecret(bearer(c), d.adminToken) ? 'admin' : 'read-only');
    if ('refused' in slot) {
      c.header('Retry-After', '5');
      return send(c, failure('unavailable', slot.refused));
    }
    const rv = c.req.query('resourceVersion') ?? '';
    const asTable = wantsTable(c);
    const bookmarks = truthy(c.req.query('allowWatchBookmarks'));
    const timeout = Math.min(Number(c.req.query('timeoutSeconds') ?? 0) || 1800, 3600) * 1000;
    const enc = new TextEncoder();
    const backlogLimit = 1000;
    let queue = Promise.resolve();
    let backlog = 0;
    let closed = false;
    let stop = () => {};
    const stream = new ReadableStream<Uint8Array>(
      {
        start(ctl) {
          const end = () => {
            if (closed) return;
            closed = true;
            stop();
            try {
              ctl.close();
            } catch {}
          };
          // a reader this far behind is dropped, not buffered for: it lists and watches again. Its connection
          // goes, and the unread bytes with it (the node adapter would print an errored stream on stderr)
          const drop = () => {
            if (closed) return;
            closed = true;
            stop();
            const conn = (c.env as { outgoing?: { destroy(): void } } | undefined)?.outgoing;
            if (conn) conn.destroy();
            else ctl.error(new Error('watch reader too slow'));
          };
          const line = (type: string, object: Obj) => {
            if (closed) return;
            ctl.enqueue(
              enc.encode(
                `${JSON.stringify({ type, object: asTable && type !== 'ERROR' && type !== 'BOOKMARK' ? table(k.info, [object], c, object.metadata.resourceVersion) : object })}\n`,
              ),
            );
            if ((ctl.desiredSize ?? 0) < -MAX_UNREAD_BYTES) drop();
          };
          const later = (fn: () => Promise<void>) => {
            if (++backlog > backlogLimit) return drop();
            queue = queue
              .then(fn)
              .catch(() => undefined)
              .finally(() => backlog--);
          };
          // other collections' changes are passed over at once: a storm's events and leases would fill the backlog
          const emit = (s: Seen) =>
            s.collection === k.collection &&
            later(async () => {
              const value = s.value ?? s.prev;
              if (value === undefined) return;
              for (const o of await objects(k, s.key, value, s.seq)) {
                if (!keep(o)) continue;
                line(s.value === undefined ? 'DELETED' : s.prev === undefined ? 'ADDED' : 'MODIFIED', o);
              }
            });
          const onSeen = (s: Seen) => emit(s);
          const timer = setTimeout(end, timeout);
          const tick = bookmarks
            ? setInterval(
                () =>
                  later(async () =>
                    line('BOOKMARK', {
                      kind: k.info.kind,
                      apiVersion: apiVersionOf(k.info),
                      metadata: { resourceVersion: d.hub.position() },
                    }),
                  ),
                10_000,
              )
            : undefined;
          stop = () => {
            clearTimeout(timer);
            if (tick) clearInterval(tick);
            d.hub.off('seen', onSeen);
            slot.release();
          };
          if (rv && rv !== '0') {
            const past = d.hub.since(rv);
            if (past === 'gone') {
              line('ERROR', failure('gone', `too old resource version: ${rv}`));
              return end();
            }
            for (const s of past) emit(s);
          } else {
            later(async () => {
              for (const [key, value] of await k.entries())
                for (const o of await objects(k, key, value)) if (keep(o)) line('ADDED', o);
            });
          }
          d.hub.on('seen', onSeen);
        },
        cancel() {
          closed = true;
          stop();
        },
      },
      new ByteLengthQueuingStrategy({ highWaterMark: 64 * 1024 }),
    );
    return new Response(stream, {
      status: 200,
      headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache' },
    });
  }

  return app;
}

/** Bytes a watch may have written and its reader not yet taken, past the socket's own buffers. */
const MAX_UNREAD_BYTES = 8 * 1024 * 1024;

const sortKey = (o: Obj) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;

const wantsTable = (c: Context) => /as=Table/.test(c.req.header('accept') ?? '');

/** The objects as a meta.k8s.io Table: what `kubectl get` prints, its wide columns at priority 1. */
function table(i: KindInfo, items: Obj[], c: Context, resourceVersion: string) {
  const full = c.req.query('includeObject') === 'Object';
  const none = c.req.query('includeObject') === 'None';
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion },
    columnDefinitions: i.columns.map(({ name, type, format, description, priority }) => ({
      name,
      type: type === 'date' ? 'string' : type,
      format: format ?? '',
      description,
      priority,
    })),
    rows: items.map((o) => ({
      cells: i.columns.map((col) => col.cell(o) ?? null),
      ...(none
        ? {}
        : { object: full ? o : { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata } }),
    })),
  };
}

function resourceList(groupVersion: string, names: KindName[]) {
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion,
    resources: names.flatMap((n) => {
      const i: KindInfo = KIND_INFO[n];
      const main = {
        name: i.plural,
        singularName: i.singular,
        namespaced: i.namespaced,
        kind: i.kind,
        verbs: i.verbs,
        ...(i.shortNames.length ? { shortNames: i.shortNames } : {}),
        ...(i.categories.length ? { categories: i.categories } : {}),
      };
      const status = {
        name: `${i.plural}/status`,
        singularName: '',
        namespaced: i.namespaced,
        kind: i.kind,
        verbs: ['get'],
      };
      return i.status ? [main, status] : [main];
    }),
  };
}
