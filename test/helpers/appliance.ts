import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import type { Test } from 'tap';
import { Appliance } from '../../src/appliance.js';
import { parseConfig } from '../../src/config.js';
import { repoRoot } from '../../src/paths.js';
import { memoryLogger } from './log.js';
import { tempDir } from './tmp.js';

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

export const ADMIN = 'test-admin-token-0123456789';
export const READ_ONLY = 'test-read-only-token-0123456789';

/** The appliance in this process with HTTP on loopback only (no DHCP/TFTP sockets). */
export async function inProcess(t: Test, over: Record<string, unknown> = {}, dataDir = path.join(tempDir(t), 'data')) {
  const port = await freePort();
  const cfg = parseConfig({
    dataDir,
    assetsDir: path.join(repoRoot, 'assets'),
    advertiseAddress: '127.0.0.1',
    dhcp: { enabled: false },
    tftp: { enabled: false },
    api: { adminToken: ADMIN, readOnlyToken: READ_ONLY },
    redfish: { timeoutSeconds: 2, retries: 3, backoffBaseSeconds: 0.02, backoffMaxSeconds: 0.2 },
    ...over,
    // the simulated machines have no disks to erase: the tests of cleaning turn it on
    orchestrator: {
      cleanDisks: false,
      ...((over.orchestrator as object | undefined) ?? {
        tickSeconds: 0.1,
        retryBaseSeconds: 0,
        powerDeadlineSeconds: 5,
      }),
    },
    // tests send many requests from one address; the rate limit has tests of its own
    http: {
      address: '127.0.0.1',
      port,
      rateLimit: { perSecond: 1e6, burst: 1e6, global: { perSecond: 1e6, burst: 1e6 } },
      ...(over.http as object),
    },
  });
  const { log, lines } = memoryLogger();
  const app = new Appliance(cfg, log);
  await app.start();
  let stopped = false;
  const stop = async () => {
    if (!stopped) await app.stop();
    stopped = true;
  };
  t.teardown(stop);
  const base = `http://127.0.0.1:${cfg.http.port}`;
  const request = async (
    method: string,
    url: string,
    body?: unknown,
    token: string | null = ADMIN,
    headers: Record<string, string> = {},
  ) => {
    const res = await fetch(url, {
      method,
      headers: {
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: res.status, json, text, headers: res.headers };
  };
  /** the admin API under /api/v1 */
  const api = (method: string, p: string, body?: unknown, token: string | null = ADMIN) =>
    request(method, `${base}/api/v1${p}`, body, token);
  /** the resource API, by its full path (/apis/..., /api/v1/namespaces/...) */
  const kube = (method: string, p: string, body?: unknown, token: string | null = ADMIN, headers = {}) =>
    request(method, `${base}${p}`, body, token, headers);
  return { app, base, api, kube, lines, stop, dataDir };
}

/** Reconcile passes the appliance has ended so far. */
export async function reconcilePasses(base: string): Promise<number> {
  return Number(/^beskar7_reconcile_passes_total (\d+)/m.exec(await metricsOf(base))?.[1] ?? 0);
}

/**
 * Waits until `n` reconcile passes have ended after the moment `from` (epoch ms): what the workflow does by a
 * deadline has then been decided, a positive signal instead of a sleep.
 */
export async function passesAfter(base: string, from: number, n: number): Promise<void> {
  let start: number | undefined;
  await until(`${n} reconcile passes after ${new Date(from).toISOString()}`, async () => {
    if (Date.now() < from) return undefined;
    const now = await reconcilePasses(base);
    start ??= now;
    return now >= start + n ? true : undefined;
  });
}

/** The appliance's Prometheus metrics, read with the admin token. */
export const metricsOf = async (base: string): Promise<string> =>
  (await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${ADMIN}` } })).text();

/** Polls until `check` returns a value (not undefined), or fails after `ms`. */
export async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A fake BMC's machine console once the demo target has run on it (BESKAR7-DEMO-MARKER), as text. */
export const targetConsole = (consoleLog: string, ms: number): Promise<string> =>
  until(
    'the target runs',
    async () => {
      const c = readFileSync(consoleLog, 'latin1');
      return /BESKAR7-DEMO-MARKER/.test(c) ? c : undefined;
    },
    ms,
  );
