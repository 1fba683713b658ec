import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { bindToInterface } from './bind-interface.js';
import { type DhcpPacket, decode, encode, ipFromBytes } from './codec.js';
import { MsgType, Opt } from './options.js';

/** A plain DISCOVER from a locally administered MAC, so no real client's lease is touched. */
export function probeDiscover(xid: number, mac: string): DhcpPacket {
  return {
    op: 1,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid,
    secs: 0,
    flags: 0x8000,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: mac,
    sname: '',
    file: '',
    options: new Map([
      [Opt.MessageType, Buffer.from([MsgType.Discover])],
      [Opt.VendorClass, Buffer.from('beskar7-probe')],
    ]),
  };
}

/** The servers that offered an address to our probe (proxy offers without an address do not count). */
export function offeringServers(replies: Buffer[], xid: number, mac: string): string[] {
  const out = new Set<string>();
  for (const r of replies) {
    let p: DhcpPacket;
    try {
      p = decode(r);
    } catch {
      continue;
    }
    if (
      p.op !== 2 ||
      p.xid !== xid ||
      p.chaddr !== mac ||
      p.options.get(Opt.MessageType)?.[0] !== MsgType.Offer ||
      p.yiaddr === '0.0.0.0'
    )
      continue;
    const sid = p.options.get(Opt.ServerId);
    out.add((sid && ipFromBytes(sid)) || p.siaddr);
  }
  return [...out].sort();
}

/** Broadcasts one DISCOVER and lists the DHCP servers that answer within `timeoutMs`. */
export async function probeDhcpServers(opts: {
  interface?: string | undefined;
  timeoutMs: number;
  clientPort?: number;
  serverPort?: number;
}): Promise<string[]> {
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  const replies: Buffer[] = [];
  sock.on('message', (m) => replies.push(m));
  sock.bind(opts.clientPort ?? 68, '0.0.0.0');
  await once(sock, 'listening');
  try {
    sock.setBroadcast(true);
    if (opts.interface) bindToInterface(sock, opts.interface);
    const xid = randomBytes(4).readUInt32BE(0);
    const mac = `02:b7:${[...randomBytes(4)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
    sock.send(encode(probeDiscover(xid, mac)), opts.serverPort ?? 67, '255.255.255.255');
    await new Promise((r) => setTimeout(r, opts.timeoutMs));
    return offeringServers(replies, xid, mac);
  } finally {
    sock.close();
  }
}
