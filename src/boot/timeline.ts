import { EventEmitter } from 'node:events';

/** The step of a network boot an entry belongs to: the dashboard's waterfall draws a lane for each. */
export type BootStage =
  | 'power'
  | 'dhcp'
  | 'tftp'
  | 'script'
  | 'download'
  | 'inspector'
  | 'report'
  | 'provisioned'
  | 'disk';

/** What an entry may carry beyond its text: its stage, and for a transfer its length and size. */
export interface EntryDetail {
  stage?: BootStage;
  /** how long it took, ending at `at` (a transfer) */
  ms?: number;
  bytes?: number;
}

export interface TimelineEntry extends EntryDetail {
  at: string;
  /** a MAC, or `ip:<address>` for traffic we could not tie to a MAC (yet) */
  key: string;
  source: 'dhcp' | 'tftp' | 'http' | 'workflow';
  what: string;
  ok: boolean;
}

/** What one entry may say: request paths and messages come from the segment, so they are cut. */
const MAX_WHAT = 200;
/** Bookkeeping per entry beyond its text (object, time, key), for the byte budget. */
const ENTRY_OVERHEAD = 120;

const sizeOf = (e: TimelineEntry) => ENTRY_OVERHEAD + e.what.length + e.key.length;

/**
 * What happened to each booting machine, newest last, in memory and bounded by entries per MAC, MACs, and bytes
 * in all (least recently active MACs go first). It answers "why didn't it boot?": the last DHCP answer, TFTP
 * file, script, report, error. TFTP and HTTP traffic carries no MAC, so addresses are tied to MACs, but only by
 * our own DHCP answers: a client cannot claim another MAC's timeline by naming it in a URL.
 */
export class BootTimeline extends EventEmitter {
  private readonly byKey = new Map<string, TimelineEntry[]>();
  private readonly ipToMac = new Map<string, string>();
  private bytes = 0;

  constructor(
    private readonly maxKeys = 2048,
    private readonly perKey = 100,
    private readonly maxBytes = 16 * 1024 * 1024,
  ) {
    super();
    // a listener per live stream, bounded by api.maxStreams
    this.setMaxListeners(0);
  }

  /** Only the DHCP server calls this: the address it gave (or saw on port 4011) belongs to that MAC. */
  learnIp(ip: string, mac: string): void {
    if (ip === '0.0.0.0') return;
    this.ipToMac.delete(ip);
    this.ipToMac.set(ip, mac);
    if (this.ipToMac.size > this.maxKeys * 2) this.ipToMac.delete(this.ipToMac.keys().next().value as string);
  }

  keyForIp(ip: string): string {
    return this.ipToMac.get(ip.replace(/^::ffff:/, '')) ?? `ip:${ip.replace(/^::ffff:/, '')}`;
  }

  add(key: string, source: TimelineEntry['source'], what: string, ok = true, detail: EntryDetail = {}): TimelineEntry {
    const text = what.length > MAX_WHAT ? `${what.slice(0, MAX_WHAT)}…` : what;
    const e: TimelineEntry = { at: new Date().toISOString(), key: key.slice(0, 64), source, what: text, ok, ...detail };
    const list = this.byKey.get(e.key) ?? [];
    this.byKey.delete(e.key); // re-insert: Map order is the LRU order
    list.push(e);
    this.bytes += sizeOf(e);
    if (list.length > this.perKey) this.bytes -= sizeOf(list.shift() as TimelineEntry);
    this.byKey.set(e.key, list);
    while (this.byKey.size > 1 && (this.byKey.size > this.maxKeys || this.bytes > this.maxBytes)) this.dropOldest();
    this.emit('entry', e);
    return e;
  }

  private dropOldest(): void {
    const oldest = this.byKey.keys().next().value as string;
    for (const x of this.byKey.get(oldest) ?? []) this.bytes -= sizeOf(x);
    this.byKey.delete(oldest);
  }

  /** Bytes the entries take, as the budget counts them. */
  get size(): number {
    return this.bytes;
  }

  get(key: string): TimelineEntry[] {
    return [...(this.byKey.get(key) ?? [])];
  }

  /** Every key with its latest entry, most recently active first. */
  latest(): TimelineEntry[] {
    return [...this.byKey.values()].map((l) => l[l.length - 1] as TimelineEntry).reverse();
  }
}
