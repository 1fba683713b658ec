import { type FileHandle, open } from 'node:fs/promises';
import { blockCount, Op } from './protocol.js';

/**
 * A file as TFTP DATA packets, laid out in memory as they go on the wire: one readv per chunk puts the file's
 * bytes behind a 4-byte gap per block, the headers go into the gaps once, and a block is sent as a view of its
 * chunk. Sending then copies and allocates nothing per block, so a transfer gives the GC nothing to collect.
 */

/**
 * A chunk's bytes: whole packets of one blksize, at most this many (and at most IOV_MAX of them, one readv). A
 * transfer holds at most two chunks (the one being sent, the one read ahead): 512 transfers of large files that
 * never ACK hold 256 MiB at most, and each chunk's read is still shared by 178 blocks of 1468 bytes.
 */
const CHUNK_BYTES = 256 << 10;
const IOV_MAX = 1024;

/**
 * Full-size chunk buffers given back by finished and advanced transfers, taken by the next: in the steady state
 * a transfer of a large file allocates none. Kept up to 16 MiB. The last chunk of a file (a small file's only
 * one) is allocated to its size, as a whole chunk for a 70 KB undionly.kpxe would waste the rest.
 */
const spare: Buffer[] = [];
const SPARE = 64;
const take = (bytes: number) =>
  bytes === CHUNK_BYTES ? (spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES)) : Buffer.allocUnsafeSlow(bytes);
const giveBack = (b: Buffer) => void (b.length === CHUNK_BYTES && spare.length < SPARE && spare.push(b));

/**
 * Files up to this size (the iPXE binaries, 74 KB to 1 MB, fetched by every machine of a PXE storm) are read
 * once per blksize and their chunks shared by every transfer, kept or in flight: no file is opened per
 * transfer, and 200 clients asking at once wait for one read. A file is known by path, size and mtime, the stat of each request: a replaced file is read
 * afresh, and its old chunks age out. The shared chunks take at most SHARED_BYTES, least recently used first.
 */
const SHARED_FILE_MAX = 4 << 20;
const SHARED_BYTES = 32 << 20;
const shared = new Map<string, { chunk: Promise<Buffer>; bytes: number }>();
let sharedBytes = 0;

/** The chunk under `key`, read by `read` if no transfer has it yet. */
function sharedChunk(key: string, bytes: number, read: () => Promise<Buffer>): Promise<Buffer> {
  const known = shared.get(key);
  if (known) {
    shared.delete(key); // re-insert: Map order is the LRU order
    shared.set(key, known);
    return known.chunk;
  }
  const entry = { chunk: read(), bytes };
  shared.set(key, entry);
  sharedBytes += bytes;
  const forget = () => {
    if (shared.get(key) !== entry) return;
    shared.delete(key);
    sharedBytes -= bytes;
  };
  entry.chunk.catch(forget);
  for (const [k, e] of shared) {
    if (sharedBytes <= SHARED_BYTES || e === entry) break;
    shared.delete(k);
    sharedBytes -= e.bytes;
  }
  return entry.chunk;
}

/** A small file whose chunks are shared (see SHARED_FILE_MAX): no handle of its own. */
export interface SharedFile {
  path: string;
  mtimeMs: number;
}

/** What a transfer sends: a file as its request's stat saw it, or bytes rendered for this client (GRUB's config). */
export type TftpSource = { path: string; size: number; mtimeMs: number } | { bytes: Buffer; size: number };

/** As readv from `bytes` at `at` into `parts`: the bytes copied. */
function copyInto(bytes: Buffer, at: number, parts: Buffer[]): number {
  let n = 0;
  for (const p of parts) n += bytes.copy(p, 0, at + n, at + n + p.length);
  return n;
}

export class FilePackets {
  /**
   * The file of a transfer (as its request's stat saw it) as packets: a small one through the shared chunks,
   * a large one through a handle of its own, closed by close().
   */
  static async open(file: TftpSource, blksize: number, inFlight: () => boolean): Promise<FilePackets> {
    if ('bytes' in file) return new FilePackets(file.bytes, file.size, blksize, inFlight);
    if (file.size <= SHARED_FILE_MAX) return new FilePackets(file, file.size, blksize, inFlight);
    return new FilePackets(await open(file.path, 'r'), file.size, blksize, inFlight, true);
  }

  /** blocks per chunk */
  private readonly perChunk: number;
  /** blocks of the file, the last one short (empty when the size is a multiple of blksize) */
  readonly blocks: number;
  private readonly stride: number;
  private readonly reads = new Map<number, Promise<Buffer>>();
  private readonly ready = new Map<number, Buffer>();
  private readonly sharedFile?: SharedFile;

  /**
   * `source`: the transfer's open file, a small file read through the shared chunks, or bytes in memory. `inFlight` says whether
   * the socket still holds views of chunks (a queued send): a chunk goes back to the pool only when it does not,
   * else the GC takes it. `owned`: close() closes the handle (open() opened it), else it stays the caller's.
   */
  constructor(
    private readonly source: FileHandle | SharedFile | Buffer,
    private readonly size: number,
    private readonly blksize: number,
    private readonly inFlight: () => boolean,
    private readonly owned = false,
  ) {
    this.stride = 4 + blksize;
    this.perChunk = Math.min(IOV_MAX, Math.floor(CHUNK_BYTES / this.stride));
    this.blocks = blockCount(size, blksize);
    if (!Buffer.isBuffer(source) && 'mtimeMs' in source) this.sharedFile = source;
  }

