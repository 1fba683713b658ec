import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { assetPathOf, resolveInside } from '../domain/safe-path.js';

/**
 * The sha256 of a target the inspector will fetch, for a machine that pins none (beskar7.target-digest is
 * required by the contract's inspector). A target the appliance hosts under /assets/ is hashed from its file
 * (cached by size and mtime); any other is fetched once, streamed and bounded in size. Throws with a reason.
 */
export class TargetDigests {
  private readonly local = new Map<string, { stamp: string; digest: string }>();

  constructor(private readonly o: { httpBase: string; assetsDir: string; maxBytes: number; timeoutMs: number }) {}

  async of(url: string): Promise<string> {
    const rel = assetPathOf(url, this.o.httpBase);
    if (rel !== undefined) {
      const r = resolveInside(this.o.assetsDir, rel);
      if (!r.ok) throw new Error(`${url}: ${r.reason}`);
      return this.ofFile(r.path, `${r.size}:${r.mtimeMs}`);
    }
    return this.ofRemote(url);
  }

  private async ofFile(file: string, stamp: string): Promise<string> {
    const hit = this.local.get(file);
    if (hit?.stamp === stamp) return hit.digest;
    const h = createHash('sha256');
    for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
    const digest = `sha256:${h.digest('hex')}`;
    this.local.set(file, { stamp, digest });
    return digest;
  }

  private async ofRemote(url: string): Promise<string> {
    const r = await fetch(url, { signal: AbortSignal.timeout(this.o.timeoutMs), redirect: 'error' });
    if (!r.ok || !r.body) throw new Error(`${url}: HTTP ${r.status}`);
    const h = createHash('sha256');
    let n = 0;
    for await (const chunk of r.body as AsyncIterable<Uint8Array>) {
      n += chunk.length;
      if (n > this.o.maxBytes) throw new Error(`${url}: larger than ${this.o.maxBytes} bytes`);
      h.update(chunk);
    }
    return `sha256:${h.digest('hex')}`;
  }
}
