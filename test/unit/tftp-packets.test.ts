import { randomBytes } from 'node:crypto';
import { rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { FilePackets } from '../../src/boot/tftp/packets.js';
import { until } from '../helpers/appliance.js';
import { openFds } from '../helpers/proc.js';
import { tempDir } from '../helpers/tmp.js';

/** Every DATA packet of `file`, taken a window at a time as a sender does. */
async function packetsOf(file: string, size: number, blksize: number, window: number) {
  const fh = await open(file, 'r');
  try {
    const p = new FilePackets(fh, size, blksize, () => false);
    const out: Buffer[] = [];
    for (let from = 1; from <= p.blocks; from += window) {
      const to = Math.min(p.blocks, from + window - 1);
      p.prefetch(from, to);
      await p.ensure(from, to);
      for (let b = from; b <= to; b++) out.push(Buffer.from(p.packet(b)));
    }
    p.close();
    return out;
  } finally {
    await fh.close();
  }
}

t.test('DATA packets as they go on the wire: headers, payloads, the short last block', async (t) => {
  const dir = tempDir(t);
  // blocks per 256 KiB chunk at blksize 1468: 178; the file below ends exactly on a chunk's last block, so the
  // empty last block is alone in a chunk of its own
  const perChunk = Math.floor((256 << 10) / 1472);
  const cases: [string, number, number, number][] = [
    ['empty file', 0, 512, 1],
    ['one short block', 100, 512, 1],
    ['a multiple of blksize, ending a chunk', perChunk * 1468, 1468, 64],
    ['several chunks, windows across their edges', 3 * (1 << 20) + 777, 1468, 64],
    ['blksize 512: 508 blocks a chunk', 600_000, 512, 16],
    ['blksize 8: 1024 blocks a chunk (IOV_MAX, one readv)', 50_000, 8, 16],
    ['blksize 8: block numbers roll over past 65535', 70_000 * 8 + 3, 8, 64],
    ['blksize 65464', 300_000, 65464, 4],
  ];
  for (const [what, size, blksize, window] of cases) {
    const file = path.join(dir, `f-${size}-${blksize}`);
    const data = randomBytes(size);
    writeFileSync(file, data);
    const packets = await packetsOf(file, size, blksize, window);
    t.equal(packets.length, Math.floor(size / blksize) + 1, `${what}: blocks`);
    const headersOk = packets.every((p, i) => p.readUInt16BE(0) === 3 && p.readUInt16BE(2) === (i + 1) % 65536);
    t.ok(headersOk, `${what}: DATA opcode and block number (mod 65536) in every header`);
    const last = packets.at(-1) as Buffer;
    t.equal(last.length - 4, size % blksize, `${what}: the last block carries the rest`);
    const payload = Buffer.concat(packets.map((p) => p.subarray(4)));
    t.ok(payload.equals(data), `${what}: payloads are the file, in order`);
  }
});

t.test(
  'reads: the chunk after the window is read ahead, those behind it dropped; a file that shrank fails',
  async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'f');
    const size = 4 * (1 << 20);
    writeFileSync(file, randomBytes(size));
    const fh = await open(file, 'r');
    t.teardown(() => fh.close());
    const p = new FilePackets(fh, size, 1468, () => false);
    t.notOk(p.has(1, 64), 'nothing in memory before a read');
    p.prefetch(1, 64);
    await p.ensure(1, 64);
    t.ok(p.has(1, 64), 'the window is in memory once ensured');
    // the read ahead of the next chunk, started by prefetch, lands without an ensure
    await until('the read-ahead', async () => (p.has(179, 242) ? true : undefined));
    t.ok(p.has(179, 242), 'the chunk after the window was read ahead');
    p.prefetch(1500, 1563);
    t.notOk(p.has(1, 64), 'chunks behind the window are dropped');
    p.close();

    const fh2 = await open(file, 'r');
    t.teardown(() => fh2.close());
    const q = new FilePackets(fh2, size, 1468, () => false);
    truncateSync(file, size / 2);
    q.prefetch(2800, 2863);
    await t.rejects(q.ensure(2800, 2863), /short read: the file changed under the transfer/);
    q.close();
  },
);

