import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';

export type Resolved =
  | { ok: true; path: string; size: number; mtimeMs: number }
  | { ok: false; status: 403 | 404; reason: string };

/**
 * Resolve a client-supplied name to a regular file inside `root`. Refuses `..` segments, NUL and
 * backslashes outright, and symlinks whose target leaves the root (checked on the real path).
 */
export async function resolveInside(root: string, requested: string): Promise<Resolved> {
  const name = requested.replace(/^\/+/, '');
  if (name === '' || name.includes('\0') || name.includes('\\'))
    return { ok: false, status: 403, reason: 'illegal file name' };
  if (name.split('/').some((seg) => seg === '..')) return { ok: false, status: 403, reason: 'path leaves the root' };
  let realRoot: string;
  let real: string;
  try {
    realRoot = await realpath(root);
    real = await realpath(path.join(realRoot, name));
  } catch {
    return { ok: false, status: 404, reason: 'no such file' };
  }
  if (!real.startsWith(realRoot + path.sep)) return { ok: false, status: 403, reason: 'path leaves the root' };
  const st = await stat(real);
  if (!st.isFile()) return { ok: false, status: 404, reason: 'not a regular file' };
  return { ok: true, path: real, size: st.size, mtimeMs: st.mtimeMs };
}
