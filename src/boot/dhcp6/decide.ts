import { ipv6Bytes, ipv6FromBytes, macFromLinkLocal, macOfBytes, urlHost } from '../../domain/ipv6.js';
import { type BootInfo, bootFileFor, type ClientInfo, type DecideContext } from '../dhcp/decide.js';
import type { LeaseOp, LeaseTable } from '../dhcp/leases.js';
import { ARCH_TABLE } from '../dhcp/options.js';
import {
  classBytes,
  classData,
  type Dhcp6Message,
  get6,
  Msg6,
  msg6Name,
  Opt6,
  type Options6,
  option6,
  readOptions6,
  Status6,
  status6,
  u32,
} from './codec.js';

/** IANA's enterprise number of the PXE and UEFI HTTP boot vendor classes (RFC 5970). */
const PXE_ENTERPRISE = 343;

export interface Decide6Context extends Pick<DecideContext, 'bootFiles' | 'ipxeEfiMACs' | 'signedChain' | 'known'> {
  /** the appliance's IPv6 address on the segment: TFTP and HTTP URLs */
  serverAddress: string;
  /** e.g. http://[fd00::1]:8080 */
  httpBase: string;
  /** option 2 of every answer; a client's Request, Renew, Release or Decline to another server is not ours */
  serverDuid: Buffer;
  full?: { leaseSeconds: number; dnsServers: string[] };
}

export interface Client6 extends ClientInfo {
  /** the DUID, hex: what the client calls itself */
  duid: string;
}

/** The first IA_NA of a message: the one address per client we lease (further IAs are not answered). */
interface IaNa {
  iaid: Buffer;
  /** the address the client names in it (IAADDR), if any */
  address?: string;
}

export type Outcome6 =
  | { action: 'ignore'; reason: string; client?: Client6 }
  | {
      action: 'reply';
      reply: Dhcp6Message;
      leaseOp?: LeaseOp;
      /** the lease's key: this DHCPv6 client's DUID and IAID */
      leaseKey?: string;
      boot?: BootInfo;
      /** option 59 as sent */
      bootUrl?: string;
      client: Client6;
      replyType: string;
      /** the address given or confirmed */
      address?: string;
    };

/**
 * The MAC a DHCPv6 client has: from a DUID-LLT or DUID-LL of an Ethernet address, else from its EUI-64
 * link-local source (OVMF and iPXE send a DUID-UUID, but form their link-local address from the MAC).
 */
export function clientMac(duid: Buffer, source: string): string | undefined {
  const type = duid.length >= 4 ? duid.readUInt16BE(0) : -1;
  const hw = duid.length >= 4 ? duid.readUInt16BE(2) : -1;
  const ll = type === 1 ? duid.subarray(8) : type === 3 ? duid.subarray(4) : undefined;
  if (ll && hw === 1) return macOfBytes(ll) ?? macFromLinkLocal(source);
  return macFromLinkLocal(source);
}

/** A DUID-LL (RFC 8415 11.4) of an Ethernet MAC: what the appliance calls itself, and what clientMac reads. */
export const duidLl = (mac: string): Buffer =>
  Buffer.concat([Buffer.from([0, 3, 0, 1]), Buffer.from(mac.replace(/:/g, ''), 'hex')]);

export function classify6(m: Dhcp6Message, mac: string, duid: Buffer): Client6 {
  const archBuf = get6(m.options, Opt6.ClientArch);
  const arch = archBuf && archBuf.length >= 2 ? archBuf.readUInt16BE(0) : undefined;
  const vendor = get6(m.options, Opt6.VendorClass);
  const vendorData =
    vendor && vendor.length >= 4 && vendor.readUInt32BE(0) === PXE_ENTERPRISE
      ? classData(vendor.subarray(4)).join('')
      : '';
  const httpClient = vendorData.startsWith('HTTPClient');
  const user = get6(m.options, Opt6.UserClass);
  return {
    mac,
    duid: duid.toString('hex'),
    msgType: m.type,
    netboot: arch !== undefined && (httpClient || vendorData.startsWith('PXEClient')),
    httpClient,
    arch,
    archClass: arch === undefined ? undefined : ARCH_TABLE[arch],
    ipxe: user !== undefined && classData(user).includes('iPXE'),
  };
}

