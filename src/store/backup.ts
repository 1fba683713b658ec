import { z } from 'zod';
import { scopeKeys } from './scoped-keys.js';
import type { BatchOp, Store } from './store.js';

/** A whole-store backup: every collection's entries; BMC passwords stay sealed (the key file is not in it). */
export const BackupSchema = z.object({
  format: z.literal('beskar7-backup'),
  version: z.literal(1),
  createdAt: z.string(),
  collections: z.record(z.string(), z.array(z.tuple([z.string(), z.unknown()]))),
});
export type Backup = z.infer<typeof BackupSchema>;

export async function takeBackup(store: Store): Promise<Backup> {
  const collections: Backup['collections'] = {};
  for (const c of store.collections()) collections[c.name] = await c.entries();
  return { format: 'beskar7-backup', version: 1, createdAt: new Date().toISOString(), collections };
}

/**
 * Replaces the store's contents with the backup, after every value passed its schema: one atomic batch on
 * LevelDB, transactions of at most 100 writes on etcd.
 */
export async function restoreBackup(store: Store, b: Backup): Promise<Record<string, number>> {
  const known = new Map(store.collections().map((c) => [c.name, c]));
  const puts: BatchOp[] = [];
  const counts: Record<string, number> = {};
  // a backup of a store keyed by name alone takes the keys the store has now
  for (const [name, entries] of Object.entries(scopeKeys(b.collections))) {
    // a backup of a release before stored effects: its leader hand-offs are decided again by the workflow
    if (name === 'requests') continue;
    const c = known.get(name);
    if (!c) throw new Error(`unknown collection "${name}"`);
    for (const [k, v] of entries) puts.push(c.put(k, c.check(k, v)));
    counts[name] = entries.length;
  }
  await store.transact(async () => {
    const dels: BatchOp[] = [];
    for (const c of known.values()) for (const k of await c.keys()) dels.push(c.del(k));
    // LevelDB takes it as one atomic batch; etcd limits a transaction's size, so there it goes in parts
    if (store.backend.kind === 'leveldb') await store.batch([...dels, ...puts]);
    else {
      const kept = new Set(puts.map((p) => `${p.collection}/${p.key}`));
      await store.bulk([...dels.filter((d) => !kept.has(`${d.collection}/${d.key}`)), ...puts]);
    }
  });
  return counts;
}
