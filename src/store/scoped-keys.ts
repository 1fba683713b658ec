import { DEFAULT_NAMESPACE, objectKey } from '../domain/resources.js';

/** Entries by collection, as a backup holds them. */
export type Entries = Record<string, [string, unknown][]>;

/** The collections whose records are keyed `<namespace>/<name>`. */
const SCOPED = ['hosts', 'machines', 'secrets'];

/**
 * Entries of a store written when names were unique across namespaces (hosts, machines and Secrets keyed by
 * name; effects and boot instructions naming a host by name), with `<namespace>/<name>` keys and host keys. What
 * is keyed so already is kept, so running it again changes nothing. A name is a DNS label: a key without "/" is
 * one of the old ones.
 */
export function scopeKeys(cols: Entries): Entries {
  // in an old store a host's name was unique: its namespace comes from the host itself
  const nsOf = new Map<string, string>();
  for (const [, v] of cols.hosts ?? []) {
    const h = v as { name: string; namespace?: string };
    nsOf.set(h.name, h.namespace ?? DEFAULT_NAMESPACE);
  }
  const hostKey = (name: string) => (name.includes('/') ? name : objectKey(nsOf.get(name) ?? DEFAULT_NAMESPACE, name));
  const out: Entries = { ...cols };
  for (const c of SCOPED) {
    if (!cols[c]) continue;
    out[c] = cols[c].map(([k, v]) => {
      if (k.includes('/')) return [k, v];
      return [objectKey((v as { namespace?: string }).namespace ?? DEFAULT_NAMESPACE, k), v];
    });
  }
  if (cols.effects) {
    out.effects = cols.effects.map(([k, v]) => {
      const e = v as { host: string };
      if (e.host.includes('/')) return [k, v];
      const host = hostKey(e.host);
      // an effect's key is its host's, then when it was stored: the order a host's effects are carried out in
      return [`${host}${k.slice(e.host.length)}`, { ...e, host }];
    });
  }
  if (cols.boot) {
    out.boot = cols.boot.map(([k, v]) => {
      const b = v as { host?: string };
      return b.host === undefined || b.host.includes('/') ? [k, v] : [k, { ...b, host: hostKey(b.host) }];
    });
  }
  return out;
}
