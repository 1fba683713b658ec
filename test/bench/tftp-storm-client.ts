// A PXE storm's clients, run inside the bench namespace: N TFTP reads at once, as iPXE makes them
// (test/helpers/tftp-get.ts), each from its own loopback address.
// Usage: tftp-storm-client.ts PORT N FILE... ; prints {"seconds", "ok", "failed", "bytes"} as one JSON line.
import { tftpGet } from '../helpers/tftp-get.js';

const [port, n, ...files] = process.argv.slice(2) as [string, string, ...string[]];

/** Each client from its own address (all of 127/8 is this machine), as machines in a rack would be. */
const source = (i: number) => `127.0.${1 + Math.floor(i / 250)}.${2 + (i % 250)}`;

const t0 = process.hrtime.bigint();
const results = await Promise.allSettled(
  Array.from({ length: Number(n) }, (_, i) =>
    tftpGet('127.0.0.1', Number(port), files[i % files.length] as string, source(i)),
  ),
);
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const ok = results.filter((r) => r.status === 'fulfilled');
console.log(
  JSON.stringify({
    seconds,
    ok: ok.length,
    failed: results.length - ok.length,
    bytes: ok.reduce((a, r) => a + (r as PromiseFulfilledResult<number>).value, 0),
  }),
);
