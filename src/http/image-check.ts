import { resolveInside } from '../domain/safe-path.js';

/**
 * An inspection image we host ourselves must have its kernel and initrd now, not when a host boots it.
 * URLs are compared parsed (`http://x:80/assets/a` and `http://x/assets/a` are the same place); images
 * elsewhere are the operator's to vouch for.
 */
export async function localImageProblem(url: string, httpBase: string, assetsDir: string): Promise<string | undefined> {
  const [u, base] = [new URL(url), new URL(httpBase)];
  if (u.origin !== base.origin || !u.pathname.startsWith('/assets/')) return undefined;
  let dir: string;
  try {
    dir = decodeURIComponent(u.pathname.slice('/assets/'.length)).replace(/\/$/, '');
  } catch {
    return `${url}: bad path encoding`;
  }
  for (const f of ['vmlinuz', 'initrd']) {
    const r = await resolveInside(assetsDir, `${dir}/${f}`);
    if (!r.ok)
      return `${u.origin}/assets/${dir}/${f}: ${r.reason} under ${assetsDir} (the bundled inspector is built by \`make inspector\`)`;
  }
  return undefined;
}
