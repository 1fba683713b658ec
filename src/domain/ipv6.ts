import { isIPv6 } from 'node:net';
import { normalizeMac } from './mac.js';

/** The address as a 128-bit number; the caller has checked it with isIPv6. */
export function ipv6ToBigInt(ip: string): bigint {
  const [head = '', tail] = ip.split('%')[0]?.split('::') ?? [''];
  const groups = (s: string | undefined): number[] => {
    if (!s) return [];
    return s.split(':').flatMap((g) => {
      if (!g.includes('.')) return [Number.parseInt(g, 16)];
      // an embedded IPv4 tail (::ffff:10.0.0.1) is two groups
      const [a = 0, b = 0, c = 0, d = 0] = g.split('.').map(Number);
      return [(a << 8) | b, (c << 8) | d];
    });
  };
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  return all.reduce((n, g) => (n << 16n) | BigInt(g), 0n);
}

/** RFC 5952 text (what URLs and `ip -6 addr` show): lower case, the longest run of zero groups as `::`. */
export function bigIntToIpv6(n: bigint): string {
  const g = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt((7 - i) * 16)) & 0xffffn));
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (best.at < 0) return hex(g);
  return `${hex(g.slice(0, best.at))}::${hex(g.slice(best.at + best.len))}`;
}

export const canonicalIpv6 = (ip: string): string => bigIntToIpv6(ipv6ToBigInt(ip));

export const ipv6Bytes = (ip: string): Buffer => Buffer.from(ipv6ToBigInt(ip).toString(16).padStart(32, '0'), 'hex');
export const ipv6FromBytes = (b: Buffer): string => bigIntToIpv6(BigInt(`0x${b.subarray(0, 16).toString('hex')}`));

/** Six bytes as a MAC's canonical text. */
export const macOfBytes = (b: Buffer): string | undefined =>
  b.length === 6 ? normalizeMac(b.toString('hex').replace(/(..)(?!$)/g, '$1:')) : undefined;

/** The address as a URL's host: IPv6 in brackets. */
export const urlHost = (ip: string): string => (isIPv6(ip) ? `[${ip}]` : ip);

/**
 * The MAC inside a modified EUI-64 link-local address (fe80::5054:ff:fe12:3456 is 52:54:00:12:34:56), as OVMF,
 * iPXE and Linux form it; undefined for a random or stable-privacy one.
 */
export function macFromLinkLocal(ip: string): string | undefined {
  if (!isIPv6(ip)) return undefined;
  const b = ipv6Bytes(ip);
  if (b.readUInt16BE(0) !== 0xfe80 || b[11] !== 0xff || b[12] !== 0xfe) return undefined;
  const mac = Buffer.from([
    (b[8] as number) ^ 2,
    b[9] as number,
    b[10] as number,
    b[13] as number,
    b[14] as number,
    b[15] as number,
  ]);
  return macOfBytes(mac);
}

/** The /64 an address is in, as `fd00::`. */
export const prefix64 = (ip: string): string => bigIntToIpv6((ipv6ToBigInt(ip) >> 64n) << 64n);

/** The address a host with `mac` forms by SLAAC in the /64 of `inPrefix` (modified EUI-64, as Linux and iPXE do). */
export function slaacAddress(inPrefix: string, mac: string): string {
  const b = Buffer.from(mac.replace(/:/g, ''), 'hex');
  const eui = Buffer.concat([
    Buffer.from([(b[0] as number) ^ 2]),
    b.subarray(1, 3),
    Buffer.from([0xff, 0xfe]),
    b.subarray(3, 6),
  ]);
  return bigIntToIpv6(ipv6ToBigInt(prefix64(inPrefix)) | BigInt(`0x${eui.toString('hex')}`));
}
