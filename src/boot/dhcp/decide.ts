import { sameSubnet } from '../../domain/ipv4.js';
import { BROADCAST_FLAG, type DhcpPacket, ipBytes, ipFromBytes, optString, optU8, u32 } from './codec.js';
import type { LeaseOp, LeaseTable } from './leases.js';
import { ARCH_TABLE, type ArchClass, IpxeOpt, MsgType, msgTypeName, Opt } from './options.js';

export interface BootFiles {
  bios: string;
  efi: string;
  ipxeEfi: string;
  /** Debian's signed arm64 network GRUB: Debian ships no arm64 iPXE */
  arm64: string;
  /** shim, Microsoft-signed: the first of the Secure Boot chain (it loads grubx64.efi beside it) */
  secureBoot: string;
}

export interface DecideContext {
  mode: 'proxy' | 'full';
  /** `dhcp`: port 67; `pxe`: the PXE boot server port 4011, asked by firmware after a proxy offer */
  port: 'dhcp' | 'pxe';
  serverIp: string;
  /** e.g. http://10.0.0.1:8080 */
  httpBase: string;
  bootFiles: BootFiles;
  ipxeEfiMACs: ReadonlySet<string>;
  /** why this MAC's host gets the signed chain (shim, GRUB) instead of iPXE; undefined: it gets iPXE */
  signedChain?: (mac: string) => string | undefined;
  clientPort: number;
  serverPort: number;
  /** full mode with dhcp.full.knownMACsOnly: answer only MACs of enrolled hosts (reservations always) */
  known?: (mac: string) => boolean;
  full?: {
    subnetMask: string;
    router?: string | undefined;
    dnsServers: string[];
    domainName?: string | undefined;
    leaseSeconds: number;
  };
}

export interface ClientInfo {
  mac: string;
  msgType: number | undefined;
  /** option 60 starts with PXEClient or HTTPClient and option 93 is present */
  netboot: boolean;
  httpClient: boolean;
  arch: number | undefined;
  archClass: ArchClass | undefined;
  /** iPXE is asking: chainloading is done, hand it the HTTP script */
  ipxe: boolean;
}

export function classify(p: DhcpPacket): ClientInfo {
  const vendor = optString(p, Opt.VendorClass) ?? '';
  const archBuf = p.options.get(Opt.ClientArch);
  const arch = archBuf && archBuf.length >= 2 ? archBuf.readUInt16BE(0) : undefined;
  const httpClient = vendor.startsWith('HTTPClient');
  return {
    mac: p.chaddr,
    msgType: optU8(p, Opt.MessageType),
    netboot: (vendor.startsWith('PXEClient') || httpClient) && arch !== undefined,
    httpClient,
    arch,
    archClass: arch === undefined ? undefined : ARCH_TABLE[arch],
    // user class is a list of length-prefixed strings (RFC 3004) from iPXE; some clients send it bare
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the length prefix is a control character
    ipxe: p.options.has(Opt.IpxeEncap) || /(^|[\x00-\x1f])iPXE$/.test(optString(p, Opt.UserClass) ?? ''),
  };
}

export interface BootInfo {
  file: string;
  /** TFTP (undefined for HTTP URLs) */
  tftpServer?: string;
  vendorClass?: 'PXEClient' | 'HTTPClient';
  ipxe: boolean;
  /** the signed chain, and why this host gets it */
  signed?: string;
}

const ARM64 = 'ARM64: Debian ships no arm64 iPXE';

