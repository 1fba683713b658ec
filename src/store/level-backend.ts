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

  /**
   * Group commit: commits that arrive while a write is under way go to LevelDB together in the next batch, one
   * write instead of one each (a batch is still all-or-nothing, so each commit stays atomic). A storm of hosts
   * commits many small batches at once; each LevelDB write costs the main thread a hand-off to a pool thread.
   */
  commit(ops: KvOp[]): Promise<CommitResult> {
    if (!ops.length) return Promise.resolve({ ok: true, rev: 0 });
    return new Promise((resolve, reject) => {
      this.queued.push({ ops, resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  private readonly queued: { ops: KvOp[]; resolve: (r: CommitResult) => void; reject: (e: unknown) => void }[] = [];
  /** the running flush, until the queue is empty */
  private flushing?: Promise<void> | undefined;

  private async flush(): Promise<void> {
    while (this.queued.length) {
      const group = this.queued.splice(0);
      try {
        await this.write(group.flatMap((c) => c.ops));
        for (const c of group) c.resolve({ ok: true, rev: 0 });
      } catch (e) {
        // nothing of the batch was written; one commit's bad value must not fail the others: each alone
        if (group.length === 1) group[0]?.reject(e);
        else for (const c of group) await this.write(c.ops).then(() => c.resolve({ ok: true, rev: 0 }), c.reject);
      }
    }
    this.flushing = undefined;
  }

  private write(ops: KvOp[]): Promise<void> {
    const batch = ops.map((op) =>
      op.type === 'put'
        ? { type: 'put' as const, sublevel: this.sub(op.collection), key: op.key, value: op.value }
        : { type: 'del' as const, sublevel: this.sub(op.collection), key: op.key },
    );
    // sublevel ops carry their own encoding; abstract-level's typings cannot express a mixed batch
    return this.db.batch(batch as never);
  }

  async close(): Promise<void> {
    // commits already queued are written first, as they were before group commit
    await this.flushing;
    return this.db.close();
  }
}
