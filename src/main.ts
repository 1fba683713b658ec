import { parseArgs } from 'node:util';
import { Appliance, StartupError } from './appliance.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './log.js';

const USAGE = `usage: beskar7 [--config FILE] [--set key=value ...]
  FILE is YAML or JSON; BESKAR7_<SECTION>__<KEY> env variables and --set override it (e.g. --set dhcp.mode=full)`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', short: 'c' },
      set: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const file = values.config ?? process.env.BESKAR7_CONFIG;
  const cfg = loadConfig({ ...(file ? { file } : {}), env: process.env, sets: values.set ?? [] });
  const log = createLogger(cfg.logLevel);
  const appliance = new Appliance(cfg, log);
  const listening = await appliance.start();
  // start and stop are always logged, whatever the level, so supervisors and tests can see them
  const life = log.levelVal > 30 ? log.child({}, { level: 'info' }) : log;
  life.info(
    { listening, dataDir: cfg.dataDir, advertise: appliance.cfg.advertiseAddress, mode: cfg.dhcp.mode },
    'beskar7 ready',
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    life.info({ signal }, 'stopping');
    void appliance.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e: unknown) => {
  const known = e instanceof ConfigError || e instanceof StartupError;
  process.stderr.write(
    `${JSON.stringify({ level: 'fatal', svc: 'beskar7', msg: known ? (e as Error).message : String((e as Error).stack ?? e) })}\n`,
  );
  process.exit(known ? 2 : 1);
});