/** Which file this client loads next: the iPXE binary for its firmware, or the HTTP script once iPXE runs. */
export function bootFileFor(
  c: ClientInfo,
  ctx: Pick<DecideContext, 'serverIp' | 'httpBase' | 'bootFiles' | 'ipxeEfiMACs' | 'signedChain'>,
): BootInfo | undefined {
  // iPXE recognises a proxy offer only by "PXEClient" in option 60
  if (c.ipxe) return { file: `${ctx.httpBase}/boot.ipxe`, vendorClass: 'PXEClient', ipxe: true };
  if (!c.netboot || c.archClass === undefined) return undefined;
  const signed = c.archClass === 'efi-x64' || c.archClass === 'http-efi-x64' ? ctx.signedChain?.(c.mac) : undefined;
  // Debian's signed GRUB has no HTTP: such a host boots over PXE, and its HTTP boot option is left to fail
  if (signed && c.httpClient) return undefined;
  if (signed)
    return { file: ctx.bootFiles.secureBoot, tftpServer: ctx.serverIp, vendorClass: 'PXEClient', ipxe: false, signed };
  const efi = ctx.ipxeEfiMACs.has(c.mac) ? ctx.bootFiles.ipxeEfi : ctx.bootFiles.efi;
  const tftp = (file: string): BootInfo => ({ file, tftpServer: ctx.serverIp, vendorClass: 'PXEClient', ipxe: false });
  const http = (file: string): BootInfo => ({
    file: `${ctx.httpBase}/ipxe/${file}`,
    vendorClass: 'HTTPClient',
    ipxe: false,
  });
  switch (c.archClass) {
    case 'bios':
      return tftp(ctx.bootFiles.bios);
    case 'efi-ia32':
    case 'efi-x64':
      return tftp(efi);
    case 'efi-arm64':
      return { ...tftp(ctx.bootFiles.arm64), signed: ARM64 };
    case 'http-efi-ia32':
    case 'http-efi-x64':
      return http(efi);
    case 'http-efi-arm64':
      // the signed GRUB finds no server from an HTTP boot path (it stops at grub>): the firmware goes on to PXE
      return undefined;
  }
}

/** Why a netboot client gets no boot file. */
function noBoot(c: ClientInfo, ctx: Pick<DecideContext, 'signedChain'>): string {
  if (!c.netboot) return 'not a netboot client';
  const signed = c.httpClient ? ctx.signedChain?.(c.mac) : undefined;
  if (signed) return `HTTP boot: the signed GRUB (${signed}) loads over PXE only`;
  if (c.archClass === 'http-efi-arm64') return `HTTP boot: the signed GRUB (${ARM64}) loads over PXE only`;
  return `unsupported client architecture ${c.arch}`;
}

export interface Destination {
  address: string;
  port: number;
}

export type Outcome =
  | { action: 'ignore'; reason: string; client: ClientInfo }
  /** a lease change that gets no reply (release, decline) */
  | { action: 'silent'; leaseOp: LeaseOp; client: ClientInfo }
  | {
      action: 'reply';
      reply: DhcpPacket;
      to: Destination;
      leaseOp?: LeaseOp;
      boot?: BootInfo;
      client: ClientInfo;
      replyType: string;
    };

const ZERO = '0.0.0.0';

/** `src`: set for the PXE port's replies only, which go back where the request came from */
function destination(req: DhcpPacket, type: number, ctx: DecideContext, src?: Destination): Destination {
  if (src) return src;
  if (req.giaddr !== ZERO) return { address: req.giaddr, port: ctx.serverPort };
  if (type !== MsgType.Nak && req.ciaddr !== ZERO) return { address: req.ciaddr, port: ctx.clientPort };
  // always broadcasting works for BIOS ROMs, undionly.kpxe, OVMF and ipxe.efi alike
  return { address: '255.255.255.255', port: ctx.clientPort };
}

