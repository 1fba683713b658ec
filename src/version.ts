import { readFileSync } from 'node:fs';

/** The appliance's version: package.json's, beside src/ (tsx) or above dist/src (the build and the .deb). */
function read(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const p = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (p.name === 'beskar7' && p.version) return p.version;
    } catch {}
  }
  return 'unknown';
}

export const APPLIANCE_VERSION = read();