function firstIaNa(opts: Options6): IaNa | undefined {
  const ia = get6(opts, Opt6.IaNa);
  if (!ia || ia.length < 12) return undefined;
  const addr = get6(readOptions6(ia.subarray(12)), Opt6.IaAddr);
  return { iaid: ia.subarray(0, 4), ...(addr && addr.length >= 16 ? { address: ipv6FromBytes(addr) } : {}) };
}

function iaNa(ia: IaNa, lease: { ip: string; seconds: number } | { status: number; message: string }): Buffer {
  if ('status' in lease)
    return Buffer.concat([ia.iaid, u32(0), u32(0), option6(Opt6.StatusCode, status6(lease.status, lease.message))]);
  const addr = Buffer.concat([ipv6Bytes(lease.ip), u32(lease.seconds), u32(lease.seconds)]);
  const t1 = Math.floor(lease.seconds / 2);
  const t2 = Math.floor(lease.seconds * 0.8);
  return Buffer.concat([ia.iaid, u32(t1), u32(t2), option6(Opt6.IaAddr, addr)]);
}

/** The boot file as a DHCPv6 answer names it (option 59): a TFTP or HTTP URL. */
const bootUrl = (boot: BootInfo, ctx: Decide6Context): string =>
  boot.tftpServer ? `tftp://${urlHost(ctx.serverAddress)}/${boot.file}` : boot.file;

function bootOptions(boot: BootInfo | undefined, ctx: Decide6Context): Options6 {
  if (!boot) return [];
  const out: Options6 = [[Opt6.BootfileUrl, Buffer.from(bootUrl(boot, ctx))]];
  // UEFI HTTP boot takes only an answer that names its class back: enterprise 343, "HTTPClient"
  if (boot.vendorClass === 'HTTPClient')
    out.push([Opt6.VendorClass, Buffer.concat([u32(PXE_ENTERPRISE), classBytes(['HTTPClient'])])]);
  return out;
}

const ignore = (reason: string, client?: Client6): Outcome6 => ({
  action: 'ignore',
  reason,
  ...(client ? { client } : {}),
});

/**
 * Proxy mode: what a client's message to the site's server shows us (clients send to all servers, so we hear
 * it): its MAC, and the address it asks for or holds (the first IA_NA address of a Request, Renew, Rebind or
 * Confirm).
 */
export function shown6(m: Dhcp6Message, source: string): { mac: string; address?: string } | undefined {
  const duid = get6(m.options, Opt6.ClientId);
  const mac = duid && clientMac(duid, source);
  if (!mac) return undefined;
  const holds = m.type >= Msg6.Request && m.type <= Msg6.Rebind; // Request, Confirm, Renew, Rebind
  const address = holds ? firstIaNa(m.options)?.address : undefined;
  return { mac, ...(address ? { address } : {}) };
}

/**
 * The whole DHCPv6 decision for one message from `source` (the client's link-local address). Pure apart from
 * reading `leases`; the caller applies `leaseOp`, storing a bind before the Reply leaves.
 */
