import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { Store } from '../../src/store/store.js';
import { tempDir } from '../helpers/tmp.js';

t.test('atomic batch and zod-checked reads', async (t) => {
  const store = await Store.open(path.join(tempDir(t), 'db'));
  t.teardown(() => store.close());
  await store.batch([store.leases.put('10.0.0.1', { ip: '10.0.0.1', mac: '52:54:00:00:00:01', expiresAt: 1, boundAt: 0 })]);
  await store.batch([store.leases.del('10.0.0.1'), store.leases.put('10.0.0.2', { ip: '10.0.0.2', mac: '52:54:00:00:00:01', expiresAt: 1, boundAt: 0 })]);
  t.same((await store.leases.all()).map((l) => l.ip), ['10.0.0.2']);
  await store.leases.db.put('bad', { ip: 1 } as never);
  await t.rejects(store.leases.get('bad'), /store leases\/bad holds an invalid value/);
});

t.test('kill -9 while writing loses no acknowledged batch', async (t) => {
  const dir = path.join(tempDir(t), 'db');
  for (const round of [1, 2, 3]) {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, '../helpers/store-writer.ts'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let acked = -1;
    let buf = '';
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) acked = Math.max(acked, Number(l));
    });
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (acked >= 300 * round) {
          clearInterval(check);
          child.kill('SIGKILL');
          resolve();
        }
      }, 2);
    });
    await new Promise((r) => child.once('exit', r));
    const store = await Store.open(dir);
    const all = await store.leases.all();
    await store.close();
    const have = new Set(all.map((l) => l.expiresAt));
    let missing = 0;
    for (let i = 0; i <= acked; i++) if (!have.has(i)) missing++;
    t.equal(missing, 0, `round ${round}: all ${acked + 1} acknowledged batches survived (store holds ${all.length})`);
  }
});
