import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { BootTimeline } from '../../src/boot/timeline.js';
import { until } from '../helpers/appliance.js';
import { openFds } from '../helpers/proc.js';
import { startTftp } from '../helpers/tftp.js';
import { tftpGet } from '../helpers/tftp-get.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);

t.test('real TFTP clients fetch byte-identical files; escapes are refused', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'root');
  mkdirSync(root);
  const small = randomBytes(70_000);
  const big = randomBytes(33 * 1024 * 1024 + 123); // > 65535 blocks of 512: the block number rolls over
  writeFileSync(path.join(root, 'small.bin'), small);
  writeFileSync(path.join(root, 'big.bin'), big);
  writeFileSync(path.join(dir, 'secret'), 'outside');
  symlinkSync(path.join(dir, 'secret'), path.join(root, 'escape'));
  symlinkSync('small.bin', path.join(root, 'alias'));
  const { port, metrics } = await startTftp(t, root);
  const out = (n: string) => path.join(dir, n);
  const atftp = (file: string, dest: string, opts: string[]) =>
    run('timeout', [
      '60',
      'atftp',
      ...opts.flatMap((o) => ['--option', o]),
      '-g',
      '-r',
      file,
      '-l',
      dest,
      '127.0.0.1',
      String(port),
    ]);

  for (const [blksize, windowsize] of [
    [512, 1],
    [1428, 1],
    [1468, 16],
    [8192, 64],
    [65464, 4],
  ] as const) {
    const dest = out(`small-${blksize}-${windowsize}`);
    await atftp('small.bin', dest, [`blksize ${blksize}`, `windowsize ${windowsize}`, 'tsize 0']);
    t.ok(readFileSync(dest).equals(small), `atftp blksize ${blksize} windowsize ${windowsize}`);
  }
  await atftp('/small.bin', out('slash'), []);
  t.ok(readFileSync(out('slash')).equals(small), 'leading slash (as iPXE may send) and plain RFC 1350');
  await run('timeout', [
    '60',
    'curl',
    '-s',
    '--tftp-blksize',
    '1432',
    '-o',
    out('curl'),
    `tftp://127.0.0.1:${port}/small.bin`,
  ]);
  t.ok(readFileSync(out('curl')).equals(small), 'curl');
  await run('timeout', [
    '60',
    'busybox',
    'tftp',
    '-b',
    '1468',
    '-g',
    '-r',
    'alias',
    '-l',
    out('alias'),
    '127.0.0.1',
    String(port),
  ]);
  t.ok(readFileSync(out('alias')).equals(small), 'symlink inside the root is followed');

  await atftp('big.bin', out('big'), ['blksize 512', 'windowsize 64']);
  t.ok(readFileSync(out('big')).equals(big), '33 MiB at blksize 512: block numbers roll over');

  for (const bad of ['../secret', 'escape', '/etc/passwd', 'missing.bin']) {
    const r = await atftp(bad, out('bad'), []).then(
      () => 'fetched',
      (e: { stderr?: string }) => e.stderr ?? 'error',
    );
    t.match(r, /error received from server/, `${bad} refused`);
  }
  t.equal(await metrics.value('beskar7_tftp_transfers_total', { result: 'ok' }), 9);
  t.ok((await metrics.value('beskar7_tftp_transfers_total', { result: 'refused' })) >= 1, 'refusals counted');
  t.equal(await metrics.value('beskar7_tftp_bytes_total'), small.length * 8 + big.length);
});

t.test('a boot file replaced on disk is served as it is now, not as an earlier transfer read it', async (t) => {
  const root = tempDir(t);
  const file = path.join(root, 'ipxe.efi');
  const before = randomBytes(850_000);
  writeFileSync(file, before);
  const { port } = await startTftp(t, root);
  const dest = path.join(tempDir(t), 'got');
  const get = () =>
    run('timeout', [
      '60',
      'atftp',
      '--option',
      'blksize 1468',
      '-g',
      '-r',
      'ipxe.efi',
      '-l',
      dest,
      '127.0.0.1',
      String(port),
    ]);
  await get();
  t.ok(readFileSync(dest).equals(before), 'the file as written');
  await get();
  t.ok(readFileSync(dest).equals(before), 'again, from the chunks the first transfer read');
  const after = randomBytes(850_000);
  writeFileSync(file, after);
  utimesSync(file, new Date(), new Date(Date.now() + 5000));
  await get();
  t.ok(readFileSync(dest).equals(after), 'replaced (same size, new mtime): the new bytes');
});

/**
 * A minimal TFTP client bound to `source` (any 127/8 address is this machine), retransmitting its last packet
 * each second as real clients do: the whole file, or the server's ERROR.
 */
