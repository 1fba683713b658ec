import { existsSync, readFileSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import path from 'node:path';
import { createAdaptorServer, type ServerType } from '@hono/node-server';
import type { Hono } from 'hono';
import { createAdminApi } from './admin/api.js';
import { AdminCommands } from './admin/commands.js';
import { localImageProblem } from './admin/image-check.js';
import { createKubeApi } from './admin/kube/api.js';
import { applyFile } from './admin/kube/apply-file.js';
import { kinds } from './admin/kube/resources.js';
import { WatchHub } from './admin/kube/watch.js';
import { StreamSlots } from './admin/stream-slots.js';
import { poolSize } from './boot/dhcp/leases.js';
import { probeDhcpServers } from './boot/dhcp/probe.js';
import { DhcpServer } from './boot/dhcp/server.js';
import { duidLl } from './boot/dhcp6/decide.js';
import { RouterAdverts } from './boot/dhcp6/router-adverts.js';
import { Dhcp6Server } from './boot/dhcp6/server.js';
import { type GrubDeps, type GrubFile, grubFile } from './boot/grub.js';
import { createHttpApp, createManagementApp } from './boot/http.js';
import { loadTemplates, type Templates } from './boot/ipxe.js';
import { RateLimiter } from './boot/rate-limit.js';
import { TftpServer } from './boot/tftp/server.js';
import { type BootStage, BootTimeline } from './boot/timeline.js';
import type { Config, ResolvedConfig } from './config.js';
import { bootChainOf } from './domain/boot.js';
import { type EventKind, eventOk, type StoreEvent } from './domain/events.js';
import { DEFAULT_NAMESPACE, hostMacs, objectKey, type StoredHost } from './domain/resources.js';
import { InspectorCommands, redemptionResult } from './inspector/commands.js';
import { createIntakeApi } from './inspector/routes.js';
import { fetchUserData } from './inspector/user-data.js';
import type { Logger } from './log.js';
import { Metrics } from './metrics.js';
import { chooseAdvertiseAddress, chooseAdvertiseAddress6, type Interfaces } from './net/advertise.js';
import { HttpBases } from './net/bases.js';
import { bindFailure, StartupError } from './net/bind-error.js';
import { dualProtocolServer } from './net/dual.js';
import { neighbourAdvice, neighbourLimit } from './net/neighbours.js';
import { type Certificates, ensureCertificates } from './net/tls.js';
import { RedfishClient, type RedfishOptions } from './redfish/client.js';
import { Limiter } from './redfish/limiter.js';
import type { EtcdBackend } from './store/etcd-backend.js';
import { adminToken, newAdminToken, newSecretKey, SecretBox, secretKeyFile } from './store/secrets.js';
import { Store } from './store/store.js';
import { APPLIANCE_VERSION } from './version.js';
import { Pipeline } from './workflow/pipeline.js';
import { Orchestrator } from './workflow/reconciler.js';
import { WorkflowRunner } from './workflow/runner.js';
import { TargetDigests } from './workflow/target-digest.js';
import type { Policy } from './workflow/transitions.js';

export { StartupError };

export interface Listening {
  http: number;
  /** the management listener, when api.port gives it one */
  api?: number;
  tftp?: number;
  dhcp?: number;
  pxe?: number;
  dhcp6?: number;
}

/** The boot steps workflow events mark on a host's timeline (the dashboard's waterfall lanes). */
const EVENT_STAGE: Partial<Record<EventKind, BootStage>> = {
  PowerOn: 'power',
  InspectionResumed: 'power',
  CredentialClaimed: 'script',
  CredentialConflict: 'script',
  InspectorStep: 'inspector',
  InspectorFailed: 'inspector',
  ReportReceived: 'report',
  ReportRejected: 'report',
  Ready: 'report',
  RequirementsNotMet: 'report',
  Provisioned: 'provisioned',
  ProvisionFailed: 'provisioned',
};

/** Every iPXE binary a DHCP answer can name must exist before we answer anyone. */
function checkBootFiles(cfg: Config, tftpRoot: string, log: Logger): void {
  const { bios, efi, ipxeEfi, arm64 } = cfg.dhcp.bootFiles;
  const missing = [bios, efi].filter((f) => !existsSync(path.join(tftpRoot, f)));
  if (missing.length) {
    throw new StartupError(
      `iPXE binaries missing from ${tftpRoot}: ${missing.join(', ')} (run \`make assets\`; it copies them from Debian's ipxe package)`,
    );
  }
  for (const f of [ipxeEfi, arm64]) {
    if (!existsSync(path.join(tftpRoot, f)))
      log.warn({ file: f, tftpRoot }, 'optional iPXE binary missing; clients that need it will not boot');
  }
}

/** What `derive` makes of the hosts, made again only after hosts change: DHCP asks per packet. */
function fromHosts<T>(store: Store, derive: (hosts: readonly StoredHost[]) => T): () => T {
  let version = -1;
  let value = derive([]);
  return () => {
    if (store.hosts.version !== version) {
      version = store.hosts.version;
      value = derive(store.hosts.snapshot());
    }
    return value;
  };
}

/** Whether a MAC is one an enrolled host boots from. */
export function knownMacs(store: Store): (mac: string) => boolean {
  const macs = fromHosts(store, (hosts) => new Set(hosts.flatMap(hostMacs)));
  return (mac) => macs().has(mac);
}

/** Why a MAC's host boots the signed chain (bootChainOf); undefined: iPXE. */
export function signedMacs(store: Store): (mac: string) => string | undefined {
  const why = fromHosts(store, (hosts) => {
    const m = new Map<string, string>();
    for (const h of hosts) {
      const chain = bootChainOf(h);
      if (chain.signed) for (const mac of hostMacs(h)) m.set(mac, chain.why);
    }
    return m;
  });
  return (mac) => why().get(mac);
}

/** The whole appliance in one process: store, DHCP, TFTP, HTTP, and the orchestrator that drives BMCs. */
export class Appliance {
  readonly metrics = new Metrics(true);
  readonly timeline = new BootTimeline();
  private store?: Store;
  private dhcp?: DhcpServer;
  private dhcp6?: Dhcp6Server;
  private radvd?: RouterAdverts;
  private tftp?: TftpServer;
  private readonly servers: ServerType[] = [];
  private workflow?: WorkflowRunner;
  private pruner?: NodeJS.Timeout;
  private hub?: WatchHub;
  private certs?: Certificates;
  private readonly started = Date.now();

  readonly cfg: ResolvedConfig;
  /** the appliance's address on an IPv6 segment (dhcp6) */
  private readonly address6?: string;
  /** the DHCPv6 server's DUID-LL: the segment interface's MAC */
  private readonly duid6?: Buffer;

  constructor(
    cfg: Config,
    private readonly log: Logger,
    interfaces: Interfaces = networkInterfaces(),
  ) {
    const d6 = cfg.dhcp6;
    if (d6.enabled && d6.interface) {
      const c = d6.advertiseAddress
        ? { ok: true as const, address: d6.advertiseAddress }
        : chooseAdvertiseAddress6(interfaces, d6.interface);
      if (!c.ok) throw new StartupError(`dhcp6.advertiseAddress: ${c.reason}`);
      this.address6 = c.address;
      this.duid6 = duidLl(interfaces[d6.interface]?.[0]?.mac ?? '00:00:00:00:00:00');
    }
    if (cfg.advertiseAddress) this.cfg = { ...cfg, advertiseAddress: cfg.advertiseAddress };
    else {
      const c = chooseAdvertiseAddress(interfaces, cfg.dhcp.interface);
      if (!c.ok) throw new StartupError(`advertiseAddress: ${c.reason}`);
      log.info({ advertiseAddress: c.address }, 'advertise address chosen');
      this.cfg = { ...cfg, advertiseAddress: c.address };
    }
  }

  async start(): Promise<Listening> {
    const { cfg, log } = this;
    const tftpRoot = path.resolve(cfg.assetsDir, cfg.tftp.root);
    checkBootFiles(cfg, tftpRoot, log);
    const templates = loadTemplates(cfg.bootScriptsDir);
    if (!['vmlinuz', 'initrd'].every((f) => existsSync(path.join(cfg.assetsDir, 'inspector', f)))) {
      const dir = path.join(cfg.assetsDir, 'inspector');
      log.warn(
        { dir },
        'no bundled inspector image: machines must name another inspectionImageURL (make inspector builds it)',
      );
    }
    const { store, etcd } = await this.openStore();
    try {
      // before anything listens: full mode must not start beside a DHCP server other than our peers
      await this.probeOtherDhcp((await etcd?.register(cfg.advertiseAddress)) ?? []);
    } catch (e) {
      await store.close();
      throw e;
    }
    this.store = store;
    this.metrics.hostStates = async () => (await store.hosts.all()).map((h) => h.status.state);
    this.showEventsOnTimeline(store);
    const httpBase = `http://${cfg.advertiseAddress}:${cfg.http.port}`;
    const bases = new HttpBases(httpBase, this.address6 && `http://[${this.address6}]:${cfg.http.port}`);
    const secrets = new SecretBox(etcd ? await etcd.shared('secret-key', newSecretKey) : secretKeyFile(cfg.dataDir));
    const ttl = cfg.store.etcd?.leaseTTLSeconds ?? 5;
    const leadership = etcd && new (await import('./store/leader.js')).Leadership(etcd, httpBase, ttl, log);
    // one cache of target digests, whichever orchestrator (leadership) uses it
    const digests = new TargetDigests({
      httpBase,
      assetsDir: cfg.assetsDir,
      maxBytes: cfg.inspector.pinMaxGiB * 2 ** 30,
      timeoutMs: cfg.inspector.pinTimeoutSeconds * 1000,
    });
    const workflow = new WorkflowRunner(
      store,
      () => this.makeOrchestrator(store, secrets, digests, leadership ? () => leadership.holds() : undefined),
      leadership,
    );
    this.workflow = workflow;
    this.metrics.leading = () => workflow.leading;
    const pipeline = new Pipeline(store, () => workflow.kick());
    const commands = {
      admin: new AdminCommands({
        pipeline,
        secrets,
        imageProblem: (url) => localImageProblem(url, httpBase, cfg.assetsDir),
        forgetBmc: (name) => workflow.forgetBmc(name),
        actionWaitMs: cfg.orchestrator.powerDeadlineSeconds * 1000,
        maxObjects: cfg.api.maxObjects,
        restored: async () => {
          await this.dhcp?.reloadLeases();
          await this.dhcp6?.reloadLeases();
        },
      }),
      inspector: new InspectorCommands({
        pipeline,
        secrets,
        policy: this.policy(),
        bases,
        apiHttps: cfg.inspector.https,
        leasedAddresses: (macs) => this.leasedAddresses(macs),
        templates,
        ca: readFileSync(cfg.inspector.caFile ?? this.certificates.caFile).toString('base64'),
        kernelArgs: cfg.inspector.kernelArgs,
        fetchUserData,
      }),
    };
    const shared = {
      admin: etcd && !cfg.api.adminToken ? await etcd.shared('admin-token', newAdminToken) : undefined,
      readOnly: etcd && !cfg.api.readOnlyToken ? await etcd.shared('readonly-token', newAdminToken) : undefined,
    };
    const out: Listening = await this.startHttp(store, commands, bases, tftpRoot, templates, shared);
    const limiter = new RateLimiter(cfg.http.rateLimit);
    const grub: GrubDeps = {
      admit: (from) => {
        const ok = limiter.admit(from).ok;
        if (!ok) this.metrics.httpLimited.inc();
        return ok;
      },
      templates,
      httpBase,
      storedInstruction: (mac) => store.bootInstructions.get(mac),
      configuredInstruction: (mac) => cfg.hosts[mac],
      unknownHosts: cfg.unknownHosts,
      claimPath: (host, from) => commands.inspector.claimPath(host, from),
      redeem: async (c) => {
        const r = await commands.inspector.redeemNonce({ ...c, loader: 'grub' });
        this.metrics.credentials.inc({ result: redemptionResult(r) });
        if (!r.ok || r.value.kind === 'unknown') return undefined;
        return r.value.kind === 'ok' ? r.value.script : 'conflict';
      },
    };
    if (cfg.tftp.enabled) out.tftp = await this.startTftp(tftpRoot, (file, from) => grubFile(grub, file, from));
    if (cfg.dhcp.enabled) Object.assign(out, await this.startDhcp(store, out.http));
    if (this.address6) out.dhcp6 = await this.startDhcp6(store, this.address6, out.http);
    workflow.start();
    this.pruner = setInterval(() => this.pruneEvents(store), 60_000);
    this.pruner.unref();
    return out;
  }

  /** LevelDB in the data dir, or etcd; on etcd this appliance is listed for its peers' DHCP probe. */
  private async openStore(): Promise<{ store: Store; etcd?: EtcdBackend }> {
    const { cfg } = this;
    const e = cfg.store.etcd;
    if (cfg.store.backend !== 'etcd' || !e) return { store: await Store.open(path.join(cfg.dataDir, 'db')) };
    // loaded only here: the etcd client (gRPC) would slow every lone appliance's start
    const { EtcdBackend } = await import('./store/etcd-backend.js');
    const etcd = new EtcdBackend({ ...e, timeoutMs: e.timeoutSeconds * 1000 });
    try {
      const store = await Store.over(etcd);
      store.on('watchError', (err: Error) => this.log.error({ err: err.message }, 'etcd watch lost; reloading'));
      return { store, etcd };
    } catch (err) {
      await etcd.close();
      throw new StartupError(
        `store.etcd: cannot read the inventory from ${e.endpoints.join(', ')}: ${(err as Error).message}`,
      );
    }
  }

  private async probeOtherDhcp(peers: string[]): Promise<void> {
    const { cfg, log } = this;
    if (!cfg.dhcp.enabled || cfg.dhcp.probeSeconds <= 0) return;
    const d = cfg.dhcp;
    const probe = {
      interface: d.interface,
      timeoutMs: d.probeSeconds * 1000,
      clientPort: d.clientPort,
      serverPort: d.port,
    };
    const found = await probeDhcpServers(probe).catch((e: Error) => {
      // e.g. port 68 needs root; the check is a safety net, not a reason to stay down
      log.warn({ err: e.message }, 'could not probe for other DHCP servers');
      return [];
    });
    const others = found.filter((ip) => ip !== cfg.advertiseAddress && !peers.includes(ip));
    if (others.length && d.mode === 'full') {
      throw new StartupError(
        `another DHCP server answers on this segment (${others.join(', ')}): refusing full mode; use dhcp.mode: proxy beside it`,
      );
    }
    if (others.length)
      log.warn(
        { servers: others },
        'another DHCP server answers on this segment; proxy mode adds boot information beside it',
      );
  }

  /** Workflow events of a host show up on the boot timeline of its MACs, marked by their severity. */
  private showEventsOnTimeline(store: Store): void {
    store.on('event', (e: StoreEvent) => {
      if (!e.host) return;
      void store.hosts.get(objectKey(e.namespace ?? DEFAULT_NAMESPACE, e.host)).then(
        (h) => {
          const stage = EVENT_STAGE[e.kind];
          for (const mac of e.mac ? [e.mac] : h ? hostMacs(h) : [])
            this.timeline.add(mac, 'workflow', `${e.kind}: ${e.message}`, eventOk(e), stage ? { stage } : {});
        },
        () => undefined,
      );
    });
  }

  private policy(): Policy {
    const o = this.cfg.orchestrator;
    return {
      inspectionTimeoutMs: o.inspectionTimeoutSeconds * 1000,
      deploymentTimeoutMs: o.deploymentTimeoutSeconds * 1000,
      tryOtherHosts: o.tryOtherHosts,
      cleanDisks: o.cleanDisks,
      maxAttempts: o.maxAttempts,
      retryBaseMs: o.retryBaseSeconds * 1000,
      retryMaxMs: o.retryMaxSeconds * 1000,
    };
  }

  /** `mayCall`: on etcd, whether the lease is certainly held, asked before each BMC request leaves. */
  private makeOrchestrator(
    store: Store,
    secrets: SecretBox,
    digests: TargetDigests,
    mayCall: (() => boolean) | undefined,
  ): Orchestrator {
    const { cfg, log } = this;
    const rf = cfg.redfish;
    const global = new Limiter(rf.globalConcurrency, rf.slowCallSeconds * 1000);
    const options: RedfishOptions = {
      timeoutMs: rf.timeoutSeconds * 1000,
      retries: rf.retries,
      backoffBaseMs: rf.backoffBaseSeconds * 1000,
      backoffMaxMs: rf.backoffMaxSeconds * 1000,
      global,
      perBmc: rf.perBmcConcurrency,
      observe: (method, status, seconds) => {
        this.metrics.redfishCalls.inc({ method, result: status ? String(status) : 'transport' });
        this.metrics.redfishSeconds.observe({ method }, seconds);
      },
      ...(mayCall ? { mayCall } : {}),
    };
    const o = cfg.orchestrator;
    return new Orchestrator(
      store,
      secrets,
      (h, password) => new RedfishClient({ ...h.spec.redfish, password }, options, log.child({ host: h.name })),
      {
        ...this.policy(),
        tickMs: o.tickSeconds * 1000,
        powerDeadlineMs: o.powerDeadlineSeconds * 1000,
        onPass: () => this.metrics.reconcilePasses.inc(),
        targetDigest: (url) => digests.of(url),
      },
      log,
    );
  }

  /** The boot plane on http.port; the management plane beside it, or on api.port (with TLS when given). */
  private async startHttp(
    store: Store,
    commands: { admin: AdminCommands; inspector: InspectorCommands },
    bases: HttpBases,
    tftpRoot: string,
    templates: Templates,
    shared: { admin?: Buffer | undefined; readOnly?: Buffer | undefined },
  ): Promise<Pick<Listening, 'http' | 'api'>> {
    const { cfg, log } = this;
    const token = adminToken(cfg.dataDir, cfg.api.adminToken, shared.admin);
    if (token.file) log.info({ file: token.file }, 'admin API token (Authorization: Bearer <token>) is in this file');
    const readOnly = adminToken(cfg.dataDir, cfg.api.readOnlyToken, shared.readOnly, 'readonly-token');
    this.hub = new WatchHub(store);
    const deps = {
      store,
      commands: commands.admin,
      adminToken: token.token,
      maxBodyBytes: cfg.api.maxBodyBytes,
      streams: new StreamSlots(cfg.api.maxStreams, cfg.api.maxStreamsPerToken),
      metrics: this.metrics,
      timeline: this.timeline,
      leasedAddresses: (macs: string[]) => this.leasedAddresses(macs),
    };
    const health = () => this.health();
    const intake = createIntakeApi({ ...deps, commands: commands.inspector });
    const otherRoutes = () => intake.routes.map((r) => ({ method: r.method, path: `/api/v1${r.path}` }));
    const resources = kinds(deps);
    const admin = createAdminApi({
      ...deps,
      readOnlyToken: readOnly.token,
      otherRoutes,
      applyFile: (text) => applyFile(resources, text),
    });
    const kube = createKubeApi({
      ...deps,
      resources,
      hub: this.hub,
      readOnlyToken: readOnly.token,
      version: APPLIANCE_VERSION,
    });
    const management = createManagementApp({
      admin,
      kube,
      metrics: this.metrics,
      health,
      log,
      adminToken: token.token,
      readOnlyToken: readOnly.token,
    });
    const separate = cfg.api.port !== undefined;
    const app = createHttpApp({
      intake,
      ...(separate ? {} : { management }),
      timeline: this.timeline,
      claimUrl: (host, from) => commands.inspector.claimUrl(host, from),
      bases,
      assetsDir: cfg.assetsDir,
      tftpRoot,
      templates,
      log,
      metrics: this.metrics,
      storedInstruction: (mac) => store.bootInstructions.get(mac),
      configuredInstruction: (mac) => cfg.hosts[mac],
      unknownHosts: cfg.unknownHosts,
      health,
      rateLimit: cfg.http.rateLimit,
    });
    const own = this.certificates;
    const http = await this.listen(
      app,
      'HTTP',
      'http.port',
      cfg.http.address,
      cfg.http.port,
      separate ? undefined : own,
    );
    log.info(
      { address: cfg.http.address, port: http, url: `http://${cfg.advertiseAddress}:${http}/boot.ipxe` },
      'http listening',
    );
    if (this.address6) {
      // the same boot plane on IPv6 only: IPv4 clients keep their own addresses, not ::ffff:-mapped ones
      await this.listen(app, 'HTTP (IPv6)', 'http.port', '::', http, separate ? undefined : own, undefined, true);
      log.info({ address: '::', port: http, url: `${bases.v6}/boot.ipxe` }, 'http listening on IPv6');
    }
    if (cfg.api.port === undefined) return { http };
    const api = await this.listen(
      management,
      'management API',
      'api.port',
      cfg.api.address,
      cfg.api.port,
      own,
      cfg.api.tls,
    );
    log.info(
      { address: cfg.api.address, port: api, tls: cfg.api.tls ? 'only' : 'beside http' },
      'management api listening',
    );
    return { http, api };
  }

  private async listen(
    app: Hono,
    what: string,
    setting: string,
    address: string,
    port: number,
    /** HTTPS beside plain HTTP on the same port, with the appliance's own certificate (kubectl sends no token in clear) */
    dual?: Certificates,
    /** the operator's certificate: HTTPS only */
    tls?: { certFile: string; keyFile: string },
    ipv6Only = false,
  ): Promise<number> {
    const secure = (t: { certFile: string; keyFile: string }) =>
      createAdaptorServer({
        fetch: app.fetch,
        createServer: createHttpsServer,
        serverOptions: { cert: readFileSync(t.certFile), key: readFileSync(t.keyFile) },
      });
    const plain = () => createAdaptorServer({ fetch: app.fetch }) as HttpServer;
    const server: ServerType = tls
      ? secure(tls)
      : dual
        ? (dualProtocolServer(plain(), secure(dual) as HttpsServer) as unknown as HttpServer)
        : plain();
    this.servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', (e: Error) => reject(bindFailure(e, { what, setting, proto: 'tcp', address, port })));
      server.listen({ port, host: address, ipv6Only });
    });
    return (server.address() as AddressInfo).port;
  }

  /** The appliance's CA and serving certificate (data dir), for the names it is reached by. */
  private get certificates(): Certificates {
    const { cfg } = this;
    const names = [cfg.advertiseAddress, '127.0.0.1', '::1', 'localhost', hostname()];
    for (const a of [cfg.http.address, cfg.api.address]) if (a !== '0.0.0.0' && a !== '::') names.push(a);
    this.certs ??= ensureCertificates(path.join(cfg.dataDir, 'tls'), names);
    return this.certs;
  }

  private async health(): Promise<Record<string, unknown>> {
    const { cfg } = this;
    return {
      uptimeSeconds: Math.round((Date.now() - this.started) / 1000),
      // on etcd only the leader runs the orchestrator (and talks to BMCs)
      store: { backend: cfg.store.backend, orchestrator: this.workflow?.leading ?? false },
      dhcp: { mode: cfg.dhcp.enabled ? cfg.dhcp.mode : 'off', leases: this.dhcp?.leaseCount ?? 0 },
      dhcp6: { mode: cfg.dhcp6.enabled ? cfg.dhcp6.mode : 'off', leases: this.dhcp6?.leaseCount ?? 0 },
      dhcpMalformed: await this.metrics.value('beskar7_dhcp_malformed_total'),
    };
  }

  private async startTftp(root: string, rendered: (file: string, from: string) => Promise<GrubFile>): Promise<number> {
    // bound to the advertised address, not `::`: each transfer's socket answers from the address the client
    // asked (the segment interface may hold others, e.g. one it formed from our own router advertisements)
    const v6 = this.address6 ? { address6: this.address6 } : {};
    const opts = { ...this.cfg.tftp, ...v6, root, assetsRoot: this.cfg.assetsDir, rendered };
    this.tftp = new TftpServer(opts, this.log, this.metrics, this.timeline);
    const { port } = await this.tftp.start();
    this.log.info({ address: this.cfg.tftp.address, port, root }, 'tftp listening');
    return port;
  }

  private async startDhcp(store: Store, httpPort: number): Promise<Pick<Listening, 'dhcp' | 'pxe'>> {
    const { cfg, log } = this;
    const d = cfg.dhcp;
    const full = d.mode === 'full' ? d.full : undefined;
    const context = {
      mode: d.mode,
      serverIp: cfg.advertiseAddress,
      httpBase: `http://${cfg.advertiseAddress}:${httpPort}`,
      bootFiles: d.bootFiles,
      ipxeEfiMACs: new Set(d.ipxeEfiMACs),
      signedChain: signedMacs(store),
      clientPort: d.clientPort,
      serverPort: d.port,
      ...(full ? { full } : {}),
      ...(full?.knownMACsOnly ? { known: knownMacs(store) } : {}),
    };
    const options = {
      address: d.address,
      port: d.port,
      proxyPort: d.proxyPort,
      interface: d.interface,
      pool: full,
      maxPacketBytes: d.maxPacketBytes,
      context,
    };
    this.dhcp = new DhcpServer(options, store, log, this.metrics, this.timeline);
    const s = await this.dhcp.start();
    const fields = { mode: d.mode, address: d.address, port: s.port, pxePort: s.proxyPort, interface: d.interface };
    log.info({ ...fields, leases: this.dhcp.leaseCount }, 'dhcp listening');
    if (full) this.checkNeighbours(4, full);
    return { dhcp: s.port, ...(s.proxyPort ? { pxe: s.proxyPort } : {}) };
  }

  /** A warning when the pool holds more hosts than the kernel keeps neighbour entries for. */
  private checkNeighbours(family: 4 | 6, pool: { poolStart: string; poolEnd: string }): void {
    const limit = neighbourLimit(family);
    const advice = neighbourAdvice(family, poolSize(pool), limit);
    if (advice) this.log.warn({ pool: `${pool.poolStart}-${pool.poolEnd}`, limit }, advice);
  }

  /**
   * DHCPv6 on the IPv6 segment: in full mode leases, and radvd's router advertisements that send clients to it;
   * in proxy mode a listener only, that notes the addresses hosts ask the site's server for.
   */
  private async startDhcp6(store: Store, address: string, httpPort: number): Promise<number> {
    const { cfg, log } = this;
    const d = cfg.dhcp6;
    const full = d.mode === 'full' ? d.full : undefined;
    const ifname = d.interface as string;
    const context = {
      serverAddress: address,
      httpBase: `http://[${address}]:${httpPort}`,
      serverDuid: this.duid6 as Buffer,
      bootFiles: cfg.dhcp.bootFiles,
      ipxeEfiMACs: new Set(cfg.dhcp.ipxeEfiMACs),
      signedChain: signedMacs(store),
      ...(full ? { full: { leaseSeconds: full.leaseSeconds, dnsServers: full.dnsServers } } : {}),
      ...(full?.knownMACsOnly ? { known: knownMacs(store) } : {}),
    };
    const pool = full && { ...full, reservations: [] };
    const options = {
      interface: ifname,
      port: d.port,
      clientPort: d.clientPort,
      maxPacketBytes: d.maxPacketBytes,
      pool,
      context,
    };
    this.dhcp6 = new Dhcp6Server(options, store, log, this.metrics, this.timeline);
    const { port } = await this.dhcp6.start();
    if (full?.routerAdvertisements) {
      this.radvd = new RouterAdverts(ifname, full.poolStart, cfg.dataDir, log);
      await this.radvd.start();
    }
    log.info({ interface: ifname, address, port, mode: d.mode, leases: this.dhcp6.leaseCount }, 'dhcpv6 listening');
    if (full) this.checkNeighbours(6, full);
    return port;
  }

  /** The addresses these MACs hold now, IPv4 and IPv6: what a claim or a callback may come from. */
  private leasedAddresses(macs: string[]): string[] {
    return [...(this.dhcp?.leasedAddresses(macs) ?? []), ...(this.dhcp6?.leasedAddresses(macs) ?? [])];
  }

  private pruneEvents(store: Store): void {
    // appliances sharing etcd share the events too: the leader prunes them for all
    if (store.backend.kind === 'etcd' && !this.workflow?.leading) return;
    const keep = this.cfg.eventRetention;
    store.pruneEvents(keep).then(
      (n) => n && this.log.info({ deleted: n, kept: keep }, 'old events pruned'),
      (e: Error) => this.log.error({ err: e.message }, 'event pruning failed'),
    );
  }

  async stop(): Promise<void> {
    clearInterval(this.pruner);
    this.hub?.close();
    await this.workflow?.stop();
    this.tftp?.stop();
    await this.dhcp?.stop();
    await this.dhcp6?.stop();
    await this.radvd?.stop();
    await Promise.all(
      this.servers.map((server) => {
        const closed = new Promise<void>((r) => server.close(() => r()));
        // open event streams would hold close() until their next ping
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
        return closed;
      }),
    );
    await this.store?.close();
  }
}
