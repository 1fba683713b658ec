import { z } from 'zod';
import { ContractReportSchema } from '../domain/inspection.js';
import { HostActionSchema } from '../domain/resources.js';
import { CleanedSchema, FailedBody, ProgressSchema } from '../inspector/routes.js';
import { BackupSchema } from '../store/backup.js';

/** A route as hono's route table lists it. */
export interface Route {
  method: string;
  path: string;
}

interface RouteDoc {
  summary: string;
  body?: z.ZodType;
  /** who may call it: the admin token (default), the attempt's inspector token, or anyone on the segment */
  auth?: 'admin' | 'hostToken' | 'none';
}

const CONTRACT = (n: string, s: string, body?: z.ZodType): RouteDoc => ({
  summary: `Inspector contract ${n}: ${s}`,
  auth: 'hostToken',
  ...(body ? { body } : {}),
});

/** What each route under /api/v1 does, keyed as hono lists it; a route without an entry fails a test. */
export const API_DOCS: Record<string, RouteDoc> = {
  'GET /api/v1/openapi.json': { summary: 'This document' },
  'POST /api/v1/namespaces/:namespace/hosts/:name/actions': {
    summary: "Reset, power on or off, or PXE once through the host's BMC: stored, carried out by the leader",
    body: HostActionSchema,
  },
  'POST /api/v1/hosts/:name/actions': {
    summary: 'The same, for a host of the default namespace',
    body: HostActionSchema,
  },
  'GET /api/v1/whoami': { summary: "The caller's token: admin, or read-only (reads and watches only)" },
  'POST /api/v1/apply': {
    summary:
      'A multi-document YAML manifest file, applied as kubectl apply -f does: each object created, configured or unchanged, or its Status (causes by field); 422 when any failed',
  },
  'GET /api/v1/timeline': { summary: 'Recent network boots, by MAC' },
  'GET /api/v1/timeline/:key': { summary: "One MAC's (or host's) boot timeline" },
  'GET /api/v1/stream': { summary: 'Timeline entries and workflow events as server-sent events' },
  'GET /api/v1/backup': { summary: 'The whole store as JSON (BMC passwords stay sealed)' },
  'POST /api/v1/restore': { summary: 'Replace the store with a backup', body: BackupSchema },
  'GET /api/v1/journal': {
    summary: 'Recent workflow events as stored (the resource API serves them as core v1 Events at /api/v1/events)',
  },
  'GET /api/v1/boot/:ns/:host/:nonce': {
    summary: "Inspector contract §4.1: claim the boot nonce once; the inspector's iPXE script",
    auth: 'none',
  },
  'POST /api/v1/inspection/:ns/:host': CONTRACT(
    '§4.2',
    'the hardware report (202 {status, approved})',
    ContractReportSchema,
  ),
  'GET /api/v1/bootstrap/:ns/:host': CONTRACT(
    '§4.3',
    'the user-data once the report passed validation and the data exists; 404 until then',
  ),
  'POST /api/v1/provisioned/:ns/:host': CONTRACT('§4.4', 'target verified and written or loaded; reboot or kexec next'),
  'POST /api/v1/provision-failed/:ns/:host': CONTRACT('§4.5', 'deployment failed', FailedBody),
  'POST /api/v1/progress/:ns/:host': CONTRACT('(extension)', "the inspector's steps", ProgressSchema),
  'POST /api/v1/cleaned/:ns/:host': CONTRACT(
    '(extension)',
    "the cleaner's outcome: disks erased or why not",
    CleanedSchema,
  ),
};

/** The routes that answer requests: middleware (hono lists it as ALL) is no route. */
export const endpoints = (routes: readonly Route[]): Route[] => {
  const seen = new Set<string>();
  return routes.filter((r) => {
    const key = `${r.method} ${r.path}`;
    if (r.method === 'ALL' || seen.has(key)) return false;
    seen.add(key);
    return true;
  });
};

/** OpenAPI 3.1, generated from the route table and the zod schemas of the bodies: it cannot drift from either. */
export function openApi(routes: readonly Route[]) {
  const schema = (s: z.ZodType) => z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' });
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of endpoints(routes)) {
    const doc = API_DOCS[`${r.method} ${r.path}`];
    const path = r.path.replace(/:(\w+)/g, '{$1}');
    const params = [...r.path.matchAll(/:(\w+)/g)].map(([, name]) => ({
      name,
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    const auth = doc?.auth ?? 'admin';
    paths[path] ??= {};
    (paths[path] as Record<string, unknown>)[r.method.toLowerCase()] = {
      summary: doc?.summary ?? 'undocumented',
      ...(params.length ? { parameters: params } : {}),
      ...(auth === 'admin' ? {} : { security: auth === 'none' ? [] : [{ hostToken: [] }] }),
      ...(doc?.body ? { requestBody: { content: { 'application/json': { schema: schema(doc.body) } } } } : {}),
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Beskar7 API', version: '1.0' },
    components: {
      securitySchemes: { admin: { type: 'http', scheme: 'bearer' }, hostToken: { type: 'http', scheme: 'bearer' } },
    },
    security: [{ admin: [] }],
    paths,
  };
}
