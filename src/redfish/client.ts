import { setTimeout as wait } from 'node:timers/promises';
import { Client, type Dispatcher } from 'undici';
import type { ResetType } from '../domain/resources.js';
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
  /** asked right before each request leaves: false (an appliance that no longer leads) sends nothing */
  mayCall?: () => boolean;
}

export class RedfishError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body = '',
    /** retrying cannot help: an untrusted certificate, a foreign origin, a closed client */
    readonly permanent = false,
  ) {
    super(message);
  }
}

/** TLS verification failures: the BMC's certificate will not change by asking again. */
const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A BMC's answers are small JSON documents; a larger body is cut off, not buffered. */
const MAX_BODY = 1 << 20;

/** An answer as it came: status, headers by lower-case name (the first of a repeated one), body as text. */
interface Answer {
  status: number;
  headers: Map<string, string>;
  text: string;
}

/**
 * One request through `agent`, its body gathered as it arrives and cut off past MAX_BODY (EBODYTOOLARGE). Not
 * undici's request(), which wraps every answer in a Readable and an abort listener. Fails at `timeoutMs`, or when `live`'s entry is called (close), even while
 * the request still waits for a connection.
 */
function exchange(
  agent: Dispatcher,
  o: Dispatcher.DispatchOptions,
  timeoutMs: number,
  live: Set<(e: Error) => void>,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let abort: ((e: Error) => void) | undefined;
    let over = false;
    let status = 0;
    let size = 0;
    const parts: Buffer[] = [];
    const headers = new Map<string, string>();
    const settle = (e?: Error) => {
      if (over) return false;
      over = true;
      clearTimeout(timer);
      live.delete(cancel);
      if (e) reject(e);
      return true;
    };
    // ours to end: the request is aborted now, or as soon as it reaches a connection
    const cancel = (e: Error) => {
      if (settle(e)) abort?.(e);
    };
    const timer = setTimeout(() => cancel(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    live.add(cancel);
    agent.dispatch(o, {
      onConnect: (a) => {
        abort = a;
        if (over) a(new Error('cancelled'));
      },
      onHeaders: (s, raw) => {
        // 1xx are interim: the final answer's headers follow
        status = s;
        if (s >= 200)
          for (let i = 0; i + 1 < raw.length; i += 2) {
            const k = String(raw[i]).toLowerCase();
            if (!headers.has(k)) headers.set(k, String(raw[i + 1]));
          }
        return true;
      },
      onData: (chunk) => {
        size += chunk.length;
        if (size > MAX_BODY)
          cancel(Object.assign(new Error(`response body over ${MAX_BODY} bytes`), { code: 'EBODYTOOLARGE' }));
        else parts.push(chunk);
        return true;
      },
      onComplete: () => {
        if (settle()) resolve({ status, headers, text: Buffer.concat(parts, size).toString('utf8') });
      },
      onError: (e) => void settle(e),
    });
  });
}

/** A failed exchange as a Reply with status 0, its cause named, and whether a retry could help. */
function transportFailure(e: unknown, closed: boolean): Reply {
  if (closed) return { status: 0, body: {}, text: 'client closed', permanent: true };
  const err = e as Error & { code?: string; cause?: { code?: string; message?: string } };
  const code = err.cause?.code ?? err.code;
  if (code === 'EBODYTOOLARGE') return { status: 0, body: {}, text: err.message, permanent: true };
  if (code && TLS_CODES.has(code)) {
    const why = `TLS: ${code} (${err.cause?.message ?? err.message}); give redfish.caBundle, or insecureSkipVerify: true`;
    return { status: 0, body: {}, text: why, permanent: true };
  }
  return { status: 0, body: {}, text: code ? `${code}: ${err.message}` : err.message };
}

export interface Reply {
  status: number;
  etag?: string | undefined;
  location?: string | undefined;
  retryAfter?: string | undefined;
  token?: string | undefined;
  body: Record<string, unknown>;
  text: string;
  permanent?: boolean;
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
  /** the system's SecureBoot resource, where the BMC has one */
  secureBootPath?: string | undefined;
}

