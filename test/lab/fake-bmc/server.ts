// A fake Redfish BMC over real HTTP(S), with the quirks of real vendors switchable one by one.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export interface Personality {
  /** 428 on a PATCH without If-Match (iDRAC, iLO 5) */
  requireIfMatch?: boolean;
  /** BootSourceOverrideEnabled goes back to Disabled when the machine boots */
  onceRevertsOnBoot?: boolean;
  /** no BootSourceOverrideMode at all; a PATCH naming it gets 400 (old Supermicro) */
  noMode?: boolean;
  /** shows BootSourceOverrideMode, but a PATCH naming it gets 400 (Mode read-only) */
  modeReadOnly?: boolean;
  /** the first PATCH with If-Match finds the system changed meanwhile: 412, and a new ETag */
  staleEtagOnce?: boolean;
  /** Enabled Disabled without Target None is refused with 400 (several BMCs and sushy-tools) */
  requireTargetWithDisabled?: boolean;
  /** every PATCH that disables the override gets 400 (a BMC that cannot clear it) */
  refuseClear?: boolean;
  /** a boot PATCH is answered 204 and changes nothing (firmware that drops the override), or only half of it */
  dropsBootPatch?: boolean | 'target' | 'enabled';
  /** Enabled Once is shown as Continuous (some BMCs, for a moment) */
  onceShownAsContinuous?: boolean;
  /** no ETag, neither in the header nor as @odata.etag */
  noEtag?: boolean;
  /** the first read of the system carries no ETag (as if served from a cache); later ones do */
  etagFromSecondRead?: boolean;
  /** Target None refused with a 403 that names it (an account that may not clear the override) */
  noTargetNone403?: boolean;
  /** a running task's monitor answers a bare 202: no body (the Task resource is optional there), no Retry-After */
  bareTaskMonitor?: boolean;
  /** a Reset answered 204 still carries a Location header (the system's) */
  locationOnReset?: boolean;
  /** no BootSourceOverrideTarget None: a PATCH naming it gets 400 */
  noTargetNone?: boolean;
  /** no Target None either, refused with a 500 that names it (a libvirt-backed emulator) */
  noTargetNone500?: boolean;
  /** Systems listed by UUID; the system's Name is `node-0` (libvirt-backed emulators) */
  membersByUuid?: boolean;
  /** 200 with an `error` object on PATCH (iLO) */
  okWithErrorBody?: boolean;
  /** 409 on ResetType On for this long after a power-off (iDRAC10) */
  conflictAfterOffMs?: number;
  /** at most this many sessions; more get 503 RAC0218 */
  sessionCap?: number;
  /** PowerState changes this long after the reset */
  powerLagMs?: number;
  /** ForceOff is taken at once and carried out this long later, whatever happened meanwhile (a slow BMC) */
  offAfterMs?: number;
  /** Reset answers 202 with a task monitor that completes after this many polls */
  taskPolls?: number;
  /** how those tasks end (Completed by default) */
  taskEnd?: 'Completed' | 'Exception' | 'Killed' | 'Cancelled';
  /** no SessionService: Basic auth only */
  noSessions?: boolean;
  /** two ComputerSystems */
  twoSystems?: boolean;
  /** answer every request after this delay */
  delayMs?: number;
  /**
   * A broken BMC: `hang` never answers (until stop), `reset` drops the connection, `error500` answers a bare
   * 500. `scope` actions: only changes (PATCH, resets), reads and logins work. `first`: only that many
   * requests fail, then the BMC recovers.
   */
  fault?: { kind: 'hang' | 'reset' | 'error500'; scope?: 'all' | 'actions'; first?: number };
}

export interface FakeBmcOptions {
  personality?: Personality;
  username?: string;
  password?: string;
  macs?: string[];
  uuid?: string;
  serial?: string;
  /** the system's Model, as the BMC reports it */
  model?: string;
  /** a SecureBoot resource under the system, saying this (none without it) */
  secureBoot?: boolean;
  tls?: { key: string; cert: string };
  /** called when the machine powers on, restarts or powers off (e2e: start/stop QEMU) */
  onPower?: (event: 'on' | 'restart' | 'off', boot: { target: string; enabled: string }) => void;
  /** called as each request arrives, before its body: who sent it (the storm's audit of BMC calls by leader) */
  onRequest?: (from: string) => void;
}

export interface Seen {
  method: string;
  path: string;
  body: unknown;
  headers: http.IncomingHttpHeaders;
}

