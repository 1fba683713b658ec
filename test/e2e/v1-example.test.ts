import path from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { repoRoot } from '../../src/paths.js';
import { until } from '../helpers/appliance.js';
import { makeLab, startAppliance } from '../helpers/lab.js';

const ADMIN = 'e2e-admin-token-0123456789';
const EXAMPLE = path.join(repoRoot, 'test/fixtures/beskar7-v1.0-quick-start.yaml');

t.test('the Beskar7 v1.0 quick-start manifests apply unchanged with the CLI and read back', async (t) => {
  // the example's BMC is 192.168.1.100: inside a lab namespace with no route, enrolment fails at once and
  // nothing leaves this machine
  const lab = makeLab(t, '10.87.0');
  await startAppliance(t, lab, { api: { adminToken: ADMIN }, dhcp: { enabled: false }, redfish: { retries: 0 } });
  const cli = async (...args: string[]) => {
    const r = await lab.run(lab.ns, process.execPath, [
      '--import',
      'tsx',
      path.join(repoRoot, 'src/admin/cli/main.ts'),
      '--url',
      `http://${lab.serverIp}:8080`,
      '--token',
      ADMIN,
      ...args,
    ]);
    return { code: r.code, out: r.stdout, err: r.stderr };
  };
  const applied = await cli('apply', '-f', EXAMPLE);
  t.equal(applied.code, 0, applied.err);
  t.equal(
    applied.out,
    'secret/bmc-credentials created\nphysicalhost/server-01 created\nbeskar7machine/worker-01 created\n',
  );
  t.match((await cli('apply', '-f', EXAMPLE)).out, /worker-01 unchanged/, 'applying again changes nothing');

  const h = await until('server-01 tried its BMC', async () => {
    const h = YAML.parse((await cli('get', 'physicalhost', 'server-01', '-o', 'yaml')).out);
    return h.status.state === 'Error' ? h : undefined;
  });
  t.match(h, {
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
    kind: 'PhysicalHost',
    metadata: { name: 'server-01', namespace: 'default' },
    spec: { redfishConnection: { address: 'https://192.168.1.100', credentialsSecretRef: 'bmc-credentials' } },
  });
  t.match(h.status.errorMessage, /enrolment failed: .*192\.168\.1\.100/, 'the reason is on the host');
  const m = YAML.parse((await cli('get', 'b7m', 'worker-01', '-o', 'yaml')).out);
  t.same(
    [m.spec.inspectionImageURL, m.spec.targetImageURL, m.spec.configurationURL, m.spec.hardwareRequirements],
    [
      'http://boot-server/beskar7-inspector/boot',
      'http://boot-server/kairos/v2.8.1.tar.gz',
      'http://config-server/worker-config.yaml',
      { minCPUCores: 4, minMemoryGB: 16, minDiskGB: 100 },
    ],
  );
  t.equal(m.status.phase, 'Pending', 'waiting for an Available host');
  t.match((await cli('get', 'b7m')).out, /^worker-01\s+Pending\s+-\s+false\s+\d+s\s+-$/m);
  t.match((await cli('describe', 'ph', 'server-01')).out, /^Events:\n[\s\S]*EnrolFailed/m);
  t.match((await cli('delete', 'b7m', 'worker-01')).out, /beskar7machine\/worker-01 delet(ing|ed)/);
  await until('machine gone', async () => ((await cli('get', 'b7m')).out.includes('worker-01') ? undefined : true));
  t.match((await cli('delete', 'ph', 'server-01')).out, /deleted/);
  t.match((await cli('delete', 'secret', 'bmc-credentials')).out, /deleted/);
  t.equal((await cli('get', 'ph')).out.trim(), 'NAME  STATE  CONSUMER  POWER  AGE', 'all gone');
});
