import type { Lease } from '../../domain/lease.js';
import type { Logger } from '../../log.js';
import type { Change } from '../../store/backend.js';
import { type Store, StoreConflict } from '../../store/store.js';
import { Pipeline } from '../../workflow/pipeline.js';
import { type LeaseOp, LeaseTable, type PoolSpec } from './leases.js';

/**
 * A full-mode lease table and its persistence, for DHCPv4 and DHCPv6 alike: a bind is stored before the answer
 * that gives the address leaves; leases other appliances bind on a shared store are learnt.
 */
export class LeaseWriter {
  table?: LeaseTable;
  /** binds being written, by MAC */
  private readonly storing = new Map<string, Promise<boolean | 'lost'>>();
  /** decide() runs on the lease table; its lease writes are plans committed against the revisions it knew */
  private readonly pipeline: Pipeline;

  constructor(
    private readonly pool: PoolSpec | undefined,
    private readonly store: Store,
    private readonly log: Logger,
    /** appliances sharing a pool start looking for free addresses at different places */
    private readonly spreadFrom: string,
  ) {
    this.pipeline = new Pipeline(store);
  }

  async start(): Promise<void> {
    await this.reload();
    this.store.on('change', this.otherLease);
    this.store.on('resync', this.resync);
  }

  stop(): void {
    this.store.off('change', this.otherLease);
    this.store.off('resync', this.resync);
  }

  /** The lease table as the store has it now (at start, and after a restore replaced the stored leases). */
  async reload(): Promise<void> {
    if (!this.pool) return;
    this.table = new LeaseTable(this.pool, await this.store.leases.all());
    if (this.store.backend.kind === 'etcd') this.table.spreadFrom(this.spreadFrom);
  }

  /** The store reloaded everything (its watch could not go on): so does the lease table. */
  private readonly resync = (): void => {
    void this.reload();
  };

  /** Leases bound or dropped by another appliance on the shared store. */
  private readonly otherLease = (c: Change): void => {
    if (c.collection !== 'leases' || !this.table) return;
    if (c.value === undefined) this.table.forget(c.key);
    else this.table.learn(c.value as Lease);
  };

  /** The live leases of these MACs' hosts. */
  leased(macs: readonly string[], now: number): string[] {
    return this.table?.addressesOf(macs, now) ?? [];
  }

  /**
   * Applies the lease change; a bind is stored before the answer leaves. False when the answer must not go out;
   * 'lost' when another appliance bound the address first (shared store).
   */
  async apply(mac: string, op: LeaseOp | undefined): Promise<boolean | 'lost'> {
    // `mac`: the lease's key (LeaseTable)
    const t = this.table;
    if (!op || !t) return true;
    const now = Date.now();
    switch (op.kind) {
      case 'offer':
        t.holdOffer(mac, op.ip, now);
        return true;
      case 'keep':
        // a lease still being written is not yet the store's: its ACK waits for that write, and fails with it
        return (await this.storing.get(mac)) ?? true;
      case 'bind': {
        const storing = this.storeBind(t, mac, op, now);
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
  private async storeBind(
    t: LeaseTable,
    mac: string,
    op: Extract<LeaseOp, { kind: 'bind' }>,
    now: number,
  ): Promise<boolean | 'lost'> {
    const leases = this.store.leases;
    // shared store: the address is bound only while nobody else bound it since this table learnt of it
    const before = t.leaseOf(mac);
    const prev = before?.ip;
    const guards = [op.ip, ...(prev && prev !== op.ip ? [prev] : [])].map((ip) => ({
      collection: 'leases',
      key: ip,
      rev: leases.revOf(ip),
    }));
    const { lease, replaced } = t.bind(mac, op.ip, now, op.hostname, op.mac);
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
}
