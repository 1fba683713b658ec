// `make mutation [MODULES="rate-limit secrets"]`: StrykerJS over the modules that carry security and robustness
// claims, each against the unit tests that cover it. Prints the score and every surviving mutant per module;
// reports go to .cache/mutation/. Slow (minutes per module): not part of `make test`.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../src/paths.js';

interface Module {
  name: string;
  mutate: string[];
  tests: string[];
}

const { modules } = JSON.parse(readFileSync(path.join(repoRoot, 'test/mutation/modules.json'), 'utf8')) as {
  modules: Module[];
};
const wanted = process.argv.slice(2);
const chosen = wanted.length ? modules.filter((m) => wanted.includes(m.name)) : modules;
const unknown = wanted.filter((w) => !modules.some((m) => m.name === w));
if (unknown.length) throw new Error(`no module ${unknown.join(', ')}: one of ${modules.map((m) => m.name).join(', ')}`);

const out = path.join(repoRoot, '.cache/mutation');
mkdirSync(out, { recursive: true });
const summary: string[] = [
  '| module | mutants | killed | timeout | survived | no coverage | score |',
  '|---|---|---|---|---|---|---|',
];
const survivors: string[] = [];
let failed = false;

for (const m of chosen) {
  const report = path.join(out, `${m.name}.json`);
  const config = path.join(out, `${m.name}.config.json`);
  writeFileSync(
    config,
    JSON.stringify({
      testRunner: 'tap',
      tap: { testFiles: m.tests, nodeArgs: ['--import', 'tsx'] },
      mutate: m.mutate,
      coverageAnalysis: 'off',
      concurrency: 2,
      reporters: ['clear-text', 'json'],
      clearTextReporter: { reportMutants: false },
      jsonReporter: { fileName: report },
      tempDirName: '.cache/stryker-tmp',
      // TypeScript 7 has no compiler API for Stryker's tsconfig rewriting: tsx runs the sources as they are
      tsconfigFile: '.cache/mutation/no-tsconfig.json',
      timeoutMS: 60_000,
    }),
  );
  process.stdout.write(`\n== ${m.name}: ${m.mutate.join(', ')} against ${m.tests.join(', ')}\n`);
  // tap's own loader settings must not reach the test processes Stryker starts
  const { NODE_OPTIONS: _, ...env } = process.env;
  // Stryker runs the tests from a sandbox copy of the repo, where ../shared is not beside it
  env.B7_CONTRACT_DIR ??= path.join(repoRoot, '..', 'shared', 'contract', 'v4.2');
  const r = spawnSync(
    process.execPath,
    [path.join(repoRoot, 'node_modules/@stryker-mutator/core/bin/stryker.js'), 'run', config],
    {
      cwd: repoRoot,
      env,
      stdio: 'inherit',
    },
  );
  if (r.status !== 0) {
    failed = true;
    summary.push(`| ${m.name} | stryker failed (exit ${r.status}) | | | | | |`);
    continue;
  }
  const files = (
    JSON.parse(readFileSync(report, 'utf8')) as {
      files: Record<
        string,
        {
          source: string;
          mutants: {
            status: string;
            mutatorName: string;
            replacement?: string;
            location: { start: { line: number } };
          }[];
        }
      >;
    }
  ).files;
  const count = (s: string) =>
    Object.values(files).reduce((n, f) => n + f.mutants.filter((x) => x.status === s).length, 0);
  const [killed, timeout, survived, noCov] = [
    count('Killed'),
    count('Timeout'),
    count('Survived'),
    count('NoCoverage'),
  ];
  const total = killed + timeout + survived + noCov;
  const score = total ? (((killed + timeout) / total) * 100).toFixed(1) : '-';
  summary.push(`| ${m.name} | ${total} | ${killed} | ${timeout} | ${survived} | ${noCov} | ${score}% |`);
  for (const [file, f] of Object.entries(files)) {
    const lines = f.source.split('\n');
    for (const x of f.mutants.filter((y) => y.status === 'Survived' || y.status === 'NoCoverage')) {
      const at = x.location.start.line;
      survivors.push(
        `${m.name} ${file}:${at} ${x.status} ${x.mutatorName}: ${lines[at - 1]?.trim()} => ${x.replacement ?? ''}`,
      );
    }
  }
}

const text = `${summary.join('\n')}\n\nsurviving mutants:\n${survivors.join('\n') || '(none)'}\n`;
writeFileSync(path.join(out, 'summary.md'), text);
process.stdout.write(`\n${text}`);
process.exit(failed ? 1 : 0);
