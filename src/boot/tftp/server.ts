import { type Resolved, resolveInside } from '../../domain/safe-path.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { type GrubFile, loggableFile, optionalFile } from '../grub.js';
import type { BootTimeline, EntryDetail } from '../timeline.js';
import type { TftpSource } from './packets.js';
import { listenTftp, type TftpListener, type TftpListenOptions, type TftpTransfer } from './transfer.js';

export interface TftpOptions extends TftpListenOptions {
  maxTransfers: number;
  maxTransfersPerClient: number;
  /** served as /assets/<path>: the kernels and initrds the signed GRUB loads (it has no HTTP) */
  assetsRoot?: string;
  /** a second listener, on an IPv6 address, beside `address`: for IPv6-only segments */
  address6?: string;
  /** the files rendered per request (GRUB's configuration); undefined: not one of them */
  rendered?: (file: string, from: string) => Promise<GrubFile>;
}

type Source = { ok: true; source: TftpSource; what?: string } | Extract<Resolved, { ok: false }>;

/**
 * Read-only TFTP for the iPXE binaries and the Secure Boot chain: which file, if any, a request may read (GRUB's
 * configuration rendered per request); logs, metrics, timeline.
 */
export class TftpServer {
  private listeners: TftpListener[] = [];
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
    const listen = (address: string, port: number) =>
      listenTftp(
        { ...this.opts, address, port },
        (t) => void this.serve(t),
        (reason, remote, bytes) => {
          this.metrics.tftpRefused.inc({ reason });
          this.log.debug({ remote, reason, bytes }, 'tftp datagram refused');
        },
        (e) => this.log.error({ err: e.message }, 'tftp server error'),
      );
    const main = await listen(this.opts.address, this.opts.port);
    this.listeners.push(main);
    // the same port on IPv6 (with port 0, the one IPv4 got)
    if (this.opts.address6) this.listeners.push(await listen(this.opts.address6, main.address.port));
    return main.address;
  }

  private note(t: TftpTransfer, what: string, ok: boolean, detail: EntryDetail = {}): void {
    this.timeline?.add(this.timeline.keyForIp(t.remoteAddress), 'tftp', `${loggableFile(t.file)}: ${what}`, ok, {
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
      file: loggableFile(t.file),
      blksize: t.blockSize,
      windowsize: t.windowSize,
    };
    // a request sent again while a rendered file is being decided is a duplicate too
    this.peers.add(peer);
    let found: Source;
    try {
      found = await this.resolve(t);
    } catch (e) {
      this.peers.delete(peer);
      this.metrics.tftpTransfers.inc({ result: 'failed' });
      this.log.warn({ ...fields, err: (e as Error).message }, 'tftp file could not be rendered');
      this.note(t, `failed: ${(e as Error).message}`, false);
      return; // unanswered: GRUB asks again
    }
    if (!found.ok) {
      this.peers.delete(peer);
      this.metrics.tftpTransfers.inc({ result: found.status === 404 ? 'not_found' : 'refused' });
      // the Secure Boot chain probes for files it can do without: expected, and no failure on the timeline
      const optional = found.status === 404 && optionalFile(t.file);
      this.log[optional ? 'debug' : 'warn']({ ...fields, reason: found.reason }, 'tftp request refused');
      this.note(t, optional ? `${found.reason} (optional)` : found.reason, optional);
      t.refuse(found.status === 404 ? 'not_found' : 'access');
      return;
    }
    const target = found.source;
    if (!this.admit(t.remoteAddress)) {
      this.peers.delete(peer);
      // no answer, as dnsmasq at tftp-max: the client sends its request again and is served once a slot is free.
      // An ERROR would end its boot, and a rack powered on at once would start over from DHCP again and again.
      // Logged at debug: in a storm they come by the thousand a second, and the metric counts them.
      this.metrics.tftpTransfers.inc({ result: 'busy' });
      this.log.debug({ ...fields, active: this.active }, 'tftp request left unanswered: too many transfers');
      this.note(t, 'deferred: too many transfers (the client asks again)', false);
      return;
    }
    const started = Date.now();
    t.send(target, (end) => {
      this.peers.delete(peer);
      this.release(t.remoteAddress);
      this.metrics.tftpTransfers.inc({ result: end.kind === 'done' ? 'ok' : end.kind });
      if (end.kind === 'done') {
        this.metrics.tftpBytes.inc(target.size);
        this.log.info({ ...fields, bytes: target.size }, 'tftp transfer done');
        const what = found.what ? `${found.what}, ` : '';
        this.note(t, `${what}${target.size} bytes, blksize ${t.blockSize}, windowsize ${t.windowSize}`, true, {
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

  /** The file a request names: rendered (GRUB's), one of the assets, or one under the TFTP root. */
  private async resolve(t: TftpTransfer): Promise<Source> {
    const r = await this.opts.rendered?.(t.file, t.remoteAddress);
    if (r && 'refuse' in r) return { ok: false, status: 404, reason: r.refuse };
    if (r) {
      const bytes = Buffer.from(r.text);
      return { ok: true, source: { bytes, size: bytes.length }, what: r.what };
    }
    const asset = /^\/*assets\//.exec(t.file);
    const target =
      asset && this.opts.assetsRoot
        ? resolveInside(this.opts.assetsRoot, t.file.slice(asset[0].length))
        : resolveInside(this.opts.root, t.file);
    return target.ok ? { ok: true, source: target } : target;
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
    for (const l of this.listeners) l.close();
    this.listeners = [];
  }
}
