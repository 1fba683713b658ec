import type { Test } from 'tap';
import { type TftpOptions, TftpServer } from '../../src/boot/tftp/server.js';
import type { BootTimeline } from '../../src/boot/timeline.js';
import { Metrics } from '../../src/metrics.js';
import { memoryLogger } from './log.js';

/** Our TFTP server on loopback over `root`, stopped when the test ends. */
export async function startTftp(
  t: Test,
  root: string,
  over: Partial<TftpOptions> = {},
  logLevel = 'warn',
  timeline?: BootTimeline,
) {
  const metrics = new Metrics();
  const { log } = memoryLogger(logLevel);
  const options: TftpOptions = {
    address: '127.0.0.1',
    port: 0,
    root,
    maxBlksize: 65464,
    maxWindowsize: 64,
    retries: 5,
    maxTransfers: 512,
    maxTransfersPerClient: 8,
    ...over,
  };
  const server = new TftpServer(options, log, metrics, timeline);
  const { port } = await server.start();
  t.teardown(() => server.stop());
  return { server, port, metrics };
}
