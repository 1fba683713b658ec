import { Agent, request } from 'undici';
import type { Logger } from '../log.js';
import { Limiter } from './limiter.js';
import { backoffMs, isRetryable } from './retry.js';

export interface BmcConnection {
  /** https://host[:port] */
  address: string;
  username: string;
  password: string;
  insecureSkipVerify?: boolean | undefined;
  /** PEM CA bundle for this BMC's certificate */
  caBundle?: string | undefined;
  systemId?: string | undefined;
}

export interface RedfishOptions {
  timeoutMs: number;
  retries: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** shared by every client: caps calls across all BMCs */
  global: Limiter;
  perBmc: number;
  /** called once per HTTP exchange (status 0: transport error) */
  observe?: (method: string, status: number, seconds: number) => void;
}

export class RedfishError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body = '',
  ) {
    super(message);
  }
}

export interface Reply {
  status: number;
  etag?: string | undefined;
  location?: string | undefined;
  retryAfter?: string | undefined;
  token?: string | undefined;
  body: Record<string, unknown>;
  text: string;
}

export interface SystemInfo {
  path: string;
  uuid?: string | undefined;
  manufacturer?: string | undefined;
  model?: string | undefined;
  serialNumber?: string | undefined;
  powerState?: string | undefined;
  bootMode?: string | undefined;
  overrideEnabled?: string | undefined;
  overrideTarget?: string | undefined;
  resetTarget: string;
  etag?: string | undefined;
}

type PowerAction = 'On' | 'ForceOff' | 'ForceRestart' | 'GracefulShutdown';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One BMC. Sessions with a Basic fallback (one cached session, re-login once on 401), a per-BMC and a global
 * concurrency cap, a timeout on every call, retries with backoff on 409/503/busy, task monitors for 202.
 * Passwords never reach a log line.
 */
export class RedfishClient {
  private readonly agent: Agent;
  private readonly limiter: Limiter;
  private session?: { token: string; location?: string | undefined };
  private useBasic = false;
  private systemPath?: string;

  constructor(
    readonly conn: BmcConnection,
    private readonly opts: RedfishOptions,
    private readonly log: Logger,
  ) {
    this.agent = new Agent({
      connect: { rejectUnauthorized: !conn.insecureSkipVerify, ...(conn.caBundle ? { ca: conn.caBundle } : {}) },
      connections: opts.perBmc,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
    });
    this.limiter = new Limiter(opts.perBmc);
  }

  private url(p: string): string {
    return p.startsWith('http') ? p : `${this.conn.address.replace(/\/$/, '')}${p}`;
  }

  private authHeader(): Record<string, string> {
    if (this.session) return { 'X-Auth-Token': this.session.token };
    return { Authorization: `Basic ${Buffer.from(`${this.conn.username}:${this.conn.password}`).toString('base64')}` };
  }

  /** One HTTP exchange, no retries. Status 0 means the transport failed. */
  private async once(method: string, p: string, body?: unknown, headers: Record<string, string> = {}, auth = true): Promise<Reply> {
    // this BMC's own slot first: a call queued behind a hung BMC must not sit on a global slot meanwhile
    return this.limiter.run(() =>
      this.opts.global.run(async () => {
        const started = performance.now();
        const done = (r: Reply): Reply => {
          this.opts.observe?.(method, r.status, (performance.now() - started) / 1000);
          return r;
        };
        try {
          const res = await request(this.url(p), {
            method: method as 'GET',
            dispatcher: this.agent,
            headers: {
              Accept: 'application/json',
              'OData-Version': '4.0',
              ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
              ...(auth ? this.authHeader() : {}),
              ...headers,
            },
            ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
            signal: AbortSignal.timeout(this.opts.timeoutMs),
          });
          const text = await res.body.text();
          let parsed: Record<string, unknown> = {};
          try {
            parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
          } catch {
            // some BMCs answer errors with HTML
          }
          const h = (k: string) => {
            const v = res.headers[k];
            return Array.isArray(v) ? v[0] : v;
          };
          return done({ status: res.statusCode, etag: h('etag'), location: h('location'), retryAfter: h('retry-after'), token: h('x-auth-token'), body: parsed, text });
        } catch (e) {
          return done({ status: 0, body: {}, text: (e as Error).message });
        }
      }),
    );
  }

