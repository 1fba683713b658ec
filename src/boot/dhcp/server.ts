import dgram from 'node:dgram';
import { once } from 'node:events';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { bindFailure } from '../../net/bind-error.js';
import type { Store } from '../../store/store.js';
import type { BootTimeline } from '../timeline.js';
import { bindToInterface } from './bind-interface.js';
import { DecodeError, type DhcpPacket, decode, encode } from './codec.js';
import { type DecideContext, decide, observedAddress } from './decide.js';
import { LeaseWriter } from './lease-writer.js';
import type { PoolSpec } from './leases.js';
import { ObservedAddresses } from './observed.js';
import { msgTypeName } from './options.js';

export interface DhcpServerOptions {
  address: string;
  port: number;
  /** PXE boot server port (4011); 0 disables it */
  proxyPort: number;
  interface?: string | undefined;
  context: Omit<DecideContext, 'port'>;
  /** larger datagrams are dropped before decoding */
  maxPacketBytes: number;
  /** full mode: the address pool; persisted leases are loaded into it at start */
  pool?: PoolSpec | undefined;
}

/** Sockets, lease persistence and logging around the pure `decide`. */
export class DhcpServer {
  private sockets: dgram.Socket[] = [];
  private readonly leases: LeaseWriter;
  /** proxy mode: the address each MAC last showed (observedAddress) */
  private readonly observed = new ObservedAddresses();

  constructor(
    private readonly opts: DhcpServerOptions,
    store: Store,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly timeline?: BootTimeline,
  ) {
    this.leases = new LeaseWriter(opts.pool, store, log, opts.context.serverIp);
  }

  async start(): Promise<{ port: number; proxyPort?: number }> {
    await this.leases.start();
    const main = await this.bind(this.opts.port, 'dhcp');
    const out: { port: number; proxyPort?: number } = { port: main.address().port };
    if (this.opts.proxyPort) {
      out.proxyPort = (await this.bind(this.opts.proxyPort, 'pxe')).address().port;
    }
    return out;
  }

  /** The lease table as the store has it now (after a restore replaced the stored leases). */
  reloadLeases(): Promise<void> {
    return this.leases.reload();
  }

  /**
   * The addresses these MACs hold now, as far as we know: full mode, our leases; proxy mode, what each MAC last
   * asked the site's server for (or came to port 4011 from) within the hour. Empty when nothing was seen.
   */
  leasedAddresses(macs: readonly string[], now = Date.now()): string[] {
    return this.leases.table ? this.leases.leased(macs, now) : this.observed.of(macs, now);
  }

  get leaseCount(): number {
    return this.leases.table?.leaseCount ?? 0;
  }

  private async bind(port: number, kind: 'dhcp' | 'pxe'): Promise<dgram.Socket> {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    s.on('message', (msg, rinfo) => void this.onMessage(s, kind, msg, rinfo));
    s.on('error', (e) => this.log.error({ err: e.message, kind }, 'dhcp socket error'));
    s.bind(port, this.opts.address);
    try {
      await once(s, 'listening');
    } catch (e) {
      s.close();
      const setting = kind === 'dhcp' ? 'dhcp.port' : 'dhcp.proxyPort';
      throw bindFailure(e, {
        what: kind === 'dhcp' ? 'DHCP' : 'PXE',
        setting,
        proto: 'udp',
        address: this.opts.address,
        port,
      });
    }
    s.setBroadcast(true);
    if (this.opts.interface) bindToInterface(s, this.opts.interface);
    this.sockets.push(s);
    return s;
  }

  private async onMessage(
    sock: dgram.Socket,
    kind: 'dhcp' | 'pxe',
    msg: Buffer,
    rinfo: dgram.RemoteInfo,
  ): Promise<void> {
    if (msg.length > this.opts.maxPacketBytes) {
      this.metrics.dhcpMalformed.inc({ reason: 'oversize' });
      this.log.debug({ from: `${rinfo.address}:${rinfo.port}`, bytes: msg.length }, 'dhcp packet dropped: oversize');
      return;
    }
    let req: DhcpPacket;
    try {
      req = decode(msg);
    } catch (e) {
      const reason = e instanceof DecodeError ? e.reason : `decoder: ${(e as Error).message}`;
      this.metrics.dhcpMalformed.inc({ reason: reason.replace(/[\d]+/g, 'N') });
      this.log.debug({ from: `${rinfo.address}:${rinfo.port}`, bytes: msg.length, reason }, 'dhcp packet dropped');
      return;
    }
    const again = () =>
      decide(req, { ...this.opts.context, port: kind }, this.leases.table, Date.now(), {
        address: rinfo.address,
        port: rinfo.port,
      });
    let out = again();
    if (!this.leases.table) this.observed.observe(out.client.mac, observedAddress(req, kind, rinfo), Date.now());
    const type = msgTypeName(out.client.msgType);
    this.metrics.dhcpPackets.inc({ port: kind, type, result: out.action });
    const mac = out.client.mac;
    if (out.action === 'ignore') {
      this.log.debug({ mac, type, port: kind, reason: out.reason }, 'dhcp ignored');
      this.timeline?.add(mac, 'dhcp', `${type} ignored: ${out.reason}`);
      return;
    }
    const applied = await this.leases.apply(out.client.mac, out.leaseOp);
    if (applied === 'lost') {
      // another appliance bound the address first: decided again on what this table learnt, the client gets a
      // NAK and starts over at once instead of waiting out its retransmissions
      out = again();
      if (out.action !== 'reply' || out.leaseOp) return;
    } else if (!applied) return;
    if (out.action === 'silent') return;
    sock.send(encode(out.reply), out.to.port, out.to.address, (err) => {
      if (err) this.log.warn({ mac, to: out.to, err: err.message }, 'dhcp send failed');
    });
    this.log.info(
      {
        mac,
        type,
        reply: out.replyType,
        yiaddr: out.reply.yiaddr,
        file: out.boot?.file,
        arch: out.client.arch,
        to: `${out.to.address}:${out.to.port}`,
      },
      'dhcp reply',
    );
    if (this.timeline) {
      this.timeline.learnIp(kind === 'pxe' ? rinfo.address : out.reply.yiaddr, mac);
      const addr = out.reply.yiaddr !== '0.0.0.0' ? ` ${out.reply.yiaddr}` : '';
      this.timeline.add(
        mac,
        'dhcp',
        `${type} → ${out.replyType}${addr}${out.boot ? ` ${out.boot.file}` : ''}${kind === 'pxe' ? ' (port 4011)' : ''}${out.boot?.signed ? ` (signed chain: ${out.boot.signed})` : ''}`,
        true,
        { stage: 'dhcp' },
      );
    }
  }

  async stop(): Promise<void> {
    this.leases.stop();
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sockets = [];
  }
}
