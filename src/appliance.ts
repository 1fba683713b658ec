import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import type { Config } from './config.js';
import { probeDhcpServers } from './dhcp/probe.js';
import { hostMacs } from './domain/resources.js';
import { resolveInside } from './domain/safe-path.js';
import { DhcpServer } from './dhcp/server.js';
import { createHttpApp } from './http/app.js';
import { loadTemplates } from './http/ipxe.js';
import type { Logger } from './log.js';
import { Metrics } from './metrics.js';
import { createApi } from './http/api.js';
import { Orchestrator } from './orchestrator/reconciler.js';
import { RedfishClient } from './redfish/client.js';
import { Limiter } from './redfish/limiter.js';
import { SecretBox, adminToken } from './store/secrets.js';
import { type StoreEvent, Store } from './store/store.js';
import { BootTimeline } from './timeline.js';
import { TftpServer } from './tftp/server.js';

export class StartupError extends Error {}

export interface Listening {
  http: number;
  tftp?: number;
  dhcp?: number;
  pxe?: number;
}

/** Every iPXE binary a DHCP answer can name must exist before we answer anyone. */
function checkBootFiles(cfg: Config, tftpRoot: string, log: Logger): void {
  const { bios, efi, efiSnp, arm64 } = cfg.dhcp.bootFiles;
  const missing = [bios, efi].filter((f) => !existsSync(path.join(tftpRoot, f)));
  if (missing.length) {
    throw new StartupError(
      `iPXE binaries missing from ${tftpRoot}: ${missing.join(', ')} (run \`make assets\`; it copies them from Debian's ipxe package)`,
    );
  }
  for (const f of [efiSnp, arm64]) {
    if (!existsSync(path.join(tftpRoot, f))) log.warn({ file: f, tftpRoot }, 'optional iPXE binary missing; clients that need it will not boot');
  }
}

/**
 * An inspection image we host ourselves must have its kernel and initrd now, not when a host boots it.
 * Images elsewhere are the operator's to vouch for.
 */
async function localImageProblem(url: string, httpBase: string, assetsDir: string): Promise<string | undefined> {
  const prefix = `${httpBase}/assets/`;
  if (!url.startsWith(prefix)) return undefined;
  for (const f of ['vmlinuz', 'initrd']) {
    const r = await resolveInside(assetsDir, `${url.slice(prefix.length).replace(/\/$/, '')}/${f}`);
    if (!r.ok) return `${url}/${f}: ${r.reason} under ${assetsDir} (the bundled inspector is built by \`make inspector\`)`;
  }
  return undefined;
}

/** The whole appliance in one process: store, DHCP, TFTP, HTTP. */
export class Appliance {
  readonly metrics = new Metrics(true);
  readonly timeline = new BootTimeline();
  private store?: Store;
  private dhcp?: DhcpServer;
  private tftp?: TftpServer;
  private http?: ServerType;
  private orchestrator?: Orchestrator;
  private pruner?: NodeJS.Timeout;

  constructor(
    readonly cfg: Config,
    private readonly log: Logger,
  ) {}

