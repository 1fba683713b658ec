import { type Logger, pino } from 'pino';

export type { Logger };

/** One JSON line per event on stdout (journald picks it up); fields such as `mac` and `host` go on each line. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { svc: 'beskar7' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
