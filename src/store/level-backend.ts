import { mkdirSync } from 'node:fs';
import type { AbstractSublevel } from 'abstract-level';
import { Level } from 'level';
import type { Backend, CommitResult, KvOp } from './backend.js';

type Sub = AbstractSublevel<Level<string, unknown>, string | Buffer | Uint8Array, string, unknown>;

/**
 * The embedded default: one LevelDB, a sublevel per collection. One process owns it, and the store's lock
 * serialises its read-modify-write sections, so guards have nothing to compare. LevelDB's write-ahead log
 * means a batch that resolved survives kill -9 of the process.
 */
export class LevelBackend implements Backend {
  readonly kind = 'leveldb';
  private readonly subs = new Map<string, Sub>();

  private constructor(private readonly db: Level<string, unknown>) {}

  static async open(dir: string): Promise<LevelBackend> {
    mkdirSync(dir, { recursive: true });
    const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    await db.open();
    return new LevelBackend(db);
  }

  private sub(name: string): Sub {
    let s = this.subs.get(name);
    if (!s) {
      s = this.db.sublevel<string, unknown>(name, { valueEncoding: 'json' });
      this.subs.set(name, s);
    }
    return s;
  }

  get(collection: string, key: string): Promise<unknown> {
    return this.sub(collection).get(key);
  }

  async *scan(collection: string, o: { reverse?: boolean; limit?: number } = {}): AsyncIterable<[string, unknown]> {
    yield* this.sub(collection).iterator({ reverse: o.reverse ?? false, limit: o.limit ?? -1 });
  }

  async commit(ops: KvOp[]): Promise<CommitResult> {
    const batch = ops.map((op) =>
      op.type === 'put'
        ? { type: 'put' as const, sublevel: this.sub(op.collection), key: op.key, value: op.value }
        : { type: 'del' as const, sublevel: this.sub(op.collection), key: op.key },
    );
    // sublevel ops carry their own encoding; abstract-level's typings cannot express a mixed batch
    if (batch.length) await this.db.batch(batch as never);
    return { ok: true, rev: 0 };
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
