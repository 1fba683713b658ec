// Child process for the leader failover test: campaigns on etcd and prints its fence once elected, so the test
// can SIGKILL a leader that never resigns (its lease runs out in etcd, as after a crash).
import { createLogger } from '../../src/log.js';
import { EtcdBackend } from '../../src/store/etcd-backend.js';
import { Leadership } from '../../src/store/leader.js';

const [endpoints, prefix, ttl] = process.argv.slice(2) as [string, string, string];
const etcd = new EtcdBackend({ endpoints: endpoints.split(','), prefix, timeoutMs: 1000 });
const l = new Leadership(etcd, 'child', Number(ttl), createLogger('silent'));
l.on('elected', (fence) => process.stdout.write(`${JSON.stringify(fence)}\n`));
l.start();
