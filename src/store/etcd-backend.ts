import { readFileSync } from 'node:fs';
import { ExponentialBackoff, handleWhen, isBrokenCircuitError, retry } from 'cockatiel';
import {
  type Etcd3,
  Etcd3 as Etcd3Client,
  GRPCCancelledError,
  GRPCDeadlineExceededError,
  type IKeyValue,
  isRecoverableError,
  type Watcher,
} from 'etcd3';
import type { Backend, Change, CommitResult, Guard, KvOp } from './backend.js';
import { StoreUnavailable } from './backend.js';

export interface EtcdOptions {
  endpoints: string[];
  /** every key of this installation starts with it: several installations can share one cluster */
  prefix: string;
  /** PEM files; a CA alone is server-verified TLS, with cert and key it is client TLS too */
  tls?: { caFile: string; certFile?: string | undefined; keyFile?: string | undefined } | undefined;
  auth?: { username: string; password: string } | undefined;
  /** a call unanswered this long counts as etcd unreachable */
  timeoutMs: number;
}

const rev = (r: string | number): number => Number(r);

/**
 * Failures that mean "etcd cannot be reached now", as opposed to a refused request: the transport's (gRPC
 * unavailable, deadline, cancelled) and the client's circuit breaker, open for a while after a member failed.
 */
function unavailable(e: unknown): StoreUnavailable | unknown {
  const away =
    e instanceof Error &&
    (isRecoverableError(e) ||
      isBrokenCircuitError(e) ||
      e instanceof GRPCDeadlineExceededError ||
      e instanceof GRPCCancelledError ||
      /deadline|unavailable|connect/i.test(e.message));
  return away ? new StoreUnavailable(`etcd unreachable: ${(e as Error).message}`) : e;
}

/**
 * Collections in etcd v3, one key per entry (`<prefix>data/<collection>/<key>`, JSON). A commit is one
 * transaction: it compares every guard's mod revision, so two appliances writing from stale reads cannot both
 * succeed, and on failure it returns the guarded keys as they are now.
 */
export class EtcdBackend implements Backend {
  readonly kind = 'etcd';
  readonly client: Etcd3;
  private watcher?: Watcher;
  /** the latest watch asked for: an older one that connects late, or breaks, stands down */
  private watchGen = 0;
  /** ends the wait of a watch still connecting when a newer one replaces it */
  private settle?: () => void;

