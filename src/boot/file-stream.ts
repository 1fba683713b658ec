import { close, open, read } from 'node:fs';
import type { Writable } from 'node:stream';

/** Reads go through a pool of this many chunks of this size, shared by all downloads and reused: 32 MiB. */
const CHUNK = 512 << 10;
const POOL = 64;
const free: Buffer[] = [];
let made = 0;
const waiting: ((b: Buffer) => void)[] = [];

/** A chunk when one is free (or may still be made), else undefined. */
function tryTake(): Buffer | undefined {
  if (free.length) return free.pop();
  if (made < POOL) {
    made++;
    return Buffer.allocUnsafeSlow(CHUNK);
  }
  return undefined;
}

/** A chunk now, or once a download gives one back (first come, first served); every download needs one. */
function take(): Promise<Buffer> {
  const b = tryTake();
  return b ? Promise.resolve(b) : new Promise((resolve) => waiting.push(resolve));
}

function giveBack(b: Buffer): void {
  const next = waiting.shift();
  if (next) next(b);
  else free.push(b);
}

/**
 * Copies bytes [start, end] of a file into `out` through chunks of a shared pool: a download reads into one
 * while another is on its way to the socket (two while there are enough, one when many download at once), and
 * nothing is allocated per download, so the memory held stays under the pool's 32 MiB however many run. Resolves when the last byte is handed to the
 * socket; a client that goes away ends it early; the file is closed and the chunks given back either way.
 */
export function streamFile(path: string, start: number, end: number, out: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    open(path, 'r', async (err, fd) => {
      if (err) return reject(err);
      const spare: Buffer[] = [];
      let pos = start;
      let writing = 0;
      let reading = false;
      let over = false;
      const finish = (e?: Error) => {
        if (over) return;
        over = true;
        out.off('close', gone);
        for (const b of spare) giveBack(b);
        spare.length = 0;
        // a chunk still being written may never see its callback (a destroyed socket): the pool forgets it
        // and may make another, so no download waits for a chunk that is not coming back
        made -= writing;
        close(fd, () => (e ? reject(e) : resolve()));
      };
      const gone = () => finish();
      out.once('close', gone);
      const pump = () => {
        if (over || reading) return;
        if (pos > end) {
          if (!writing) finish();
          return;
        }
        const buf = spare.pop();
        // every chunk of this download is on its way to the socket: the next read waits for one
        if (!buf) return;
        reading = true;
        read(fd, buf, 0, Math.min(CHUNK, end - pos + 1), pos, (e, n) => {
          reading = false;
          if (!e && n === 0) e = new Error('short read: the file changed under the download');
          if (e || over) {
            giveBack(buf);
            return finish(e ?? undefined);
          }
          pos += n;
          writing++;
          out.write(buf.subarray(0, n), (we) => {
            if (over) return;
            writing--;
            spare.push(buf);
            if (we) return finish(we);
            pump();
          });
          pump();
        });
      };
      const first = await take();
      if (over) return giveBack(first);
      spare.push(first);
      const second = tryTake();
      if (second) spare.push(second);
      pump();
    });
  });
}
