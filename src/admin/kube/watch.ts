import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { resourceVersion } from '../../domain/manifests.js';
import type { Store } from '../../store/store.js';

/** A change to a record, numbered in the order this appliance saw it. */
export interface Seen {
  seq: number;
  collection: string;
  key: string;
  /** undefined: deleted */
  value?: unknown;
  /** the value before (undefined: it is new) */
  prev?: unknown;
}

/** Collections whose records the resource API serves (events: added only). */
export const WATCHED = ['hosts', 'machines', 'secrets', 'clusters', 'templates', 'namespaces', 'events'];

/**
 * The watch cache of the resource API: every change of a watched collection, ours or another appliance's,
 * numbered here. A resourceVersion is `<epoch>.<seq>` (a list) or `<epoch>.<seq>.<record version>` (an object):
 * a watch resumes after `seq`; an optimistic update compares only the record version, so it holds on any
 * appliance. Another appliance's or an earlier process's numbers (another epoch) and numbers older than the
 * ring are answered 410 Gone, after which clients list again, as they do against an API server.
 */
export class WatchHub extends EventEmitter {
  readonly epoch = randomBytes(4).toString('hex');
  private seq = 0;
  private readonly ring: Seen[] = [];
  private readonly latest = new Map<string, number>();
  private readonly onRecord = (c: Omit<Seen, 'seq'>) => this.saw(c);

  constructor(
    private readonly store: Store,
    private readonly size = 4096,
  ) {
    super();
    // one listener per open watch, bounded by api.maxStreams
    this.setMaxListeners(0);
    store.on('record', this.onRecord);
  }

  close(): void {
    this.store.off('record', this.onRecord);
    this.removeAllListeners();
  }

  private saw(c: Omit<Seen, 'seq'>): void {
    if (!WATCHED.includes(c.collection)) return;
    if (c.collection === 'events' && c.value === undefined) return;
    const ck = `${c.collection}/${c.key}`;
    const s: Seen = { seq: ++this.seq, collection: c.collection, key: c.key, value: c.value, prev: c.prev };
    this.latest.set(ck, s.seq);
    if (c.value === undefined) this.latest.delete(ck);
    this.ring.push(s);
    if (this.ring.length > this.size) this.ring.shift();
    this.emit('seen', s);
  }

  /** The position of a list: a watch from here sees every later change. */
  position(): string {
    return `${this.epoch}.${this.seq}`;
  }

  /** An object's resourceVersion: where its last change was seen, and its record version. */
  versionOf(collection: string, key: string, record: unknown): string {
    return this.versionAt(this.latest.get(`${collection}/${key}`) ?? 0, record);
  }

  versionAt(seq: number, record: unknown): string {
    return `${this.epoch}.${seq}.${resourceVersion(record)}`;
  }

  /** The changes after `rv`; 'gone' when they are no longer all known here. */
  since(rv: string): Seen[] | 'gone' {
    const [epoch, seq] = rv.split('.');
    const n = Number(seq);
    if (epoch !== this.epoch || !Number.isInteger(n)) return 'gone';
    const first = this.ring[0]?.seq ?? this.seq + 1;
    if (n < first - 1) return 'gone';
    return this.ring.filter((s) => s.seq > n);
  }
}
