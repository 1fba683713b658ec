import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';

/** Reads a secret file, or creates it (mode 0600, exclusively) with `make()` on first start. */
function fileSecret(file: string, make: () => Buffer, mode = 0o600): Buffer {
  mkdirSync(path.dirname(file), { recursive: true });
  try {
    const fd = openSync(file, 'wx', mode);
    writeSync(fd, make());
    closeSync(fd);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  return readFileSync(file);
}

/** The sealing key in `<dataDir>/secret.key`, made on first start. */
export function secretKeyFile(dataDir: string): Buffer {
  return fileSecret(path.join(dataDir, 'secret.key'), newSecretKey);
}

export const newSecretKey = (): Buffer => randomBytes(32);

/**
 * AES-256-GCM for BMC passwords at rest. With LevelDB the key lives beside the database, never in it; appliances
 * sharing etcd share the key through etcd (whoever reads etcd can then open the passwords: use its TLS and auth).
 */
export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('the secret key must hold 32 bytes');
  }

  static inDir(dataDir: string): SecretBox {
    return new SecretBox(secretKeyFile(dataDir));
  }

  seal(plain: string): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return `v1:${Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64')}`;
  }

  /**
   * The boot nonce and bearer token of an inspection attempt: HMAC-SHA256 of the key over the host and the
   * attempt id, base64url (43 characters, the contract's token form). The store keeps the attempt id only.
   */
  attemptSecrets(host: string, attempt: string): { nonce: string; token: string } {
    const mac = (label: string) =>
      createHmac('sha256', this.key).update(`${label}/${host}/${attempt}`).digest('base64url');
    return { nonce: mac('nonce'), token: mac('token') };
  }

  open(sealed: string): string {
    const raw = Buffer.from(sealed.replace(/^v1:/, ''), 'base64');
    const d = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
  }
}

export const newAdminToken = (): Buffer => Buffer.from(randomBytes(24).toString('hex'));

/**
 * The admin API token: from config, else generated once into the data dir; `shared` (etcd: one token for every
 * appliance) is written to that file instead, so the CLI beside each appliance finds it.
 */
export function adminToken(
  dataDir: string,
  configured?: string,
  shared?: Buffer,
  name = 'admin-token',
): { token: string; file?: string } {
  if (configured) return { token: configured };
  const file = path.join(dataDir, name);
  if (shared) {
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(file, shared, { mode: 0o640 });
    chmodSync(file, 0o640);
  }
  return {
    // the service's group may read it: operators in group beskar7 use the CLI without root
    token: fileSecret(file, newAdminToken, 0o640).toString('utf8').trim(),
    file,
  };
}

/** A fresh attempt id: the salt the attempt's nonce and token are derived from. */
export const newAttemptId = (): string => randomBytes(16).toString('hex');

/** Constant-time comparison; a secret of another length or encoding is simply wrong. */
export function sameSecret(given: string | undefined, want: string): boolean {
  if (given === undefined) return false;
  const [a, b] = [Buffer.from(given), Buffer.from(want)];
  return a.length === b.length && timingSafeEqual(a, b);
}
