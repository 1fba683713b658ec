import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../../src/paths.js';

const run = promisify(execFile);

/** The CLI from the checkout, as a user runs it; its exit code and both outputs. `input` goes to its stdin. */
export function runCli(args: string[], input = ''): Promise<{ code: number; out: string; err: string }> {
  const p = run(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/admin/cli/main.ts'), ...args]);
  // the CLI may stop reading before the end (an input over its limit): the rest is not its to take
  p.child.stdin?.on('error', () => undefined);
  p.child.stdin?.end(input);
  return p.then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );
}