  private chunkOf(block: number): number {
    return Math.floor((block - 1) / this.perChunk);
  }

  /** Data bytes of `block`: blksize, less for the last (0 when the size is a multiple of blksize). */
  private bytesOf(block: number): number {
    return Math.min(this.blksize, this.size - (block - 1) * this.blksize);
  }

  /** Whether blocks [from, to] are in memory (the common case: no await on the way to the socket). */
  has(from: number, to: number): boolean {
    for (let k = this.chunkOf(from); k <= this.chunkOf(to); k++) if (!this.ready.has(k)) return false;
    return true;
  }

  /**
   * Drops the chunks before block `from`, starts reading those up to block `to` and the one after it: called for
   * every window, so the next chunk is in memory before the window reaches it.
   */
  prefetch(from: number, to: number): void {
    const first = this.chunkOf(from);
    for (const k of this.reads.keys()) if (k < first) this.drop(k);
    const after = Math.min(this.chunkOf(to) + 1, this.chunkOf(this.blocks));
    for (let k = first; k <= after; k++) this.load(k);
  }

  /** Resolves once blocks [from, to] are in memory; rejects if a read failed. */
  async ensure(from: number, to: number): Promise<void> {
    for (let k = this.chunkOf(from); k <= this.chunkOf(to); k++) await this.load(k);
  }

  /** DATA packet `block`, a view of its chunk (which `has` said is in memory). */
  packet(block: number): Buffer {
    const k = this.chunkOf(block);
    const at = (block - 1 - k * this.perChunk) * this.stride;
    return (this.ready.get(k) as Buffer).subarray(at, at + 4 + this.bytesOf(block));
  }

  /** Gives every chunk back (those still being read, once their read ends), and closes a handle of its own. */
  close(): void {
    for (const k of this.reads.keys()) this.drop(k);
    if (this.owned) void (this.source as FileHandle).close().catch(() => undefined);
  }

  /** A chunk back to the pool; shared chunks belong to every transfer of their file and never go back. */
  private release(b: Buffer): void {
    if (!this.sharedFile && !Buffer.isBuffer(this.source)) giveBack(b);
  }

  private drop(k: number): void {
    const b = this.ready.get(k);
    if (b && !this.inFlight()) this.release(b);
    this.reads.delete(k);
    this.ready.delete(k);
  }

  private load(k: number): Promise<Buffer> {
    const known = this.reads.get(k);
    if (known) return known;
    const file = this.sharedFile;
    const first = k * this.perChunk + 1;
    const count = Math.min(this.perChunk, this.blocks - first + 1);
    const bytes = (count - 1) * this.stride + 4 + this.bytesOf(first + count - 1);
    const source = this.source;
    const read = Buffer.isBuffer(source)
      ? this.read(source, Buffer.allocUnsafeSlow(bytes), first, count)
      : file
        ? sharedChunk(`${file.path}\0${this.size}\0${file.mtimeMs}\0${this.blksize}\0${k}`, bytes, async () => {
            const fh = await open(file.path, 'r');
            try {
              return await this.read(fh, Buffer.allocUnsafeSlow(bytes), first, count);
            } finally {
              await fh.close();
            }
          })
        : this.read(this.source as FileHandle, take(count === this.perChunk ? CHUNK_BYTES : bytes), first, count);
    const p = read.then((buf) => {
      // a chunk dropped while it was read (the transfer moved on or ended) goes back at once
      if (this.reads.get(k) !== p) this.release(buf);
      else this.ready.set(k, buf);
      return buf;
    });
    // a read ahead that fails is reported by the ensure that waits for it, or by nobody if the transfer ended
    p.catch(() => undefined);
    this.reads.set(k, p);
    return p;
  }

  /** Blocks first..first+count-1 into `buf`: their headers written, their bytes read behind them in one readv. */
  private async read(fh: FileHandle | Buffer, buf: Buffer, first: number, count: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let want = 0;
    for (let i = 0; i < count; i++) {
      const at = i * this.stride;
      const len = this.bytesOf(first + i);
      const block = (first + i) % 65536;
      buf[at] = 0;
      buf[at + 1] = Op.DATA;
      buf[at + 2] = block >> 8;
      buf[at + 3] = block & 255;
      if (len > 0) parts.push(buf.subarray(at + 4, at + 4 + len));
      want += len;
    }
    const at = (first - 1) * this.blksize;
    const { bytesRead } = !want
      ? { bytesRead: 0 }
      : Buffer.isBuffer(fh)
        ? { bytesRead: copyInto(fh, at, parts) }
        : await fh.readv(parts, at);
    if (bytesRead !== want) {
      this.release(buf);
      throw new Error('short read: the file changed under the transfer');
    }
    return buf;
  }
}
