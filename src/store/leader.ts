import { EventEmitter } from 'node:events';
import type { Lease } from 'etcd3';
import type { Logger } from '../log.js';
import type { Guard } from './backend.js';
import type { EtcdBackend } from './etcd-backend.js';

/** How often a leader checks its lease locally; it steps down this long before the lease could have expired. */
const CHECK_MS = 250;

/**
 * How long a lease is certainly alive, judged on a monotonic clock (a wall-clock step changes nothing) and from
 * when each keep-alive was sent, not when its answer came: etcd refreshed the lease at some moment in between,
 * so its TTL runs out no sooner than send time + TTL. Keep-alive answers come in the order they were sent.
 */
export class LeaseClock {
  private readonly sent: number[] = [];
  private until = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** A grant or keep-alive is about to go out. */
  fired(): void {
    this.sent.push(this.now());
  }

  /** The answer to the oldest outstanding one: the lease lives `ttlSeconds` from when that was sent. */
  answered(ttlSeconds: number): void {
    const at = this.sent.shift() ?? this.now();
    this.until = Math.max(this.until, at + ttlSeconds * 1000);
  }

  /** A new keep-alive stream: requests of the old one will never be answered. */
  restarted(): void {
    this.sent.length = 0;
  }

  /** Whether the lease may already have expired by the next check. */
  expiring(): boolean {
    return this.now() + CHECK_MS >= this.until;
  }
}

/**
 * Leader election on etcd, as etcd's own concurrency package does it: each appliance puts a key under
 * `<prefix>leader/` on a lease it keeps alive; the oldest key leads, the others wait for the key just older
 * than theirs to go. Written on etcd3's lease and transactions rather than its Election class, which hides the
 * lease: leadership ends here the moment keep-alives stop for a TTL, before etcd itself lets the key expire, and
 * the key's creation revision is the fence every orchestrator write compares.
 *
 * Emits 'elected' (the fence) and 'deposed'.
 */
export class Leadership extends EventEmitter {
  private lease?: Lease;
  private stopped = false;
  private leading = false;
  private checker?: NodeJS.Timeout;
  private clock?: LeaseClock;

  constructor(
    private readonly etcd: EtcdBackend,
    private readonly identity: string,
    private readonly ttlSeconds: number,
    private readonly log: Logger,
  ) {
    super();
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * Whether this appliance leads and its lease is certainly alive right now: asked before each BMC call leaves,
   * so a call is never sent between a lost lease and the next check noticing it (a pause, a busy event loop).
   * A lease that may have lapsed ends the leadership here and now: the orchestrator is stopped before the
   * refused call returns, so it commits nothing of it (no BMC failure recorded by a leader that was not one).
   */
  holds(): boolean {
    if (this.leading && this.clock?.expiring() !== false)
      this.depose('keep-alives not answered in time: the lease may expire');
    return this.leading;
  }

  private get dir(): string {
    return `${this.etcd.opts.prefix}leader/`;
  }

  start(): void {
    void this.campaign();
  }

  /** Campaigns until elected; on any failure starts over with a new lease a second later. */
  private async campaign(): Promise<void> {
    const c = this.etcd.client;
    try {
      const lease = c.lease(this.ttlSeconds, { autoKeepAlive: true });
      this.lease = lease;
      const clock = new LeaseClock();
      this.clock = clock;
      lease.on('keepaliveEstablished', () => clock.restarted());
      lease.on('keepaliveFired', () => clock.fired());
      lease.on('keepaliveSucceeded', (res: { TTL: string }) => clock.answered(Number(res.TTL)));
      lease.on('lost', (e: Error) => this.depose(`lease lost: ${e.message}`));
      clock.fired();
      const id = await lease.grant();
      clock.answered(this.ttlSeconds);
      const key = `${this.dir}${id}`;
      const r = await c.if(key, 'Create', '==', 0).then(c.put(key).value(this.identity).lease(id)).commit();
      const mine = Number(r.header.revision);
      for (;;) {
        if (this.stopped || this.lease !== lease) return;
        const older = await c
          .getAll()
          .prefix(this.dir)
          .maxCreateRevision(String(mine - 1))
          .sort('Create', 'Descend')
          .limit(1)
          .exec();
        const ahead = older.kvs[0];
        if (!ahead) break;
        await this.deleted(ahead.key.toString(), Number(older.header.revision));
      }
      if (this.stopped || this.lease !== lease) return;
      this.leading = true;
      // leadership ends locally before the lease could have expired: etcd lets the key go no sooner
      this.checker = setInterval(() => {
        if (clock.expiring()) this.depose('keep-alives not answered in time: the lease may expire');
      }, CHECK_MS);
      this.log.warn({ key, revision: mine }, 'leader elected: this appliance runs the orchestrator');
      const fence: Guard = { collection: '', key, rev: mine, on: 'create' };
      this.emit('elected', fence);
    } catch (e) {
      this.depose(`campaign failed: ${(e as Error).message}`);
    }
  }

  /** Resolves when `key` is deleted (its holder's lease ended) after `rev`. */
  private async deleted(key: string, rev: number): Promise<void> {
    const w = await this.etcd.client
      .watch()
      .key(key)
      .startRevision(String(rev + 1))
      .create();
    let stop = () => {};
    try {
      await new Promise<void>((resolve, reject) => {
        w.on('delete', () => resolve());
        w.on('error', reject);
        stop = resolve;
        this.once('stop', stop);
      });
    } finally {
      this.off('stop', stop);
      await w.cancel().catch(() => undefined);
    }
  }

  private depose(why: string): void {
    const lease = this.lease;
    if (!lease) return;
    this.lease = undefined;
    clearInterval(this.checker);
    lease.removeAllListeners();
    void lease.revoke().catch(() => undefined);
    if (this.leading) {
      this.leading = false;
      this.log.warn({ reason: why }, 'leadership lost: the orchestrator stops');
      this.emit('deposed');
    } else this.log.warn({ reason: why }, 'leader campaign failed; trying again');
    if (!this.stopped) setTimeout(() => void this.campaign(), 1000).unref();
  }

  /** The leading appliance's identity (its API address), or undefined while nobody leads. */
  async leader(): Promise<string | undefined> {
    const r = await this.etcd.client.getAll().prefix(this.dir).sort('Create', 'Ascend').limit(1).strings();
    return Object.values(r)[0];
  }

  /** Resigns: the lease goes at once, so another appliance leads without waiting for the TTL. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.emit('stop');
    const lease = this.lease;
    this.lease = undefined;
    clearInterval(this.checker);
    if (this.leading) {
      this.leading = false;
      this.emit('deposed');
    }
    await lease?.revoke().catch(() => undefined);
  }
}
