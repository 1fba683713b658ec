// The appliance's CPU time per provisioned host against an earlier commit (by default 8601c04, where the
// benchmarks issue measured 18.7 ms), both in the same run on the same machine: a storm of one and then of the
// other, `runs` times. The baseline is checked out in a git worktree (npm ci, make assets) and runs its own
// storm harness from source, as it did then; this checkout runs the compiled service, as systemd does. Both are
// measured the same way from outside: the appliance process's CPU time in /proc from the moment the storm driver
// starts until it exits (hosts created, provisioned, audited).
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot } from '../../src/paths.js';
import { cpuMs } from '../helpers/proc.js';

/** The first process whose command line has every one of `parts`. */
function findProcess(...parts: string[]): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (parts.every((p) => cmd.includes(p))) return Number(d);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

const cpuOrUndefined = (pid: number) => {
  try {
    return cpuMs(pid);
  } catch {
    return undefined;
  }
};

const existsProcess = (pid: number) => {
  try {
    readFileSync(`/proc/${pid}/stat`);
    return true;
  } catch {
    return false;
  }
};

/** One storm run by `entry` in `tree`; the appliance's CPU ms per host while the driver ran. */
async function storm(tree: string, entry: string, n: number): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', entry], { cwd: tree, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2000)));
  const exited = once(child, 'exit');
  let app: number | undefined;
  let driver: number | undefined;
  let atStart: number | undefined;
  let last: number | undefined;
  let running = true;
  void exited.then(() => (running = false));
  while (running) {
    app ??= findProcess('beskar7.yaml', `${path.sep}main.`);
    if (app !== undefined && driver === undefined) {
      driver = findProcess('storm-driver.ts');
      if (driver !== undefined) atStart = cpuOrUndefined(app);
    }
    if (driver !== undefined && app !== undefined && existsProcess(driver)) last = cpuOrUndefined(app) ?? last;
    await new Promise((r) => setTimeout(r, 50));
  }
  const [code] = (await exited) as [number | null];
  if (code !== 0 || atStart === undefined || last === undefined)
    throw new Error(`storm in ${tree} failed (exit ${code}): ${err}`);
  return (last - atStart) / n;
}

/** Whether this checkout's git history has `commit` (a shallow clone or an unpacked tarball may not). */
export function hasCommit(commit: string): boolean {
  try {
    execFileSync('git', ['-C', repoRoot, 'cat-file', '-e', `${commit}^{commit}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface BaselineResult {
  commit: string;
  n: number;
  /** CPU ms per host, run by run */
  theirs: number[];
  ours: number[];
}

export async function baselineStorm(
  commit: string,
  n: number,
  runs: number,
  say: (l: string) => void,
): Promise<BaselineResult> {
  const work = mkdtempSync(path.join(tmpdir(), 'b7baseline-'));
  const base = path.join(work, 'base');
  try {
    execFileSync('git', ['-C', repoRoot, 'worktree', 'add', '--detach', base, commit], { stdio: 'ignore' });
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: base, stdio: 'ignore' });
    execFileSync('make', ['-s', 'assets'], { cwd: base, stdio: 'ignore' });
    const entry = (tree: string, built: boolean) => {
      const f = path.join(work, `${built ? 'head' : 'base'}.mts`);
      writeFileSync(
        f,
        `import { runStorm } from ${JSON.stringify(path.join(tree, 'test/helpers/storm.ts'))};\n` +
          `await runStorm({ n: ${n}, kills: 0, seed: 1${built ? ', built: true' : ''} });\nprocess.exit(0);\n`,
      );
      return f;
    };
    const [baseEntry, headEntry] = [entry(base, false), entry(repoRoot, true)];
    const out: BaselineResult = { commit, n, theirs: [], ours: [] };
    for (let i = 0; i < runs; i++) {
      out.theirs.push(await storm(base, baseEntry, n));
      out.ours.push(await storm(repoRoot, headEntry, n));
      say(`  run ${i + 1}: ${commit} ${out.theirs[i]?.toFixed(2)} ms per host, this commit ${out.ours[i]?.toFixed(2)}`);
    }
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
    // the worktree's entry in .git goes too (there is none when the checkout failed)
    execFileSync('git', ['-C', repoRoot, 'worktree', 'prune'], { stdio: 'ignore' });
  }
}
