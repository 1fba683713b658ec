import { mkdirSync } from 'node:fs';
import { Level } from 'level';
import type { AbstractSublevel } from 'abstract-level';
import { z } from 'zod';
import { LeaseSchema } from '../domain/lease.js';
import { BootInstructionSchema } from '../config.js';
import { StoredHostSchema, StoredMachineSchema, StoredReportSchema } from '../domain/resources.js';

export const EventSchema = z.object({
  at: z.string(),
  kind: z.string(),
  host: z.string().optional(),
  machine: z.string().optional(),
  mac: z.string().optional(),
  message: z.string(),
});
export type StoreEvent = z.infer<typeof EventSchema>;

type Sub<V> = AbstractSublevel<Level<string, unknown>, string | Buffer | Uint8Array, string, V>;

/** One write of an atomic batch, bound to its sublevel (and so to its encoding). */
export type BatchOp = { type: 'put'; sublevel: unknown; key: string; value: unknown } | { type: 'del'; sublevel: unknown; key: string };

/** A sublevel whose values are checked against their zod schema when read back. */
export class Collection<S extends z.ZodType> {
  constructor(
    readonly name: string,
    readonly db: Sub<z.infer<S>>,
    private readonly schema: S,
  ) {}

  async get(key: string): Promise<z.infer<S> | undefined> {
    const v = await this.db.get(key);
    return v === undefined ? undefined : this.parse(key, v);
  }

  async all(): Promise<z.infer<S>[]> {
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
export class Store {
  readonly leases: Collection<typeof LeaseSchema>;
  readonly bootInstructions: Collection<typeof BootInstructionSchema>;
  readonly hosts: Collection<typeof StoredHostSchema>;
  readonly machines: Collection<typeof StoredMachineSchema>;
  readonly reports: Collection<typeof StoredReportSchema>;
  readonly events: Collection<typeof EventSchema>;
  private eventSeq = 0;

  private constructor(readonly db: Level<string, unknown>) {
    const sub = <S extends z.ZodType>(name: string, schema: S) =>
      new Collection(name, db.sublevel<string, z.infer<S>>(name, { valueEncoding: 'json' }), schema);
    this.leases = sub('leases', LeaseSchema);
    this.bootInstructions = sub('boot', BootInstructionSchema);
    this.hosts = sub('hosts', StoredHostSchema);
    this.machines = sub('machines', StoredMachineSchema);
    this.reports = sub('reports', StoredReportSchema);
    this.events = sub('events', EventSchema);
  }

  /** An event as a batch op; keys sort by time. */
  event(e: Omit<StoreEvent, 'at'>): BatchOp {
    const at = new Date().toISOString();
    return this.events.put(`${at}-${String(this.eventSeq++ % 1e6).padStart(6, '0')}`, { at, ...e });
  }

  static async open(dir: string): Promise<Store> {
    mkdirSync(dir, { recursive: true });
    const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    await db.open();
    return new Store(db);
  }

  async batch(ops: BatchOp[]): Promise<void> {
    // sublevel ops carry their own encoding; abstract-level's typings cannot express a mixed batch
    if (ops.length) await this.db.batch(ops as never);
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