function buildReply(
  req: DhcpPacket,
  type: number,
  ctx: DecideContext,
  yiaddr: string,
  boot: BootInfo | undefined,
  c: ClientInfo,
  leaseSeconds: number | undefined,
  message?: string,
): DhcpPacket {
  const withLease = leaseSeconds !== undefined;
  const o = new Map<number, Buffer>();
  o.set(Opt.MessageType, Buffer.from([type]));
  o.set(Opt.ServerId, ipBytes(ctx.serverIp));
  if (leaseSeconds !== undefined) {
    o.set(Opt.LeaseTime, u32(leaseSeconds));
    o.set(Opt.RenewalTime, u32(Math.floor(leaseSeconds / 2)));
    o.set(Opt.RebindingTime, u32(Math.floor((leaseSeconds * 7) / 8)));
  }
  // only a reply that gives or confirms an address carries the network; a NAK carries its reason instead
  if ((withLease || type === MsgType.Ack) && ctx.full) {
    o.set(Opt.SubnetMask, ipBytes(ctx.full.subnetMask));
    if (ctx.full.router) o.set(Opt.Router, ipBytes(ctx.full.router));
    if (ctx.full.dnsServers.length) o.set(Opt.DnsServers, Buffer.concat(ctx.full.dnsServers.map(ipBytes)));
    if (ctx.full.domainName) o.set(Opt.DomainName, Buffer.from(ctx.full.domainName));
  }
  if (message) o.set(Opt.Message, Buffer.from(message));
  if (boot) {
    // Option 60 "PXEClient" marks a proxy/boot-server answer: EDK2 then asks port 4011 for the file (BINL).
    // A full-mode offer is a plain DHCP offer with a boot file, which every PXE client takes as it is.
    // UEFI HTTP boot always needs "HTTPClient" echoed.
    if (
      boot.vendorClass &&
      c.netboot &&
      (boot.vendorClass === 'HTTPClient' || ctx.mode === 'proxy' || ctx.port === 'pxe')
    ) {
      o.set(Opt.VendorClass, Buffer.from(boot.vendorClass));
    }
    const uuid = req.options.get(Opt.ClientUuid);
    if (uuid) o.set(Opt.ClientUuid, uuid); // PXE spec: echo the client's UUID
    if (boot.tftpServer) o.set(Opt.TftpServerName, Buffer.from(boot.tftpServer));
    o.set(Opt.BootfileName, Buffer.from(boot.file));
    // without ipxe.no-pxedhcp, iPXE waits ~3 s for a ProxyDHCP answer it does not need
    if (boot.ipxe) o.set(Opt.IpxeEncap, Buffer.from([IpxeOpt.NoPxeDhcp, 1, 1]));
  }
  return {
    op: 2,
    htype: req.htype,
    hlen: req.hlen,
    hops: 0,
    xid: req.xid,
    secs: 0,
    flags: req.giaddr !== ZERO ? req.flags : req.flags | BROADCAST_FLAG,
    ciaddr: type === MsgType.Ack ? req.ciaddr : ZERO,
    yiaddr,
    siaddr: boot?.tftpServer ?? (boot ? ctx.serverIp : ZERO),
    giaddr: req.giaddr,
    chaddr: req.chaddr,
    sname: '',
    file: boot && boot.file.length < 128 ? boot.file : '',
    options: o,
  };
}

/** What a reply carries: an address and lease options only with a lease change (offer or bind). */
interface ReplyParts {
  type: number;
  boot?: BootInfo | undefined;
  lease?: Extract<LeaseOp, { kind: 'offer' | 'bind' | 'keep' }>;
  /** the PXE port answers where the request came from */
  src?: Destination | undefined;
  /** option 56: why a NAK refuses */
  message?: string;
}

const reply = (req: DhcpPacket, ctx: DecideContext, c: ClientInfo, p: ReplyParts): Outcome => ({
  action: 'reply',
  reply: buildReply(
    req,
    p.type,
    ctx,
    p.lease?.ip ?? ZERO,
    p.boot,
    c,
    p.lease?.kind === 'keep' ? p.lease.seconds : p.lease && ctx.full?.leaseSeconds,
    p.message,
  ),
  to: destination(req, p.type, ctx, p.src),
  client: c,
  replyType: msgTypeName(p.type),
  ...(p.boot ? { boot: p.boot } : {}),
  ...(p.lease ? { leaseOp: p.lease } : {}),
});

/**
 * Kea's lease caching (cache-threshold 0.25): a REQUEST for the address the client holds, within the first
 * quarter of its lease, is answered with the rest of the stored lease instead of a new one. Nothing is written,
 * and the store still says exactly what the client was told. A PXE boot asks twice within seconds (firmware,
 * then iPXE): one durable write per boot instead of two.
 */
const LEASE_REUSE = 0.25;

/** Whole seconds left of the client's stored lease on `ip` when it may be answered as it is, else 0. */
function reusable(
  leases: LeaseTable,
  mac: string,
  ip: string,
  hostname: string | undefined,
  leaseSeconds: number,
  now: number,
): number {
  const held = leases.leaseOf(mac);
  if (!held || held.ip !== ip || held.hostname !== hostname) return 0;
  if (now - held.boundAt >= LEASE_REUSE * leaseSeconds * 1000) return 0;
  return Math.max(0, Math.floor((held.expiresAt - now) / 1000));
}

const ignore = (reason: string, client: ClientInfo): Outcome => ({ action: 'ignore', reason, client });

function requestedIp(p: DhcpPacket): string | undefined {
  const b = p.options.get(Opt.RequestedIp);
  const fromOpt = b ? ipFromBytes(b) : undefined;
  return fromOpt ?? (p.ciaddr !== ZERO ? p.ciaddr : undefined);
}

/**
 * The address a client shows it holds: what it asks for in a DHCPREQUEST (a proxy sees the broadcast to the
 * site's server), or the source of a request to the PXE port (4011), which a client sends from its address.
 */
