import { DecodeError } from '../dhcp/codec.js';

/** DHCPv6 (RFC 8415) message types and the option codes we read or write; the `dhcp` package speaks DHCPv4 only. */
export const Msg6 = {
  Solicit: 1,
  Advertise: 2,
  Request: 3,
  Confirm: 4,
  Renew: 5,
  Rebind: 6,
  Reply: 7,
  Release: 8,
  Decline: 9,
  InformationRequest: 11,
  RelayForw: 12,
} as const;

export const Opt6 = {
  ClientId: 1,
  ServerId: 2,
  IaNa: 3,
  IaAddr: 5,
  Oro: 6,
  Preference: 7,
  ElapsedTime: 8,
  StatusCode: 13,
  RapidCommit: 14,
  UserClass: 15,
  VendorClass: 16,
  DnsServers: 23,
  BootfileUrl: 59,
  ClientArch: 61,
  ClientNii: 62,
} as const;

export const Status6 = { Success: 0, NoAddrsAvail: 2, NoBinding: 3, NotOnLink: 4 } as const;

export const msg6Name = (n: number | undefined): string =>
  (Object.entries(Msg6).find(([, v]) => v === n)?.[0] ?? `type${n ?? '?'}`).toLowerCase();

/** Options in the order they came; a code may repeat (several IA_NA, IAADDR inside one IA). */
export type Options6 = [code: number, value: Buffer][];

export interface Dhcp6Message {
  type: number;
  /** 24-bit transaction id */
  xid: number;
  options: Options6;
}

export function readOptions6(buf: Buffer): Options6 {
  const out: Options6 = [];
  let i = 0;
  while (i < buf.length) {
    if (i + 4 > buf.length) throw new DecodeError(`option header cut short at byte ${i}`);
    const code = buf.readUInt16BE(i);
    const len = buf.readUInt16BE(i + 2);
    if (i + 4 + len > buf.length) throw new DecodeError(`option ${code} length ${len} runs past the message`);
    out.push([code, buf.subarray(i + 4, i + 4 + len)]);
    i += 4 + len;
  }
  return out;
}

export const option6 = (code: number, value: Buffer): Buffer => {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(code, 0);
  h.writeUInt16BE(value.length, 2);
  return Buffer.concat([h, value]);
};

export const writeOptions6 = (opts: Options6): Buffer => Buffer.concat(opts.map(([c, v]) => option6(c, v)));

export const get6 = (opts: Options6, code: number): Buffer | undefined => opts.find(([c]) => c === code)?.[1];

export function decode6(buf: Buffer): Dhcp6Message {
  if (buf.length < 4) throw new DecodeError(`message of ${buf.length} bytes`);
  const type = buf[0] as number;
  if (type === Msg6.RelayForw) throw new DecodeError('relayed message');
  return { type, xid: buf.readUIntBE(1, 3), options: readOptions6(buf.subarray(4)) };
}

export function encode6(m: Dhcp6Message): Buffer {
  const h = Buffer.alloc(4);
  h[0] = m.type;
  h.writeUIntBE(m.xid, 1, 3);
  return Buffer.concat([h, writeOptions6(m.options)]);
}

export const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};

export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

/** RFC 8415 21.15/21.16 class data: a list of 2-byte-length-prefixed strings. */
export function classData(b: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i + 2 <= b.length) {
    const len = b.readUInt16BE(i);
    out.push(b.subarray(i + 2, i + 2 + len).toString('latin1'));
    i += 2 + len;
  }
  return out;
}

export const classBytes = (items: string[]): Buffer =>
  Buffer.concat(items.map((s) => Buffer.concat([u16(s.length), Buffer.from(s, 'latin1')])));

/** A status code option's value (RFC 8415 21.13). */
export const status6 = (code: number, message: string): Buffer => Buffer.concat([u16(code), Buffer.from(message)]);
