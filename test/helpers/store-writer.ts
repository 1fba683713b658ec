// Child process for the kill -9 test: 8 writers at once (so LevelDB group commits merge them), each writing lease
// batches and printing each index once LevelDB acknowledged it.
import { Store } from '../../src/store/store.js';

const store = await Store.open(process.argv[2] as string);
const WRITERS = 8;
async function writer(w: number): Promise<never> {
  for (let i = w; ; i += WRITERS) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const mac = `52:54:00:${[(i >> 16) & 255, (i >> 8) & 255, i & 255].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
    await store.batch([store.leases.put(ip, { ip, mac, expiresAt: i, boundAt: i })]);
    process.stdout.write(`${i}\n`);
  }
}
await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
