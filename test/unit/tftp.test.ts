import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
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
