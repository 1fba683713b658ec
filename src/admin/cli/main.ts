#!/usr/bin/env node
// beskar7: the command line over the appliance's API. Tables for people, --json for scripts.
import { closeSync, existsSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { type Config, loadConfig } from '../../config.js';
import { KIND_INFO, KIND_NAMES, type KindInfo, kindNamed } from '../kube/kinds.js';
import { manifestItems } from '../kube/manifest-file.js';

const USAGE = `usage: beskar7 [--url URL] [--token TOKEN] [--json] COMMAND
  apply -f FILE|-                                   Beskar7 v1.0 manifests (YAML or JSON, several documents): each
                                                    created or updated; one that fails is reported, the rest applied
  get KIND [NAME] [-n NS] [-o wide|yaml|json]       KIND as kubectl names it: physicalhosts/ph, beskar7machines/b7m,
                                                    beskar7clusters, beskar7machinetemplates, secrets, namespaces, events
  describe KIND NAME [-n NS]                        spec, status, conditions and recent events
  delete KIND NAME [-n NS]
  kubeconfig                                        a kubeconfig for kubectl: this appliance's HTTPS URL, CA and token
  hosts                                             hosts and their state
  hosts reset NAME [TYPE] | power-on NAME | power-off NAME | pxe-once NAME
                                                    through the host's BMC (TYPE: a Redfish ResetType, ForceRestart)
  machines                                          machines and their phase
  report HOST                                       the host's latest inspection report
  events [--limit N]                                workflow events, oldest first
  timeline [MAC]                                    boot timeline: every MAC, or one MAC's steps
  backup FILE | restore FILE                        the whole store as JSON (BMC passwords stay encrypted)
  migrate --from leveldb --to etcd [--force]        the inventory, sealing key and admin token into the config's
                                                    store.etcd: from the running appliance (its API), else its LevelDB
URL and TOKEN: --url/--token, else $BESKAR7_URL/$BESKAR7_TOKEN, else from the appliance's config (--config,
$BESKAR7_CONFIG or /etc/beskar7/beskar7.yaml): its HTTP address and port, its api.adminToken or <dataDir>/admin-token.`;

class CliError extends Error {}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    config: { type: 'string' },
    json: { type: 'boolean', default: false },
    limit: { type: 'string' },
    filename: { type: 'string', short: 'f' },
    output: { type: 'string', short: 'o' },
    namespace: { type: 'string', short: 'n' },
    help: { type: 'boolean', short: 'h' },
    from: { type: 'string' },
    to: { type: 'string' },
    force: { type: 'boolean', default: false },
  },
});

let config: Config | undefined;

/** The appliance's own config, as the service reads it: where it listens and where its token is. Read once. */
function applianceConfig(): Config {
  config ??= readApplianceConfig();
  return config;
}

function readApplianceConfig(): Config {
  const installed = '/etc/beskar7/beskar7.yaml';
  const file = values.config ?? process.env.BESKAR7_CONFIG ?? (existsSync(installed) ? installed : undefined);
  try {
    // the CLI's own variables are not the appliance's settings
    const { BESKAR7_URL: _u, BESKAR7_TOKEN: _t, BESKAR7_CONFIG: _c, ...env } = process.env;
    return loadConfig({ ...(file ? { file } : {}), env });
  } catch (e) {
    throw new CliError((e as Error).message);
  }
}

function baseUrl(): string {
  const given = values.url ?? process.env.BESKAR7_URL;
  if (given) return given.replace(/\/$/, '');
  const { http, api } = applianceConfig();
  // the admin API is on the management listener when the config gives it one
  const [scheme, address, port] =
    api.port !== undefined ? [api.tls ? 'https' : 'http', api.address, api.port] : ['http', http.address, http.port];
  const host = address === '0.0.0.0' || address === '::' ? '127.0.0.1' : address;
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function token(): string {
  const t = values.token ?? process.env.BESKAR7_TOKEN;
  if (t) return t;
  const cfg = applianceConfig();
  if (cfg.api.adminToken) return cfg.api.adminToken;
  const file = path.join(cfg.dataDir, 'admin-token');
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new CliError(
      `no admin token: cannot read ${file} (${(e as NodeJS.ErrnoException).code}); pass --token or set BESKAR7_TOKEN`,
    );
  }
}