export class FakeBmc {
  readonly seen: Seen[] = [];
  power: 'On' | 'Off' = 'Off';
  /** every power change the machine went through, in order */
  readonly powerLog: ('on' | 'restart' | 'off')[] = [];
  boot = { target: 'None', enabled: 'Disabled', mode: 'UEFI' };
  private shownPower: 'On' | 'Off' = 'Off';
  private etagN = 1;
  private offAt = 0;
  private readonly sessions = new Map<string, string>();
  private readonly tasks = new Map<string, number>();
  private faulted = 0;
  private systemRead = false;
  /** A task monitor that answers Running this many times, then its end: what a Reset's 202 points to. */
  task(polls: number): string {
    const tid = randomBytes(3).toString('hex');
    this.tasks.set(tid, polls);
    return `/redfish/v1/TaskService/Tasks/${tid}`;
  }

  /** requests left unanswered by a `hang` fault */
  hanging = 0;
  /** of those, the ones whose client gave up and closed the connection */
  abandoned = 0;
  /** TCP connections accepted (a real BMC's budget of them is small) */
  connections = 0;
  private server?: http.Server;
  readonly p: Personality;

  constructor(readonly opts: FakeBmcOptions = {}) {
    this.p = opts.personality ?? {};
  }

  get uuid(): string {
    return this.opts.uuid ?? '4c4c4544-0042-3510-8052-b7c04f4e3132';
  }

  get etag(): string {
    return `W/"${this.etagN}"`;
  }