async function fetchFrom(port: number, file: string, source: string): Promise<{ bytes: number } | { error: string }> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, source, () => r()));
  let last: [Buffer, number] = [Buffer.from(`\0\x01${file}\0octet\0`, 'latin1'), port];
  const send = () => s.send(last[0], last[1], '127.0.0.1');
  let tries = 0;
  const resend = setInterval(() => (++tries > 8 ? undefined : send()), 1000);
  try {
    return await new Promise((resolve, reject) => {
      let bytes = 0;
      let expect = 1;
      const timer = setTimeout(() => reject(new Error(`${source}: no answer`)), 15_000);
      s.on('message', (m, from) => {
        const op = m.readUInt16BE(0);
        if (op === 5) {
          clearTimeout(timer);
          return resolve({ error: m.toString('latin1', 4, m.length - 1) });
        }
        if (op !== 3) return;
        const block = m.readUInt16BE(2);
        if (block === expect) {
          bytes += m.length - 4;
          expect++;
        }
        last = [Buffer.from([0, 4, m[2] as number, m[3] as number]), from.port];
        send();
        if (block === expect - 1 && m.length - 4 < 512) {
          clearTimeout(timer);
          resolve({ bytes });
        }
      });
      send();
    });
  } finally {
    clearInterval(resend);
    s.close();
  }
}

t.test(
  'transfer caps: 300 concurrent clients are all served; one address gets its share, the rest wait unanswered',
  async (t) => {
    const root = tempDir(t);
    const data = randomBytes(5000);
    writeFileSync(path.join(root, 'undionly.kpxe'), data);
    const { port, metrics } = await startTftp(
      t,
      root,
      { maxBlksize: 1468, maxWindowsize: 1, retries: 3, maxTransfersPerClient: 4 },
      'error',
    );
    const sources = Array.from({ length: 300 }, (_, i) => `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`);
    const all = await Promise.all(sources.map((src) => fetchFrom(port, 'undionly.kpxe', src)));
    t.equal(all.filter((r) => 'bytes' in r && r.bytes === data.length).length, 300, '300 clients, 300 whole files');
    t.equal(await metrics.value('beskar7_tftp_transfers_total', { result: 'busy' }), 0, 'none waited');
    const one = await Promise.all(Array.from({ length: 12 }, () => fetchFrom(port, 'undionly.kpxe', '127.2.0.1')));
    t.same(
      one,
      Array.from({ length: 12 }, () => ({ bytes: data.length })),
      'twelve from one address: each gets the whole file, no ERROR',
    );
    t.ok(
      (await metrics.value('beskar7_tftp_transfers_total', { result: 'busy' })) >= 8,
      'beyond maxTransfersPerClient the requests went unanswered until they were sent again',
    );
  },
);

/** A client socket whose read request (with options) got its OACK, and the transfer's address. */
async function oacked(port: number, rrq: string): Promise<{ s: dgram.Socket; from: dgram.RemoteInfo }> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const oack = once(s, 'message') as Promise<[Buffer, dgram.RemoteInfo]>;
  s.send(Buffer.from(rrq, 'latin1'), port, '127.0.0.1');
  const [msg, from] = await oack;
  if (msg.readUInt16BE(0) !== 6) throw new Error(`expected OACK, got opcode ${msg.readUInt16BE(0)}`);
  return { s, from };
}

t.test('a read request sent again while its transfer runs starts no second transfer', async (t) => {
  const root = tempDir(t);
  const data = randomBytes(3000);
  writeFileSync(path.join(root, 'f'), data);
  const { port, metrics } = await startTftp(t, root, { maxBlksize: 1468, maxWindowsize: 1, retries: 2 });
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => s.close());
  const answers: [Buffer, dgram.RemoteInfo][] = [];
  s.on('message', (m, from) => answers.push([m, from]));
  const rrq = Buffer.from('\0\x01f\0octet\0blksize\x001468\0', 'latin1');
  // as a client does when the answer is slow: the same request twice, from the same port
  s.send(rrq, port, '127.0.0.1');
  s.send(rrq, port, '127.0.0.1');
  await until('the second request is known as a repeat', async () =>
    (await metrics.value('beskar7_tftp_transfers_total', { result: 'duplicate' })) === 1 ? true : undefined,
  );
  const [oack, from] = await until('the OACK', async () => answers[0]);
  t.equal(oack.readUInt16BE(0), 6, 'one OACK');
  // ACK the OACK, then each DATA block
  s.on('message', (m, f) => {
    if (m.readUInt16BE(0) === 3) s.send(Buffer.from([0, 4, m[2] as number, m[3] as number]), f.port, f.address);
  });
  s.send(Buffer.from([0, 4, 0, 0]), from.port, from.address);
  await until('the transfer ends', async () =>
    (await metrics.value('beskar7_tftp_transfers_total', { result: 'ok' })) === 1 ? true : undefined,
  );
  t.same([...new Set(answers.map(([, f]) => f.port))], [from.port], 'everything came from the one transfer');
  t.equal(
    Buffer.concat(answers.filter(([m]) => m.readUInt16BE(0) === 3).map(([m]) => m.subarray(4))).length,
    data.length,
    'and it sent the file once',
  );
});

