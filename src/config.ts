import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { BootInstructionSchema } from './domain/boot.js';
import { canonicalIpv6, ipv6ToBigInt } from './domain/ipv6.js';
import { MacSchema } from './domain/mac.js';
import { formatZodError } from './domain/zod-error.js';
import { repoRoot } from './paths.js';

const Ipv4 = z.string().refine((s) => isIPv4(s), 'must be an IPv4 address');
const Port = z.number().int().min(0).max(65535);
const Ipv6 = z
  .string()
  .refine((s) => isIPv6(s) && !s.includes('%'), 'must be an IPv6 address')
  .transform(canonicalIpv6);
/** a pool is walked address by address: a /104 at most */
const MAX_POOL6 = 2n ** 24n;

const ReservationSchema = z.object({ mac: MacSchema, ip: Ipv4, hostname: z.string().optional() });

const FullDhcpSchema = z
  .object({
    poolStart: Ipv4,
    poolEnd: Ipv4,
    subnetMask: Ipv4.default('255.255.255.0'),
    router: Ipv4.optional(),
    dnsServers: z.array(Ipv4).default([]),
    domainName: z.string().optional(),
    leaseSeconds: z.number().int().min(60).default(3600),
    /** an offer holds its address this long before it may be offered to someone else */
    offerHoldSeconds: z.number().int().min(1).default(30),
    reservations: z.array(ReservationSchema).default([]),
    /** answer only enrolled hosts' MACs and reservations: a stranger on the segment gets no address */
    knownMACsOnly: z.boolean().default(false),
  })
  .strict();

const FullDhcp6Schema = z
  .object({
    /** the addresses leased (IA_NA); the prefix router advertisements announce is poolStart's /64 */
    poolStart: Ipv6,
    poolEnd: Ipv6,
    dnsServers: z.array(Ipv6).default([]),
    leaseSeconds: z.number().int().min(60).default(3600),
    offerHoldSeconds: z.number().int().min(1).default(30),
    /**
     * Router advertisements with the managed flag (RFC 4861): without one, firmware and Linux never ask DHCPv6.
     * The appliance runs radvd for them; off when the site's router sends them.
     */
    routerAdvertisements: z.boolean().default(true),
    /** answer only enrolled hosts' MACs: a stranger on the segment gets no address */
    knownMACsOnly: z.boolean().default(false),
  })
  .strict()
  .superRefine((f, ctx) => {
    const size = ipv6ToBigInt(f.poolEnd) - ipv6ToBigInt(f.poolStart) + 1n;
    if (size < 1n || size > MAX_POOL6)
      ctx.addIssue({ code: 'custom', path: ['poolEnd'], message: `the pool must hold 1 to ${MAX_POOL6} addresses` });
    if (ipv6ToBigInt(f.poolStart) >> 64n !== ipv6ToBigInt(f.poolEnd) >> 64n)
      ctx.addIssue({ code: 'custom', path: ['poolEnd'], message: 'poolStart and poolEnd must share one /64' });
  });

/**
 * DHCPv6 for IPv6-only segments: PXEv6 and HTTPv6 firmware, and iPXE, get their boot file as DHCPv4 clients do;
 * TFTP and HTTP listen on IPv6 too.
 */
const Dhcp6Schema = z
  .object({
    enabled: z.boolean().default(false),
    /**
     * full: DHCPv6 leases and router advertisements. proxy: no DHCPv6 from us (a boot-file-only answer beside the
     * site's server stalls OVMF's PXEv6 client: docs/booting.md); the site's server names our boot file (option 59)
     * and we serve it over TFTP and HTTP on IPv6, listening on the DHCPv6 port for the addresses hosts ask for
     */
    mode: z.enum(['proxy', 'full']).default('full'),
    /** the segment's interface: DHCPv6 is link-local multicast, and our address on it is what clients are told */
    interface: z.string().optional(),
    /** what clients are told to reach TFTP and HTTP at; without it, the interface's global IPv6 address */
    advertiseAddress: Ipv6.optional(),
    port: Port.default(547),
    clientPort: Port.default(546),
    maxPacketBytes: z.number().int().min(1280).max(65535).default(1500),
    full: FullDhcp6Schema.optional(),
  })
  .strict()
  .superRefine((d, ctx) => {
    if (d.enabled && !d.interface)
      ctx.addIssue({ code: 'custom', path: ['interface'], message: "DHCPv6 needs the segment's interface" });
    if (d.enabled && d.mode === 'full' && !d.full)
      ctx.addIssue({
        code: 'custom',
        path: ['full'],
        message: 'mode "full" needs a pool (dhcp6.full.poolStart/poolEnd)',
      });
  });