/** One request to the appliance, by full path: its status and body (a body that is not JSON as its message). */
async function request(method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
  let res: Response;
  try {
    res = await fetch(`${baseUrl()}${p}`, {
      method,
      headers: {
        Authorization: `Bearer ${token()}`,
        ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (e) {
    throw new CliError(`cannot reach ${baseUrl()}: ${(e as Error).cause ?? (e as Error).message}`);
  }
  const text = await res.text();
  let json: any = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { message: text };
  }
  return { ok: res.ok, status: res.status, json, text, message: `${json.message ?? text} (HTTP ${res.status})` };
}

/** One request to the admin API under /api/v1; a refusal is thrown with its reason. */
async function call(method: string, p: string, body?: unknown): Promise<any> {
  const r = await request(method, `/api/v1${p}`, body);
  if (!r.ok) throw new CliError(`${method} ${p}: HTTP ${r.status}: ${r.json.error ?? r.text}`);
  return r.json;
}

/** Terminal control characters from the API (a host name or message a booting machine sent) never reach the tty. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters removed
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;
const out = (s: string): void => void process.stdout.write(`${s.replace(CONTROL, '')}\n`);
/** A table cell is one line: a newline in a value (a BMC's model string) must not forge a row. */
const cell = (v: unknown): string => String(v ?? '-').replace(/[\r\n\t\v\f]+/g, ' ');

/** Aligned columns; missing values show as "-". */
function table(rows: Record<string, unknown>[], cols: [string, (r: any) => unknown][]): void {
  const cells = [cols.map(([h]) => h), ...rows.map((r) => cols.map(([, f]) => cell(f(r))))];
  const width = cols.map((_, i) => Math.max(...cells.map((c) => c[i]?.length ?? 0)));
  for (const c of cells)
    out(
      c
        .map((v, i) => v.padEnd(width[i] ?? 0))
        .join('  ')
        .trimEnd(),
    );
}

function show(data: unknown, human: () => void): void {
  if (values.json) out(JSON.stringify(data, null, 2));
  else human();
}

const _pretty = (r: unknown) => out(JSON.stringify(r, null, 2));
const _created = (r: { name: string }, kind: string) => show(r, () => out(`${kind} ${r.name} created`));

const readJson = (file: string | undefined): unknown => {
  if (!file) throw new CliError('a JSON file is needed');
  return JSON.parse(readFileSync(file, 'utf8'));
};

type Handler = (sub: string | undefined, arg: string | undefined) => Promise<void>;

const ACTIONS: Record<string, string> = {
  reset: 'reset',
  'power-on': 'powerOn',
  'power-off': 'powerOff',
  'pxe-once': 'pxeOnce',
  clean: 'clean',
};

const hostsCommand: Handler = async (sub, arg) => {
  const action = sub ? ACTIONS[sub] : undefined;
  if (action) {
    const resetType = positionals[3];
    const ns = encodeURIComponent(values.namespace ?? 'default');
    const r = await call('POST', `/namespaces/${ns}/hosts/${encodeURIComponent(arg ?? '')}/actions`, {
      action,
      ...(action === 'reset' && resetType ? { resetType } : {}),
    });
    const said = r.pending
      ? `${r.host}: ${r.action} stored; not carried out yet (no appliance leads, or the BMC is slow): see beskar7 events`
      : `${r.host}: ${r.action} done${r.powerState ? `, power ${r.powerState}` : ''}`;
    return show(r, () => out(said));
  }
  if (sub) throw new CliError(`hosts ${sub}: one of ${Object.keys(ACTIONS).join(', ')}; or get/apply/delete ph NAME`);
  const { items } = await kube('GET', resourcePath('physicalhosts', undefined, values.namespace).path);
  const model = (h: any) =>
    [h.status.hardwareDetails?.manufacturer, h.status.hardwareDetails?.model].filter(Boolean).join(' ') || undefined;
  show(items, () =>
    table(items, [
      ['NAME', (h) => h.metadata.name],
      ['STATE', (h) => h.status.state],
      ['POWER', (h) => h.status.observedPowerState],
      ['PHASE', (h) => h.status.inspectionPhase],
      ['MACHINE', (h) => h.spec.consumerRef?.name],
      ['BMC', (h) => h.spec.redfishConnection.address],
      ['MODEL', model],
      ['ERROR', (h) => h.status.errorMessage],
    ]),
  );
};

const machinesCommand: Handler = async (sub) => {
  if (sub) throw new CliError(`machines ${sub}: use get/apply/delete b7m NAME`);
  const { items } = await kube('GET', resourcePath('beskar7machines', undefined, values.namespace).path);
  show(items, () =>
    table(items, [
      ['NAME', (m) => m.metadata.name],
      ['PHASE', (m) => m.status.phase],
      ['HOST', (m) => m.status.hostRef?.name],
      ['ATTEMPTS', (m) => m.status.attempts],
      ['REASON', (m) => m.status.failureReason],
      ['MESSAGE', (m) => m.status.failureMessage],
    ]),
  );
};

const reportCommand: Handler = async (host) => {
  const h = await kube('GET', resourcePath('physicalhosts', host, values.namespace).path);
  const x = h.status.inspectionReport;
  if (!x) throw new CliError(`no report for ${host}`);
  show(x, () => {
    out(`${host}: ${x.manufacturer} ${x.model} (serial ${x.serialNumber}), ${x.bootMode}, received ${x.timestamp}`);
    out(`cpu: ${x.cpus.count} sockets, ${x.cpus.cores} cores, ${x.cpus.threads} threads, ${x.cpus.model}`);
    out(`memory: ${x.memory.totalGB} GiB`);
    table(x.disks, [
      ['DISK', (d) => d.device],
      ['GiB', (d) => d.sizeGB],
      ['TYPE', (d) => d.type],
      ['MODEL', (d) => d.model],
      ['SERIAL', (d) => d.serial],
    ]);
    table(x.nics, [
      ['NIC', (n) => n.interface],
      ['MAC', (n) => n.macAddress],
      ['MBPS', (n) => n.speedMbps],
      ['DRIVER', (n) => n.driver],
    ]);
  });
};

const eventsCommand: Handler = async () => {
  const { items } = await call('GET', `/journal?limit=${values.limit ?? 50}`);
  show(items, () =>
    table(items, [
      ['TIME', (e) => e.at],
      ['SEVERITY', (e) => e.severity],
      ['KIND', (e) => e.kind],
      ['HOST', (e) => e.host],
      ['MACHINE', (e) => e.machine],
      ['MESSAGE', (e) => e.message],
    ]),
  );
};

const timelineCommand: Handler = async (mac) => {
  const r = await call('GET', mac ? `/timeline/${mac}` : '/timeline');
  const macCol: [string, (e: any) => unknown][] = mac ? [] : [['MAC', (e) => e.key]];
  show(r.items, () =>
    table(r.items, [
      ['TIME', (e) => e.at],
      ...macCol,
      ['SOURCE', (e) => e.source],
      ['OK', (e) => (e.ok ? 'ok' : 'FAIL')],
      ['WHAT', (e) => e.what],
    ]),
  );
};

const counts = (c: Record<string, number>) =>
  Object.entries(c)
    .map(([k, n]) => `${n} ${k}`)
    .join(', ');

const backupCommand: Handler = async (file) => {
  if (!file) throw new CliError('backup needs a file name');
  const b = await call('GET', '/backup');
  writeFileSync(file, JSON.stringify(b));
  const n = Object.fromEntries(
    Object.entries(b.collections as Record<string, unknown[]>).map(([k, v]) => [k, v.length]),
  );
  show(n, () => out(`backup written to ${file}: ${counts(n)}`));
};

const restoreCommand: Handler = async (file) => {
  const r = await call('POST', '/restore', readJson(file));
  show(r.restored, () => out(`restored: ${counts(r.restored)}`));
};

const migrateCommand: Handler = async () => {
  if (values.from !== 'leveldb' || values.to !== 'etcd')
    throw new CliError('migrate goes --from leveldb --to etcd (set store.etcd in the config first)');
  // a running appliance holds its LevelDB open: its own backup is the consistent copy
  const live = await call('GET', '/backup').catch((e: Error) => {
    if (!/cannot reach/.test(e.message)) throw e;
    return undefined;
  });
  // loaded here only: the etcd client (gRPC) would slow every other command's start
  const { migrateToEtcd } = await import('../../store/migrate.js');
  const moved = await migrateToEtcd(applianceConfig(), live, values.force ?? false).catch((e: Error) => {
    throw new CliError(`migrate: ${e.message}`);
  });
  show(moved, () =>
    out(
      `migrated ${live ? 'from the running appliance' : 'from its LevelDB'}: ${counts(moved)}; now set store.backend: etcd and restart it`,
    ),
  );
};

/** Manifests are small: a bigger file is a mistake, or an attack on whoever runs apply. */
const MAX_MANIFEST_BYTES = 4 << 20;

function readManifests(file: string): string {
  const fd = file === '-' ? 0 : openSync(file, 'r');
  try {
    const buf = Buffer.alloc(MAX_MANIFEST_BYTES + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > MAX_MANIFEST_BYTES) throw new CliError(`${file}: larger than ${MAX_MANIFEST_BYTES >> 20} MiB`);
    }
    return buf.subarray(0, n).toString('utf8');
  } finally {
    if (fd !== 0) closeSync(fd);
  }
}

/** The resource API's path of a kind, as the user names it (kubectl's names: plural, singular, short). */
function resourcePath(kind: string | undefined, name?: string, namespace = values.namespace ?? 'default') {
  const k = kind ? kindNamed(kind) : undefined;
  if (!k) {
    const names = KIND_NAMES.map((n) => KIND_INFO[n].plural).join(', ');
    throw new CliError(`unknown kind "${kind ?? ''}": one of ${names} (or their short names)`);
  }
  const i: KindInfo = KIND_INFO[k];
  const base = i.group ? `/apis/${i.group}/${i.version}` : '/api/v1';
  const scoped = i.namespaced
    ? `${base}/namespaces/${encodeURIComponent(namespace)}/${i.plural}`
    : `${base}/${i.plural}`;
  return { info: i, path: name ? `${scoped}/${encodeURIComponent(name)}` : scoped };
}

/** One request to the resource API; a refusal is thrown with the server's Status message. */
async function kube(method: string, p: string, body?: unknown, headers: Record<string, string> = {}): Promise<any> {
  const r = await request(method, p, body, headers);
  if (!r.ok) throw new CliError(r.message);
  return r.json;
}

/**
 * Every document of the file, each created or patched with what it sets (as `kubectl apply --server-side`
 * does); a document that fails is reported and the others are applied.
 */
const applyCommand: Handler = async () => {
  const file = values.filename;
  if (!file) throw new CliError('apply needs -f FILE (or -f - for standard input)');
  const text = readManifests(file);
  let items: { kind: string; doc: Record<string, any> }[];
  try {
    items = manifestItems(text);
  } catch (e) {
    throw new CliError(`${file}: ${(e as Error).message}`);
  }
  const results = [];
  let failed = 0;
  for (const it of items) {
    const name = String(it.doc?.metadata?.name ?? '');
    const label = `${it.kind.toLowerCase()}/${name}`;
    let result: string;
    try {
      const known = kindNamed(it.kind);
      if (!known || KIND_INFO[known].kind !== it.kind) throw new CliError(`no kind "${it.kind}" is served here`);
      const { path: p } = resourcePath(it.kind, name, it.doc?.metadata?.namespace);
      const before = await request('GET', p);
      if (before.status === 404) {
        await kube('POST', resourcePath(it.kind, undefined, it.doc?.metadata?.namespace).path, it.doc);
        result = 'created';
      } else {
        if (!before.ok) throw new CliError(before.message);
        const after = await kube('PATCH', p, it.doc, { 'Content-Type': 'application/apply-patch+yaml' });
        result = after.metadata?.resourceVersion === before.json.metadata?.resourceVersion ? 'unchanged' : 'configured';
      }
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      failed++;
      result = `failed: ${e.message}`;
      process.stderr.write(`beskar7: ${label}: ${e.message.replace(CONTROL, '')}\n`);
    }
    results.push({ kind: it.kind, name, result });
    if (!values.json && !result.startsWith('failed')) out(`${label} ${result}`);
  }
  if (values.json) out(JSON.stringify(results, null, 2));
  if (failed) process.exitCode = 1;
};

const TABLE = { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io, application/json' };

/** The server's printer columns (priority 1 only with -o wide), as kubectl prints them. */
function printTable(t: any, wide: boolean): void {
  const cols = (t.columnDefinitions as { name: string; priority: number }[])
    .map((c, i) => [c, i] as const)
    .filter(([c]) => wide || c.priority === 0);
  table(
    t.rows,
    cols.map(([c, i]) => [c.name.toUpperCase(), (r: any) => r.cells[i]]),
  );
}

const getCommand: Handler = async (kind, name) => {
  const o = values.output ?? (values.json ? 'json' : '');
  if (o && !['wide', 'yaml', 'json'].includes(o)) throw new CliError(`-o ${o}: one of wide, yaml, json`);
  const { path: p } = resourcePath(kind, name);
  if (o === 'json' || o === 'yaml') {
    const r = await kube('GET', p);
    return out(o === 'json' ? JSON.stringify(r, null, 2) : YAML.stringify(r).trimEnd());
  }
  printTable(await kube('GET', p, undefined, TABLE), o === 'wide');
};

const describeCommand: Handler = async (kind, name) => {
  if (!name) throw new CliError('describe needs KIND NAME');
  const { path: p, info } = resourcePath(kind, name);
  const r = await kube('GET', p);
  if (values.json) return out(JSON.stringify(r, null, 2));
  const { conditions, ...status } = r.status ?? {};
  out(
    YAML.stringify({
      Name: r.metadata.name,
      Namespace: r.metadata.namespace,
      Kind: r.kind,
      Labels: r.metadata.labels,
      Spec: r.spec,
      Status: status,
    }).trimEnd(),
  );
  if (conditions?.length) {
    out('Conditions:');
    table(conditions, [
      ['TYPE', (c) => c.type],
      ['STATUS', (c) => c.status],
      ['REASON', (c) => c.reason],
      ['SINCE', (c) => age(c.lastTransitionTime)],
      ['MESSAGE', (c) => c.message],
    ]);
  }
  const ns = encodeURIComponent(r.metadata.namespace ?? 'default');
  const selector = encodeURIComponent(`involvedObject.kind=${info.kind},involvedObject.name=${name}`);
  const events = (await kube('GET', `/api/v1/namespaces/${ns}/events?fieldSelector=${selector}`)).items.slice(-20);
  out('Events:');
  table(events, [
    ['AGE', (e) => age(e.lastTimestamp)],
    ['TYPE', (e) => e.type],
    ['REASON', (e) => e.reason],
    ['MESSAGE', (e) => e.message],
  ]);
};

const deleteCommand: Handler = async (kind, name) => {
  if (!name) throw new CliError('delete needs KIND NAME');
  const { path: p, info } = resourcePath(kind, name);
  const r = await kube('DELETE', p);
  const pending = r.kind === info.kind && r.metadata?.deletionTimestamp;
  out(`${info.singular}/${name} ${pending ? 'deleting (its host is powered off and released)' : 'deleted'}`);
};

/** A kubeconfig for this appliance: kubectl then works against it as against an API server. */
const kubeconfigCommand: Handler = async () => {
  const cfg = applianceConfig();
  const url = new URL(baseUrl());
  url.protocol = 'https:';
  const server = url.toString().replace(/\/$/, '');
  // the appliance's own CA, unless the operator gave the listener a certificate of theirs
  const caFile = path.join(cfg.dataDir, 'tls', 'ca.crt');
  const ca = !cfg.api.tls && existsSync(caFile) ? readFileSync(caFile).toString('base64') : undefined;
  const name = 'beskar7';
  out(
    YAML.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name, cluster: { server, ...(ca ? { 'certificate-authority-data': ca } : {}) } }],
      users: [{ name: `${name}-admin`, user: { token: token() } }],
      contexts: [{ name, context: { cluster: name, user: `${name}-admin`, namespace: 'default' } }],
      'current-context': name,
    }).trimEnd(),
  );
};

