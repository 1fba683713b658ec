import { resolveInside } from '../../domain/safe-path.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { BootTimeline, EntryDetail } from '../timeline.js';
import { listenTftp, type TftpListener, type TftpListenOptions, type TftpTransfer } from './transfer.js';

export interface TftpOptions extends TftpListenOptions {
  maxTransfers: number;
  maxTransfersPerClient: number;
}

/** Read-only TFTP for the iPXE binaries: which file, if any, a request may read; logs, metrics, timeline. */
export class TftpServer {
  private listener?: TftpListener;
  private active = 0;
  private readonly perClient = new Map<string, number>();
  /** address:port of the transfers running: a request sent again by a client already served is not a new one */
  private readonly peers = new Set<string>();

  constructor(
    private readonly opts: TftpOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly timeline?: BootTimeline,
  ) {}

  async start(): Promise<{ address: string; port: number }> {
    this.listener = await listenTftp(
      this.opts,
      (t) => void this.serve(t),
      (reason, remote, bytes) => {
        this.metrics.tftpRefused.inc({ reason });
        this.log.debug({ remote, reason, bytes }, 'tftp datagram refused');
      },
      (e) => this.log.error({ err: e.message }, 'tftp server error'),
    );
    return this.listener.address;
  }

  private note(t: TftpTransfer, what: string, ok: boolean, detail: EntryDetail = {}): void {
    this.timeline?.add(this.timeline.keyForIp(t.remoteAddress), 'tftp', `${t.file}: ${what}`, ok, {
      stage: 'tftp',
      ...detail,
    });
  }

  private async serve(t: TftpTransfer): Promise<void> {
    const peer = `${t.remoteAddress}:${t.remotePort}`;
    if (this.peers.has(peer)) {
      // its first request is being answered (our answer is slow, or was lost): that transfer resends on its own
      this.metrics.tftpTransfers.inc({ result: 'duplicate' });
      return;
    }
    const fields = {
      remote: peer,
      file: t.file,
      blksize: t.blockSize,
      windowsize: t.windowSize,
    };
    const target = resolveInside(this.opts.root, t.file);
    if (!target.ok) {
      this.metrics.tftpTransfers.inc({ result: target.status === 404 ? 'not_found' : 'refused' });
      this.log.warn({ ...fields, reason: target.reason }, 'tftp request refused');
      this.note(t, target.reason, false);
      t.refuse(target.status === 404 ? 'not_found' : 'access');
      return;
    }
    if (!this.admit(t.remoteAddress)) {
      // no answer, as dnsmasq at tftp-max: the client sends its request again and is served once a slot is free.
      // An ERROR would end its boot, and a rack powered on at once would start over from DHCP again and again.
      // Logged at debug: in a storm they come by the thousand a second, and the metric counts them.
      this.metrics.tftpTransfers.inc({ result: 'busy' });
      this.log.debug({ ...fields, active: this.active }, 'tftp request left unanswered: too many transfers');
      this.note(t, 'deferred: too many transfers (the client asks again)', false);
      return;
    }
    this.peers.add(peer);
    const started = Date.now();
    t.send(target, (end) => {
      this.peers.delete(peer);
      this.release(t.remoteAddress);
      this.metrics.tftpTransfers.inc({ result: end.kind === 'done' ? 'ok' : end.kind });
      if (end.kind === 'done') {
        this.metrics.tftpBytes.inc(target.size);
        this.log.info({ ...fields, bytes: target.size }, 'tftp transfer done');
        this.note(t, `${target.size} bytes, blksize ${t.blockSize}, windowsize ${t.windowSize}`, true, {
          ms: Date.now() - started,
          bytes: target.size,
        });
      } else if (end.kind === 'aborted_by_client') {
        this.log.debug({ ...fields, err: end.message }, 'tftp transfer aborted by client');
        this.note(t, 'size probe', true);
      } else {
        this.log.warn({ ...fields, err: end.message }, 'tftp transfer failed');
        this.note(t, `failed: ${end.message}`, false);
      }
    });
  }

  /** A transfer slot for this address, if the global and the per-client caps allow one. */
  private admit(addr: string): boolean {
    const mine = this.perClient.get(addr) ?? 0;
    if (this.active >= this.opts.maxTransfers || mine >= this.opts.maxTransfersPerClient) return false;
    this.active++;
    this.perClient.set(addr, mine + 1);
    return true;
  }

  private release(addr: string): void {
    this.active--;
    const left = (this.perClient.get(addr) ?? 1) - 1;
    if (left > 0) this.perClient.set(addr, left);
    else this.perClient.delete(addr);
  }

  stop(): void {
    this.listener?.close();
  }
}
