import { type DhcpPacket, encode, ipBytes } from '../../src/boot/dhcp/codec.js';
import { MsgType, Opt } from '../../src/boot/dhcp/options.js';

export interface ClientSpec {
  mac?: string;
  type?: number;
  arch?: number;
  vendor?: string;
  userClass?: string;
  ipxeEncap?: boolean;
  giaddr?: string;
  ciaddr?: string;
  requested?: string;
  serverId?: string;
  uuid?: Buffer;
  xid?: number;
}

/** A client request as real firmware sends it (PXE ROM, OVMF, iPXE, udhcpc). */
export function request(s: ClientSpec = {}): DhcpPacket {
  const o = new Map<number, Buffer>();
  o.set(Opt.MessageType, Buffer.from([s.type ?? MsgType.Discover]));
  if (s.vendor !== undefined) o.set(Opt.VendorClass, Buffer.from(s.vendor));
  if (s.arch !== undefined) o.set(Opt.ClientArch, Buffer.from([s.arch >> 8, s.arch & 255]));
  if (s.userClass !== undefined) o.set(Opt.UserClass, Buffer.from(s.userClass, 'latin1'));
  if (s.ipxeEncap) o.set(Opt.IpxeEncap, Buffer.from([0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e]));
  if (s.requested) o.set(Opt.RequestedIp, ipBytes(s.requested));
  if (s.serverId) o.set(Opt.ServerId, ipBytes(s.serverId));
  if (s.uuid) o.set(Opt.ClientUuid, s.uuid);
  return {
    op: 1,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: s.xid ?? 0x1234abcd,
    secs: 0,
    flags: 0,
    ciaddr: s.ciaddr ?? '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: s.giaddr ?? '0.0.0.0',
    chaddr: s.mac ?? '52:54:00:aa:bb:01',
    sname: '',
    file: '',
    options: o,
  };
}

export const pxe = (arch: number, extra: ClientSpec = {}): DhcpPacket =>
  request({ vendor: `PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:002001`, arch, ...extra });

export const wire = (p: DhcpPacket): Buffer => encode(p);
