import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';

/** A temp dir removed when the test ends. */
export function tempDir(t: Test, prefix = 'b7-'): string {
  const d = mkdtempSync(path.join(tmpdir(), prefix));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}
