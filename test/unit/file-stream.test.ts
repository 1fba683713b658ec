// Image downloads through reused buffers: every byte right for whole files and ranges with many at once, and a
// client that goes away mid-download gives its file descriptor back.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { streamFile } from '../../src/boot/file-stream.js';
import { until } from '../helpers/appliance.js';
import { openFds } from '../helpers/proc.js';
import { tempDir } from '../helpers/tmp.js';

t.test('streamFile', async (t) => {
  const file = path.join(tempDir(t), 'image');
  const data = randomBytes(5 * 2 ** 20 + 123);
  writeFileSync(file, data);
  const server = createServer((req, res) => {
    const [start, end] = (req.url?.slice(1) ?? '').split('-').map(Number) as [number, number];
    res.writeHead(200, { 'Content-Length': String(end - start + 1) });
    streamFile(file, start, end, res).then(
      () => res.end(),
      () => res.destroy(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => server.close(r)));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const spans: [number, number][] = [
    [0, data.length - 1],
    [1, 1],
    [65_535, 65_536 * 3],
    [data.length - 10, data.length - 1],
  ];
  // 100 at once: more than the pool's 64 chunks, so some wait for a chunk; the bytes are the same
  const got = await Promise.all(
    Array.from({ length: 100 }, async (_, i) => {
      const [s, e] = spans[i % spans.length] as [number, number];
      return { s, e, body: Buffer.from(await (await fetch(`${base}/${s}-${e}`)).arrayBuffer()) };
    }),
  );
  t.ok(
    got.every(({ s, e, body }) => body.equals(data.subarray(s, e + 1))),
    '100 concurrent whole and partial downloads, every byte right',
  );

  const before = openFds();
  for (let i = 0; i < 30; i++) {
    const ac = new AbortController();
    const r = await fetch(`${base}/0-${data.length - 1}`, { signal: ac.signal });
    const reader = r.body?.getReader();
    await reader?.read();
    ac.abort();
  }
  await until('descriptors back', async () => (openFds() <= before + 2 ? true : undefined), 10_000);
  t.pass(`30 downloads abandoned after their first bytes: descriptors ${before} -> ${openFds()}`);
  const after = await Promise.all(
    Array.from({ length: 70 }, async () =>
      Buffer.from(await (await fetch(`${base}/0-${data.length - 1}`)).arrayBuffer()),
    ),
  );
  t.ok(
    after.every((b) => b.equals(data)),
    '70 downloads at once after the abandoned ones: the pool lost no chunk for good',
  );
});