t.test(
  'small files: one read of each chunk for every transfer at a blksize; a replaced file is read afresh',
  async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'ipxe.efi');
    const size = 850_000; // 4 chunks at blksize 1468
    const data = randomBytes(size);
    writeFileSync(file, data);
    const seen = { path: file, mtimeMs: statSync(file).mtimeMs };
    /** the file's bytes as the packets carry them, and the memory each packet is a view of */
    const whole = async (p: FilePackets) => {
      p.prefetch(1, p.blocks);
      await p.ensure(1, p.blocks);
      const out = Array.from({ length: p.blocks }, (_, i) => p.packet(i + 1));
      p.close();
      return { bytes: Buffer.concat(out.map((b) => b.subarray(4))), chunks: out.map((b) => b.buffer) };
    };
    const many = Array.from({ length: 20 }, () => new FilePackets(seen, size, 1468, () => false));
    const got = await Promise.all(many.map(whole));
    t.ok(
      got.every((g) => g.bytes.equals(data)),
      '20 transfers at once get the file',
    );
    const first = got[0] as (typeof got)[0];
    t.ok(
      got.every((g) => g.chunks.every((c, i) => c === first.chunks[i])),
      'their blocks are views of the same chunks: each chunk was read once',
    );
    rmSync(file);
    t.ok(
      (await whole(new FilePackets(seen, size, 1468, () => false))).bytes.equals(data),
      'a later transfer at that blksize reads nothing from disk (the file is gone and it still has the bytes)',
    );
    await t.rejects(whole(new FilePackets(seen, size, 512, () => false)), /ENOENT/, 'another blksize reads the file');
    const data2 = randomBytes(size);
    writeFileSync(file, data2);
    utimesSync(file, new Date(), new Date(Date.now() + 5000));
    const fresh = { path: file, mtimeMs: statSync(file).mtimeMs };
    t.ok(
      (await whole(new FilePackets(fresh, size, 1468, () => false))).bytes.equals(data2),
      'a new mtime: the new bytes',
    );
    t.ok(
      (await whole(new FilePackets(fresh, size, 512, () => false))).bytes.equals(data2),
      'a failed read is not kept',
    );
  },
);

t.test('open(): a small file takes no descriptor, a large one its own, given back by close()', async (t) => {
  const dir = tempDir(t);
  const of = (name: string, size: number) => {
    const file = path.join(dir, name);
    const data = randomBytes(size);
    writeFileSync(file, data);
    return { file: { path: file, size, mtimeMs: statSync(file).mtimeMs }, data };
  };
  const small = of('ipxe.efi', 1 << 20);
  const large = of('big.img', 6 << 20);
  const before = openFds();
  const s = await FilePackets.open(small.file, 1468, () => false);
  t.equal(openFds(), before, 'a small file (the iPXE binaries): read through the shared chunks, nothing held open');
  const l = await FilePackets.open(large.file, 1468, () => false);
  t.equal(openFds(), before + 1, 'a large file: one descriptor of its own');
  for (const [p, data] of [
    [s, small.data],
    [l, large.data],
  ] as const) {
    p.prefetch(1, p.blocks);
    await p.ensure(1, p.blocks);
    const got = Buffer.concat(Array.from({ length: p.blocks }, (_, i) => p.packet(i + 1).subarray(4)));
    t.ok(got.equals(data), `${data.length} bytes as packets`);
  }
  s.close();
  l.close();
  await until('the descriptor back', async () => (openFds() === before ? true : undefined), 5000);
  t.pass('close() gave the large file its descriptor back');
});

t.test('bytes rendered for one client (GRUB configuration) go out as a file of the same bytes would', async (t) => {
  const dir = tempDir(t);
  for (const size of [0, 100, 1024, 1466, 300_000]) {
    const bytes = randomBytes(size);
    const file = path.join(dir, `r${size}`);
    writeFileSync(file, bytes);
    const p = await FilePackets.open({ bytes, size }, 1024, () => false);
    const got: Buffer[] = [];
    for (let from = 1; from <= p.blocks; from += 4) {
      const to = Math.min(p.blocks, from + 3);
      p.prefetch(from, to);
      await p.ensure(from, to);
      for (let b = from; b <= to; b++) got.push(Buffer.from(p.packet(b)));
    }
    p.close();
    t.same(got, await packetsOf(file, size, 1024, 4), `${size} bytes: the same packets as from a file`);
  }
});
