import dgram from 'node:dgram';
import { once } from 'node:events';
import { bindFailure } from '../../net/bind-error.js';
import { FilePackets, type TftpSource } from './packets.js';
import {
  ackedBlock,
  ErrorCode,
  errorPacket,
  type Limits,
  oackPacket,
  parseReply,
  parseRequest,
  type Refusal,
  type Settled,
  settle,
} from './protocol.js';

/**
 * TFTP's sockets: the listening one on port 69 and one per transfer (its TID), connected to the client so only
 * its datagrams arrive. The data path sends a window of blocks as views of packets already in memory
 * (`FilePackets`), with no stream, copy or allocation in between: this is where the time of a transfer goes.
 */

export interface TftpListenOptions extends Limits {
  address: string;
  port: number;
  root: string;
  /** retransmissions of a window before the transfer is given up */
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
  /** sends the file (as the request's stat saw it); `ended` is called once, and the file is closed by then */
  send(file: TftpSource, ended: (e: TransferEnd) => void): void;
  refuse(code: 'not_found' | 'access'): void;
}

export interface TftpListener {
  address: { address: string; port: number };
  close(): void;
}

/** Without a timeout option: resend an unacknowledged window after this long (RFC 2349's default range is 1-255 s). */
const DEFAULT_TIMEOUT_MS = 1000;

/** One transfer's sender: OACK (if options), then windows of DATA, each resent on timeout until ACKed. */
class Sender {
  private acked = 0;
  private sent = 0;
  private tries = 0;
  private timer?: NodeJS.Timeout;
  private pumping = false;
  private done = false;
  private onSilence: () => void = () => {};
  private packets?: FilePackets;

  constructor(
    private readonly sock: dgram.Socket,
    private readonly s: Settled,
    private readonly retries: number,
    private readonly ended: (e: TransferEnd) => void,
  ) {
    sock.on('message', (m) => this.onReply(m));
    // e.g. ICMP port unreachable on the connected socket: the client is gone
    sock.on('error', (e) => this.finish({ kind: 'failed', message: e.message }));
  }

  async start(file: TftpSource): Promise<void> {
    let packets: FilePackets;
    try {
      const inFlight = () => this.sock.getSendQueueCount() > 0;
      packets = await FilePackets.open(file, this.s.blksize, inFlight);
    } catch (e) {
      return this.finish({ kind: 'failed', message: `open: ${(e as Error).message}` }, 'I/O error');
    }
    if (this.done) return packets.close();
    this.packets = packets;
    // with an OACK, block 0 stands for it: the client's ACK 0 starts the data
    if (this.s.oack) this.sendOack();
    else this.pump();
  }

  private sendOack(): void {
    this.sock.send(oackPacket(this.s.oack as Map<string, string>));
    this.arm(() => this.sendOack());
  }

  private onReply(m: Buffer): void {
    const r = parseReply(m);
    if (r.kind === 'error') {
      this.finish({ kind: 'aborted_by_client', message: r.message });
      return;
    }
    if (r.kind !== 'ack' || this.done || !this.packets) return;
    if (this.s.oack && this.acked === 0 && this.sent === 0) {
      if (r.block === 0) this.pump();
      return;
    }
    const b = ackedBlock(r.block, this.acked, this.sent);
    if (b === undefined) return;
    this.acked = b;
    this.tries = 0;
    if (b === this.packets.blocks) {
      this.finish({ kind: 'done' });
      return;
    }
    // ACKed short of the window's end: the client lost a block; the next window starts after b
    this.sent = b;
    this.pump();
  }

  /**
   * Sends the window after the last ACKed block: at once when its bytes are in memory (one ACK, one window, no
   * promise in between: at windowsize 1 this is the whole cost of a block), after a read when they are not.
   */
  private pump(): void {
    if (this.pumping || this.done || !this.packets) return;
    const from = this.acked + 1;
    const to = Math.min(this.packets.blocks, this.acked + this.s.windowsize);
    this.packets.prefetch(from, to);
    if (this.packets.has(from, to)) {
      this.sendWindow(from, to);
      return;
    }
    this.pumping = true;
    this.packets.ensure(from, to).then(
      () => {
        this.pumping = false;
        // an ACK may have moved the window while the read ran
        if (!this.done) this.pump();
      },
      (e: Error) => this.finish({ kind: 'failed', message: `read: ${e.message}` }, 'I/O error'),
    );
  }

