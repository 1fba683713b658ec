import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';
import { type Backup, restoreBackup, takeBackup } from './backup.js';
import { EtcdBackend } from './etcd-backend.js';
import { secretKeyFile } from './secrets.js';
import { Store } from './store.js';

/**
 * Moves an inventory from the embedded LevelDB to etcd: the records (a backup of the running appliance, taken
 * through its API, or read from the LevelDB of a stopped one), the sealing key (so the sealed BMC passwords
 * still open) and the admin token. Refuses a prefix that already holds an inventory unless `force`.
 */
export async function migrateToEtcd(
  cfg: Config,
  backup: Backup | undefined,
  force: boolean,
): Promise<Record<string, number>> {
  const e = cfg.store.etcd;
  if (!e) throw new Error('the config has no store.etcd (endpoints) to migrate to');
  const source = backup ?? (await readLevel(cfg));
  const etcd = new EtcdBackend({ ...e, timeoutMs: e.timeoutSeconds * 1000 });
  try {
    const key = secretKeyFile(cfg.dataDir);
    const shared = await etcd.shared('secret-key', () => key);
    if (!shared.equals(key))
      throw new Error(
        `etcd (prefix ${e.prefix}) already holds another sealing key: the passwords sealed here would not open there`,
      );
    const token = path.join(cfg.dataDir, 'admin-token');
    if (existsSync(token)) await etcd.shared('admin-token', () => readFileSync(token));
    const store = await Store.over(etcd);
    const held = store.hosts.snapshot().length + store.machines.snapshot().length;
    if (held && !force)
      throw new Error(`etcd (prefix ${e.prefix}) already holds ${held} hosts and machines; --force replaces them`);
    return await restoreBackup(store, source);
  } finally {
    await etcd.close();
  }
}

async function readLevel(cfg: Config): Promise<Backup> {
  const store = await Store.open(path.join(cfg.dataDir, 'db'));
  try {
    return await takeBackup(store);
  } finally {
    await store.close();
  }
}