export function decide6(
  m: Dhcp6Message,
  ctx: Decide6Context,
  leases: LeaseTable | undefined,
  now: number,
  source: string,
): Outcome6 {
  const duid = get6(m.options, Opt6.ClientId);
  if (!duid) return ignore(`${msg6Name(m.type)} without a client id`);
  const mac = clientMac(duid, source);
  if (!mac) return ignore(`${msg6Name(m.type)}: no MAC in the DUID or the link-local address ${source}`);
  const c = classify6(m, mac, duid);
  const serverId = get6(m.options, Opt6.ServerId);
  const toUs = serverId?.equals(ctx.serverDuid) ?? false;
  const boot = bootFileFor(c, { ...ctx, serverIp: ctx.serverAddress });
  const ia = firstIaNa(m.options);
  const key = ia && `${c.duid}/${ia.iaid.toString('hex')}`;
  const answer = (type: number, extra: Options6, p: { leaseOp?: LeaseOp; address?: string } = {}): Outcome6 => ({
    action: 'reply',
    reply: {
      type,
      xid: m.xid,
      options: [
        [Opt6.ServerId, ctx.serverDuid],
        [Opt6.ClientId, duid],
        ...extra,
        ...(ctx.full?.dnsServers.length
          ? ([[Opt6.DnsServers, Buffer.concat(ctx.full.dnsServers.map(ipv6Bytes))]] as Options6)
          : []),
        ...bootOptions(boot, ctx),
      ],
    },
    client: c,
    replyType: msg6Name(type),
    ...(boot ? { boot, bootUrl: bootUrl(boot, ctx) } : {}),
    ...(key && p.leaseOp ? { leaseKey: key } : {}),
    ...p,
  });

  if (m.type === Msg6.InformationRequest) {
    if (serverId && !toUs) return ignore('information-request for another server', c);
    return answer(Msg6.Reply, []);
  }

  if (!leases || !ctx.full) return ignore('full mode without a pool', c);
  if (ctx.known && !ctx.known(mac)) return ignore('not a known host', c);
  const { leaseSeconds } = ctx.full;
  switch (m.type) {
    case Msg6.Solicit: {
      if (serverId) return ignore('solicit with a server id', c);
      // preference 255: the firmware takes this answer at once instead of collecting others for seconds
      const pref: Options6 = [[Opt6.Preference, Buffer.from([255])]];
      if (!ia || !key) return answer(Msg6.Advertise, pref);
      const ip = leases.pickOffer(key, ia.address, now);
      if (!ip) return answer(Msg6.Advertise, [...pref, [Opt6.IaNa, iaNa(ia, noAddress)]]);
      return answer(Msg6.Advertise, [...pref, [Opt6.IaNa, iaNa(ia, { ip, seconds: leaseSeconds })]], {
        leaseOp: { kind: 'offer', ip },
        address: ip,
      });
    }
    case Msg6.Request:
    case Msg6.Renew:
    case Msg6.Rebind: {
      if (m.type !== Msg6.Rebind && !toUs) return ignore(`${msg6Name(m.type)} for another server`, c);
      if (m.type === Msg6.Rebind && serverId) return ignore('rebind with a server id', c);
      if (!ia || !key) return answer(Msg6.Reply, []);
      const named = ia.address && leases.conflict(key, ia.address, now) === undefined ? ia.address : undefined;
      const ip = named ?? leases.pickOffer(key, undefined, now);
      if (!ip) return answer(Msg6.Reply, [[Opt6.IaNa, iaNa(ia, noAddress)]]);
      return answer(Msg6.Reply, [[Opt6.IaNa, iaNa(ia, { ip, seconds: leaseSeconds })]], {
        leaseOp: { kind: 'bind', ip, mac },
        address: ip,
      });
    }
    case Msg6.Confirm: {
      if (serverId) return ignore('confirm with a server id', c);
      const onLink = !ia?.address || leases.inPool(ia.address);
      const st = onLink ? status6(Status6.Success, 'on link') : status6(Status6.NotOnLink, 'not on this link');
      return answer(Msg6.Reply, [[Opt6.StatusCode, st]]);
    }
    case Msg6.Release:
    case Msg6.Decline: {
      if (!toUs) return ignore(`${msg6Name(m.type)} for another server`, c);
      const held = key && leases.leaseOf(key)?.ip;
      const kind = m.type === Msg6.Release ? 'release' : 'decline';
      const done: Options6 = [[Opt6.StatusCode, status6(Status6.Success, `${kind}d`)]];
      // only the client the address is leased to gives it back (RFC 8415 18.3.7, 18.3.8)
      if (!ia?.address || held !== ia.address) return answer(Msg6.Reply, done);
      return answer(Msg6.Reply, done, { leaseOp: { kind, ip: ia.address } });
    }
    default:
      return ignore(`unhandled ${msg6Name(m.type)}`, c);
  }
}

const noAddress = { status: Status6.NoAddrsAvail, message: 'pool exhausted' };
