// Child process for the kill -9 test: writes lease batches and prints each index once LevelDB acknowledged it.
import { Store } from '../../src/store/store.js';

const store = await Store.open(process.argv[2] as string);
for (let i = 0; ; i++) {
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const mac = `52:54:00:${[(i >> 16) & 255, (i >> 8) & 255, i & 255].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
  await store.batch([store.leases.put(ip, { ip, mac, expiresAt: i, boundAt: i })]);
  process.stdout.write(`${i}\n`);
}