const age = (ts: string | undefined) => {
  const s = ts ? Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000)) : undefined;
  if (s === undefined) return '-';
  return s < 120
    ? `${s}s`
    : s < 7200
      ? `${Math.round(s / 60)}m`
      : s < 172800
        ? `${Math.round(s / 3600)}h`
        : `${Math.round(s / 86400)}d`;
};

const COMMANDS: Record<string, Handler> = {
  apply: applyCommand,
  get: getCommand,
  describe: describeCommand,
  delete: deleteCommand,
  kubeconfig: kubeconfigCommand,
  hosts: hostsCommand,
  machines: machinesCommand,
  report: reportCommand,
  events: eventsCommand,
  timeline: timelineCommand,
  backup: backupCommand,
  restore: restoreCommand,
  migrate: migrateCommand,
};

async function main(): Promise<void> {
  const [cmd, sub, arg] = positionals;
  if (values.help || !cmd) return out(USAGE);
  const run = COMMANDS[cmd];
  if (!run) throw new CliError(`unknown command "${cmd}"\n${USAGE}`);
  await run(sub, arg);
}

main().catch((e: unknown) => {
  const why = e instanceof CliError ? e.message : String((e as Error).stack ?? e);
  process.stderr.write(`beskar7: ${why.replace(CONTROL, '')}\n`);
  process.exit(e instanceof CliError ? 2 : 1);
});