  /** Opens the cached session; a failed answer that deserves a retry (503 session cap) is handed back. */
  private async login(): Promise<Reply | undefined> {
    if (this.session || this.useBasic) return undefined;
    const r = await this.once('POST', '/redfish/v1/SessionService/Sessions', { UserName: this.conn.username, Password: this.conn.password }, {}, false);
    if ((r.status === 201 || r.status === 200) && r.token) {
      this.session = { token: r.token, location: r.location };
      return undefined;
    }
    if (r.status === 0 || isRetryable(r.status, r.text, 'POST')) return r;
    // no session service, or it refused us: HTTP Basic on every call
    this.log.debug({ bmc: this.conn.address, status: r.status }, 'redfish: sessions unavailable, using Basic auth');
    this.useBasic = true;
    return undefined;
  }

  /** A call with login, one re-login on 401, and retries with backoff on what the BMC says is transient. */
  async call(method: string, p: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
    let relogged = false;
    for (let attempt = 0; ; attempt++) {
      const r = (await this.login()) ?? (await this.once(method, p, body, headers));
      if (r.status === 401 && !relogged) {
        relogged = true;
        this.session = undefined;
        this.useBasic = false;
        attempt--;
        continue;
      }
      if (r.status >= 200 && r.status < 300) return r;
      if (attempt < this.opts.retries && isRetryable(r.status, r.text, method)) {
        const wait = backoffMs(attempt, this.opts.backoffBaseMs, this.opts.backoffMaxMs, r.retryAfter);
        this.log.info({ bmc: this.conn.address, method, path: p, status: r.status, attempt: attempt + 1, waitMs: wait }, 'redfish: retrying');
        await sleep(wait);
        continue;
      }
      throw new RedfishError(`${method} ${p}: ${r.status === 0 ? `transport error: ${r.text}` : `HTTP ${r.status}`}${r.status ? `: ${summarize(r)}` : ''}`, r.status, r.text);
    }
  }

  /** The ComputerSystem to drive: the only member, or the configured systemId. Never assumes /Systems/1. */
  async system(): Promise<string> {
    if (this.systemPath) return this.systemPath;
    const r = await this.call('GET', '/redfish/v1/Systems');
    const members = ((r.body.Members as { '@odata.id': string }[] | undefined) ?? []).map((m) => m['@odata.id']);
    let chosen: string | undefined;
    if (this.conn.systemId) chosen = members.find((m) => m.replace(/\/$/, '').endsWith(`/${this.conn.systemId}`));
    else if (members.length === 1) chosen = members[0];
    if (!chosen) {
      throw new RedfishError(
        this.conn.systemId ? `system ${this.conn.systemId} not among ${members.join(', ')}` : `${members.length} systems (${members.join(', ')}): set redfish.systemId`,
        404,
      );
    }
    this.systemPath = chosen;
    return chosen;
  }

  async getSystem(): Promise<SystemInfo> {
    const p = await this.system();
    const r = await this.call('GET', p);
    const b = r.body as Record<string, any>;
    const reset = b.Actions?.['#ComputerSystem.Reset']?.target as string | undefined;
    return {
      path: p,
      uuid: b.UUID,
      manufacturer: b.Manufacturer,
      model: b.Model,
      serialNumber: b.SerialNumber,
      powerState: b.PowerState,
      bootMode: b.Boot?.BootSourceOverrideMode,
      overrideEnabled: b.Boot?.BootSourceOverrideEnabled,
      overrideTarget: b.Boot?.BootSourceOverrideTarget,
      resetTarget: reset ?? `${p.replace(/\/$/, '')}/Actions/ComputerSystem.Reset`,
      etag: r.etag ?? (b['@odata.etag'] as string | undefined),
    };
  }

  /** MAC addresses of the system's network interfaces. */
  async macs(): Promise<string[]> {
    const p = await this.system();
    const list = await this.call('GET', `${p.replace(/\/$/, '')}/EthernetInterfaces`);
    const out: string[] = [];
    for (const m of (list.body.Members as { '@odata.id': string }[] | undefined) ?? []) {
      const nic = await this.call('GET', m['@odata.id']);
      const mac = (nic.body.MACAddress ?? nic.body.PermanentMACAddress) as string | undefined;
      if (mac) out.push(mac.toLowerCase());
    }
    return out;
  }

