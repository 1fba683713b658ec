import { inspectorIsScript } from '../boot/ipxe.js';
import { assetPathOf, resolveInside } from '../domain/safe-path.js';

/**
 * An inspection image we host ourselves must have its kernel and initrd now, not when a host boots it: a
 * directory under /assets/, or /beskar7-inspector/boot (the bundled inspector in assets/inspector). URLs are
 * compared parsed (`http://x:80/assets/a` and `http://x/assets/a` are the same place); images elsewhere are
 * the operator's to vouch for.
 */
export async function localImageProblem(url: string, httpBase: string, assetsDir: string): Promise<string | undefined> {
  const u = new URL(url);
  if (u.origin !== new URL(httpBase).origin) return undefined;
  let dir: string;
  if (u.pathname === '/beskar7-inspector/boot') dir = 'inspector';
  else if (!inspectorIsScript(url)) {
    let rel: string | undefined;
    try {
      rel = assetPathOf(url, httpBase);
    } catch {
      return `${url}: bad path encoding`;
    }
    if (rel === undefined) return undefined;
    dir = rel.replace(/\/$/, '');
  } else return undefined;
  const missing = (f: string) => {
    const r = resolveInside(assetsDir, `${dir}/${f}`);
    return r.ok ? undefined : r.reason;
  };
  const hint = `under ${assetsDir} (the bundled inspector is built by \`make inspector\`)`;
  const kernel = missing('vmlinuz');
  if (kernel) return `${u.origin}/assets/${dir}/vmlinuz: ${kernel} ${hint}`;
  // the bundled script boots assets/inspector/initrd; a directory is booted by the contract's names
  const initrd = u.pathname === '/beskar7-inspector/boot' ? 'initrd' : 'initrd.img';
  const gone = missing(initrd);
  if (gone) return `${u.origin}/assets/${dir}/${initrd}: ${gone} ${hint}`;
  return undefined;
}
