/** One write of an atomic batch, to one key of one collection. */
export type KvOp =
  | { type: 'put'; collection: string; key: string; value: unknown }
  | { type: 'del'; collection: string; key: string };

/**
 * A key as a transaction read it: its mod revision then (0: absent). A commit whose guards no longer hold
 * writes nothing. `on: 'create'` compares the creation revision instead (the leader's fence: its election key).
 */
export interface Guard {
  /** '' for a key outside the collections, given whole (the election key) */
  collection: string;
  key: string;
  rev: number;
  on?: 'create';
}

/** A key's value at a revision; `value` undefined: deleted. */
export interface Change {
  collection: string;
  key: string;
  value?: unknown;
  rev: number;
}

/** ok: committed at `rev`; not ok: a guard failed, and `current` holds the guarded keys as they are now. */
export type CommitResult = { ok: true; rev: number } | { ok: false; rev: number; current: Change[] };

/** The backend cannot be reached (etcd down): reads go on from memory, writes are refused with 503. */
export class StoreUnavailable extends Error {
  override name = 'StoreUnavailable';
}

/** Where the store keeps its collections: one LevelDB, or an etcd cluster shared by several appliances. */
export interface Backend {
  readonly kind: 'leveldb' | 'etcd';
  /**
   * Shared backends only: every entry at one revision. The store then caches every collection and follows
   * `watch` from that revision, so reads never wait on the network.
   */
  snapshot?(): Promise<{ entries: Change[]; rev: number }>;
  watch?(fromRev: number, apply: (c: Change) => void, resync: () => void): Promise<void>;
  get(collection: string, key: string): Promise<unknown>;
  scan(collection: string, o?: { reverse?: boolean; limit?: number }): AsyncIterable<[string, unknown]>;
  commit(ops: KvOp[], guards: Guard[]): Promise<CommitResult>;
  close(): Promise<void>;
}