  /**
   * One-time PXE boot: PATCH with If-Match when the BMC gives an ETag, Mode only when the BMC has one and it
   * differs, again without Mode when the BMC refuses it, then read back to verify.
   */
  async setOneTimePxe(mode?: 'UEFI' | 'Legacy'): Promise<void> {
    const sys = await this.getSystem();
    const boot: Record<string, string> = { BootSourceOverrideTarget: 'Pxe', BootSourceOverrideEnabled: 'Once' };
    if (mode && sys.bootMode !== undefined && sys.bootMode !== mode) boot.BootSourceOverrideMode = mode;
    const patch = async (b: Record<string, string>) => {
      const fresh = sys.etag ? sys : await this.getSystem();
      return this.call('PATCH', sys.path, { Boot: b }, fresh.etag ? { 'If-Match': fresh.etag } : {});
    };
    try {
      await this.withEtagRetry(() => patch(boot));
    } catch (e) {
      if (!(e instanceof RedfishError && e.status === 400 && boot.BootSourceOverrideMode)) throw e;
      delete boot.BootSourceOverrideMode;
      await this.withEtagRetry(() => patch(boot));
    }
    const after = await this.getSystem();
    // some BMCs show Continuous for a moment, or revert Once to Disabled only after the boot
    if (after.overrideTarget !== 'Pxe' || (after.overrideEnabled !== 'Once' && after.overrideEnabled !== 'Continuous')) {
      throw new RedfishError(`boot override did not stick: target ${after.overrideTarget}, enabled ${after.overrideEnabled}`, 500);
    }
  }

  /** 412/428 mean our ETag was stale or missing: read the system again once and repeat. */
  private async withEtagRetry(fn: () => Promise<Reply>): Promise<Reply> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof RedfishError && (e.status === 412 || e.status === 428)) {
        const sys = await this.getSystem();
        if (!sys.etag) throw e;
        return fn();
      }
      throw e;
    }
  }

  async clearBootOverride(): Promise<void> {
    const sys = await this.getSystem();
    await this.withEtagRetry(async () => {
      const fresh = await this.getSystem();
      return this.call('PATCH', sys.path, { Boot: { BootSourceOverrideEnabled: 'Disabled' } }, fresh.etag ? { 'If-Match': fresh.etag } : {});
    });
  }

  /** POST the Reset action from the system's Actions; 202 with a task monitor is followed to the end. */
  async reset(type: PowerAction): Promise<void> {
    const sys = await this.getSystem();
    const r = await this.call('POST', sys.resetTarget, { ResetType: type });
    if (r.status === 202 && r.location) await this.waitTask(r.location);
  }

  async waitTask(monitor: string, deadlineMs = 120_000): Promise<void> {
    const end = Date.now() + deadlineMs;
    while (Date.now() < end) {
      const r = await this.call('GET', monitor);
      const state = r.body.TaskState as string | undefined;
      if (r.status !== 202 && (!state || /Completed/i.test(state))) return;
      if (state && /Exception|Killed|Cancelled/i.test(state)) throw new RedfishError(`task ${monitor} ended ${state}`, 500, r.text);
      await sleep(backoffMs(0, 500, 5000, r.retryAfter, () => 1));
    }
    throw new RedfishError(`task ${monitor} not done within ${deadlineMs} ms`, 504);
  }

  /** PowerState lags the reset on real BMCs: poll until it matches or the deadline passes. */
  async waitPowerState(want: 'On' | 'Off', deadlineMs: number, pollMs = 1000): Promise<void> {
    const end = Date.now() + deadlineMs;
    for (;;) {
      const s = await this.getSystem();
      if (s.powerState === want) return;
      if (Date.now() >= end) throw new RedfishError(`PowerState still ${s.powerState} after ${deadlineMs} ms (wanted ${want})`, 504);
      await sleep(pollMs);
    }
  }

  /** Boot it now: On when off, ForceRestart when already on. Returns once the BMC took the reset; PowerState may lag (waitPowerState). */
  async powerOnOrRestart(): Promise<'On' | 'ForceRestart'> {
    const s = await this.getSystem();
    const action = s.powerState === 'On' ? 'ForceRestart' : 'On';
    await this.reset(action);
    return action;
  }

  async powerOff(deadlineMs: number): Promise<void> {
    const s = await this.getSystem();
    if (s.powerState === 'Off') return;
    await this.reset('ForceOff');
    await this.waitPowerState('Off', deadlineMs);
  }

  async close(): Promise<void> {
    if (this.agent.closed || this.agent.destroyed) return;
    const s = this.session;
    this.session = undefined;
    if (s?.location) await this.once('DELETE', s.location, undefined, { 'X-Auth-Token': s.token }, false).catch(() => undefined);
    await this.agent.close();
  }
}

/** A short reason from a Redfish error body (never echoes request headers or credentials). */
function summarize(r: Reply): string {
  const err = r.body.error as { message?: string; '@Message.ExtendedInfo'?: { MessageId?: string; Message?: string }[] } | undefined;
  const info = err?.['@Message.ExtendedInfo']?.[0];
  return (info?.Message ?? err?.message ?? info?.MessageId ?? r.text).slice(0, 300);
}