  async start(address = '127.0.0.1', port = 0): Promise<string> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.opts.onRequest?.(req.socket.remoteAddress ?? '?');
      void this.handle(req, res);
    };
    this.server = this.opts.tls ? https.createServer(this.opts.tls, handler) : http.createServer(handler);
    this.server.on('connection', () => this.connections++);
    this.server.listen(port, address);
    await once(this.server, 'listening');
    return `${this.opts.tls ? 'https' : 'http'}://${address}:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  private setPower(state: 'On' | 'Off') {
    this.power = state;
    if (state === 'Off') this.offAt = Date.now();
    // unref: a long lag must not keep a finished test process alive
    if (this.p.powerLagMs) setTimeout(() => (this.shownPower = this.power), this.p.powerLagMs).unref();
    else this.shownPower = state;
  }

  private systemBody(id: string) {
    const allow = ['On', 'ForceOff', 'ForceRestart', 'GracefulShutdown'];
    const boot: Record<string, unknown> = {
      BootSourceOverrideTarget: this.boot.target,
      BootSourceOverrideEnabled: this.boot.enabled,
      'BootSourceOverrideTarget@Redfish.AllowableValues': ['None', 'Pxe', 'Hdd', 'Cd'],
    };
    if (!this.p.noMode) boot.BootSourceOverrideMode = this.boot.mode;
    return {
      '@odata.id': `/redfish/v1/Systems/${id}`,
      '@odata.etag': this.etag,
      Id: id,
      Name: this.p.membersByUuid ? 'node-0' : 'System',
      UUID: this.uuid,
      Manufacturer: 'Beskar7 Fake',
      Model: this.opts.model ?? 'FB-1',
      SerialNumber: this.opts.serial ?? 'FAKE0001',
      PowerState: this.shownPower,
      Boot: boot,
      EthernetInterfaces: { '@odata.id': `/redfish/v1/Systems/${id}/EthernetInterfaces` },
      ...(this.opts.secureBoot === undefined
        ? {}
        : { SecureBoot: { '@odata.id': `/redfish/v1/Systems/${id}/SecureBoot` } }),
      Actions: {
        '#ComputerSystem.Reset': {
          target: `/redfish/v1/Systems/${id}/Actions/ComputerSystem.Reset`,
          'ResetType@Redfish.AllowableValues': allow,
        },
      },
    };
  }

  private authorized(req: http.IncomingMessage): boolean {
    const tok = req.headers['x-auth-token'];
    if (typeof tok === 'string' && this.sessions.has(tok)) return true;
    const basic = req.headers.authorization;
    const want = `Basic ${Buffer.from(`${this.opts.username ?? 'admin'}:${this.opts.password ?? 'secret'}`).toString('base64')}`;
    return basic === want;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let raw = '';
    for await (const c of req) raw += c;
    let body: unknown;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = raw;
    }
    const path = (req.url ?? '/').replace(/\/$/, '') || '/';
    this.seen.push({ method: req.method ?? 'GET', path, body, headers: req.headers });
    if (this.p.delayMs) await new Promise((r) => setTimeout(r, this.p.delayMs));
    const f = this.p.fault;
    const isAction = req.method !== 'GET' && path !== '/redfish/v1/SessionService/Sessions';
    if (f && (f.scope !== 'actions' || isAction) && (f.first === undefined || this.faulted < f.first)) {
      this.faulted++;
      if (f.kind === 'hang') {
        this.hanging++;
        req.socket.once('close', () => this.abandoned++);
        return;
      }
      if (f.kind === 'reset') {
        req.socket.destroy();
        return;
      }
      res.writeHead(500, { 'Content-Type': 'text/html' });
      res.end('<html><body>500 Internal Server Error</body></html>');
      return;
    }
    const send = (status: number, obj?: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(obj === undefined ? '' : JSON.stringify(obj));
    };
    const error = (status: number, id: string, msg: string) =>
      send(status, { error: { code: id, message: msg, '@Message.ExtendedInfo': [{ MessageId: id, Message: msg }] } });
    const ids = this.p.twoSystems ? ['A', 'B'] : this.p.membersByUuid ? [this.uuid] : ['System.Embedded.1'];

    if (path === '/redfish/v1')
      return send(200, { RedfishVersion: '1.15.0', Systems: { '@odata.id': '/redfish/v1/Systems' } });
    if (path === '/redfish/v1/SessionService/Sessions' && req.method === 'POST') {
      if (this.p.noSessions) return send(404, {});
      const b = body as { UserName?: string; Password?: string };
      if (b?.UserName !== (this.opts.username ?? 'admin') || b?.Password !== (this.opts.password ?? 'secret'))
        return error(401, 'Base.1.0.InsufficientPrivilege', 'bad credentials');
      if (this.p.sessionCap !== undefined && this.sessions.size >= this.p.sessionCap)
        return error(503, 'IDRAC.2.8.RAC0218', 'The maximum number of user sessions is reached.');
      const token = randomBytes(16).toString('hex');
      const id = randomBytes(4).toString('hex');
      this.sessions.set(token, id);
      return send(201, { Id: id }, { 'X-Auth-Token': token, Location: `/redfish/v1/SessionService/Sessions/${id}` });
    }
    if (!this.authorized(req)) return error(401, 'Base.1.0.InsufficientPrivilege', 'authentication required');
    const sess = /^\/redfish\/v1\/SessionService\/Sessions\/(\w+)$/.exec(path);
    if (sess && req.method === 'DELETE') {
      for (const [tok, id] of this.sessions) if (id === sess[1]) this.sessions.delete(tok);
      return send(204);
    }
    if (path === '/redfish/v1/Systems')
      return send(200, {
        Members: ids.map((id) => ({ '@odata.id': `/redfish/v1/Systems/${id}` })),
        'Members@odata.count': ids.length,
      });
    const task = /^\/redfish\/v1\/TaskService\/Tasks\/(\w+)$/.exec(path);
    if (task) {
      const tid = task[1] ?? '';
      const left = (this.tasks.get(tid) ?? 0) - 1;
      this.tasks.set(tid, left);
      if (left > 0)
        return this.p.bareTaskMonitor ? send(202) : send(202, { TaskState: 'Running' }, { 'Retry-After': '0' });
      return send(200, { TaskState: this.p.taskEnd ?? 'Completed' });
    }
    const m = /^\/redfish\/v1\/Systems\/([\w.-]+)(\/.*)?$/.exec(path);
    const [, id = '', rest] = m ?? [];
    if (!ids.includes(id)) return error(404, 'Base.1.0.ResourceMissingAtURI', path);
    if (!rest && req.method === 'GET') {
      const first = !this.systemRead;
      this.systemRead = true;
      const withEtag = !this.p.noEtag && !(this.p.etagFromSecondRead && first);
      const body = this.systemBody(id);
      if (!withEtag) delete (body as Record<string, unknown>)['@odata.etag'];
      return send(200, body, withEtag ? { ETag: this.etag } : {});
    }
    if (rest === '/SecureBoot' && req.method === 'GET' && this.opts.secureBoot !== undefined) {
      const on = this.opts.secureBoot;
      return send(200, {
        '@odata.id': `/redfish/v1/Systems/${id}/SecureBoot`,
        SecureBootEnable: on,
        SecureBootCurrentBoot: on ? 'Enabled' : 'Disabled',
        SecureBootMode: on ? 'DeployedMode' : 'SetupMode',
      });
    }
    if (!rest && req.method === 'PATCH') {
      if (this.p.requireIfMatch && !req.headers['if-match'])
        return error(428, 'Base.1.0.PreconditionRequired', 'If-Match required');
      if (this.p.staleEtagOnce && req.headers['if-match']) {
        this.p.staleEtagOnce = false;
        this.etagN++;
      }
      if (req.headers['if-match'] && req.headers['if-match'] !== this.etag)
        return error(412, 'Base.1.0.PreconditionFailed', 'stale ETag');
      const b = (body as { Boot?: Record<string, string> })?.Boot ?? {};
      if (this.p.refuseClear && b.BootSourceOverrideEnabled === 'Disabled') {
        return error(400, 'Base.1.0.PropertyValueNotInList', 'BootSourceOverrideEnabled Disabled');
      }
      if (this.p.noTargetNone && b.BootSourceOverrideTarget === 'None')
        return error(400, 'Base.1.0.PropertyValueNotInList', 'None');
      if (this.p.noTargetNone500 && b.BootSourceOverrideTarget === 'None')
        return error(500, 'Base.1.0.InternalError', 'Target libvirt device None does not exist');
      if (this.p.noTargetNone403 && b.BootSourceOverrideTarget === 'None')
        return error(403, 'Base.1.0.InsufficientPrivilege', 'setting Target None needs ConfigureComponents');
      if (
        this.p.requireTargetWithDisabled &&
        b.BootSourceOverrideEnabled === 'Disabled' &&
        b.BootSourceOverrideTarget !== 'None'
      ) {
        return error(
          400,
          'Base.1.0.PropertyMissing',
          'Missing the BootSourceOverrideTarget and/or BootSourceOverrideEnabled element',
        );
      }
      if (b.BootSourceOverrideMode !== undefined && (this.p.noMode || this.p.modeReadOnly))
        return error(400, 'Base.1.0.PropertyUnknown', 'BootSourceOverrideMode');
      if (this.p.dropsBootPatch === true) return send(204);
      if (b.BootSourceOverrideTarget && this.p.dropsBootPatch !== 'target')
        this.boot.target = b.BootSourceOverrideTarget;
      if (b.BootSourceOverrideEnabled && this.p.dropsBootPatch !== 'enabled')
        this.boot.enabled =
          this.p.onceShownAsContinuous && b.BootSourceOverrideEnabled === 'Once'
            ? 'Continuous'
            : b.BootSourceOverrideEnabled;
      if (b.BootSourceOverrideMode) this.boot.mode = b.BootSourceOverrideMode;
      this.etagN++;
      if (this.p.okWithErrorBody)
        return send(200, {
          error: {
            code: 'iLO.0.10.ExtendedInfo',
            message: 'See @Message.ExtendedInfo',
            '@Message.ExtendedInfo': [{ MessageId: 'Base.1.4.Success' }],
          },
        });
      return send(204);
    }
    if (rest === '/EthernetInterfaces') {
      return send(200, {
        Members: (this.opts.macs ?? ['52:54:00:fa:00:01']).map((_, i) => ({
          '@odata.id': `/redfish/v1/Systems/${id}/EthernetInterfaces/NIC.${i}`,
        })),
      });
    }
    const nic = /^\/EthernetInterfaces\/NIC\.(\d+)$/.exec(rest ?? '');
    if (nic)
      return send(200, {
        Id: `NIC.${nic[1]}`,
        MACAddress: (this.opts.macs ?? ['52:54:00:fa:00:01'])[Number(nic[1])]?.toUpperCase(),
      });
    if (rest === '/Actions/ComputerSystem.Reset' && req.method === 'POST') {
      const type = (body as { ResetType?: string })?.ResetType;
      if (type === 'On' && this.p.conflictAfterOffMs && Date.now() - this.offAt < this.p.conflictAfterOffMs) {
        return error(409, 'Base.1.0.Conflict', 'The system is powering off; try again later.');
      }
      const bootNow = { target: this.boot.target, enabled: this.boot.enabled };
      switch (type) {
        case 'On':
          if (this.power === 'On') return error(409, 'Base.1.0.ActionNotSupported', 'already on');
          this.setPower('On');
          this.opts.onPower?.('on', bootNow);
          break;
        case 'ForceRestart':
          this.setPower('On');
          this.opts.onPower?.('restart', bootNow);
          break;
        case 'ForceOff':
        case 'GracefulShutdown':
          if (this.p.offAfterMs) {
            setTimeout(() => {
              this.setPower('Off');
              this.powerLog.push('off');
              this.opts.onPower?.('off', bootNow);
            }, this.p.offAfterMs).unref();
            break;
          }
          this.setPower('Off');
          this.opts.onPower?.('off', bootNow);
          break;
        default:
          return error(400, 'Base.1.0.ActionParameterNotSupported', `ResetType ${type}`);
      }
      if (!this.p.offAfterMs || (type !== 'ForceOff' && type !== 'GracefulShutdown'))
        this.powerLog.push(type === 'On' ? 'on' : type === 'ForceRestart' ? 'restart' : 'off');
      if ((type === 'On' || type === 'ForceRestart') && this.p.onceRevertsOnBoot && this.boot.enabled === 'Once')
        this.boot.enabled = 'Disabled';
      this.etagN++;
      if (this.p.taskPolls) {
        const tid = randomBytes(3).toString('hex');
        this.tasks.set(tid, this.p.taskPolls);
        return send(
          202,
          { '@odata.id': `/redfish/v1/TaskService/Tasks/${tid}` },
          { Location: `/redfish/v1/TaskService/Tasks/${tid}` },
        );
      }
      return send(204, undefined, this.p.locationOnReset ? { Location: `/redfish/v1/Systems/${id}` } : {});
    }
    return error(404, 'Base.1.0.ResourceMissingAtURI', path);
  }
}