t.test('size probes aborted with ERROR (as UEFI firmware does) leave no file open', async (t) => {
  const root = tempDir(t);
  writeFileSync(path.join(root, 'ipxe.efi'), randomBytes(300_000));
  const { port, metrics } = await startTftp(t, root, { maxBlksize: 1468, maxWindowsize: 1, retries: 2 });
  const probe = async () => {
    const { s, from } = await oacked(port, '\0\x01ipxe.efi\0octet\0tsize\x000\0blksize\x001468\0');
    // ERROR 8: option negotiation ended by the client, which wanted only the size
    await new Promise((r) => s.send(Buffer.from('\0\x05\0\x08size only\0', 'latin1'), from.port, from.address, r));
    s.close();
  };
  for (let i = 0; i < 2000; i += 4) await Promise.all([probe(), probe(), probe(), probe()]); // warm up
  await new Promise((r) => setTimeout(r, 100));
  const [before, rssBefore] = [openFds(), process.memoryUsage().rss];
  for (let i = 0; i < 10_000; i += 4) await Promise.all([probe(), probe(), probe(), probe()]);
  await new Promise((r) => setTimeout(r, 300));
  // a leaked transfer holds its file and a 1 MiB read buffer: 10000 of them would be gigabytes
  const grown = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
  t.ok(openFds() - before < 10, `open descriptors ${before} -> ${openFds()} after 10000 aborted probes`);
  t.ok(grown < 64, `RSS grew ${grown.toFixed(1)} MiB over 10000 probes`);
  t.equal(await metrics.value('beskar7_tftp_transfers_total'), 12_000, 'each probe counted once');
});

t.test(
  'transfers of a large file (a descriptor each) ended by the client mid-way give every descriptor back',
  async (t) => {
    const root = tempDir(t);
    writeFileSync(path.join(root, 'big.img'), randomBytes(6 << 20));
    const { port } = await startTftp(t, root, { maxBlksize: 1468, maxWindowsize: 4, retries: 2 });
    const before = openFds();
    const abandon = async () => {
      const { s, from } = await oacked(port, '\0\x01big.img\0octet\0blksize\x001468\0');
      const data = once(s, 'message') as Promise<[Buffer]>;
      s.send(Buffer.from([0, 4, 0, 0]), from.port, from.address);
      const [block] = await data;
      if (block.readUInt16BE(0) !== 3) throw new Error(`expected DATA, got opcode ${block.readUInt16BE(0)}`);
      // ERROR 0 after the first block: the client gives up
      await new Promise((r) => s.send(Buffer.from('\0\x05\0\0gone\0', 'latin1'), from.port, from.address, r));
      s.close();
    };
    for (let i = 0; i < 200; i += 4) await Promise.all([abandon(), abandon(), abandon(), abandon()]);
    await until('descriptors back', async () => (openFds() <= before ? true : undefined), 10_000);
    t.pass(`200 transfers of a 6 MiB file abandoned after one block: descriptors ${before} -> ${openFds()}`);
  },
);

t.test('20000 spoofed read requests that never ACK: no crash, and every descriptor comes back', async (t) => {
  const root = tempDir(t);
  writeFileSync(path.join(root, 'f'), randomBytes(100_000));
  const { port, metrics } = await startTftp(t, root, { maxBlksize: 1468, maxWindowsize: 1, retries: 1 }, 'fatal');
  // 50 ports of one address, 400 requests each
  const socks = await Promise.all(
    Array.from({ length: 50 }, async () => {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
      t.teardown(() => s.close());
      return s;
    }),
  );
  const before = openFds();
  const rrq = Buffer.from('\0\x01f\0octet\0', 'latin1');
  for (let i = 0; i < 20_000; i++) {
    (socks[i % socks.length] as dgram.Socket).send(rrq, port, '127.0.0.1');
    if (i % 500 === 0) await new Promise((r) => setImmediate(r));
  }
  const count = (result: string) => metrics.value('beskar7_tftp_transfers_total', { result });
  // loopback drops much of a flood this size (the socket's buffer): what was read is counted
  await until('requests past the per-address cap left unanswered', async () =>
    (await count('busy')) > 0 ? true : undefined,
  );
  await until('requests repeated from a port being served known as repeats (no second transfer)', async () =>
    (await count('duplicate')) > 0 ? true : undefined,
  );
  await until('descriptors back', async () => (openFds() <= before + 1 ? true : undefined), 30_000);
  t.pass(`open descriptors back to ${openFds()} (${before} before) once the unanswered transfers gave up`);
});

t.test("a transfer is on its client's boot timeline when it ends: file, bytes, how long it took", async (t) => {
  const root = tempDir(t);
  writeFileSync(path.join(root, 'snponly.efi'), randomBytes(20_000));
  const timeline = new BootTimeline();
  timeline.learnIp('127.0.0.1', '52:54:00:00:00:07');
  const { port } = await startTftp(t, root, {}, 'warn', timeline);
  const bytes = await tftpGet('127.0.0.1', port, 'snponly.efi', '127.0.0.1');
  t.equal(bytes, 20_000);
  const [e] = await until('the entry', async () => {
    const got = timeline.get('52:54:00:00:00:07');
    return got.length ? got : undefined;
  });
  t.match(e, { source: 'tftp', stage: 'tftp', bytes: 20_000, ok: true, what: /^snponly\.efi: 20000 bytes/ });
  t.type(e?.ms, 'number', 'with its duration');
});