  async start(): Promise<Listening> {
    const { cfg, log } = this;
    const tftpRoot = path.resolve(cfg.assetsDir, cfg.tftp.root);
    checkBootFiles(cfg, tftpRoot, log);
    const templates = loadTemplates(cfg.bootScriptsDir);
    if (!['vmlinuz', 'initrd'].every((f) => existsSync(path.join(cfg.assetsDir, 'inspector', f)))) {
      log.warn({ dir: path.join(cfg.assetsDir, 'inspector') }, 'no bundled inspector image: machines must name another inspectionImageURL (make inspector builds it)');
    }
    // before anything listens: full mode must not start beside another DHCP server
    if (cfg.dhcp.enabled && cfg.dhcp.probeSeconds > 0) {
      const others = (
        await probeDhcpServers({ interface: cfg.dhcp.interface, timeoutMs: cfg.dhcp.probeSeconds * 1000, clientPort: cfg.dhcp.clientPort, serverPort: cfg.dhcp.port }).catch((e: Error) => {
          // e.g. port 68 needs root; the check is a safety net, not a reason to stay down
          log.warn({ err: e.message }, 'could not probe for other DHCP servers');
          return [];
        })
      ).filter((ip) => ip !== cfg.advertiseAddress);
      if (others.length && cfg.dhcp.mode === 'full') {
        throw new StartupError(`another DHCP server answers on this segment (${others.join(', ')}): refusing full mode; use dhcp.mode: proxy beside it`);
      }
      if (others.length) log.warn({ servers: others }, 'another DHCP server answers on this segment; proxy mode adds boot information beside it');
    }

    const store = (this.store = await Store.open(path.join(cfg.dataDir, 'db')));
    this.metrics.hostStates = async () => (await store.hosts.all()).map((h) => h.status.state);
    // workflow events of a host show up on the boot timeline of its MACs
    store.on('event', (e: StoreEvent) => {
      if (!e.host) return;
      void store.hosts.get(e.host).then((h) => {
        const macs = h ? hostMacs(h) : [];
        for (const mac of e.mac ? [e.mac] : macs) this.timeline.add(mac, 'workflow', `${e.kind}: ${e.message}`, !/Fail|Reject|NotMet|Error/.test(e.kind));
      }, () => undefined);
    });
    const started = Date.now();
    const httpBase = `http://${cfg.advertiseAddress}:${cfg.http.port}`;
    const secrets = new SecretBox(cfg.dataDir);
    const admin = adminToken(cfg.dataDir, cfg.api.adminToken);
    if (admin.file) log.info({ file: admin.file }, 'admin API token (Authorization: Bearer <token>) is in this file');
    const rf = cfg.redfish;
    const globalBmc = new Limiter(rf.globalConcurrency, rf.slowCallSeconds * 1000);
    const o = cfg.orchestrator;
    const orchestrator = (this.orchestrator = new Orchestrator(
      store,
      secrets,
      (h, password) =>
        new RedfishClient(
          { ...h.spec.redfish, password },
          {
            timeoutMs: rf.timeoutSeconds * 1000, retries: rf.retries, backoffBaseMs: rf.backoffBaseSeconds * 1000, backoffMaxMs: rf.backoffMaxSeconds * 1000,
            global: globalBmc, perBmc: rf.perBmcConcurrency,
            observe: (method, status, seconds) => {
              this.metrics.redfishCalls.inc({ method, result: status ? String(status) : 'transport' });
              this.metrics.redfishSeconds.observe({ method }, seconds);
            },
          },
          log.child({ host: h.name }),
        ),
      {
        apiBase: httpBase,
        tickMs: o.tickSeconds * 1000,
        powerDeadlineMs: o.powerDeadlineSeconds * 1000,
        inspectionTimeoutMs: o.inspectionTimeoutSeconds * 1000,
        maxAttempts: o.maxAttempts,
        retryBaseMs: o.retryBaseSeconds * 1000,
        retryMaxMs: o.retryMaxSeconds * 1000,
      },
      log,
    ));

    const app = createHttpApp({
      api: createApi({
        store, secrets, orchestrator, adminToken: admin.token, maxBodyBytes: cfg.api.maxBodyBytes, metrics: this.metrics, timeline: this.timeline,
        imageProblem: (url) => localImageProblem(url, httpBase, cfg.assetsDir),
      }),
      timeline: this.timeline,
      onScript: (e) => void orchestrator.scriptFetched(e.mac).catch((err: Error) => log.error({ mac: e.mac, err: err.message }, 'script event failed')),
      httpBase,
      assetsDir: cfg.assetsDir,
      tftpRoot,
      templates,
      log,
      metrics: this.metrics,
      storedInstruction: (mac) => store.bootInstructions.get(mac),
      configuredInstruction: (mac) => cfg.hosts[mac],
      unknownHosts: cfg.unknownHosts,
      health: async () => ({
        uptimeSeconds: Math.round((Date.now() - started) / 1000),
        dhcp: { mode: cfg.dhcp.enabled ? cfg.dhcp.mode : 'off', leases: this.dhcp?.leaseCount ?? 0 },
        dhcpMalformed: await this.metrics.value('beskar7_dhcp_malformed_total'),
      }),
    });
    const http = (this.http = serve({ fetch: app.fetch, port: cfg.http.port, hostname: cfg.http.address }));
    await new Promise<void>((resolve, reject) => {
      http.once('listening', resolve);
      http.once('error', (e: Error) => reject(new StartupError(`HTTP ${cfg.http.address}:${cfg.http.port}: ${e.message}`)));
    });
    const out: Listening = { http: (http.address() as AddressInfo).port };
    log.info({ address: cfg.http.address, port: out.http, url: `http://${cfg.advertiseAddress}:${out.http}/boot.ipxe` }, 'http listening');

    if (cfg.tftp.enabled) {
      this.tftp = new TftpServer({ ...cfg.tftp, root: tftpRoot }, log, this.metrics, this.timeline);
      out.tftp = (await this.tftp.start()).port;
      log.info({ address: cfg.tftp.address, port: out.tftp, root: tftpRoot }, 'tftp listening');
    }

    if (cfg.dhcp.enabled) {
      const full = cfg.dhcp.full;
      this.dhcp = new DhcpServer(
        {
          address: cfg.dhcp.address,
          port: cfg.dhcp.port,
          proxyPort: cfg.dhcp.proxyPort,
          interface: cfg.dhcp.interface,
          pool: cfg.dhcp.mode === 'full' ? full : undefined,
          context: {
            mode: cfg.dhcp.mode,
            serverIp: cfg.advertiseAddress,
            httpBase: `http://${cfg.advertiseAddress}:${out.http}`,
            bootFiles: cfg.dhcp.bootFiles,
            snponlyMACs: new Set(cfg.dhcp.snponlyMACs),
            clientPort: cfg.dhcp.clientPort,
            serverPort: cfg.dhcp.port,
            ...(cfg.dhcp.mode === 'full' && full ? { full } : {}),
          },
        },
        store,
        log,
        this.metrics,
        this.timeline,
      );
      const d = await this.dhcp.start();
      out.dhcp = d.port;
      if (d.proxyPort) out.pxe = d.proxyPort;
      log.info(
        { mode: cfg.dhcp.mode, address: cfg.dhcp.address, port: d.port, pxePort: d.proxyPort, interface: cfg.dhcp.interface, leases: this.dhcp.leaseCount },
        'dhcp listening',
      );
    }
    orchestrator.start();
    this.pruner = setInterval(() => {
      store.pruneEvents(cfg.eventRetention).then(
        (n) => n && log.info({ deleted: n, kept: cfg.eventRetention }, 'old events pruned'),
        (e: Error) => log.error({ err: e.message }, 'event pruning failed'),
      );
    }, 60_000);
    this.pruner.unref();
    return out;
  }

  async stop(): Promise<void> {
    clearInterval(this.pruner);
    await this.orchestrator?.stop();
    this.tftp?.stop();
    await this.dhcp?.stop();
    const closed = new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
    // open event streams would hold close() until their next ping
    (this.http as { closeAllConnections?: () => void } | undefined)?.closeAllConnections?.();
    await closed;
    await this.store?.close();
  }
}
