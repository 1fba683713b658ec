import { mkdirSync } from 'node:fs';
import { Level } from 'level';
import type { AbstractSublevel } from 'abstract-level';
import type { z } from 'zod';
import { LeaseSchema, type Lease } from '../domain/lease.js';
import { BootInstructionSchema, type BootInstruction } from '../config.js';

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

  private constructor(readonly db: Level<string, unknown>) {
    this.leases = new Collection('leases', db.sublevel<string, Lease>('leases', { valueEncoding: 'json' }), LeaseSchema);
    this.bootInstructions = new Collection(
      'boot',
      db.sublevel<string, BootInstruction>('boot', { valueEncoding: 'json' }),
      BootInstructionSchema,
    );
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
