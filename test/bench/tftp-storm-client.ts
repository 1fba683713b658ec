// A PXE storm's clients, run inside the bench namespace: N TFTP clients at once, as iPXE asks (blksize 1432,
// tsize 0, no windowsize), each from its own loopback address, resending its last packet after 1 s of silence, 10 times at most.
// Usage: tftp-storm-client.ts PORT N FILE... ; prints {"seconds", "ok", "failed", "bytes"} as one JSON line.
import dgram from 'node:dgram';

const [port, n, ...files] = process.argv.slice(2) as [string, string, ...string[]];

/** Each client from its own address (all of 127/8 is this machine), as machines in a rack would be. */
const source = (i: number) => `127.0.${1 + Math.floor(i / 250)}.${2 + (i % 250)}`;

function fetchOne(file: string, from: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    let last = Buffer.from(`\0\x01${file}\0octet\0blksize\x001432\0tsize\x000\0`, 'latin1');
    let to = Number(port);
    let expect = 1;
    let bytes = 0;
    let tries = 0;
    const send = () => s.send(last, to, '127.0.0.1');
    const timer = setInterval(() => (++tries > 10 ? done(new Error(`${file}: timed out`)) : send()), 1000);
    const done = (e?: Error) => {
      clearInterval(timer);
      s.close();
      e ? reject(e) : resolve(bytes);
    };
    s.on('message', (m, from) => {
      to = from.port;
      tries = 0;
      const op = m.readUInt16BE(0);
      if (op === 5) return done(new Error(`${file}: ${m.toString('latin1', 4, m.length - 1)}`));
      if (op === 6) last = Buffer.from([0, 4, 0, 0]);
      else if (op === 3) {
        const block = m.readUInt16BE(2);
        if (block === expect % 65536) {
          bytes += m.length - 4;
          expect++;
        }
        last = Buffer.from([0, 4, m[2] as number, m[3] as number]);
        if (block === (expect - 1) % 65536 && m.length - 4 < 1432) {
          send();
          return done();
        }
      }
      send();
    });
    s.bind(0, from, send);
  });
}

const t0 = process.hrtime.bigint();
const results = await Promise.allSettled(
  Array.from({ length: Number(n) }, (_, i) => fetchOne(files[i % files.length] as string, source(i))),
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
