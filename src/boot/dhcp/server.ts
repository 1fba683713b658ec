import dgram from 'node:dgram';
import { once } from 'node:events';
import type { Lease } from '../../domain/lease.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { bindFailure } from '../../net/bind-error.js';
import type { Change } from '../../store/backend.js';
import { type Store, StoreConflict } from '../../store/store.js';
import { Pipeline } from '../../workflow/pipeline.js';
import type { BootTimeline } from '../timeline.js';
import { bindToInterface } from './bind-interface.js';
import { DecodeError, type DhcpPacket, decode, encode } from './codec.js';
import { type DecideContext, decide, type LeaseOp, type Outcome, observedAddress } from './decide.js';
import { LeaseTable, type PoolSpec } from './leases.js';
import { msgTypeName } from './options.js';

/** How long an address a MAC showed in proxy mode counts as the one it holds: a PXE boot's whole inspection. */
const OBSERVED_FOR_MS = 3600_000;
/** MACs whose address is kept at once in proxy mode; spoofed MACs cannot grow the table past it. */
const MAX_OBSERVED = 10_000;

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
  private leases?: LeaseTable;
  /** binds being written, by MAC */
  private readonly storing = new Map<string, Promise<boolean | 'lost'>>();
  /** proxy mode: the address each MAC last showed (observedAddress) */
  private readonly observed = new Map<string, { ip: string; at: number }>();
  /** decide() runs on the lease table; its lease writes are plans committed against the revisions it knew */
  private readonly pipeline: Pipeline;

  constructor(
    private readonly opts: DhcpServerOptions,
    private readonly store: Store,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly timeline?: BootTimeline,
  ) {
    this.pipeline = new Pipeline(store);
  }

  async start(): Promise<{ port: number; proxyPort?: number }> {
    await this.reloadLeases();
    this.store.on('change', this.otherLease);
    this.store.on('resync', this.resync);
    const main = await this.bind(this.opts.port, 'dhcp');
    const out: { port: number; proxyPort?: number } = { port: main.address().port };
    if (this.opts.proxyPort) {
      out.proxyPort = (await this.bind(this.opts.proxyPort, 'pxe')).address().port;
    }
    return out;
  }

  /** The lease table as the store has it now (at start, and after a restore replaced the stored leases). */
  async reloadLeases(): Promise<void> {
    if (!this.opts.pool) return;
    this.leases = new LeaseTable(this.opts.pool, await this.store.leases.all());
    if (this.store.backend.kind === 'etcd') this.leases.spreadFrom(this.opts.context.serverIp);
  }

  /** The store reloaded everything (its watch could not go on): so does the lease table. */
  private readonly resync = (): void => {
    void this.reloadLeases();
  };

  /** Leases bound or dropped by another appliance on the shared store. */
  private readonly otherLease = (c: Change): void => {
    if (c.collection !== 'leases' || !this.leases) return;
    if (c.value === undefined) this.leases.forget(c.key);
    else this.leases.learn(c.value as Lease);
  };

  /**
   * The addresses these MACs hold now, as far as we know: full mode, our leases; proxy mode, what each MAC last
   * asked the site's server for (or came to port 4011 from) within the hour. Empty when nothing was seen.
   */
  leasedAddresses(macs: readonly string[], now = Date.now()): string[] {
    return macs.flatMap((mac) => {
      if (this.leases) {
        const l = this.leases.leaseOf(mac);
        return l && l.expiresAt > now ? [l.ip] : [];
      }
      const o = this.observed.get(mac);
      return o && now - o.at < OBSERVED_FOR_MS ? [o.ip] : [];
    });
  }

  /** Proxy mode: the address a MAC showed, the newest kept; the oldest MACs go once there are too many. */
  private observe(mac: string, ip: string | undefined, now: number): void {
    if (this.leases || !ip) return;
    this.observed.delete(mac);
    this.observed.set(mac, { ip, at: now });
    if (this.observed.size > MAX_OBSERVED) this.observed.delete(this.observed.keys().next().value as string);
  }

  get leaseCount(): number {
    return this.leases?.leaseCount ?? 0;
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
      decide(req, { ...this.opts.context, port: kind }, this.leases, Date.now(), {
        address: rinfo.address,
        port: rinfo.port,
      });
    let out = again();
    this.observe(out.client.mac, observedAddress(req, kind, rinfo), Date.now());
    const type = msgTypeName(out.client.msgType);
    this.metrics.dhcpPackets.inc({ port: kind, type, result: out.action });
    const mac = out.client.mac;
    if (out.action === 'ignore') {
      this.log.debug({ mac, type, port: kind, reason: out.reason }, 'dhcp ignored');
      this.timeline?.add(mac, 'dhcp', `${type} ignored: ${out.reason}`);
      return;
    }
    const applied = await this.applyLease(out);
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

  /**
   * Applies the lease change; a bind is stored before the ACK leaves. False when the reply must not go out;
   * 'lost' when another appliance bound the address first (shared store).
   */
  private async applyLease(out: Extract<Outcome, { action: 'reply' | 'silent' }>): Promise<boolean | 'lost'> {
    const op: LeaseOp | undefined = out.leaseOp;
    const t = this.leases;
    if (!op || !t) return true;
    const mac = out.client.mac;
    const now = Date.now();
    switch (op.kind) {
      case 'offer':
        t.holdOffer(mac, op.ip, now);
        return true;
      case 'keep':
        // a lease still being written is not yet the store's: its ACK waits for that write, and fails with it
        return (await this.storing.get(mac)) ?? true;
      case 'bind': {
        const storing = this.storeBind(mac, op, now);
        this.storing.set(mac, storing);
        try {
          return await storing;
        } finally {
          if (this.storing.get(mac) === storing) this.storing.delete(mac);
        }
      }
      case 'release':
      case 'decline': {
        const gone = op.kind === 'release' ? t.release(mac, op.ip) : t.decline(mac, op.ip, now);
        if (gone)
          await this.pipeline
            .commit({ writes: [this.store.leases.del(gone.ip)] })
            .catch((e: Error) => this.log.error({ mac, err: e.message }, 'lease delete failed'));
        this.log.info({ mac, ip: op.ip }, `dhcp ${op.kind}`);
        return true;
      }
    }
  }

  /** Binds in the table and stores the lease; the table forgets the bind when the write fails. */
  private async storeBind(mac: string, op: Extract<LeaseOp, { kind: 'bind' }>, now: number): Promise<boolean | 'lost'> {
    const t = this.leases as LeaseTable;
    const leases = this.store.leases;
    // shared store: the address is bound only while nobody else bound it since this table learnt of it
    const before = t.leaseOf(mac);
    const prev = before?.ip;
    const guards = [op.ip, ...(prev && prev !== op.ip ? [prev] : [])].map((ip) => ({
      collection: 'leases',
      key: ip,
      rev: leases.revOf(ip),
    }));
    const { lease, replaced } = t.bind(mac, op.ip, now, op.hostname);
    try {
      await this.pipeline.commit(
        { writes: [...(replaced ? [leases.del(replaced)] : []), leases.put(lease.ip, lease)] },
        guards,
      );
      return true;
    } catch (e) {
      t.unbind(lease);
      // the client keeps the address it had: the store still holds it
      if (before && before.ip !== lease.ip) t.learn(before);
      if (e instanceof StoreConflict) {
        this.log.warn({ mac, ip: op.ip }, 'address bound by another appliance meanwhile; NAK');
        return 'lost';
      }
      this.log.error({ mac, ip: op.ip, err: (e as Error).message }, 'lease not stored; ACK withheld');
      return false;
    }
  }

  async stop(): Promise<void> {
    this.store.off('change', this.otherLease);
    this.store.off('resync', this.resync);
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sockets = [];
  }
}
