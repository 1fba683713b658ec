import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { repoRoot } from '../../src/paths.js';
import { Store } from '../../src/store/store.js';
import { ADMIN, freePort, until } from '../helpers/appliance.js';
import { HOSTS, hostManifests, MACHINES, machineManifest, SECRETS } from '../helpers/resources.js';
import { simulateInspector, wireReport } from '../helpers/sim-inspector.js';
import { tempDir } from '../helpers/tmp.js';
import { FakeBmc } from '../lab/fake-bmc/server.js';

t.test('kill -9 at random points of the workflow, restart: the machine still ends Provisioned, once', async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const mac = '52:54:00:09:00:01';
  const accepted: number[] = [];
  const bmc = new FakeBmc({
    macs: [mac],
    personality: { delayMs: 60, powerLagMs: 150 },
    onPower: (ev, boot) => {
      if (ev !== 'off' && boot.target === 'Pxe') {
        setTimeout(
          () =>
            void simulateInspector(base, mac, wireReport(mac)).then(
              (r) => r.status === 202 && accepted.push(1),
              () => undefined,
            ),
          300,
        );
      }
    },
  });
  const address = await bmc.start();
  t.teardown(() => bmc.stop());
  const cfgFile = path.join(dir, 'c.yaml');
  writeFileSync(
    cfgFile,
    YAML.stringify({
      dataDir: path.join(dir, 'data'),
      advertiseAddress: '127.0.0.1',
      http: { address: '127.0.0.1', port },
      dhcp: { enabled: false },
      tftp: { enabled: false },
      api: { adminToken: ADMIN },
      logLevel: 'warn',
      orchestrator: {
        tickSeconds: 0.1,
        retryBaseSeconds: 0,
        inspectionTimeoutSeconds: 3,
        maxAttempts: 20,
        powerDeadlineSeconds: 5,
      },
      redfish: { timeoutSeconds: 2, retries: 3, backoffBaseSeconds: 0.02, backoffMaxSeconds: 0.2 },
    }),
  );
  let proc: ChildProcess | undefined;
  const start = async () => {
    proc = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/main.ts'), '--config', cfgFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) =>
      proc!.stdout!.on('data', (c: Buffer) => c.toString().includes('beskar7 ready') && resolve()),
    );
  };
  const kill9 = async () => {
    const p = proc!;
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  };
  t.teardown(kill9);
  const api = (method: string, p: string, body?: unknown) =>
    fetch(`${base}${p}`, {
      method,
      headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    }).then((r) => r.json() as Promise<any>);

  await start();
  const { secret, host } = hostManifests({
    name: 'k1',
    spec: { redfish: { address, username: 'admin', password: 'secret', allowPlainHttp: true } },
  });
  await api('POST', SECRETS, secret);
  await api('POST', HOSTS, host);
  await api(
    'POST',
    MACHINES,
    machineManifest({
      name: 'km',
      spec: {
        inspectionImageURL: 'http://127.0.0.1/i',
        targetImageURL: 'http://127.0.0.1/t.tgz',
        targetImageDigest: `sha256:${'a'.repeat(64)}`,
        hardwareRequirements: { minCPUCores: 2 },
      },
    }),
  );
  let seed = 7;
  const phases: string[] = [];
  for (let round = 0; round < 6; round++) {
    seed = (seed * 48271) % 2147483647;
    await new Promise((r) => setTimeout(r, 50 + (seed % 400)));
    const m = await api('GET', `${MACHINES}/km`).catch(() => undefined);
    phases.push(m?.status?.phase ?? '?');
    if (m?.status?.phase === 'Provisioned') break;
    await kill9();
    await start();
  }
  const m = await until(
    'Provisioned after the kills',
    async () => {
      const r = await api('GET', `${MACHINES}/km`);
      return r.status.phase === 'Provisioned' ? r : undefined;
    },
    30_000,
  );
  t.comment(`phases seen at the kills: ${phases.join(', ')}`);
  t.ok(
    phases.some((p) => p === 'Pending' || p === 'Inspecting'),
    'at least one kill -9 hit the machine on its way (not only after it was done)',
  );
  t.equal(m.status.hostName, 'k1');
  await kill9();
  const store = await Store.open(path.join(dir, 'data', 'db'));
  const reports = await store.reports.all();
  const hosts = await store.hosts.all();
  await store.close();
  t.equal(hosts[0]!.status.state, 'Provisioned');
  t.equal(hosts[0]!.status.consumer, 'km', 'claimed by exactly this machine');
  t.equal(reports.length, accepted.length, 'every accepted report is stored');
  t.ok(reports.length >= 1, 'at least one report');
  t.equal(reports.filter((r) => r.hostName === 'k1').at(-1)?.report.cpus.cores, 4);
});
