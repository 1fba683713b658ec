import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import tftp, { type GetStream, type PutStream, type Server } from 'tftp';
import { resolveInside } from '../domain/safe-path.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { BootTimeline } from '../timeline.js';
import { refusal } from './request-check.js';
import './data-packet.js';

export interface TftpOptions {
  address: string;
  port: number;
  root: string;
  maxBlksize: number;
  maxWindowsize: number;
  retries: number;
}

/**
 * Read-only TFTP for the iPXE binaries. The `tftp` package does the protocol (blksize, tsize, windowsize,
 * rollover, per-transfer sockets); we decide which file, if any, a request may read.
 */
export class TftpServer {
  private server?: Server;

  constructor(
    private readonly opts: TftpOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly timeline?: BootTimeline,
  ) {}

  async start(): Promise<{ address: string; port: number }> {
    const server = tftp.createServer(
      {
        host: this.opts.address,
        port: this.opts.port,
        root: this.opts.root,
        denyPUT: true,
        blockSize: this.opts.maxBlksize,
        windowSize: this.opts.maxWindowsize,
        retries: this.opts.retries,
      },
      (req, res) => void this.serve(req, res),
    );
    server.on('error', (e: Error) => this.log.error({ err: e.message }, 'tftp server error'));
    server._socket.prependListener('message', (msg: Buffer, rinfo: { address: string; port: number }) => {
      const reason = refusal(msg);
      if (!reason) return;
      this.metrics.tftpRefused.inc({ reason });
      this.log.debug({ remote: `${rinfo.address}:${rinfo.port}`, reason, bytes: msg.length }, 'tftp datagram refused');
    });
    this.server = server;
    server.listen();
    await once(server, 'listening');
    const a = server._socket.address();
    return { address: a.address, port: a.port };
  }

  private async serve(req: GetStream, res: PutStream): Promise<void> {
    const remote = `${req.stats.remoteAddress}:${req.stats.remotePort}`;
    const fields = { remote, file: req.file, blksize: req.stats.blockSize, windowsize: req.stats.windowSize };
    req.on('error', (e: Error) => {
      // OVMF and others ask once for the size (tsize) and abort after the OACK: normal, not a failure
      const probe = /aborted/i.test(e.message);
      this.metrics.tftpTransfers.inc({ result: probe ? 'aborted_by_client' : 'failed' });
      this.log[probe ? 'debug' : 'warn'](
        { ...fields, err: e.message },
        probe ? 'tftp transfer aborted by client' : 'tftp transfer failed',
      );
      this.timeline?.add(
        this.timeline.keyForIp(req.stats.remoteAddress),
        'tftp',
        `${req.file}: ${probe ? 'size probe' : `failed: ${e.message}`}`,
        probe,
      );
    });
    const target = await resolveInside(this.opts.root, req.file);
    if (!target.ok) {
      this.metrics.tftpTransfers.inc({ result: target.status === 404 ? 'not_found' : 'refused' });
      this.log.warn({ ...fields, reason: target.reason }, 'tftp request refused');
      this.timeline?.add(
        this.timeline.keyForIp(req.stats.remoteAddress),
        'tftp',
        `${req.file}: ${target.reason}`,
        false,
      );
      req.abort(target.status === 404 ? 'File not found' : 'Access violation');
      return;
    }
    res.setSize(target.size);
    res.on('finish', () => {
      this.metrics.tftpTransfers.inc({ result: 'ok' });
      this.metrics.tftpBytes.inc(target.size);
      this.log.info({ ...fields, bytes: target.size }, 'tftp transfer done');
      this.timeline?.add(
        this.timeline.keyForIp(req.stats.remoteAddress),
        'tftp',
        `${req.file}: ${target.size} bytes, blksize ${req.stats.blockSize}, windowsize ${req.stats.windowSize}`,
      );
    });
    createReadStream(target.path, { highWaterMark: 1 << 20 }).pipe(res);
  }

  stop(): void {
    this.server?.close();
  }
}