export function observedAddress(
  req: DhcpPacket,
  port: 'dhcp' | 'pxe',
  src: Destination | undefined,
): string | undefined {
  if (port === 'pxe') return src && src.address !== ZERO ? src.address : undefined;
  const t = req.options.get(Opt.MessageType)?.[0];
  return t === MsgType.Request ? requestedIp(req) : undefined;
}

/**
 * The whole DHCP protocol decision for one request. Pure apart from reading `leases`; the caller applies
 * `leaseOp` (persisting binds before it sends the ACK).
 */
export function decide(
  req: DhcpPacket,
  ctx: DecideContext,
  leases: LeaseTable | undefined,
  now: number,
  src?: Destination,
): Outcome {
  const c = classify(req);
  if (req.op !== 1) return ignore('not a BOOTREQUEST', c);
  if (c.msgType === undefined) return ignore('no message type (BOOTP is not served)', c);
  const boot = bootFileFor(c, ctx);

  if (ctx.port === 'pxe') {
    // PXE boot server (port 4011): firmware asks here for the boot file after a proxy offer
    if (c.msgType !== MsgType.Request && c.msgType !== MsgType.Inform)
      return ignore(`${msgTypeName(c.msgType)} on the PXE port`, c);
    if (!boot) return ignore('not a netboot client', c);
    return reply(req, ctx, c, { type: MsgType.Ack, boot, src });
  }

  if (ctx.mode === 'proxy') {
    if (c.msgType !== MsgType.Discover) return ignore(`${msgTypeName(c.msgType)} is for the site's DHCP server`, c);
    if (!boot) return ignore(noBoot(c, ctx), c);
    return reply(req, ctx, c, { type: MsgType.Offer, boot });
  }

  if (!leases || !ctx.full) return ignore('full mode without a pool', c);
  if (ctx.known && !ctx.known(c.mac) && !leases.isReserved(c.mac)) {
    return ignore('not a known host (dhcp.full.knownMACsOnly)', c);
  }
  const serverId = req.options.get(Opt.ServerId);
  const serverIdIp = serverId ? ipFromBytes(serverId) : undefined;
  switch (c.msgType) {
    case MsgType.Discover: {
      const ip = leases.pickOffer(c.mac, requestedIp(req), now);
      if (!ip) return ignore('pool exhausted', c);
      return reply(req, ctx, c, { type: MsgType.Offer, boot, lease: { kind: 'offer', ip } });
    }
    case MsgType.Request: {
      if (serverIdIp !== undefined && serverIdIp !== ctx.serverIp) {
        return ignore(`client chose server ${serverIdIp}`, c);
      }
      const ip = requestedIp(req);
      if (!ip) return ignore('request without an address', c);
      const why = leases.conflict(c.mac, ip, now);
      if (why !== undefined) {
        // RFC 2131 4.3.2: INIT-REBOOT on another network or a taken address gets a NAK
        if (
          serverIdIp === undefined &&
          !leases.leaseOf(c.mac) &&
          !sameSubnet(ip, ctx.serverIp, ctx.full.subnetMask) &&
          !leases.inPool(ip)
        ) {
          return ignore(`unknown client asks for foreign address ${ip}`, c);
        }
        return reply(req, ctx, c, { type: MsgType.Nak, message: why });
      }
      const hostname = leases.hostnameFor(c.mac);
      const left = reusable(leases, c.mac, ip, hostname, ctx.full.leaseSeconds, now);
      const lease = left ? { kind: 'keep' as const, ip, seconds: left } : { kind: 'bind' as const, ip, hostname };
      return reply(req, ctx, c, { type: MsgType.Ack, boot, lease });
    }
    case MsgType.Inform:
      return reply(req, ctx, c, { type: MsgType.Ack, boot });
    case MsgType.Release:
      return req.ciaddr !== ZERO
        ? { action: 'silent', leaseOp: { kind: 'release', ip: req.ciaddr }, client: c }
        : ignore('release without ciaddr', c);
    case MsgType.Decline: {
      const b = req.options.get(Opt.RequestedIp);
      const ip = b ? ipFromBytes(b) : undefined;
      if (!ip) return ignore('decline without an address', c);
      // RFC 2131 4.3.3: only the client the address is leased to may decline it
      if (leases.leaseOf(c.mac)?.ip !== ip) return ignore(`decline of ${ip}, which is not leased to this client`, c);
      return { action: 'silent', leaseOp: { kind: 'decline', ip }, client: c };
    }
    default:
      return ignore(`unhandled ${msgTypeName(c.msgType)}`, c);
  }
}
