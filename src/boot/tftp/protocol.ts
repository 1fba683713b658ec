/**
 * TFTP as pure functions (RFC 1350, options RFC 2347/2348/2349, windowsize RFC 7440): parse a request, settle
 * its options, build packets, and decide what an ACK means for a transfer's window. Sockets live in transfer.ts.
 */

export const Op = { RRQ: 1, WRQ: 2, DATA: 3, ACK: 4, ERROR: 5, OACK: 6 } as const;

export const ErrorCode = { NOT_DEFINED: 0, NOT_FOUND: 1, ACCESS: 2, ILLEGAL: 4, OPTION: 8 } as const;

export type Refusal = 'length' | 'opcode' | 'write' | 'request' | 'option';

/**
 * Options whose value no client could mean outside these ranges (RFC 2348, 2349, 7440): the request is refused.
 * A timeout outside 1-255 s is only left out of the OACK (the npm tftp client sends milliseconds).
 */
const RANGES: Record<string, [number, number]> = {
  blksize: [8, 65464],
  windowsize: [1, 65535],
  tsize: [0, 999999],
};

export interface ReadRequest {
  file: string;
  /** option names lower-cased, as the client sent them; unknown ones are kept and ignored */
  options: Map<string, string>;
}

const int = (s: string | undefined, lo: number, hi: number): number | undefined => {
  if (s === undefined || !/^\d{1,6}$/.test(s)) return undefined;
  const n = Number(s);
  return n >= lo && n <= hi ? n : undefined;
};

/** A read request, or why the datagram is refused before any transfer starts. */
export function parseRequest(msg: Buffer): ReadRequest | { refused: Refusal; option?: string } {
  // 2 opcode bytes, a 1-byte name, "mail" (the shortest mode), 2 NULs; a request fits the classic 512 bytes
  if (msg.length < 9 || msg.length > 512) return { refused: 'length' };
  const op = msg.readUInt16BE(0);
  if (op === Op.WRQ) return { refused: 'write' };
  if (op !== Op.RRQ) return { refused: 'opcode' };
  if (msg[msg.length - 1] !== 0) return { refused: 'request' };
  const fields = msg.toString('latin1', 2, msg.length - 1).split('\0');
  const [file, mode, ...rest] = fields;
  // netascii is served as the bytes are: what PXE fetches is binary
  if (!file || !mode || !['octet', 'netascii'].includes(mode.toLowerCase()) || rest.length % 2) {
    return { refused: 'request' };
  }
  const options = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) {
    const [name, value] = [(rest[i] as string).toLowerCase(), rest[i + 1] as string];
    const range = RANGES[name];
    // a known option with an impossible value is refused (ERROR 8), not silently served with the default
    if (range && int(value, range[0], range[1]) === undefined) return { refused: 'option', option: name };
    options.set(name, value);
  }
  return { file, options };
}

export interface Limits {
  maxBlksize: number;
  maxWindowsize: number;
}

export interface Settled {
  blksize: number;
  windowsize: number;
  timeoutMs: number;
  /** the OACK to send first; undefined: no option taken, data starts at once (plain RFC 1350) */
  oack?: Map<string, string>;
}

/** The options this server takes, within its limits; an option out of range is ignored (RFC 2347). */
export function settle(options: Map<string, string>, size: number, limits: Limits, defaultTimeoutMs: number): Settled {
  const oack = new Map<string, string>();
  const blk = int(options.get('blksize'), 8, 65464);
  const blksize = blk === undefined ? 512 : Math.min(blk, limits.maxBlksize);
  if (blk !== undefined) oack.set('blksize', String(blksize));
  const win = int(options.get('windowsize'), 1, 65535);
  const windowsize = win === undefined ? 1 : Math.min(win, limits.maxWindowsize);
  if (win !== undefined) oack.set('windowsize', String(windowsize));
  const timeout = int(options.get('timeout'), 1, 255);
  if (timeout !== undefined) oack.set('timeout', String(timeout));
  if (options.has('tsize')) oack.set('tsize', String(size));
  return {
    blksize,
    windowsize,
    timeoutMs: timeout === undefined ? defaultTimeoutMs : timeout * 1000,
    ...(oack.size ? { oack } : {}),
  };
}

export function oackPacket(o: Map<string, string>): Buffer {
  const body = [...o].map(([k, v]) => `${k}\0${v}\0`).join('');
  const b = Buffer.alloc(2 + Buffer.byteLength(body, 'latin1'));
  b.writeUInt16BE(Op.OACK, 0);
  b.write(body, 2, 'latin1');
  return b;
}

export function errorPacket(code: number, message: string): Buffer {
  const b = Buffer.alloc(5 + Buffer.byteLength(message, 'latin1'));
  b.writeUInt16BE(Op.ERROR, 0);
  b.writeUInt16BE(code, 2);
  b.write(message, 4, 'latin1');
  return b;
}

/** The blocks of a file: the last one shorter than blksize, an empty one when the size is a multiple. */
export const blockCount = (size: number, blksize: number): number => Math.floor(size / blksize) + 1;

/** A client's packet on a transfer's socket, as the sender sees it. */
export type Reply = { kind: 'ack'; block: number } | { kind: 'error'; message: string } | { kind: 'junk' };

export function parseReply(msg: Buffer): Reply {
  if (msg.length < 4) return { kind: 'junk' };
  const op = msg.readUInt16BE(0);
  if (op === Op.ACK) return { kind: 'ack', block: msg.readUInt16BE(2) };
  if (op === Op.ERROR) {
    const end = msg.indexOf(0, 4);
    return { kind: 'error', message: msg.toString('latin1', 4, end < 0 ? msg.length : end) };
  }
  return { kind: 'junk' };
}

/**
 * Which absolute block a 16-bit ACK confirms, given the last confirmed and the last sent block; undefined for
 * an ACK outside that range (a stale duplicate). Block numbers roll over from 65535 to 0.
 */
export function ackedBlock(wire: number, acked: number, sent: number): number | undefined {
  const ahead = (wire - (acked % 65536) + 65536) % 65536;
  const abs = acked + ahead;
  return ahead > 0 && abs <= sent ? abs : undefined;
}
