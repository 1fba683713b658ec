// Real etcd (Debian's etcd-server) for tests: a cluster of 1 or 3 members on one address, each a process of its
// own that a test may kill and start again. On loopback by default, or inside a lab namespace.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stopProcess } from '../lab/netns.js';

interface Certs {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export interface EtcdCluster {
  endpoints: string[];
  kill(i: number): Promise<void>;
  start(i: number): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A CA and one certificate it signed for 127.0.0.1, usable by server and client (openssl). */
export function testCertificates(dir: string): Certs {
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=b7-test-ca',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
  );
  ssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    f('etcd.key'),
    '-out',
    f('etcd.csr'),
  );
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  ssl(
    'x509',
    '-req',
    '-in',
    f('etcd.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    f('ext.cnf'),
    '-out',
    f('etcd.pem'),
  );
  return { caFile: f('ca.pem'), certFile: f('etcd.pem'), keyFile: f('etcd.key') };
}

/** Ports from `base`: member i listens for clients on base+2i and for peers on base+2i+1. */
export async function startEtcd(o: {
  members?: number;
  address?: string;
  base: number;
  ns?: string;
  /** client TLS: server certificate and key, and the CA that client certificates must chain to */
  tls?: Certs;
}): Promise<EtcdCluster> {
  const n = o.members ?? 1;
  const host = o.address ?? '127.0.0.1';
  const dir = mkdtempSync(path.join(tmpdir(), 'b7etcd-'));
  const name = (i: number) => `m${i}`;
  const client = (i: number) => `${o.tls ? 'https' : 'http'}://${host}:${o.base + 2 * i}`;
  const peer = (i: number) => `http://${host}:${o.base + 2 * i + 1}`;
  const cluster = Array.from({ length: n }, (_, i) => `${name(i)}=${peer(i)}`).join(',');
  const procs: (ChildProcess | undefined)[] = [];
  const start = async (i: number) => {
    const args = [
      '--name',
      name(i),
      '--data-dir',
      path.join(dir, name(i)),
      '--listen-client-urls',
      client(i),
      '--advertise-client-urls',
      client(i),
      '--listen-peer-urls',
      peer(i),
      '--initial-advertise-peer-urls',
      peer(i),
      '--initial-cluster',
      cluster,
      '--initial-cluster-token',
      path.basename(dir),
      '--heartbeat-interval',
      '50',
      '--election-timeout',
      '500',
      '--log-level',
      'error',
      ...(o.tls
        ? [
            '--cert-file',
            o.tls.certFile,
            '--key-file',
            o.tls.keyFile,
            '--trusted-ca-file',
            o.tls.caFile,
            '--client-cert-auth',
          ]
        : []),
    ];
    const p = o.ns
      ? spawn('ip', ['netns', 'exec', o.ns, 'etcd', ...args], { stdio: 'ignore' })
      : spawn('etcd', args, { stdio: 'ignore' });
    procs[i] = p;
  };
  for (let i = 0; i < n; i++) await start(i);
  const cluster3 = { endpoints: Array.from({ length: n }, (_, i) => client(i)) };
  // ready when a member answers its health endpoint with the cluster formed
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await healthy(cluster3.endpoints[0] as string, o.ns, o.tls);
    if (ok) break;
    if (Date.now() > deadline) throw new Error('etcd did not become healthy in 30 s');
    await sleep(100);
  }
  return {
    endpoints: cluster3.endpoints,
    kill: async (i) => {
      const p = procs[i];
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    },
    start,
    stop: async () => {
      for (const p of procs) if (p) await stopProcess(p);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function healthy(endpoint: string, ns?: string, tls?: Certs): Promise<boolean> {
  const cmd = ns ? ['ip', 'netns', 'exec', ns, 'etcdctl'] : ['etcdctl'];
  // the server's own certificate serves as the client's here: the test CA signed it for both uses
  const creds = tls ? ['--cacert', tls.caFile, '--cert', tls.certFile, '--key', tls.keyFile] : [];
  const args = [...cmd.slice(1), '--endpoints', endpoint, '--dial-timeout', '1s', ...creds, 'endpoint', 'health'];
  const p = spawn(cmd[0] as string, args, { stdio: 'ignore', env: { ...process.env, ETCDCTL_API: '3' } });
  return new Promise((r) => p.once('exit', (code) => r(code === 0)));
}