/** The parts of a ComputerSystem we read; every field may be missing on some BMC. */
interface SystemBody {
  UUID?: string;
  Manufacturer?: string;
  Model?: string;
  SerialNumber?: string;
  PowerState?: string;
  Boot?: { BootSourceOverrideMode?: string; BootSourceOverrideEnabled?: string; BootSourceOverrideTarget?: string };
  Actions?: { '#ComputerSystem.Reset'?: { target?: string } };
  SecureBoot?: { '@odata.id'?: string };
  '@odata.etag'?: string;
}

/**
 * Keep-alive connections to one BMC, one undici Client each, as many as calls run at once (the limiter caps
 * them). Not undici's Pool: it preallocates a 2048-slot queue (16 KiB) per BMC, and in a 3000-host storm those
 * queues were 49 of the heap's 117 MiB. A call takes an idle connection, so calls one after another share one.
 */
class Connections {
  private readonly idle: Client[] = [];
  private readonly all = new Set<Client>();
  private destroyed = false;

  constructor(
    private readonly origin: string,
    private readonly options: Client.Options,
  ) {}

  /** A call that failed (timeout, reset, cancelled mid-connect) leaves its connection behind: the next opens anew. */
  async with<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    const c = this.idle.pop() ?? this.open();
    try {
      const r = await fn(c);
      if (!this.destroyed) this.idle.push(c);
      return r;
    } catch (e) {
      this.all.delete(c);
      c.destroy().catch(() => undefined);
      throw e;
    }
  }

  private open(): Client {
    const c = new Client(this.origin, this.options);
    this.all.add(c);
    return c;
  }

  get closed(): boolean {
    return this.destroyed;
  }

  async destroy(): Promise<void> {
    this.destroyed = true;
    this.idle.length = 0;
    await Promise.all([...this.all].map((c) => c.destroy()));
    this.all.clear();
  }
}

/**
 * One BMC. Sessions with a Basic fallback (one cached session, re-login once on 401), a per-BMC and a global
 * concurrency cap, a timeout on every call, retries with backoff on 409/503/busy, task monitors for 202.
 * Passwords never reach a log line.
 */
export class RedfishClient {
  private readonly connections: Connections;
  private readonly limiter: Limiter;
  private session?: { token: string; location?: string | undefined };
  private useBasic = false;
  private systemPath?: string;
  /** aborted by close(): retry waits end at once */
  private readonly closing = new AbortController();
  /** how to end each call in flight (close()) */
  private readonly calls = new Set<(e: Error) => void>();
  private readonly base: URL;

  constructor(
    readonly conn: BmcConnection,
    private readonly opts: RedfishOptions,
    private readonly log: Logger,
  ) {
    this.base = new URL(conn.address);
    this.connections = new Connections(this.base.origin, {
      connect: { rejectUnauthorized: !conn.insecureSkipVerify, ...(conn.caBundle ? { ca: conn.caBundle } : {}) },
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
    });
    this.limiter = new Limiter(opts.perBmc);
  }

  /**
   * Only paths on the BMC's own origin are followed: an `@odata.id` or `Location` naming another origin would
   * otherwise receive our credentials or session token.
   */
  private url(p: string): URL {
    const u = new URL(p, this.base);
    if (u.origin !== this.base.origin)
      throw new RedfishError(`refusing to follow ${u.origin}: not the BMC's origin ${this.base.origin}`, 0, '', true);
    return u;
  }

  private authHeader(): Record<string, string> {
    if (this.session) return { 'X-Auth-Token': this.session.token };
    return { Authorization: `Basic ${Buffer.from(`${this.conn.username}:${this.conn.password}`).toString('base64')}` };
  }

