import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import type { AbstractSublevel } from 'abstract-level';
import { Level } from 'level';
import type { z } from 'zod';
import { BootInstructionSchema } from '../domain/boot.js';
import { EventSchema, type StoreEvent, type WorkflowEvent } from '../domain/events.js';
import { LeaseSchema } from '../domain/lease.js';
import {
  type StoredHost,
  StoredHostSchema,
  type StoredMachine,
  StoredMachineSchema,
  StoredReportSchema,
  StoredSecretSchema,
} from '../domain/resources.js';

type Sub<V> = AbstractSublevel<Level<string, unknown>, string | Buffer | Uint8Array, string, V>;

/** One write of an atomic batch, bound to its sublevel (and so to its encoding). */
export type BatchOp =
  | { type: 'put'; sublevel: unknown; key: string; value: unknown }
  | { type: 'del'; sublevel: unknown; key: string };

/** Cached values are shared by every reader: freezing them turns an accidental mutation into a TypeError. */
function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/**
 * A sublevel whose values are checked against their zod schema when read back. A cached collection (hosts,
 * machines: read whole on every reconcile pass) keeps every value in memory, loaded at open and updated
 * after each committed batch; reads then cost no LevelDB iteration and no JSON parsing.
 */
export class Collection<S extends z.ZodType> {
  private cache?: Map<string, z.infer<S>>;
  /** the cache in key order, built when first read after a change: a reconcile pass reads it whole */
  private sorted?: [string, z.infer<S>][];
  private changes = 0;

  constructor(
    readonly name: string,
    readonly db: Sub<z.infer<S>>,
    private readonly schema: S,
  ) {}

  /** Serve reads from memory from now on (call before any write). */
  async load(): Promise<void> {
    const m = new Map<string, z.infer<S>>();
    for await (const [k, v] of this.db.iterator()) m.set(k, deepFreeze(this.parse(k, v)));
    this.cache = m;
    this.sorted = undefined;
  }

  /** Mirrors a committed op into the cache, as a read from disk would return it. */
  applied(op: BatchOp): void {
    if (!this.cache || op.sublevel !== this.db) return;
    this.changes++;
    this.sorted = undefined;
    if (op.type === 'del') this.cache.delete(op.key);
    else this.cache.set(op.key, deepFreeze(this.parse(op.key, JSON.parse(JSON.stringify(op.value)))));
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

  async get(key: string): Promise<z.infer<S> | undefined> {
    if (this.cache) return this.cache.get(key);
    const v = await this.db.get(key);
    return v === undefined ? undefined : this.parse(key, v);
  }

  async keys(): Promise<string[]> {
    if (this.cache) return [...this.cache.keys()].sort();
    return this.db.keys().all();
  }

  async entries(): Promise<[string, z.infer<S>][]> {
    if (this.cache) {
      this.sorted ??= [...this.cache.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return this.sorted.slice();
    }
    const out: [string, z.infer<S>][] = [];
    for await (const [k, v] of this.db.iterator()) out.push([k, this.parse(k, v)]);
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
    for await (const [k, v] of this.db.iterator({ reverse: true, limit: n })) out.push(this.parse(k, v));
    return out.reverse();
  }

  async all(): Promise<z.infer<S>[]> {
    if (this.cache) return (await this.entries()).map(([, v]) => v);
    const out: z.infer<S>[] = [];
    for await (const [k, v] of this.db.iterator()) out.push(this.parse(k, v));
    return out;
  }

  put(key: string, value: z.infer<S>): BatchOp {
    return { type: 'put', sublevel: this.db, key, value };
  }

  del(key: string): BatchOp {
    return { type: 'del', sublevel: this.db, key };
  }

  private parse(key: string, v: unknown): z.infer<S> {
    const r = this.schema.safeParse(v);
    if (!r.success) throw new Error(`store ${this.name}/${key} holds an invalid value: ${r.error.message}`);
    return r.data;
  }
}

/**
 * All persistent state in one LevelDB. Every change is one atomic batch; LevelDB's write-ahead log
 * means a batch that resolved survives kill -9 of the process.
 */
export class Store extends EventEmitter {
  readonly leases: Collection<typeof LeaseSchema>;
  readonly bootInstructions: Collection<typeof BootInstructionSchema>;
  readonly hosts: Collection<typeof StoredHostSchema>;
  readonly machines: Collection<typeof StoredMachineSchema>;
  readonly reports: Collection<typeof StoredReportSchema>;
  readonly events: Collection<typeof EventSchema>;
  readonly secrets: Collection<typeof StoredSecretSchema>;
  private eventSeq = 0;

  private constructor(readonly db: Level<string, unknown>) {
    super();
    const sub = <S extends z.ZodType>(name: string, schema: S) =>
      new Collection(name, db.sublevel<string, z.infer<S>>(name, { valueEncoding: 'json' }), schema);
    this.leases = sub('leases', LeaseSchema);
    this.bootInstructions = sub('boot', BootInstructionSchema);
    this.hosts = sub('hosts', StoredHostSchema);
    this.machines = sub('machines', StoredMachineSchema);
    this.reports = sub('reports', StoredReportSchema);
    this.events = sub('events', EventSchema);
    this.secrets = sub('secrets', StoredSecretSchema);
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
    ] as Collection<z.ZodType>[];
  }

  /** An event as a batch op; keys sort by time. */
  event(e: WorkflowEvent): BatchOp {
    const at = new Date().toISOString();
    return this.events.put(`${at}-${String(this.eventSeq++ % 1e6).padStart(6, '0')}`, { at, ...e });
  }

  static async open(dir: string): Promise<Store> {
    mkdirSync(dir, { recursive: true });
    const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    await db.open();
    const store = new Store(db);
    await store.hosts.load();
    await store.machines.load();
    return store;
  }

  private chain: Promise<unknown> = Promise.resolve();

  /**
   * Runs read-modify-write sections one at a time, so no write is based on a stale read. Sections must not
   * nest. Plain batches need no section: a batch is atomic by itself.
   */
  transact<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Commits `ops` only while the host and machine are still as `seen` (false: they changed, look again). */
  commitIf(
    seen: { host?: StoredHost | undefined; machine?: StoredMachine | undefined },
    ops: BatchOp[],
  ): Promise<boolean> {
    return this.transact(async () => {
      const same = async <V>(c: Collection<z.ZodType<V>>, v: (V & { name: string }) | undefined) => {
        if (!v) return true;
        const cur = await c.get(v.name);
        return cur === v || JSON.stringify(cur) === JSON.stringify(v);
      };
      if (!(await same(this.hosts, seen.host)) || !(await same(this.machines, seen.machine))) return false;
      await this.batch(ops);
      return true;
    });
  }

  /** Deletes all but the newest `keep` events; returns how many went. */
  async pruneEvents(keep: number): Promise<number> {
    const old: BatchOp[] = [];
    let seen = 0;
    for await (const k of this.events.db.keys({ reverse: true })) if (++seen > keep) old.push(this.events.del(k));
    for (let i = 0; i < old.length; i += 10_000) await this.batch(old.slice(i, i + 10_000));
    return old.length;
  }

  async batch(ops: BatchOp[]): Promise<void> {
    // sublevel ops carry their own encoding; abstract-level's typings cannot express a mixed batch
    if (ops.length) await this.db.batch(ops as never);
    for (const op of ops) for (const c of [this.hosts, this.machines]) c.applied(op);
    // events are announced once they are on disk (the dashboard streams them)
    for (const op of ops)
      if (op.type === 'put' && op.sublevel === this.events.db) this.emit('event', op.value as StoreEvent);
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