const EtcdSchema = z
  .object({
    endpoints: z.array(z.url({ protocol: /^https?$/ })).min(1),
    /** every key of this installation starts with it: installations can share a cluster */
    prefix: z
      .string()
      .regex(/^[\w./-]*\/$/, 'must end with /')
      .default('/beskar7/'),
    /** PEM files: a CA alone verifies the server; with certFile and keyFile the appliance shows a client certificate */
    tls: z
      .object({ caFile: z.string(), certFile: z.string().optional(), keyFile: z.string().optional() })
      .strict()
      .refine((t) => !t.certFile === !t.keyFile, 'certFile and keyFile go together')
      .optional(),
    auth: z.object({ username: z.string(), password: z.string() }).strict().optional(),
    /** an etcd call unanswered this long: etcd counts as unreachable (writes get 503) */
    timeoutSeconds: z.number().min(0.1).default(3),
    /** the leader's lease: another appliance takes over this long after the leader dies */
    leaseTTLSeconds: z.number().int().min(2).default(5),
  })
  .strict();

export const ConfigSchema = z
  .object({
    dataDir: z.string().default(path.join(repoRoot, 'data')),
    /** leveldb: the embedded default, in dataDir; etcd: one inventory shared by several appliances */
    store: z
      .object({ backend: z.enum(['leveldb', 'etcd']).default('leveldb'), etcd: EtcdSchema.optional() })
      .strict()
      .superRefine((s, ctx) => {
        if (s.backend === 'etcd' && !s.etcd)
          ctx.addIssue({ code: 'custom', path: ['etcd'], message: 'backend "etcd" needs store.etcd.endpoints' });
      })
      .prefault({}),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
    /** The address PXE clients use to reach TFTP and HTTP (siaddr, option 54, URLs). Without it: the IPv4
     *  address of dhcp.interface, or the only non-loopback IPv4 address; start-up stops when that is not clear. */
    advertiseAddress: Ipv4.optional(),
    assetsDir: z.string().default(path.join(repoRoot, 'assets')),
    bootScriptsDir: z.string().default(path.join(repoRoot, 'boot-scripts')),
    http: z
      .object({
        address: z.string().default('0.0.0.0'),
        port: Port.default(80),
        /** per source address, on what anyone on the segment may call: boot scripts and report intake */
        rateLimit: z
          .object({
            perSecond: z.number().positive().default(20),
            burst: z.number().int().min(1).default(100),
            /** all addresses together: spreading requests over many addresses does not multiply the budget */
            global: z
              .object({ perSecond: z.number().positive().default(5000), burst: z.number().int().min(1).default(10000) })
              .strict()
              .prefault({}),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    tftp: z
      .object({
        enabled: z.boolean().default(true),
        address: Ipv4.default('0.0.0.0'),
        port: Port.default(69),
        /** TFTP root; relative paths resolve against assetsDir */
        root: z.string().default('ipxe'),
        maxBlksize: z.number().int().min(512).max(65464).default(65464),
        maxWindowsize: z.number().int().min(1).max(65535).default(64),
        retries: z.number().int().min(1).default(5),
        /** transfers at once, in all and per client address; more are refused with an ERROR packet */
        maxTransfers: z.number().int().min(1).default(512),
        maxTransfersPerClient: z.number().int().min(1).default(8),
      })
      .strict()
      .prefault({}),
    dhcp: z
      .object({
        enabled: z.boolean().default(true),
        mode: z.enum(['proxy', 'full']).default('proxy'),
        /** bind to one interface (SO_BINDTOIFINDEX); without it, all interfaces */
        interface: z.string().optional(),
        address: Ipv4.default('0.0.0.0'),
        port: Port.default(67),
        /** PXE boot server port: UEFI firmware asks a proxy here for the boot file */
        proxyPort: Port.default(4011),
        /** larger datagrams are dropped (and counted) before they are decoded */
        maxPacketBytes: z.number().int().min(576).max(65535).default(1500),
        /** reply destination port for clients (68 on a real network) */
        clientPort: Port.default(68),
        bootFiles: z
          .object({
            bios: z.string().default('undionly.kpxe'),
            // the firmware's own network driver (SNP), as Ironic defaults to: Debian's ipxe.efi, with its own
            // drivers, does not return to the firmware when a host leaves network boot (OVMF hangs after exit)
            efi: z.string().default('snponly.efi'),
            // iPXE with its own NIC drivers, for the MACs in ipxeEfiMACs
            ipxeEfi: z.string().default('ipxe.efi'),
            // Debian's signed arm64 network GRUB (make assets): Debian ships no arm64 iPXE
            arm64: z.string().default('grubnetaa64.efi'),
            // Microsoft-signed shim (make assets): for Secure Boot hosts; it loads grubx64.efi from beside itself
            secureBoot: z.string().default('shimx64.efi'),
          })
          .strict()
          .prefault({}),
        /** at start, look this long for other DHCP servers (they may ping-check for ~2 s before offering):
         *  full mode refuses to start beside one; 0 skips */
        probeSeconds: z.number().min(0).default(4),
        /** MACs whose UEFI firmware gets bootFiles.ipxeEfi instead of bootFiles.efi (a broken SNP driver) */
        ipxeEfiMACs: z.array(MacSchema).default([]),
        full: FullDhcpSchema.optional(),
      })
      .strict()
      .superRefine((d, ctx) => {
        if (d.mode === 'full' && !d.full)
          ctx.addIssue({
            code: 'custom',
            path: ['full'],
            message: 'mode "full" needs a pool (dhcp.full.poolStart/poolEnd)',
          });
      })
      .prefault({}),
    dhcp6: Dhcp6Schema.prefault({}),
    api: z
      .object({
        /** without it, a token is generated once into <dataDir>/admin-token */
        adminToken: z.string().min(16).optional(),
        /** reads and watches only (dashboards, monitoring); without it, generated once into <dataDir>/readonly-token */
        readOnlyToken: z.string().min(16).optional(),
        /** with a port, /api (but report intake), /ui and /metrics leave the boot listener for one of their own */
        address: z.string().default('127.0.0.1'),
        port: Port.optional(),
        /** HTTPS on that management listener: PEM certificate and key files */
        tls: z.object({ certFile: z.string(), keyFile: z.string() }).strict().optional(),
        maxBodyBytes: z
          .number()
          .int()
          .min(1024)
          .default(1 << 20),
        /** hosts, machines and secrets the store keeps, each: a client that applies without end gets a 403 */
        maxObjects: z.number().int().min(1).default(10_000),
        /** live streams open at once (the dashboard's event stream and watches): each one is sent every event */
        maxStreams: z.number().int().min(1).default(32),
        /** of those, how many one token may hold: the read-only token's dashboards cannot starve the admin's */
        maxStreamsPerToken: z.number().int().min(1).default(16),
      })
      .strict()
      .superRefine((a, ctx) => {
        if (a.tls && a.port === undefined) {
          ctx.addIssue({ code: 'custom', path: ['tls'], message: 'TLS is for the management listener: set api.port' });
        }
      })
      .prefault({}),
    orchestrator: z
      .object({
        inspectionTimeoutSeconds: z.number().min(0.1).default(900),
        /** from a passed validation to the inspector's provisioned callback (contract: 20 min) */
        deploymentTimeoutSeconds: z.number().min(0.1).default(1200),
        /** a host that fails a machine's requirements: the machine claims the next matching host before failing */
        tryOtherHosts: z.boolean().default(true),
        /**
         * A host released after a deployment boots the bundled inspector to erase its disks' partition tables
         * and signatures (Ironic's metadata erase) before it is Available again
         */
        cleanDisks: z.boolean().default(true),
        maxAttempts: z.number().int().min(1).default(3),
        retryBaseSeconds: z.number().min(0).default(30),
        retryMaxSeconds: z.number().min(0).default(600),
        tickSeconds: z.number().min(0.05).default(5),
        powerDeadlineSeconds: z.number().min(1).default(120),
      })
      .strict()
      .prefault({}),
    /** How hosts boot the inspector (contract v4.2 §4.1, §5). */
    inspector: z
      .object({
        /**
         * PEM file of the CA that issued the certificate beskar7.api is served with (TLS in front of the
         * appliance): sent base64-encoded as beskar7.ca, which the real inspector requires. Without it, the
         * appliance's own CA (<dataDir>/tls/ca.crt), which issued the certificate of its boot listener.
         */
        caFile: z.string().optional(),
        /**
         * beskar7.api over HTTPS (the boot listener speaks it beside HTTP): what the contract and the real inspector
         * require. Off, the callbacks stay plain HTTP: the bundled inspector's busybox has no TLS client.
         */
        https: z.boolean().default(false),
        /** appended to the contract's parameters: where the kernel and the inspector write (BMCs show ttyS0) */
        kernelArgs: z.string().default('console=tty0 console=ttyS0'),
        /**
         * A machine without targetImageDigest gets the digest the appliance computes: of the file for a target
         * it hosts, else of the target fetched once, which may be at most this large and take this long.
         */
        pinMaxGiB: z.number().positive().default(64),
        pinTimeoutSeconds: z.number().positive().default(1800),
      })
      .strict()
      .prefault({}),
    redfish: z
      .object({
        timeoutSeconds: z.number().min(0.1).default(30),
        retries: z.number().int().min(0).default(6),
        backoffBaseSeconds: z.number().min(0).default(2),
        backoffMaxSeconds: z.number().min(0).default(60),
        perBmcConcurrency: z.number().int().min(1).default(2),
        globalConcurrency: z.number().int().min(1).default(32),
        /** a call unanswered this long stops counting against globalConcurrency (hung BMCs starve nobody) */
        slowCallSeconds: z.number().min(0.01).default(5),
      })
      .strict()
      .prefault({}),
    /** Workflow events kept in the store (the oldest go first, checked every minute). */
    eventRetention: z.number().int().min(100).default(100_000),
    /** What hosts without a stored instruction boot. */
    unknownHosts: BootInstructionSchema.prefault({ script: 'exit' }),
    /** Per-MAC boot instructions given in config (the inventory adds its own in the store). */
    hosts: z.record(MacSchema, BootInstructionSchema).default({}),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
/** A config whose advertise address is settled (given, or chosen at start). */
export type ResolvedConfig = Config & { advertiseAddress: string };

export class ConfigError extends Error {}

export function parseConfig(raw: unknown): Config {
  const r = ConfigSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`invalid config: ${formatZodError(r.error)}`);
  return r.data;
}

/** Set a dotted path (`dhcp.mode`) in a plain object, coercing numbers and booleans. */
function setPath(obj: Record<string, unknown>, dotted: string, value: string): void {
  const keys = dotted.split('.');
  let cur: Record<string, unknown> = obj;
  for (const k of keys.slice(0, -1)) {
    const next = cur[k];
    if (typeof next !== 'object' || next === null) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  const coerced: unknown = /^-?\d+$/.test(value)
    ? Number(value)
    : value === 'true'
      ? true
      : value === 'false'
        ? false
        : value;
  cur[keys[keys.length - 1] as string] = coerced;
}

/**
 * Config = file (YAML or JSON) < BESKAR7_* env (`BESKAR7_DHCP__MODE=full`) < `--set dhcp.mode=full` flags.
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; sets?: string[] }): Config {
  let raw: Record<string, unknown> = {};
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${opts.file}: ${(e as Error).message}`);
    }
    try {
      raw = (YAML.parse(text) ?? {}) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`config file ${opts.file} is not valid YAML/JSON: ${(e as Error).message}`);
    }
  }
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (!k.startsWith('BESKAR7_') || v === undefined || k === 'BESKAR7_CONFIG') continue;
    const dotted = k
      .slice('BESKAR7_'.length)
      .split('__')
      .map((part) => part.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()))
      .join('.');
    setPath(raw, dotted, v);
  }
  for (const s of opts.sets ?? []) {
    const eq = s.indexOf('=');
    if (eq < 1) throw new ConfigError(`--set needs key=value, got "${s}"`);
    setPath(raw, s.slice(0, eq), s.slice(eq + 1));
  }
  return parseConfig(raw);
}
