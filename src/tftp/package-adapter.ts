import { once } from 'node:events';
import type { Readable } from 'node:stream';
import tftp, { type GetStream, type PutStream } from 'tftp';
import { bindFailure } from '../net/bind-error.js';
import { refusal } from './request-check.js';

/**
 * The one place that touches the `tftp` package. It does the protocol (blksize, tsize, windowsize, rollover,
 * per-transfer sockets); the server above decides which file a request may read. Two of its private parts are
 * used, here only: its listening socket (to count the datagrams it refuses before any transfer, which it never
 * reports) and, in request-check.ts, its own RRQ parser (to name why). It reports a client's ERROR packet as a
 * bare Error with the packet's text, so how a transfer ended is read from that text, here.
 */

export interface TftpListenOptions {
  address: string;
  port: number;
  root: string;
  maxBlksize: number;
  maxWindowsize: number;
  retries: number;
}

/** How a transfer ended, as the server logs and counts it. */
export type TransferEnd = { kind: 'done' } | { kind: 'aborted_by_client' | 'timeout' | 'failed'; message: string };

export interface TftpTransfer {
  file: string;
  remoteAddress: string;
  remotePort: number;
  blockSize: number;
  windowSize: number;
  /** sends `size` bytes from `data`; `ended` is called once, and `data` is destroyed on any end but success */
  send(data: Readable, size: number, ended: (e: TransferEnd) => void): void;
  refuse(code: 'not_found' | 'access' | 'busy'): void;
}

function endOf(e: Error): TransferEnd {
  // OVMF and others ask once for the size (tsize) and abort after the OACK: a client's ERROR, not a failure
  if (/abort|option|denied/i.test(e.message) && !/timed out/i.test(e.message)) {
    return { kind: 'aborted_by_client', message: e.message };
  }
  return { kind: /timed out/i.test(e.message) ? 'timeout' : 'failed', message: e.message };
}

function transfer(req: GetStream, res: PutStream): TftpTransfer {
  let ended = false;
  let onEnd: ((e: TransferEnd) => void) | undefined;
  let source: Readable | undefined;
  const end = (e: TransferEnd) => {
    if (ended) return;
    ended = true;
    // an aborted or failed transfer must not keep its file open (UEFI aborts once on every boot)
    if (e.kind !== 'done') source?.destroy();
    onEnd?.(e);
  };
  req.on('error', (e: Error) => end(endOf(e)));
  res.on('error', (e: Error) => end(endOf(e)));
  return {
    file: req.file,
    remoteAddress: req.stats.remoteAddress,
    remotePort: req.stats.remotePort,
    blockSize: req.stats.blockSize,
    windowSize: req.stats.windowSize,
    send(data, size, ended) {
      onEnd = ended;
      source = data;
      data.on('error', (e: Error) => {
        end({ kind: 'failed', message: `read: ${e.message}` });
        req.abort('I/O error');
      });
      res.setSize(size);
      res.on('finish', () => end({ kind: 'done' }));
      data.pipe(res);
    },
    refuse(code) {
      req.abort(
        code === 'not_found' ? 'File not found' : code === 'access' ? 'Access violation' : 'Server busy, try again',
      );
    },
  };
}

export interface TftpListener {
  address: { address: string; port: number };
  close(): void;
}

export async function listenTftp(
  o: TftpListenOptions,
  onTransfer: (t: TftpTransfer) => void,
  onRefused: (reason: NonNullable<ReturnType<typeof refusal>>, from: string, bytes: number) => void,
  onError: (e: Error) => void,
): Promise<TftpListener> {
  const server = tftp.createServer(
    {
      host: o.address,
      port: o.port,
      root: o.root,
      denyPUT: true,
      blockSize: o.maxBlksize,
      windowSize: o.maxWindowsize,
      retries: o.retries,
    },
    (req, res) => onTransfer(transfer(req, res)),
  );
  server.on('error', onError);
  server._socket.prependListener('message', (msg: Buffer, rinfo: { address: string; port: number }) => {
    const reason = refusal(msg);
    if (reason) onRefused(reason, `${rinfo.address}:${rinfo.port}`, msg.length);
  });
  server.listen();
  try {
    await once(server, 'listening');
  } catch (e) {
    throw bindFailure(e, { what: 'TFTP', setting: 'tftp.port', proto: 'udp', address: o.address, port: o.port });
  }
  const a = server._socket.address();
  return { address: { address: a.address, port: a.port }, close: () => server.close() };
}