  /** One HTTP exchange, no retries. Status 0 means the transport failed. */
  private async once(
    method: string,
    p: string,
    body?: unknown,
    headers: Record<string, string> = {},
    auth = true,
  ): Promise<Reply> {
    const url = this.url(p);
    // this BMC's own slot first: a call queued behind a hung BMC must not sit on a global slot meanwhile
    return this.limiter.run(() =>
      this.opts.global.run(async () => {
        if (this.closing.signal.aborted) return { status: 0, body: {}, text: 'client closed', permanent: true };
        if (this.opts.mayCall?.() === false)
          return { status: 0, body: {}, text: 'not the leader: no BMC call', permanent: true };
        const started = performance.now();
        const done = (r: Reply): Reply => {
          this.opts.observe?.(method, r.status, (performance.now() - started) / 1000);
          return r;
        };
        try {
          const res = await this.connections.with((c) =>
            exchange(
              c,
              {
                origin: url.origin,
                path: url.pathname + url.search,
                method: method as Dispatcher.HttpMethod,
                headers: {
                  Accept: 'application/json',
                  'OData-Version': '4.0',
                  ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
                  ...(auth ? this.authHeader() : {}),
                  ...headers,
                },
                ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
              },
              this.opts.timeoutMs,
              this.calls,
            ),
          );
          let parsed: Record<string, unknown> = {};
          try {
            parsed = res.text ? (JSON.parse(res.text) as Record<string, unknown>) : {};
          } catch {
            // some BMCs answer errors with HTML
          }
          return done({
            status: res.status,
            etag: res.headers.get('etag'),
            location: res.headers.get('location'),
            retryAfter: res.headers.get('retry-after'),
            token: res.headers.get('x-auth-token'),
            body: parsed,
            text: res.text,
          });
        } catch (e) {
          return done(transportFailure(e, this.closing.signal.aborted));
        }
      }),
    );
  }

  /** Opens the cached session; a failed answer that deserves a retry (503 session cap) is handed back. */
  private async login(): Promise<Reply | undefined> {
    if (this.session || this.useBasic) return undefined;
    const r = await this.once(
      'POST',
      '/redfish/v1/SessionService/Sessions',
      { UserName: this.conn.username, Password: this.conn.password },
      {},
      false,
    );
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

  /** A wait that close() ends with a permanent 'client closed' error. */
  private async sleep(ms: number): Promise<void> {
    try {
      await wait(ms, undefined, { signal: this.closing.signal });
    } catch {
      throw new RedfishError('client closed', 0, '', true);
    }
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
      if (!r.permanent && attempt < this.opts.retries && isRetryable(r.status, r.text, method)) {
        const wait = backoffMs(attempt, this.opts.backoffBaseMs, this.opts.backoffMaxMs, r.retryAfter);
        const fields = {
          bmc: this.conn.address,
          method,
          path: p,
          status: r.status,
          err: summarize(r),
          attempt: attempt + 1,
          waitMs: wait,
        };
        this.log.info(fields, 'redfish: retrying');
        await this.sleep(wait);
        continue;
      }
      const what = r.status === 0 ? `transport error: ${r.text}` : `HTTP ${r.status}: ${summarize(r)}`;
      throw new RedfishError(`${method} ${p}: ${what}`, r.status, r.text.slice(0, 1024), r.permanent);
    }
  }

  /** The ComputerSystem to drive: the only member, or the configured systemId. Never assumes /Systems/1. */
  async system(): Promise<string> {
    if (this.systemPath) return this.systemPath;
    const r = await this.call('GET', '/redfish/v1/Systems');
    const members = ((r.body.Members as { '@odata.id': string }[] | undefined) ?? []).map((m) => m['@odata.id']);
    const chosen = this.conn.systemId
      ? await this.memberNamed(members, this.conn.systemId)
      : members.length === 1
        ? members[0]
        : undefined;
    if (!chosen) {
      throw new RedfishError(
        this.conn.systemId
          ? `system ${this.conn.systemId} not among ${members.join(', ')}`
          : `${members.length} systems (${members.join(', ')}): set redfish.systemId`,
        404,
      );
    }
    this.systemPath = chosen;
    return chosen;
  }

  /** The member whose path ends in `id`, or whose Id or Name is `id` (BMCs that list systems by UUID). */
  private async memberNamed(members: string[], id: string): Promise<string | undefined> {
    const byPath = members.find((m) => m.replace(/\/$/, '').endsWith(`/${id}`));
    if (byPath) return byPath;
    for (const m of members) {
      const b = (await this.call('GET', m)).body;
      if (b.Id === id || b.Name === id) return m;
    }
    return undefined;
  }

