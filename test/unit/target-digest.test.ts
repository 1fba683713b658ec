// The digest the appliance pins for a target without one: a hosted file from disk, anything else fetched once.
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { TargetDigests } from '../../src/workflow/target-digest.js';
import { tempDir } from '../helpers/tmp.js';

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

t.test('hosted targets are hashed from their file, again when it changes; remote ones fetched, bounded', async (t) => {
  const assets = tempDir(t);
  mkdirSync(path.join(assets, 'os'));
  writeFileSync(path.join(assets, 'os', 'disk.img'), 'one');
  let served = 0;
  const body = Buffer.alloc(3000, 7);
  const server = http.createServer((req, res) => {
    served++;
    if (req.url === '/big') res.end(Buffer.alloc(5000));
    else if (req.url === '/ok') res.end(body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const remote = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const d = new TargetDigests({ httpBase: 'http://127.0.0.1:9', assetsDir: assets, maxBytes: 4096, timeoutMs: 5000 });

  t.equal(await d.of('http://127.0.0.1:9/assets/os/disk.img'), sha('one'), 'a hosted file, by its path');
  writeFileSync(path.join(assets, 'os', 'disk.img'), 'two, longer');
  t.equal(await d.of('http://127.0.0.1:9/assets/os/disk.img'), sha('two, longer'), 'hashed again once it changed');
  await t.rejects(d.of('http://127.0.0.1:9/assets/os%2f..%2f..%2fsecret.key'), /path leaves the root|no such file/);
  await t.rejects(d.of('http://127.0.0.1:9/assets/os/none.img'), /no such file/);
  t.equal(served, 0, 'hosted files are never fetched over HTTP');
  t.equal(await d.of(`${remote}/ok`), sha(body), 'a remote target: fetched and hashed');
  await t.rejects(d.of(`${remote}/big`), /larger than 4096 bytes/, 'bounded in size');
  await t.rejects(d.of(`${remote}/gone`), /HTTP 404/);
  t.equal(served, 3, 'each remote target fetched once');
});