  constructor(readonly opts: EtcdOptions) {
    const t = opts.tls;
    this.client = new Etcd3Client({
      hosts: opts.endpoints,
      ...(t
        ? {
            credentials: {
              rootCertificate: readFileSync(t.caFile),
              ...(t.keyFile ? { privateKey: readFileSync(t.keyFile) } : {}),
              ...(t.certFile ? { certChain: readFileSync(t.certFile) } : {}),
            },
          }
        : {}),
      ...(opts.auth ? { auth: opts.auth } : {}),
      dialTimeout: opts.timeoutMs,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + opts.timeoutMs }),
      faultHandling: {
        // one retry, on the next member: a dead member costs one timeout, not three
        global: retry(handleWhen(isRecoverableError), { maxAttempts: 1 }),
        // a watch reconnects within 2 s of etcd coming back (etcd3 asks the factory for its first backoff itself)
        watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }) as never,
      },
    });
  }

  private key(collection: string, key: string): string {
    return `${this.opts.prefix}data/${collection}/${key}`;
  }

  private change(kv: IKeyValue, deleted = false): Change | undefined {
    const k = kv.key.toString();
    const rest = k.slice(`${this.opts.prefix}data/`.length);
    const slash = rest.indexOf('/');
    if (!k.startsWith(`${this.opts.prefix}data/`) || slash < 0) return undefined;
    const c = { collection: rest.slice(0, slash), key: rest.slice(slash + 1), rev: rev(kv.mod_revision) };
    return deleted ? c : { ...c, value: JSON.parse(kv.value.toString()) };
  }

  async snapshot(): Promise<{ entries: Change[]; rev: number }> {
    try {
      const r = await this.client.getAll().prefix(`${this.opts.prefix}data/`).exec();
      const entries = r.kvs.map((kv) => this.change(kv)).filter((c): c is Change => !!c);
      return { entries, rev: rev(r.header.revision) };
    } catch (e) {
      throw unavailable(e);
    }
  }

  /**
   * Changes after `fromRev` (and those at it, again), in order; `resync` when the watch cannot go on (history
   * compacted away). Resolves once etcd took the watch, or refused it, or a newer watch replaced it.
   */
  async watch(fromRev: number, apply: (c: Change) => void, resync: () => void): Promise<void> {
    const gen = ++this.watchGen;
    this.settle?.();
    await this.watcher?.cancel().catch(() => undefined);
    if (gen !== this.watchGen) return;
    let last = fromRev;
    const take = (c: Change | undefined) => {
      if (!c) return;
      last = Math.max(last, c.rev);
      apply(c);
    };
    // listened to before it is sent: etcd may cancel it (history compacted) in the same read as its `created`.
    // It starts at `fromRev`, already seen, not after it: a watch that starts exactly at the compaction revision
    // is not cancelled but misses a delete made at it (its tombstone is compacted away); starting one earlier, it
    // is cancelled, and the store catches up from a snapshot. What is seen twice is ignored by its revision.
    const w = this.client.watch().prefix(`${this.opts.prefix}data/`).startRevision(String(fromRev)).watcher();
    w.on('put', (kv) => take(this.change(kv)));
    w.on('delete', (kv) => take(this.change(kv, true)));
    w.on('error', () => {
      // etcd ended it: cancelling it again would wait forever for an answer
      if (this.watcher === w) this.watcher = undefined;
      resync();
    });
    // etcd3 resumes a broken watch after the revision of etcd's last answer, which runs ahead of the changes
    // delivered when the break falls in a catch-up (etcd says `created`, and sends each batch of at most 1000
    // revisions, with its current revision): changes in between were never seen. A new watch resumes at the
    // last change delivered instead.
    w.once('connected', () =>
      w.once('disconnected', () => {
        if (gen === this.watchGen) void this.watch(last, apply, resync);
      }),
    );
    this.watcher = w;
    await new Promise<void>((r) => {
      this.settle = r;
      w.once('connected', () => r());
      w.once('error', () => r());
    });
  }

  async get(collection: string, key: string): Promise<unknown> {
    const v = await this.client.get(this.key(collection, key)).string();
    return v === null ? undefined : JSON.parse(v);
  }

  async *scan(collection: string, o: { reverse?: boolean; limit?: number } = {}): AsyncIterable<[string, unknown]> {
    let q = this.client
      .getAll()
      .prefix(`${this.opts.prefix}data/${collection}/`)
      .sort('Key', o.reverse ? 'Descend' : 'Ascend');
    if (o.limit !== undefined) q = q.limit(o.limit);
    for (const kv of (await q.exec()).kvs) {
      const c = this.change(kv);
      if (c) yield [c.key, c.value];
    }
  }

  async commit(ops: KvOp[], guards: Guard[]): Promise<CommitResult> {
    const key = (g: { collection: string; key: string }) =>
      g.collection === '' ? g.key : this.key(g.collection, g.key);
    const c = this.client;
    const cmp = (g: Guard) => [key(g), g.on === 'create' ? 'Create' : 'Mod', '==', g.rev] as const;
    const [first, ...rest] = guards;
    // with nothing to compare, a comparison that always holds (a missing key's mod revision is 0)
    const t = rest.reduce(
      (t, g) => t.and(...cmp(g)),
      first ? c.if(...cmp(first)) : c.if(`${this.opts.prefix}data/`, 'Mod', '>', -1),
    );
    const writes = ops.map((op) =>
      op.type === 'put' ? c.put(key(op)).value(JSON.stringify(op.value)) : c.delete().key(key(op)),
    );
    const reads = guards.filter((g) => g.collection !== '').map((g) => c.get(key(g)));
    try {
      const r = await t
        .then(...writes)
        .else(...reads)
        .commit();
      const at = rev(r.header.revision);
      if (r.succeeded) return { ok: true, rev: at };
      const current: Change[] = guards
        .filter((g) => g.collection !== '')
        .map((g, i) => {
          const kv = r.responses[i]?.response_range?.kvs?.[0];
          // absent now: a tombstone at this revision outranks any older value still on its way in the watch
          return kv ? (this.change(kv) as Change) : { collection: g.collection, key: g.key, rev: at };
        });
      return { ok: false, rev: at, current };
    } catch (e) {
      throw unavailable(e);
    }
  }

  /** A value every appliance of the installation shares (the sealing key): the first one to start writes it. */
  async shared(name: string, make: () => Buffer): Promise<Buffer> {
    const k = `${this.opts.prefix}cluster/${name}`;
    try {
      const fresh = make();
      const r = await this.client
        .if(k, 'Create', '==', 0)
        .then(this.client.put(k).value(fresh))
        .else(this.client.get(k))
        .commit();
      if (r.succeeded) return fresh;
      return r.responses[0]?.response_range.kvs[0]?.value as Buffer;
    } catch (e) {
      throw unavailable(e);
    }
  }

  /** Lists this appliance among the installation's appliances; returns all of their addresses. */
  async register(address: string): Promise<string[]> {
    const dir = `${this.opts.prefix}cluster/appliances/`;
    try {
      await this.client.put(`${dir}${address}`).value(new Date().toISOString());
      return (await this.client.getAll().prefix(dir).keys()).map((k) => k.slice(dir.length));
    } catch (e) {
      throw unavailable(e);
    }
  }

  async close(): Promise<void> {
    this.watchGen++;
    this.settle?.();
    await this.watcher?.cancel().catch(() => undefined);
    this.client.close();
  }
}
