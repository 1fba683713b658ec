import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';

export type Resolved =
  | { ok: true; path: string; size: number; mtimeMs: number }
  | { ok: false; status: 403 | 404; reason: string };

/**
 * Resolve a client-supplied name to a regular file inside `root`. Refuses `..` segments, NUL and
 * backslashes outright, and symlinks whose target leaves the root (checked on the real path).
 *
 * Synchronous, as nginx and dnsmasq resolve and stat on their event loops: a local realpath or stat is cheaper
 * than the hand-off to libuv's thread pool and back, once per TFTP transfer and asset request.
 */
export function resolveInside(root: string, requested: string): Resolved {
  const name = requested.replace(/^\/+/, '');
  if (name === '' || name.includes('\0') || name.includes('\\'))
    return { ok: false, status: 403, reason: 'illegal file name' };
  if (name.split('/').some((seg) => seg === '..')) return { ok: false, status: 403, reason: 'path leaves the root' };
  try {
    const realRoot = realpathSync.native(root);
    const real = realpathSync.native(path.join(realRoot, name));
    if (!real.startsWith(realRoot + path.sep)) return { ok: false, status: 403, reason: 'path leaves the root' };
    const st = statSync(real);
    if (!st.isFile()) return { ok: false, status: 404, reason: 'not a regular file' };
    return { ok: true, path: real, size: st.size, mtimeMs: st.mtimeMs };
  } catch {
    return { ok: false, status: 404, reason: 'no such file' };
  }
}

/**
 * The path under the assets directory that a URL of the appliance's own HTTP origin names (`/assets/<path>`,
 * decoded; URLs compared parsed, so `http://x:80/assets/a` is `http://x/assets/a`); undefined for any other URL.
 * Throws a URIError on a malformed percent-encoding.
 */
export function assetPathOf(url: string, httpBase: string): string | undefined {
  const u = new URL(url);
  if (u.origin !== new URL(httpBase).origin || !u.pathname.startsWith('/assets/')) return undefined;
  return decodeURIComponent(u.pathname.slice('/assets/'.length));
}
