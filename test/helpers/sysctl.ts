// The package's sysctls (systemd/60-beskar7.conf) on this machine: tests that apply them, or install the package
// whose postinst does, put the machine's own values back afterwards.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../src/paths.js';

const procFile = (key: string) => `/proc/sys/${key.replaceAll('.', '/')}`;

/** The settings the package's file makes, `[key, value]` each, in its order. */
export function packageSysctls(): (readonly [string, string])[] {
  const text = readFileSync(path.join(repoRoot, 'systemd/60-beskar7.conf'), 'utf8');
  return [...text.matchAll(/^([\w.]+)\s*=\s*(\S+)/gm)].map((m) => [m[1] as string, m[2] as string] as const);
}

/** The kernel's current value of each key. */
export const sysctlValues = (keys: readonly string[]): string[] =>
  keys.map((k) => readFileSync(procFile(k), 'utf8').trim());

/** Keeps the current values of the package's keys; returns what writes them back. */
export function keepSysctls(): () => void {
  const keys = packageSysctls().map(([k]) => k);
  const before = sysctlValues(keys);
  return () => {
    for (const [i, k] of keys.entries()) writeFileSync(procFile(k), before[i] as string);
  };
}

/** Applies the package's settings, as its postinst does; returns what puts the previous values back. */
export function applyPackageSysctls(): () => void {
  const restore = keepSysctls();
  for (const [k, v] of packageSysctls()) writeFileSync(procFile(k), v);
  return restore;
}
