import { EventEmitter } from 'node:events';

export interface TimelineEntry {
  at: string;
  /** a MAC, or `ip:<address>` for traffic we could not tie to a MAC (yet) */
  key: string;
  source: 'dhcp' | 'tftp' | 'http' | 'workflow';
  what: string;
  ok: boolean;
}

/**
 * What happened to each booting machine, newest last, in memory and bounded (least recently active MACs are
 * dropped first). It answers "why didn't it boot?": the last DHCP answer, TFTP file, script, report, error.
 * TFTP and HTTP downloads carry no MAC, so addresses are tied to MACs from DHCP and the iPXE script query.
 */
export class BootTimeline extends EventEmitter {
  private readonly byKey = new Map<string, TimelineEntry[]>();
  private readonly ipToMac = new Map<string, string>();

  constructor(
    private readonly maxKeys = 2048,
    private readonly perKey = 100,
  ) {
    super();
  }

  learnIp(ip: string, mac: string): void {
    if (ip === '0.0.0.0') return;
    this.ipToMac.delete(ip);
    this.ipToMac.set(ip, mac);
    if (this.ipToMac.size > this.maxKeys * 2) this.ipToMac.delete(this.ipToMac.keys().next().value as string);
  }

  keyForIp(ip: string): string {
    return this.ipToMac.get(ip.replace(/^::ffff:/, '')) ?? `ip:${ip.replace(/^::ffff:/, '')}`;
  }

  add(key: string, source: TimelineEntry['source'], what: string, ok = true): TimelineEntry {
    const e: TimelineEntry = { at: new Date().toISOString(), key, source, what, ok };
    const list = this.byKey.get(key) ?? [];
    this.byKey.delete(key); // re-insert: Map order is the LRU order
    list.push(e);
    if (list.length > this.perKey) list.shift();
    this.byKey.set(key, list);
    if (this.byKey.size > this.maxKeys) this.byKey.delete(this.byKey.keys().next().value as string);
    this.emit('entry', e);
    return e;
  }

  get(key: string): TimelineEntry[] {
    return [...(this.byKey.get(key) ?? [])];
  }

  /** Every key with its latest entry, most recently active first. */
  latest(): TimelineEntry[] {
    return [...this.byKey.values()].map((l) => l[l.length - 1] as TimelineEntry).reverse();
  }
}
