import dgram from 'node:dgram';
import { once } from 'node:events';
import { slaacAddress } from '../../domain/ipv6.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { bindFailure } from '../../net/bind-error.js';
import type { Store } from '../../store/store.js';
import { bindToInterface } from '../dhcp/bind-interface.js';
import { DecodeError } from '../dhcp/codec.js';
import { LeaseWriter } from '../dhcp/lease-writer.js';
import type { PoolSpec } from '../dhcp/leases.js';
import { ObservedAddresses } from '../dhcp/observed.js';
import type { BootTimeline } from '../timeline.js';
import { type Dhcp6Message, decode6, encode6, msg6Name } from './codec.js';
import { type Decide6Context, decide6, shown6 } from './decide.js';

/** All DHCPv6 relay agents and servers (RFC 8415 7.1): where clients send. */
const ALL_SERVERS = 'ff02::1:2';

export interface Dhcp6ServerOptions {
  interface: string;
  port: number;
  clientPort: number;
  maxPacketBytes: number;
  context: Decide6Context;
  /** full mode: the address pool; without one (proxy mode) the site's server answers and we only listen */
  pool?: PoolSpec | undefined;
}

/** The socket on the segment, lease persistence and logging around the pure `decide6`. */
export class Dhcp6Server {
  private socket?: dgram.Socket;
  private readonly leases: LeaseWriter;
  /** proxy mode: the address each MAC last asked the site's server for */
  private readonly observed = new ObservedAddresses();

  constructor(
    private readonly opts: Dhcp6ServerOptions,
    store: Store,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly timeline?: BootTimeline,
  ) {
    this.leases = new LeaseWriter(opts.pool, store, log, opts.context.serverAddress);
  }

  async start(): Promise<{ port: number }> {
    await this.leases.start();
    const { port, interface: ifname } = this.opts;
    const s = dgram.createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true });
    s.on('message', (msg, rinfo) => void this.onMessage(msg, rinfo));
    s.on('error', (e) => this.log.error({ err: e.message }, 'dhcpv6 socket error'));
    s.bind(port, '::');
    try {
      await once(s, 'listening');
    } catch (e) {
      s.close();
      throw bindFailure(e, { what: 'DHCPv6', setting: 'dhcp6.port', proto: 'udp', address: '::', port });
    }
    bindToInterface(s, ifname);
    s.addMembership(ALL_SERVERS, `::%${ifname}`);
    this.socket = s;
    return { port: s.address().port };
  }

  reloadLeases(): Promise<void> {
    return this.leases.reload();
  }

  get leaseCount(): number {
    return this.leases.table?.leaseCount ?? 0;
  }

  /**
   * The IPv6 addresses these MACs hold: the DHCPv6 lease (proxy mode: the address each last asked the site's
   * server for), and beside it the address each forms by SLAAC in the segment's prefix (the inspector's Linux
   * takes that one; busybox has no DHCPv6 client): in full mode the prefix our router advertisements announce,
   * in proxy mode our own address's. None when no DHCPv6 address was seen: a host that booted over IPv4 is
   * bound by its IPv4 address alone.
   */
  leasedAddresses(macs: readonly string[], now = Date.now()): string[] {
    const pool = this.opts.pool;
    const held = pool ? this.leases.leased(macs, now) : this.observed.of(macs, now);
    const prefix = pool?.poolStart ?? this.opts.context.serverAddress;
    return held.length ? [...held, ...macs.map((m) => slaacAddress(prefix, m))] : [];
  }

  private async onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): Promise<void> {
    const from = rinfo.address;
    if (msg.length > this.opts.maxPacketBytes) {
      this.metrics.dhcpMalformed.inc({ reason: 'oversize' });
      return;
    }
    let m: Dhcp6Message;
    try {
      m = decode6(msg);
    } catch (e) {
      const reason = e instanceof DecodeError ? e.reason : `decoder: ${(e as Error).message}`;
      this.metrics.dhcpMalformed.inc({ reason: `v6 ${reason.replace(/\d+/g, 'N')}` });
      this.log.debug({ from, bytes: msg.length, reason }, 'dhcpv6 message dropped');
      return;
    }
    const type = msg6Name(m.type);
    if (!this.opts.pool) {
      this.observe(m, type, from);
      return;
    }
    const out = decide6(m, this.opts.context, this.leases.table, Date.now(), from);
    this.metrics.dhcpPackets.inc({ port: 'dhcpv6', type, result: out.action });
    const mac = out.client?.mac;
    if (out.action === 'ignore') {
      this.log.debug({ mac, from, type, reason: out.reason }, 'dhcpv6 ignored');
      if (mac) this.timeline?.add(mac, 'dhcp', `DHCPv6 ${type} ignored: ${out.reason}`);
      return;
    }
    const applied = await this.leases.apply(out.leaseKey ?? out.client.mac, out.leaseOp);
    // another appliance took the address meanwhile: the client's next try is decided on what we learnt
    if (applied !== true) return;
    // the client's link-local source needs its interface to be sent to
    const to = from.startsWith('fe80:') && !from.includes('%') ? `${from}%${this.opts.interface}` : from;
    this.socket?.send(encode6(out.reply), this.opts.clientPort, to, (err) => {
      if (err) this.log.warn({ mac, to, err: err.message }, 'dhcpv6 send failed');
    });
    const file = out.bootUrl;
    this.log.info(
      { mac, type, reply: out.replyType, address: out.address, file, arch: out.client.arch },
      'dhcpv6 reply',
    );
    if (!this.timeline) return;
    if (out.address) this.timeline.learnIp(out.address, out.client.mac);
    const addr = out.address ? ` ${out.address}` : '';
    const what = `DHCPv6 ${type} → ${out.replyType}${addr}${file ? ` ${file}` : ''}`;
    this.timeline.add(out.client.mac, 'dhcp', what, true, { stage: 'dhcp' });
  }

  /** Proxy mode: the site's server answers; we note the address the client shows, and send nothing. */
  private observe(m: Dhcp6Message, type: string, from: string): void {
    const shown = shown6(m, from);
    this.metrics.dhcpPackets.inc({ port: 'dhcpv6', type, result: 'observed' });
    if (!shown?.address) return;
    this.observed.observe(shown.mac, shown.address, Date.now());
    this.log.debug({ mac: shown.mac, type, address: shown.address }, "dhcpv6 to the site's server observed");
    this.timeline?.learnIp(shown.address, shown.mac);
    this.timeline?.add(shown.mac, 'dhcp', `DHCPv6 ${type} to the site's server for ${shown.address}`);
  }

  async stop(): Promise<void> {
    this.leases.stop();
    const s = this.socket;
    this.socket = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
