import SeqBuffer from 'dhcp/lib/seqbuffer.js';
import { Opt } from './options.js';

/**
 * Wire codec. The fixed BOOTP header goes through the `dhcp` package's SeqBuffer; options are kept as raw
 * bytes per code because the package's own option walker skips a byte after each Pad, prints unknown codes
 * to stderr, lacks 77/93/94/97/175, and its typed readers desynchronise on a wrong option length.
 */
export interface DhcpPacket {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** lower-case colon form */
  chaddr: string;
  sname: string;
  file: string;
  options: Map<number, Buffer>;
}

export class DecodeError extends Error {
  constructor(public readonly reason: string) {
    super(reason);
  }
}

const HEADER_LEN = 236;
const MAGIC = 0x63825363;
export const BROADCAST_FLAG = 0x8000;

/** Option values as read, in order; a repeated code (RFC 3396) adds a part, joined once at the end. */
type OptionParts = Map<number, Buffer[]>;

function readOptions(buf: Buffer, start: number, end: number, into: OptionParts): void {
  let i = start;
  while (i < end) {
    const code = buf[i] as number;
    if (code === Opt.Pad) {
      i += 1;
      continue;
    }
    if (code === Opt.End) return;
    if (i + 1 >= end) throw new DecodeError(`option ${code} has no length byte`);
    const len = buf[i + 1] as number;
    if (i + 2 + len > end) throw new DecodeError(`option ${code} length ${len} runs past the packet`);
    const value = buf.subarray(i + 2, i + 2 + len);
    // RFC 3396: a repeated code continues the same option; joining once keeps decoding linear in the size
    const parts = into.get(code);
    if (parts) parts.push(value);
    else into.set(code, [value]);
    i += 2 + len;
  }
}

export function decode(buf: Buffer): DhcpPacket {
  if (buf.length < HEADER_LEN + 4) throw new DecodeError(`too short (${buf.length} bytes)`);
  if (buf.readUInt32BE(HEADER_LEN) !== MAGIC) throw new DecodeError('bad magic cookie');
  const sb = new SeqBuffer(buf);
  const op = sb.getUInt8();
  const htype = sb.getUInt8();
  const hlen = sb.getUInt8();
  if (op !== 1 && op !== 2) throw new DecodeError(`bad op ${op}`);
  if (htype !== 1 || hlen !== 6) throw new DecodeError(`unsupported hardware type ${htype}/${hlen}`);
  const hops = sb.getUInt8();
  const xid = sb.getUInt32();
  const secs = sb.getUInt16();
  const flags = sb.getUInt16();
  const ciaddr = sb.getIP();
  const yiaddr = sb.getIP();
  const siaddr = sb.getIP();
  const giaddr = sb.getIP();
  const chaddr = sb.getMAC(htype, hlen).toLowerCase().replace(/-/g, ':');
  const snameRaw = buf.subarray(44, 108);
  const fileRaw = buf.subarray(108, 236);
  const parts: OptionParts = new Map();
  readOptions(buf, HEADER_LEN + 4, buf.length, parts);
  // RFC 2132 option 52: options continue in file (1), sname (2) or both (3)
  const overload = parts.get(Opt.Overload)?.[0]?.[0] ?? 0;
  if (overload & 1) readOptions(fileRaw, 0, fileRaw.length, parts);
  if (overload & 2) readOptions(snameRaw, 0, snameRaw.length, parts);
  const options = new Map<number, Buffer>();
  for (const [code, p] of parts) options.set(code, p.length === 1 ? (p[0] as Buffer) : Buffer.concat(p));
  const cstr = (b: Buffer) => {
    const z = b.indexOf(0);
    return b.toString('latin1', 0, z === -1 ? b.length : z);
  };
  return {
    op,
    htype,
    hlen,
    hops,
    xid,
    secs,
    flags,
    ciaddr,
    yiaddr,
    siaddr,
    giaddr,
    chaddr,
    sname: overload & 2 ? '' : cstr(snameRaw),
    file: overload & 1 ? '' : cstr(fileRaw),
    options,
  };
}

/** BOOTP minimum: some PXE ROMs drop replies shorter than 300 bytes. */
const MIN_PACKET = 300;

export function encode(p: DhcpPacket): Buffer {
  let optLen = 1; // End
  for (const v of p.options.values()) optLen += 2 * Math.max(1, Math.ceil(v.length / 255)) + v.length;
  const total = Math.max(MIN_PACKET, HEADER_LEN + 4 + optLen);
  const sb = new SeqBuffer(undefined, total);
  sb.addUInt8(p.op);
  sb.addUInt8(p.htype);
  sb.addUInt8(p.hlen);
  sb.addUInt8(p.hops);
  sb.addUInt32(p.xid >>> 0);
  sb.addUInt16(p.secs);
  sb.addUInt16(p.flags);
  sb.addIP(p.ciaddr);
  sb.addIP(p.yiaddr);
  sb.addIP(p.siaddr);
  sb.addIP(p.giaddr);
  sb.addMac(p.chaddr);
  sb.addUTF8Pad(p.sname, 64);
  sb.addUTF8Pad(p.file, 128);
  sb.addUInt32(MAGIC);
  const out = sb._data;
  let w = sb._w;
  for (const [code, value] of p.options) {
    // RFC 3396: values over 255 bytes are split into consecutive instances
    for (let off = 0; off === 0 || off < value.length; off += 255) {
      const chunk = value.subarray(off, off + 255);
      out[w++] = code;
      out[w++] = chunk.length;
      chunk.copy(out, w);
      w += chunk.length;
    }
  }
  out[w] = Opt.End;
  return out;
}

// Small helpers for option values.
export const optString = (p: DhcpPacket, code: number): string | undefined => p.options.get(code)?.toString('latin1');
export const optU8 = (p: DhcpPacket, code: number): number | undefined => {
  const b = p.options.get(code);
  return b && b.length >= 1 ? b[0] : undefined;
};
export const ipBytes = (ip: string): Buffer => Buffer.from(ip.split('.').map(Number));
export const ipFromBytes = (b: Buffer): string | undefined => (b.length === 4 ? Array.from(b).join('.') : undefined);
export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
