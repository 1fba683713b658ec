import { Writable } from 'node:stream';
import { createLogger } from '../../src/log.js';

/** A real pino logger whose JSON lines are kept for assertions. */
export function memoryLogger(level = 'debug') {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: createLogger(level, sink), lines };
}
