import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { Metrics } from '../../src/metrics.js';
import { TftpServer } from '../../src/tftp/server.js';
import { memoryLogger } from '../helpers/log.js';
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
  const metrics = new Metrics();
  const { log } = memoryLogger('warn');
  const server = new TftpServer(
    { address: '127.0.0.1', port: 0, root, maxBlksize: 65464, maxWindowsize: 64, retries: 5 },
    log,
    metrics,
  );
  const { port } = await server.start();
  t.teardown(() => server.stop());
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

t.test('size probes aborted with ERROR (as UEFI firmware does) leave no file open', async (t) => {
  const root = tempDir(t);
  writeFileSync(path.join(root, 'ipxe.efi'), randomBytes(300_000));
  const metrics = new Metrics();
  const { log } = memoryLogger('warn');
  const server = new TftpServer(
    { address: '127.0.0.1', port: 0, root, maxBlksize: 1468, maxWindowsize: 1, retries: 2 },
    log,
    metrics,
  );
  const { port } = await server.start();
  t.teardown(() => server.stop());
  const fds = () => readdirSync('/proc/self/fd').length;
  const probe = async () => {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    const oack = once(s, 'message') as Promise<[Buffer, dgram.RemoteInfo]>;
    s.send(Buffer.from('\0\x01ipxe.efi\0octet\0tsize\x000\0blksize\x001468\0', 'latin1'), port, '127.0.0.1');
    const [msg, from] = await oack;
    if (msg.readUInt16BE(0) !== 6) throw new Error(`expected OACK, got opcode ${msg.readUInt16BE(0)}`);
    // ERROR 8: option negotiation ended by the client, which wanted only the size
    await new Promise((r) => s.send(Buffer.from('\0\x05\0\x08size only\0', 'latin1'), from.port, from.address, r));
    s.close();
  };
  await probe();
  await new Promise((r) => setTimeout(r, 100));
  const before = fds();
  for (let i = 0; i < 300; i++) await probe();
  await new Promise((r) => setTimeout(r, 300));
  t.ok(fds() - before < 10, `open descriptors ${before} -> ${fds()} after 300 aborted probes`);
  t.equal(await metrics.value('beskar7_tftp_transfers_total'), 301, 'each probe counted once');
});
