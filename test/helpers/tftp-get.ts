// A TFTP read as PXE firmware and iPXE make it (blksize 1432, tsize 0, no windowsize), from an address of the
// caller's choosing: the storm's simulated machines each read from their own leased address, as real ones do.
import dgram from 'node:dgram';

/**
 * Reads `file` from `server`:`port` on a socket bound to `from`, resending its last packet after `retryMs` of
 * silence, `tries` times at most. Resolves with the number of bytes received.
 */
export function tftpGet(
  server: string,
  port: number,
  file: string,
  from: string,
  { retryMs = 1000, tries = 10 }: { retryMs?: number; tries?: number } = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    let last = Buffer.from(`\0\x01${file}\0octet\0blksize\x001432\0tsize\x000\0`, 'latin1');
    let to = port;
    let expect = 1;
    let bytes = 0;
    let silent = 0;
    const send = () => s.send(last, to, server);
    const timer = setInterval(() => (++silent >= tries ? done(new Error(`${file}: timed out`)) : send()), retryMs);
    const done = (e?: Error) => {
      clearInterval(timer);
      s.close();
      e ? reject(e) : resolve(bytes);
    };
    s.on('error', (e) => done(e));
    let tid: number | undefined;
    s.on('message', (m, rinfo) => {
      // the transfer is with the port that answered first (RFC 1350's TID); anything from another is not ours
      if (tid !== undefined && rinfo.port !== tid) return;
      tid = to = rinfo.port;
      silent = 0;
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
          // closed once the last ACK is out: closed at once, the socket dropped it, and the server resent its last
          // block to a closed port and ended the transfer as failed
          s.send(last, to, server, () => done());
          return;
        }
      }
      send();
    });
    s.bind(0, from, send);
  });
}