  private sendWindow(from: number, to: number): void {
    for (let b = from; b <= to; b++) this.sock.send((this.packets as FilePackets).packet(b));
    this.sent = to;
    this.arm(this.resendWindow);
  }

  private readonly resendWindow = () => {
    this.sent = this.acked;
    this.pump();
  };

  /** On silence, `resend`; after `retries` silent rounds, the transfer is over. One timer, refreshed. */
  private arm(resend: () => void): void {
    this.onSilence = resend;
    if (this.done) return;
    if (this.timer) {
      this.timer.refresh();
      return;
    }
    this.timer = setTimeout(() => {
      if (++this.tries > this.retries) {
        return this.finish({ kind: 'timeout', message: `timed out after ${this.retries} retries` });
      }
      this.onSilence();
      // a resend that could not go out at once (a read) still needs the next check
      if (!this.done) this.timer?.refresh();
    }, this.s.timeoutMs);
  }

  private finish(e: TransferEnd, tell?: string): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    if (tell) this.sock.send(errorPacket(ErrorCode.NOT_DEFINED, tell));
    // the ERROR (if any) goes out before the socket closes
    setImmediate(() => this.sock.close());
    this.packets?.close();
    this.ended(e);
  }
}

function transfer(
  o: TftpListenOptions,
  main: dgram.Socket,
  file: string,
  options: Map<string, string>,
  from: dgram.RemoteInfo,
): TftpTransfer {
  const shape = settle(options, 0, o, DEFAULT_TIMEOUT_MS);
  const refuseWith = (code: number, message: string) => {
    // the file check is async: the server may have stopped meanwhile, and a closed socket throws
    try {
      main.send(errorPacket(code, message), from.port, from.address);
    } catch {
      // nobody to answer from any more
    }
  };
  return {
    file,
    remoteAddress: from.address,
    remotePort: from.port,
    blockSize: shape.blksize,
    windowSize: shape.windowsize,
    send(file, ended) {
      const sock = dgram.createSocket(from.family === 'IPv6' ? { type: 'udp6', ipv6Only: true } : { type: 'udp4' });
      const sender = new Sender(sock, settle(options, file.size, o, DEFAULT_TIMEOUT_MS), o.retries, ended);
      sock.bind(0, o.address, () => sock.connect(from.port, from.address, () => void sender.start(file)));
    },
    // refusals come from port 69: a flood of requests costs no sockets
    refuse(code) {
      if (code === 'not_found') refuseWith(ErrorCode.NOT_FOUND, 'File not found');
      else refuseWith(ErrorCode.ACCESS, 'Access violation');
    },
  };
}

export async function listenTftp(
  o: TftpListenOptions,
  onTransfer: (t: TftpTransfer) => void,
  onRefused: (reason: Refusal, from: string, bytes: number) => void,
  onError: (e: Error) => void,
): Promise<TftpListener> {
  // an IPv6 listener beside an IPv4 one on the same port takes IPv6 only
  const sock = dgram.createSocket(o.address.includes(':') ? { type: 'udp6', ipv6Only: true } : { type: 'udp4' });
  sock.on('message', (msg, from) => {
    const r = parseRequest(msg);
    if ('refused' in r) {
      onRefused(r.refused, `${from.address}:${from.port}`, msg.length);
      // a datagram of the wrong size gets no answer at all: nothing to reflect
      if (r.refused === 'write') sock.send(errorPacket(ErrorCode.ACCESS, 'read-only server'), from.port, from.address);
      else if (r.refused !== 'length')
        sock.send(errorPacket(ErrorCode.ILLEGAL, 'Illegal TFTP operation'), from.port, from.address);
      return;
    }
    onTransfer(transfer(o, sock, r.file, r.options, from));
  });
  sock.bind(o.port, o.address);
  try {
    await once(sock, 'listening');
  } catch (e) {
    sock.close();
    throw bindFailure(e, { what: 'TFTP', setting: 'tftp.port', proto: 'udp', address: o.address, port: o.port });
  }
  sock.on('error', onError);
  const a = sock.address();
  return { address: { address: a.address, port: a.port }, close: () => sock.close() };
}
