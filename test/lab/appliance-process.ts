import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { repoRoot } from '../../src/paths.js';
import { type Lab, stopProcess } from './netns.js';

/**
 * BENCH_CPU_PROF=DIR: a V8 CPU profile of each appliance process, written when it stops; BENCH_NODE_FLAGS: more
 * node flags (`--trace-gc`, `--heapsnapshot-signal=SIGUSR2`), their output in the file E2E_APPLIANCE_LOG names.
 */
const profiling = (): string[] => [
  ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
  ...(process.env.BENCH_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? []),
];

/** The node flags of the unit's ExecStart (those between node and main.js). */
export function unitNodeFlags(unitText: string): string[] {
  const exec = /^ExecStart=(.*)$/m.exec(unitText)?.[1]?.trim().split(/\s+/) ?? [];
  const main = exec.findIndex((a) => a.endsWith('/main.js'));
  if (main < 1) throw new Error(`no node …/main.js in the unit's ExecStart: ${exec.join(' ')}`);
  return exec.slice(1, main);
}

/**
 * The compiled service (`make build`) as systemd runs it, from the checkout, with the unit's node flags: what
 * the benchmarks measure, with no TypeScript compiled at start-up.
 */
export const builtCommand = (file: string): [string, ...string[]] => {
  const main = path.join(repoRoot, 'dist/src/main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run make build (make bench does)`);
  const flags = unitNodeFlags(readFileSync(path.join(repoRoot, 'systemd/beskar7.service'), 'utf8'));
  return [process.execPath, ...flags, ...profiling(), main, '--config', file];
};

/** The appliance as its own process inside a lab namespace, its JSON log lines collected (and appended to the file
 *  E2E_APPLIANCE_LOG names, to follow a failing test). */
export class ApplianceProcess {
  readonly logs: Record<string, unknown>[] = [];
  private proc?: ChildProcess;
  /** the namespace it runs in: the lab's own (bridge side) unless set to one of the lab's hosts */
  ns: string;

  constructor(
    private readonly lab: Lab,
    private readonly config: Record<string, unknown>,
    dir: string,
    private readonly echo = false,
    /** how to run it, given the config file: by default the checkout's source through tsx */
    private readonly command: (configFile: string) => [string, ...string[]] = (file) => [
      process.execPath,
      ...profiling(),
      '--import',
      'tsx',
      path.join(repoRoot, 'src/main.ts'),
      '--config',
      file,
    ],
    /** where the config is written (an installed service reads /etc/beskar7/beskar7.yaml) */
    private readonly configFile = path.join(dir, 'beskar7.yaml'),
  ) {
    this.ns = lab.ns;
  }

  async start(timeoutMs = 20_000): Promise<void> {
    writeFileSync(this.configFile, YAML.stringify(this.config));
    const [cmd, ...args] = this.command(this.configFile);
    const p = this.lab.spawn(this.ns, cmd, args);
    this.proc = p;
    let buf = '';
    let errText = '';
    p.stderr?.on('data', (c: Buffer) => (errText += c.toString()));
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`appliance not ready in ${timeoutMs} ms: ${errText}`)),
        timeoutMs,
      );
      p.stdout?.on('data', (c: Buffer) => {
        buf += c.toString();
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        for (const l of lines) {
          if (this.echo) process.stdout.write(`${l}\n`);
          if (process.env.E2E_APPLIANCE_LOG) appendFileSync(process.env.E2E_APPLIANCE_LOG, `${l}\n`);
          try {
            const rec = JSON.parse(l) as Record<string, unknown>;
            this.logs.push(rec);
            if (rec.msg === 'beskar7 ready') {
              clearTimeout(timer);
              resolve();
            }
          } catch {
            // not a log line
          }
        }
      });
      p.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`appliance exited with ${code}: ${errText}`));
      });
    });
    await ready;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Log lines with this message (and matching fields). */
  find(msg: string, fields: Record<string, unknown> = {}): Record<string, unknown>[] {
    return this.logs.filter((l) => l.msg === msg && Object.entries(fields).every(([k, v]) => l[k] === v));
  }

  /** SIGKILL, as a crash or the OOM killer would: no shutdown code runs. */
  async kill9(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = once(p, 'exit');
    p.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    if (this.proc) await stopProcess(this.proc);
  }
}
