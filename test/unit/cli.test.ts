import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ADMIN, inProcess, until } from '../helpers/appliance.js';
import { runCli } from '../helpers/cli.js';
import { addHost, HOSTS, hostManifests, MACHINES, machineManifest } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';
import { bmcWithMachine } from '../helpers/workflow.js';
import { FakeBmc } from '../lab/fake-bmc/server.js';

t.test('CLI: tables, --json, errors, backup and restore without clear-text passwords', async (t) => {
  const dir = tempDir(t);
  let base = '';
  const mac = '52:54:00:0c:00:01';
  const { address } = await bmcWithMachine(t, () => base, mac, { password: 'cli-secret-pw' });
  const a = await inProcess(t);
  base = a.base;
  const cli = (...args: string[]) => runCli(['--url', a.base, '--token', ADMIN, ...args]);
  writeFileSync(
    path.join(dir, 'host.json'),
    JSON.stringify({
      kind: 'List',
      items: Object.values(
        hostManifests({
          name: 'c1',
          spec: { redfish: { address, username: 'admin', password: 'cli-secret-pw', allowPlainHttp: true } },
        }),
      ),
    }),
  );
  writeFileSync(
    path.join(dir, 'machine.json'),
    JSON.stringify(
      machineManifest({
        name: 'cm',
        spec: {
          inspectionImageURL: 'http://127.0.0.1/i',
          targetImageURL: 'http://127.0.0.1/t',
          targetImageDigest: `sha256:${'a'.repeat(64)}`,
        },
      }),
    ),
  );
  t.match(
    (await cli('apply', '-f', path.join(dir, 'host.json'))).out,
    /secret\/c1-bmc created\nphysicalhost\/c1 created/,
  );
  await until('Available', async () =>
    (await a.kube('GET', `${HOSTS}/c1`)).json.status.state === 'Available' ? true : undefined,
  );
  t.match((await cli('apply', '-f', path.join(dir, 'machine.json'))).out, /beskar7machine\/cm created/);
  await until('Provisioned', async () =>
    (await a.kube('GET', `${MACHINES}/cm`)).json.status.phase === 'Provisioned' ? true : undefined,
  );

  const hosts = await cli('hosts');
  t.match(hosts.out, /^NAME\s+STATE\s+POWER\s+PHASE\s+MACHINE\s+BMC/m);
  t.match(hosts.out, /^c1\s+Provisioned\s+On\s+Complete\s+cm\s+http:\/\/127\.0\.0\.1:\d+\s+Beskar7 Fake FB-1/m);
  t.same(
    JSON.parse((await cli('--json', 'machines')).out).map(
      (m: { metadata: { name: string }; status: { phase: string } }) => [m.metadata.name, m.status.phase],
    ),
    [['cm', 'Provisioned']],
  );
  t.match((await cli('report', 'c1')).out, /cpu: 1 sockets, 4 cores, 8 threads/);
  t.match((await cli('events')).out, /ReportReceived/);
  t.match((await cli('timeline', mac)).out, /workflow\s+ok\s+ReportReceived/);
  const missing = await cli('get', 'ph', 'nope');
  t.equal(missing.code, 2);
  t.match(missing.err, /physicalhosts\.infrastructure\.cluster\.x-k8s\.io "nope" not found \(HTTP 404\)/);
  const badTok = await runCli(['--url', a.base, '--token', 'x'.repeat(27), 'hosts']);
  t.match(badTok.err, /HTTP 401/);

  const file = path.join(dir, 'backup.json');
  t.match(
    (await cli('backup', file)).out,
    /backup written to .*: \d+ leases, \d+ boot, 1 hosts, 1 machines, 1 reports, \d+ events/,
  );
  const text = readFileSync(file, 'utf8');
  t.notMatch(text, /cli-secret-pw/, 'no clear-text BMC password in the backup');
  t.match(text, /"passwordEnc":"v1:/);

  // wreck the store, then restore it
  await a.kube('DELETE', `${MACHINES}/cm`);
  await until('machine gone', async () => ((await a.kube('GET', `${MACHINES}/cm`)).status === 404 ? true : undefined));
  t.match((await cli('restore', file)).out, /restored: .*1 hosts, 1 machines, 1 reports/);
  t.equal((await a.kube('GET', `${MACHINES}/cm`)).json.status.phase, 'Provisioned', 'machine back');
  t.equal((await a.kube('GET', `${HOSTS}/c1`)).json.status.inspectionReport.cpus.cores, 4, 'report back');

  const bad = JSON.parse(text);
  bad.collections.hosts[0][1].status.state = 'Exploded';
  writeFileSync(file, JSON.stringify(bad));
  const refused = await cli('restore', file);
  t.equal(refused.code, 2);
  t.match(refused.err, /HTTP 400: store hosts\/default\/c1 holds an invalid value/);
  t.equal(
    (await a.kube('GET', `${MACHINES}/cm`)).json.status.phase,
    'Provisioned',
    'a refused restore changes nothing',
  );

  // a BMC reports a model with terminal escapes (they would set the window title): printed without them
  const evil = new FakeBmc({ model: 'X\x1b]0;pwned\x07-9\nforged  Available', macs: ['52:54:00:0c:00:09'] });
  const evilAddress = await evil.start();
  t.teardown(() => evil.stop());
  await addHost(a.kube, {
    name: 'evil',
    spec: { redfish: { address: evilAddress, username: 'admin', password: 'secret', allowPlainHttp: true } },
  });
  await until('evil enrolled', async () =>
    (await a.kube('GET', `${HOSTS}/evil`)).json.status.state === 'Available' ? true : undefined,
  );
  const listed = (await cli('hosts')).out;
  t.match(listed, /^evil\s+Available.*X\]0;pwned-9/m, 'the host is listed');
  t.notOk(listed.includes('\x1b') || listed.includes('\x07'), 'with no control characters');
  t.notMatch(listed, /^forged/m, 'and a newline in a value forges no row');
  const refusedName = await cli('report', 'x\x1b[2J\x07');
  t.equal(refusedName.code, 2);
  t.match(refusedName.err, /HTTP 404/);
  t.notOk(
    refusedName.err.includes('\x1b') || refusedName.err.includes('\x07'),
    'errors on stderr carry no control characters either',
  );
  t.match((await cli('hosts', 'reset', 'evil', 'ForceRestart')).out, /^evil: reset ForceRestart done, power On$/m);
  t.match((await cli('hosts', 'power-off', 'evil')).out, /^evil: powerOff done, power Off$/m);
  const events = (await cli('events', '--limit', '5')).out;
  t.match(events, /^TIME\s+SEVERITY\s+KIND/m, 'severity is a column');

  // no --url, no --token: both come from the appliance's config file, the token from its data directory
  const dataDir = path.join(dir, 'svc-data');
  mkdirSync(dataDir);
  writeFileSync(path.join(dataDir, 'admin-token'), `${ADMIN}\n`);
  const cfg = path.join(dir, 'beskar7.yaml');
  writeFileSync(cfg, `dataDir: ${dataDir}\nhttp:\n  address: 0.0.0.0\n  port: ${new URL(a.base).port}\n`);
  const bare = (...args: string[]) => runCli(args);
  t.match((await bare('--config', cfg, 'hosts')).out, /^c1\s+Provisioned/m, 'URL and token from the config');
  writeFileSync(cfg, `dataDir: ${path.join(dir, 'nowhere')}\nhttp: {port: ${new URL(a.base).port}}\n`);
  const noToken = await bare('--config', cfg, 'hosts');
  t.equal(noToken.code, 2);
  t.match(noToken.err, /no admin token: cannot read .*nowhere\/admin-token \(ENOENT\)/);
});
