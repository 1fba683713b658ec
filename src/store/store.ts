import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { z } from 'zod';
import { BootInstructionSchema } from '../domain/boot.js';
import { type Effect, EffectSchema } from '../domain/effect.js';
import { EventSchema, type StoreEvent, type WorkflowEvent } from '../domain/events.js';
import { LeaseSchema } from '../domain/lease.js';
import { StoredObjectSchema } from '../domain/manifests.js';
import { StoredHostSchema, StoredMachineSchema, StoredReportSchema, StoredSecretSchema } from '../domain/resources.js';
import type { Backend, Change, Guard, KvOp } from './backend.js';
import { LevelBackend } from './level-backend.js';
import { type Entries, scopeKeys } from './scoped-keys.js';

/** One write of an atomic batch. */
export type BatchOp = KvOp;

/** Cached values are shared by every reader: freezing them turns an accidental mutation into a TypeError. */
function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/** Where `key` is in entries sorted by key (it is there). */
function sortedIndex(sorted: readonly [string, unknown][], key: string): number {
  let [lo, hi] = [0, sorted.length - 1];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((sorted[mid] as [string, unknown])[0] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A transaction read keys that changed before it could commit; it runs again on the current values. */
export class StoreConflict extends Error {
  override name = 'StoreConflict';
}

/** What a read-modify-write section read, for the commit to compare. */
interface TxContext {
  reads: Map<string, Guard>;
}

/** Read-modify-write sections that lose to another appliance are run again this many times. */
const MAX_TX_RUNS = 30;

/**
 * One collection of the store, its values checked against their zod schema when read. A cached collection
 * keeps every value in memory, with the revision it was written at (etcd): loaded at open, updated after each
 * commit and, on a shared backend, by the watch. Hosts and machines are always cached (a reconcile pass reads
 * them whole), and boot instructions (one per boot MAC, read by every script fetch: no disk read on that path);
 * on etcd every collection is, so boot scripts are served while etcd is away.
 */
export class Collection<S extends z.ZodType> {
  private cache?: Map<string, z.infer<S>>;
  /** mod revision of each cached key; a deleted key keeps its revision until the watch has passed it */
  private readonly revs = new Map<string, number>();
  /** the cache in key order, built when first read after a change: a reconcile pass reads it whole */
  private sorted?: [string, z.infer<S>][];
  private changes = 0;

  constructor(
    readonly name: string,
    private readonly store: Store,
    private readonly schema: S,
  ) {}

  /** Serve reads from memory from now on (call before any write). */
  async load(): Promise<void> {
    const m = new Map<string, z.infer<S>>();
    for await (const [k, v] of this.store.backend.scan(this.name)) m.set(k, deepFreeze(this.parse(k, v)));
    this.cache = m;
    this.sorted = undefined;
  }

  /** Replaces the cache with a snapshot's entries of this collection. */
  reset(entries: Change[]): void {
    this.cache = new Map();
    this.revs.clear();
    this.sorted = undefined;
    this.changes++;
    for (const c of entries) this.apply(c);
  }

  /**
   * Mirrors a change into the cache, as a read from the backend would return it; a change older than the one
   * cached is ignored (our own commit, then the same change again from the watch). When it applied: the value
   * the cache held before (undefined: new, or the collection is not cached).
   * Our own commits come `prepared` (parsed before they were written); another appliance's are parsed here.
   */
  apply(c: Change, prepared = false): { prev: unknown } | undefined {
    if (!this.cache) return { prev: undefined };
    if (c.rev && (this.revs.get(c.key) ?? 0) >= c.rev) return undefined;
    if (c.rev) this.revs.set(c.key, c.rev);
    const prev = this.cache.get(c.key);
    // a delete of what is not here (seen again, its tombstone forgotten) changes nothing
    if (c.value === undefined && prev === undefined) return undefined;
    this.changes++;
    if (c.value === undefined) {
      this.cache.delete(c.key);
      this.sorted = undefined;
      return { prev };
    }
    // another appliance's value: parsed here; zod's output is a fresh copy, so no JSON round trip is needed
    const v = prepared ? (c.value as z.infer<S>) : this.prepare(c.key, c.value);
    this.cache.set(c.key, v);
    // a new key re-sorts on the next read; an update (most writes) takes its place, not a sort of them all
    if (prev === undefined) this.sorted = undefined;
    else if (this.sorted) this.sorted[sortedIndex(this.sorted, c.key)] = [c.key, v];
    return { prev };
  }

  /**
   * A value about to be written, as the cache will hold it: checked against the schema (a value that does not
   * parse is never written), its transforms applied, frozen. Zod's output is a fresh copy, so the caller's
   * object stays the caller's. Uncached collections are checked when read.
   */
  prepare(key: string, v: unknown): z.infer<S> {
    return this.cache ? deepFreeze(this.parse(key, v)) : (v as z.infer<S>);
  }

  /** Forgets revisions of deleted keys the watch has passed: no older change of them can arrive any more. */
  forgetTombstones(upTo: number): void {
    if (!this.cache) return;
    for (const [k, r] of this.revs) if (r <= upTo && !this.cache.has(k)) this.revs.delete(k);
  }

  /** The key's mod revision as cached (0: absent, or not a shared backend), to guard a commit by hand. */
  revOf(key: string): number {
    return this.cache?.has(key) ? (this.revs.get(key) ?? 0) : 0;
  }

  /** Counts the changes to a cached collection: whatever is derived from it is stale when this moves. */
  get version(): number {
    return this.changes;
  }

  /** Every value, at once, from memory: cached collections only (the DHCP server reads hosts per packet). */
  snapshot(): readonly z.infer<S>[] {
    if (!this.cache) throw new Error(`collection ${this.name} is not cached`);
    return [...this.cache.values()];
  }

  /** Inside a transaction, the key's revision as read becomes a guard of its commit. */
  async get(key: string): Promise<z.infer<S> | undefined> {
    if (this.cache) {
      this.store.readInTx(this.name, key, this.revOf(key));
      return this.cache.get(key);
    }
    const v = await this.store.backend.get(this.name, key);
    return v === undefined ? undefined : this.parse(key, v);
  }

  async keys(): Promise<string[]> {
    return (await this.entries()).map(([k]) => k);
  }

  /** How many values the collection holds: from memory when cached, without sorting or copying them. */
  async count(): Promise<number> {
    if (this.cache) return this.cache.size;
    let n = 0;
    for await (const _ of this.store.backend.scan(this.name)) n++;
    return n;
  }

  async entries(): Promise<[string, z.infer<S>][]> {
    if (this.cache) {
      this.sorted ??= [...this.cache.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return this.sorted.slice();
    }
    const out: [string, z.infer<S>][] = [];
    for await (const [k, v] of this.store.backend.scan(this.name)) out.push([k, this.parse(k, v)]);
    return out;
  }

  /** Checks a value against this collection's schema (restore), with the zod message on failure. */
  check(key: string, v: unknown): z.infer<S> {
    return this.parse(key, v);
  }

  /** The newest `n` values, oldest first; reads only those from disk. */
  async last(n: number): Promise<z.infer<S>[]> {
    if (this.cache) return (await this.all()).slice(-n);
    const out: z.infer<S>[] = [];
    for await (const [k, v] of this.store.backend.scan(this.name, { reverse: true, limit: n }))
      out.push(this.parse(k, v));
    return out.reverse();
  }

  async all(): Promise<z.infer<S>[]> {
    return (await this.entries()).map(([, v]) => v);
  }

  put(key: string, value: z.infer<S>): BatchOp {
    return { type: 'put', collection: this.name, key, value };
  }

  del(key: string): BatchOp {
    return { type: 'del', collection: this.name, key };
  }

  private parse(key: string, v: unknown): z.infer<S> {
    const r = this.schema.safeParse(v);
    if (!r.success) throw new Error(`store ${this.name}/${key} holds an invalid value: ${r.error.message}`);
    return r.data;
  }
}

/**
 * All persistent state, on one backend: the embedded LevelDB, or etcd shared by several appliances. Every
 * change is one atomic batch (on etcd, one transaction), except restore and pruning (Store.bulk). Read-modify-write sections run one at a time in this process; on etcd their
 * commit also compares the revisions of what they read, and runs them again when another appliance got there
 * first. Emits 'event' for each workflow event stored (by anyone), 'change' for changes other appliances made,
 * and 'record' for every change, ours or theirs, once the cache holds it, with the value it replaced (`prev`, for
 * cached collections: the resource API's watch).
 */
export class Store extends EventEmitter {
  readonly leases: Collection<typeof LeaseSchema>;
  readonly bootInstructions: Collection<typeof BootInstructionSchema>;
  readonly hosts: Collection<typeof StoredHostSchema>;
  readonly machines: Collection<typeof StoredMachineSchema>;
  readonly reports: Collection<typeof StoredReportSchema>;
  readonly events: Collection<typeof EventSchema>;
  readonly secrets: Collection<typeof StoredSecretSchema>;
  /** BMC work the reconciler carries out, by host, in the order it was stored */
  readonly effects: Collection<typeof EffectSchema>;
  /** Beskar7Cluster, Beskar7MachineTemplate and Namespace objects, keyed `<namespace>/<name>` (namespaces: name) */
  readonly clusters: Collection<typeof StoredObjectSchema>;
  readonly templates: Collection<typeof StoredObjectSchema>;
  readonly namespaces: Collection<typeof StoredObjectSchema>;
  private readonly byName: Map<string, Collection<z.ZodType>>;
  private eventSeq = 0;
  /** event keys of two appliances never collide */
  private readonly origin = randomBytes(3).toString('hex');
  private readonly tx = new AsyncLocalStorage<TxContext>();
  private readonly fenceCtx = new AsyncLocalStorage<Guard>();
  /** the leader's election key: orchestrator writes commit only while it still exists (etcd) */
  private fence?: Guard | undefined;
  /** the last etcd revision the caches hold (0: no snapshot yet; etcd's revisions start at 1) */
  private watchedRev = 0;
  private remoteSeen = 0;
  private closed = false;

  private constructor(readonly backend: Backend) {
    super();
    // 'event' has a listener per live stream and per operator action awaiting its outcome: bounded by
    // api.maxStreams and the API's callers, not by EventEmitter's default of 10
    this.setMaxListeners(0);
    const sub = <S extends z.ZodType>(name: string, schema: S) => new Collection(name, this, schema);
    this.leases = sub('leases', LeaseSchema);
    this.bootInstructions = sub('boot', BootInstructionSchema);
    this.hosts = sub('hosts', StoredHostSchema);
    this.machines = sub('machines', StoredMachineSchema);
    this.reports = sub('reports', StoredReportSchema);
    this.events = sub('events', EventSchema);
    this.secrets = sub('secrets', StoredSecretSchema);
    this.effects = sub('effects', EffectSchema);
    this.clusters = sub('clusters', StoredObjectSchema);
    this.templates = sub('templates', StoredObjectSchema);
    this.namespaces = sub('namespaces', StoredObjectSchema);
    this.byName = new Map(this.collections().map((c) => [c.name, c]));
  }

  /** Every collection by name, for backup and restore. */
  collections(): Collection<z.ZodType>[] {
    return [
      this.leases,
      this.bootInstructions,
      this.hosts,
      this.machines,
      this.reports,
      this.events,
      this.secrets,
      this.effects,
      this.clusters,
      this.templates,
      this.namespaces,
    ] as Collection<z.ZodType>[];
  }

  /** A key that sorts by time and that no other appliance makes. */
  private stamp(): { at: string; key: string } {
    const at = new Date().toISOString();
    const seq = String(this.eventSeq++ % 1e6).padStart(6, '0');
    return { at, key: `${at}-${seq}-${this.origin}` };
  }

  /** The write that stores an event. */
  putEvent(e: WorkflowEvent): BatchOp {
    const { at, key } = this.stamp();
    return this.events.put(key, { at, ...e });
  }

  /** The write that stores an effect; a host's effects sort in the order they were stored. */
  putEffect(e: Effect): BatchOp {
    return this.effects.put(`${e.host}/${this.stamp().key}`, e);
  }

  /** The effects stored for a host, oldest first, with their keys. */
  async effectsOf(host: string): Promise<[string, Effect][]> {
    return (await this.effects.entries()).filter(([k]) => k.startsWith(`${host}/`));
  }

  /** The embedded LevelDB in `dir`. */
  static async open(dir: string): Promise<Store> {
    return Store.over(await LevelBackend.open(dir));
  }

  static async over(backend: Backend): Promise<Store> {
    const store = new Store(backend);
    if (backend.snapshot) await store.follow();
    else
      for (const c of [
        store.hosts,
        store.machines,
        store.effects,
        store.bootInstructions,
        // the resource API serves and watches these from memory
        store.secrets,
        store.clusters,
        store.templates,
        store.namespaces,
      ])
        await c.load();
    await store.scopeKeys();
    return store;
  }

  /**
   * A store written when names were unique across namespaces, re-keyed (scopeKeys). The new keys are written
   * before the old ones go: a crash between leaves both, and the next open finishes the job.
   */
  private async scopeKeys(): Promise<void> {
    const cols = [
      this.hosts,
      this.machines,
      this.secrets,
      this.effects,
      this.bootInstructions,
    ] as Collection<z.ZodType>[];
    const before: Entries = {};
    for (const c of cols) before[c.name] = await c.entries();
    const after = scopeKeys(before);
    const puts: BatchOp[] = [];
    const dels: BatchOp[] = [];
    for (const c of cols) {
      const old = new Map(before[c.name]);
      const keys = new Set<string>();
      for (const [k, v] of after[c.name] ?? []) {
        keys.add(k);
        if (old.get(k) !== v) puts.push(c.put(k, v));
      }
      for (const k of old.keys()) if (!keys.has(k)) dels.push(c.del(k));
    }
    await this.bulk([...puts, ...dels]);
  }

  /** Shared backend: every collection from one snapshot, then the watch from its revision. */
  private async follow(): Promise<void> {
    const b = this.backend;
    if (!b.snapshot || !b.watch) return;
    const { entries, rev } = await b.snapshot();
    // the first snapshot fills the caches; a later one is caught up with, change by change
    if (this.watchedRev) await this.catchUp(entries, rev);
    else for (const c of this.collections()) c.reset(entries.filter((e) => e.collection === c.name));
    this.watchedRev = rev;
    this.emit('resync');
    await b.watch(
      rev,
      (c) => this.remote(c),
      () => void this.refollow(),
    );
  }

  /** The watch could not go on: a new snapshot and watch, tried every second until etcd answers. */
  private async refollow(): Promise<void> {
    while (!this.closed) {
      try {
        await this.follow();
        return;
      } catch (e) {
        this.emit('watchError', e);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /**
   * After the watch broke: what changed meanwhile, taken from a snapshot and announced as the watch would have
   * (the resource API's watches and the orchestrator learn of it too). A key the snapshot lacks was deleted at
   * its revision; anything this appliance committed after the snapshot is newer and stays.
   */
  private async catchUp(entries: Change[], rev: number): Promise<void> {
    const present = new Set<string>();
    for (const e of entries) {
      present.add(`${e.collection}/${e.key}`);
      this.absorb(e);
    }
    for (const c of this.collections())
      for (const key of await c.keys())
        if (!present.has(`${c.name}/${key}`)) this.absorb({ collection: c.name, key, rev });
  }

  private remote(c: Change): void {
    this.watchedRev = Math.max(this.watchedRev, c.rev);
    this.absorb(c);
    if (++this.remoteSeen % 1000 === 0) for (const x of this.collections()) x.forgetTombstones(this.watchedRev);
  }

  /** A change someone else made, into the cache and announced. */
  private absorb(c: Change): void {
    const applied = this.byName.get(c.collection)?.apply(c);
    if (!applied) return;
    if (c.collection === 'events' && c.value !== undefined) this.emit('event', c.value as StoreEvent);
    this.emit('change', c);
    this.emit('record', { ...c, prev: applied.prev });
  }

  /** Records a read made inside a transaction (shared backends only: the LevelDB lock is enough). */
  readInTx(collection: string, key: string, rev: number): void {
    const ctx = this.tx.getStore();
    if (ctx && this.backend.snapshot) ctx.reads.set(`${collection}/${key}`, { collection, key, rev });
  }

  /** From now on, `fenced` sections commit only while this election key exists (undefined: not leading). */
  setFence(g: Guard | undefined): void {
    this.fence = g;
  }

  /** Runs `fn` (and what it starts) as the leader: its commits fail once leadership is lost. */
  fenced<T>(fn: () => T): T {
    return this.fence ? this.fenceCtx.run(this.fence, fn) : fn();
  }

  private chain: Promise<unknown> = Promise.resolve();

  /**
   * Runs read-modify-write sections one at a time, so no write is based on a stale read; on a shared backend
   * a section whose reads another appliance changed runs again on the new values. Sections must not nest,
   * and must do nothing but read and commit. Plain batches need no section: a batch is atomic by itself.
   */
  transact<T>(fn: () => Promise<T>): Promise<T> {
    const attempt = async (): Promise<T> => {
      for (let run = 1; ; run++) {
        try {
          // LevelDB needs no read set (the lock is enough): AsyncLocalStorage's hooks then cost nothing
          return await (this.backend.snapshot ? this.tx.run({ reads: new Map() }, fn) : fn());
        } catch (e) {
          if (!(e instanceof StoreConflict) || run >= MAX_TX_RUNS) throw e;
          // two appliances racing for one key: a random pause lets one of them through
          await new Promise((r) => setTimeout(r, Math.random() * 5 * run));
        }
      }
    };
    const run = this.chain.then(attempt, attempt);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Deletes all but the newest `keep` events; returns how many went. */
  async pruneEvents(keep: number): Promise<number> {
    const old: BatchOp[] = [];
    if (this.backend.snapshot) {
      const keys = await this.events.keys();
      for (const k of keys.slice(0, Math.max(0, keys.length - keep))) old.push(this.events.del(k));
    } else {
      let seen = 0;
      for await (const [k] of this.backend.scan('events', { reverse: true }))
        if (++seen > keep) old.push(this.events.del(k));
    }
    await this.bulk(old);
    return old.length;
  }

  /**
   * Many writes in batches of at most 100 (etcd's default limit is 128 per transaction): atomic per batch, not
   * as a whole. For pruning, restore and migration, where running again converges on the same result.
   */
  async bulk(ops: BatchOp[]): Promise<void> {
    for (let i = 0; i < ops.length; i += 100) await this.batch(ops.slice(i, i + 100));
  }

  /**
   * Commits `ops` atomically. On a shared backend only while `guards` hold and, inside a transaction, what it
   * read is unchanged (StoreConflict otherwise, after the cache took the current values); in a fenced section,
   * only while this appliance leads.
   */
  async batch(ops: BatchOp[], guards: Guard[] = []): Promise<void> {
    const fence = this.fenceCtx.getStore();
    const all = [...guards, ...(this.tx.getStore()?.reads.values() ?? []), ...(fence ? [fence] : [])];
    if (!ops.length) return;
    ops = ops.map((op) => {
      const c = op.type === 'put' && this.byName.get(op.collection);
      return c ? { ...op, value: c.prepare(op.key, op.value) } : op;
    });
    const r = await this.backend.commit(ops, all);
    if (!r.ok) {
      for (const c of r.current) this.absorb(c);
      throw new StoreConflict(
        fence && fence === this.fence
          ? 'store changed meanwhile (or this appliance no longer leads)'
          : 'store changed meanwhile',
      );
    }
    for (const op of ops) {
      const c = {
        collection: op.collection,
        key: op.key,
        rev: r.rev,
        ...(op.type === 'put' ? { value: op.value } : {}),
      };
      const applied = this.byName.get(op.collection)?.apply(c, true);
      if (!applied) continue;
      // events are announced once they are stored (the dashboard streams them)
      if (op.type === 'put' && op.collection === 'events') this.emit('event', op.value as StoreEvent);
      this.emit('record', { ...c, prev: applied.prev });
    }
  }

  close(): Promise<void> {
    this.closed = true;
    this.removeAllListeners();
    return this.backend.close();
  }
}