  async getSystem(): Promise<SystemInfo> {
    const p = await this.system();
    const r = await this.call('GET', p);
    const b = r.body as SystemBody;
    const reset = b.Actions?.['#ComputerSystem.Reset']?.target;
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
      etag: r.etag ?? b['@odata.etag'],
      secureBootPath: b.SecureBoot?.['@odata.id'],
    };
  }

  /**
   * Whether the firmware enforces Secure Boot on this boot (SecureBootCurrentBoot), else whether it is enabled
   * for the next (SecureBootEnable); undefined when the BMC says neither.
   */
  async secureBoot(sys: SystemInfo): Promise<boolean | undefined> {
    if (!sys.secureBootPath) return undefined;
    const b = (await this.call('GET', sys.secureBootPath)).body as {
      SecureBootCurrentBoot?: string;
      SecureBootEnable?: boolean;
    };
    if (b.SecureBootCurrentBoot === 'Enabled' || b.SecureBootCurrentBoot === 'Disabled')
      return b.SecureBootCurrentBoot === 'Enabled';
    return typeof b.SecureBootEnable === 'boolean' ? b.SecureBootEnable : undefined;
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
   * differs, again without Mode when the BMC refuses it, then read back to verify. Returns the system as read
   * back (its power state spares powerOnOrRestart a read).
   */
  async setOneTimePxe(mode?: 'UEFI' | 'Legacy'): Promise<SystemInfo> {
    const sys = await this.getSystem();
    const boot: Record<string, string> = { BootSourceOverrideTarget: 'Pxe', BootSourceOverrideEnabled: 'Once' };
    if (mode && sys.bootMode !== undefined && sys.bootMode !== mode) boot.BootSourceOverrideMode = mode;
    try {
      await this.patchBoot(sys, boot);
    } catch (e) {
      if (!(e instanceof RedfishError && e.status === 400 && boot.BootSourceOverrideMode)) throw e;
      delete boot.BootSourceOverrideMode;
      await this.patchBoot(await this.getSystem(), boot);
    }
    const after = await this.getSystem();
    // some BMCs show Continuous for a moment, or revert Once to Disabled only after the boot
    if (
      after.overrideTarget !== 'Pxe' ||
      (after.overrideEnabled !== 'Once' && after.overrideEnabled !== 'Continuous')
    ) {
      throw new RedfishError(
        `boot override did not stick: target ${after.overrideTarget}, enabled ${after.overrideEnabled}`,
        500,
      );
    }
    return after;
  }

  /**
   * PATCH the system's Boot with If-Match from `sys`. 412/428 mean that ETag was stale or missing: the
   * system is read again and the PATCH repeated once with the fresh ETag.
   */
  private async patchBoot(sys: SystemInfo, boot: Record<string, string>): Promise<void> {
    const send = (etag: string | undefined) =>
      this.call('PATCH', sys.path, { Boot: boot }, etag ? { 'If-Match': etag } : {});
    try {
      await send(sys.etag);
    } catch (e) {
      if (!(e instanceof RedfishError && (e.status === 412 || e.status === 428))) throw e;
      const fresh = await this.getSystem();
      if (!fresh.etag) throw e;
      await send(fresh.etag);
    }
  }

  /**
   * Back to the BMC's own boot order: Enabled Disabled with Target None, which several BMCs require together;
   * Enabled alone for those that refuse None: with a 400, or with a 500 that names it (libvirt-backed
   * emulators: "Target libvirt device None does not exist"). Any other failure is the BMC's and is raised.
   */
  async clearBootOverride(): Promise<void> {
    const sys = await this.getSystem();
    try {
      await this.patchBoot(sys, { BootSourceOverrideEnabled: 'Disabled', BootSourceOverrideTarget: 'None' });
    } catch (e) {
      const refusedNone =
        e instanceof RedfishError && (e.status === 400 || (e.status === 500 && /\bNone\b/.test(e.message)));
      if (!refusedNone) throw e;
      await this.patchBoot(await this.getSystem(), { BootSourceOverrideEnabled: 'Disabled' });
    }
  }

  /**
   * POST the Reset action from the system's Actions (`known`: the system as just read, else read now); 202 with
   * a task monitor is followed to the end.
   */
  async reset(type: ResetType, known?: SystemInfo): Promise<void> {
    const sys = known ?? (await this.getSystem());
    const r = await this.call('POST', sys.resetTarget, { ResetType: type });
    if (r.status === 202 && r.location) await this.waitTask(r.location);
  }

  async waitTask(monitor: string, deadlineMs = 120_000): Promise<void> {
    const end = Date.now() + deadlineMs;
    while (Date.now() < end) {
      const r = await this.call('GET', monitor);
      const state = r.body.TaskState as string | undefined;
      if (r.status !== 202 && (!state || /Completed/i.test(state))) return;
      if (state && /Exception|Killed|Cancelled/i.test(state))
        throw new RedfishError(`task ${monitor} ended ${state}`, 500, r.text);
      await this.sleep(backoffMs(0, 500, 5000, r.retryAfter, () => 1));
    }
    throw new RedfishError(`task ${monitor} not done within ${deadlineMs} ms`, 504);
  }

  /**
   * PowerState lags a reset on real BMCs by seconds, so the first look comes after `pollMs`, then one per
   * `pollMs` until it shows `want` (true) or the deadline passes (error). `moot` is asked before each look: when
   * it says the wait no longer matters (the machine itself has been heard from), it ends without asking the BMC
   * again (false).
   */
  async waitPowerState(
    want: 'On' | 'Off',
    deadlineMs: number,
    pollMs = 1000,
    moot?: () => Promise<boolean>,
  ): Promise<boolean> {
    const end = Date.now() + deadlineMs;
    for (;;) {
      await this.sleep(Math.max(0, Math.min(pollMs, end - Date.now())));
      if (moot && (await moot())) return false;
      const s = await this.getSystem();
      if (s.powerState === want) return true;
      if (Date.now() >= end)
        throw new RedfishError(`PowerState still ${s.powerState} after ${deadlineMs} ms (wanted ${want})`, 504);
    }
  }

  /**
   * Boot it now: On when off, ForceRestart when already on (`known`: the system as just read, else read now).
   * Returns once the BMC took the reset; PowerState may lag (waitPowerState).
   */
  async powerOnOrRestart(known?: SystemInfo): Promise<'On' | 'ForceRestart'> {
    const s = known ?? (await this.getSystem());
    const action = s.powerState === 'On' ? 'ForceRestart' : 'On';
    await this.reset(action, s);
    return action;
  }

  /** On, unless it is on already (BMCs answer a second On with 409 or 400). */
  async powerOn(): Promise<void> {
    const s = await this.getSystem();
    if (s.powerState !== 'On') await this.reset('On', s);
  }

  async powerOff(deadlineMs: number): Promise<void> {
    const s = await this.getSystem();
    if (s.powerState === 'Off') return;
    await this.reset('ForceOff', s);
    await this.waitPowerState('Off', deadlineMs);
  }

  /**
   * Aborts everything queued or running on this client, then ends the session (best effort, briefly) when this
   * appliance may still call BMCs: a deposed leader's logout would be a BMC call after it lost the lease.
   */
  async close(): Promise<void> {
    if (this.connections.closed) return;
    const s = this.session;
    this.session = undefined;
    this.closing.abort();
    for (const cancel of this.calls) cancel(new Error('client closed'));
    if (s?.location && this.opts.mayCall?.() !== false) await this.logout(s.location, s.token).catch(() => undefined);
    await this.connections.destroy();
  }

  /** Ends the session, within a second: a hung BMC must not hold up shutdown (its session times out there). */
  private async logout(location: string, token: string): Promise<void> {
    const url = this.url(location);
    const o = { origin: url.origin, path: url.pathname + url.search, method: 'DELETE' as const };
    await this.connections.with((c) => exchange(c, { ...o, headers: { 'X-Auth-Token': token } }, 1000, this.calls));
  }
}

/** A short reason from a Redfish error body (never echoes request headers or credentials). */
function summarize(r: Reply): string {
  const err = r.body.error as
    | { message?: string; '@Message.ExtendedInfo'?: { MessageId?: string; Message?: string }[] }
    | undefined;
  const info = err?.['@Message.ExtendedInfo']?.[0];
  return (info?.Message ?? err?.message ?? info?.MessageId ?? r.text).slice(0, 200);
}
