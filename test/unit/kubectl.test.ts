import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import YAML from 'yaml';
import { ADMIN, inProcess, READ_ONLY, until } from '../helpers/appliance.js';
import { runCli } from '../helpers/cli.js';
import { skipUnlessCi } from '../helpers/lab.js';
import { tempDir } from '../helpers/tmp.js';
import { bmcWithMachine } from '../helpers/workflow.js';

const run = promisify(execFile);
/** KUBECTL=path tries another client (Debian's 1.20 beside a newer one) */
const KUBECTL = process.env.KUBECTL ?? 'kubectl';
const clientVersion = await run(KUBECTL, ['version', '--client']).then(
  (r) => Number(/Minor:"?(\d+)/.exec(r.stdout)?.[1] ?? /v1\.(\d+)/.exec(r.stdout)?.[1]),
  () => undefined,
);
const haveKubectl = clientVersion !== undefined;

/** Beskar7 v1.0's example, unchanged but for the BMC's address (a fake BMC on loopback). */
const example = (bmc: string) => `apiVersion: v1
kind: Secret
metadata:
  name: bmc-credentials
  namespace: default
type: Opaque
stringData:
  username: "admin"
  password: "kubectl-pw"
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: PhysicalHost
metadata:
  name: server-01
  namespace: default
  labels:
    topology.kubernetes.io/zone: rack-1
spec:
  redfishConnection:
    address: "${bmc}"
    credentialsSecretRef: "bmc-credentials"
    allowPlainHttp: true
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: Beskar7Machine
metadata:
  name: worker-01
  namespace: default
  labels:
    cluster.x-k8s.io/cluster-name: test-cluster
spec:
  inspectionImageURL: "http://boot-server/beskar7-inspector/boot"
  targetImageURL: "http://boot-server/kairos/v2.8.1.tar.gz"
  targetImageDigest: "sha256:${'c'.repeat(64)}"
  hardwareRequirements:
    minCPUCores: 2
    minMemoryGB: 4
    minDiskGB: 50
`;

/** The cluster part of Beskar7's simple-cluster example: its Beskar7Cluster, and a Cluster API Cluster nobody here serves. */
const clusterExample = `apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: Beskar7Cluster
metadata:
  name: test-cluster
  namespace: default
spec:
  controlPlaneEndpoint:
    host: "192.0.2.1"
    port: 6443
---
apiVersion: cluster.x-k8s.io/v1beta1
kind: Cluster
metadata:
  name: test-cluster
  namespace: default
spec:
  infrastructureRef:
    apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
    kind: Beskar7Cluster
    name: test-cluster
`;

t.test('a real kubectl against the appliance', { skip: skipUnlessCi(!haveKubectl, 'no kubectl') }, async (t) => {
  const dir = tempDir(t);
  let base = '';
  const mac = '52:54:00:0e:00:01';
  const { bmc, address } = await bmcWithMachine(t, () => base, mac, { password: 'kubectl-pw' });
  const a = await inProcess(t);
  base = a.base;

  // the kubeconfig the CLI prints: the appliance's HTTPS URL on the same port, its CA, the token
  const cfgFile = path.join(dir, 'beskar7.yaml');
  writeFileSync(cfgFile, YAML.stringify({ dataDir: a.dataDir }));
  const kc = await runCli(['--url', a.base, '--token', ADMIN, '--config', cfgFile, 'kubeconfig']);
  t.equal(kc.code, 0, kc.err);
  const kubeconfig = path.join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, kc.out);
  t.match(YAML.parse(kc.out).clusters[0].cluster, {
    server: a.base.replace('http:', 'https:'),
    'certificate-authority-data': /^[A-Za-z0-9+/=]+$/,
  });
  const env = { ...process.env, KUBECONFIG: kubeconfig };
  const kubectl = (args: string[], input?: string) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      const p = execFile(KUBECTL, args, { env, timeout: 90_000 }, (e, out, err) =>
        resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
      );
      p.stdin?.end(input ?? '');
    });
  const file = (name: string, text: string) => {
    const f = path.join(dir, name);
    writeFileSync(f, text);
    return f;
  };

  const resources = await kubectl(['api-resources', '--api-group=infrastructure.cluster.x-k8s.io']);
  t.match(
    resources.out,
    /^beskar7machines\s+b7m,bm\s+infrastructure\.cluster\.x-k8s\.io\/v1beta1\s+true\s+Beskar7Machine$/m,
  );
  t.match(resources.out, /^physicalhosts\s+ph\s/m);

  // `get -w` from before the machine exists: it sees the phases change
  const watch: ChildProcess = spawn(KUBECTL, ['get', 'b7m', '-w', '--no-headers'], { env });
  let watched = '';
  watch.stdout?.on('data', (b) => {
    watched += b;
  });
  t.teardown(() => void watch.kill());

  const applied = await kubectl(['apply', '-f', file('example.yaml', example(address))]);
  t.equal(applied.code, 0, applied.err);
  t.equal(
    applied.out,
    'secret/bmc-credentials created\nphysicalhost.infrastructure.cluster.x-k8s.io/server-01 created\nbeskar7machine.infrastructure.cluster.x-k8s.io/worker-01 created\n',
  );
  const waited = await kubectl(['wait', '--for=condition=Provisioned', 'b7m/worker-01', '--timeout=60s']);
  t.match(waited.out, /beskar7machine\.infrastructure\.cluster\.x-k8s\.io\/worker-01 condition met/, waited.err);
  await until('the watch saw Provisioned', async () => (/Provisioned/.test(watched) ? true : undefined));
  const phases = [...watched.matchAll(/^worker-01\s+(\w+)/gm)].map((m) => m[1]);
  t.same([...new Set(phases)], ['Pending', 'Inspecting', 'Provisioned'], 'get -w saw each phase, in order');

  const table = await kubectl(['get', 'b7m', '-o', 'wide']);
  t.match(table.out, /^NAME\s+PHASE\s+HOST\s+READY\s+AGE\s+CLUSTER\s+ATTEMPTS\s+PROVIDERID/m);
  t.match(
    table.out,
    /^worker-01\s+Provisioned\s+server-01\s+true\s+\S+\s+test-cluster\s+1\s+b7:\/\/default\/server-01/m,
  );
  t.match(
    (await kubectl(['get', 'ph', '-l', 'topology.kubernetes.io/zone=rack-1'])).out,
    /^server-01\s+Provisioned\s+worker-01\s+On/m,
  );
  t.match((await kubectl(['get', 'ph', '-l', 'topology.kubernetes.io/zone=rack-2'])).err, /No resources found/);

  const described = await kubectl(['describe', 'b7m', 'worker-01']);
  t.match(described.out, /^Events:\n\s+Type\s+Reason\s+Age\s+From\s+Message/m);
  t.match(described.out, /Normal\s+Provisioned\s+\S+\s+beskar7\s+/, 'the workflow events under the object');

  const yaml = await kubectl(['get', 'b7m', 'worker-01', '-o', 'yaml']);
  const again = await kubectl(['apply', '-f', '-'], yaml.out);
  t.equal(again.code, 0, `get -o yaml applies back: ${again.err}`);
  t.match(YAML.parse(yaml.out).spec.providerID, 'b7://default/server-01');

  // explain reads OpenAPI v3 from kubectl 1.27 on; older clients read v2 as protobuf only, which is not served
  const explained = await kubectl(['explain', 'b7m.spec.hardwareRequirements']);
  if ((clientVersion ?? 0) >= 27) t.match(explained.out, /KIND:\s+Beskar7Machine[\s\S]*minCPUCores\s+<integer>/);
  else t.comment(`kubectl 1.${clientVersion}: explain needs OpenAPI v2 as protobuf, not served`);

  const v0 = await kubectl([
    'apply',
    '-f',
    file(
      'v0.yaml',
      'apiVersion: infrastructure.cluster.x-k8s.io/v1beta1\nkind: Beskar7Machine\nmetadata:\n  name: w\nspec:\n  imageURL: http://x/a.iso\n  inspectionImageURL: http://x/boot\n  targetImageURL: http://x/t.tar.gz\n',
    ),
  ]);
  t.not(v0.code, 0);
  t.match(v0.err, /The Beskar7Machine "w" is invalid: spec\.imageURL: removed in v1\.0/);

  const cluster = await kubectl(['apply', '-f', file('cluster.yaml', clusterExample)]);
  t.match(
    cluster.out,
    /beskar7cluster\.infrastructure\.cluster\.x-k8s\.io\/test-cluster created/,
    'what can apply does',
  );
  t.match(
    cluster.err,
    /no matches for kind "Cluster" in version "cluster\.x-k8s\.io\/v1beta1"/,
    'what cannot is named',
  );
  t.match((await kubectl(['get', 'beskar7clusters'])).out, /^test-cluster\s+true\s+192\.0\.2\.1/m);

  // names are per namespace: the example's host and Secret again, in a namespace of their own
  // (`kubectl create namespace` sends a protobuf body, which is not read here: the manifest is)
  const ns = await kubectl([
    'apply',
    '-f',
    file('ns.yaml', 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: lab\n'),
  ]);
  t.equal(ns.code, 0, ns.err);
  const twin = example(address)
    .split('\n---\n')
    .slice(0, 2)
    .join('\n---\n')
    .replaceAll('namespace: default', 'namespace: lab');
  const inLab = await kubectl(['apply', '-f', file('twin.yaml', twin)]);
  t.equal(
    inLab.out,
    'secret/bmc-credentials created\nphysicalhost.infrastructure.cluster.x-k8s.io/server-01 created\n',
    inLab.err,
  );
  const everywhere = await kubectl(['get', 'ph', '-A', '--no-headers']);
  t.match(everywhere.out, /^default\s+server-01\s+Provisioned\s/m);
  t.match(everywhere.out, /^lab\s+server-01\s+\w+\s/m, 'two hosts of one name, one per namespace');
  t.equal((await kubectl(['delete', '-n', 'lab', 'ph', 'server-01'])).code, 0);
  t.match((await kubectl(['get', 'ph', 'server-01'])).out, /^server-01\s+Provisioned\s/m, 'the default one stays');

  const ro = (args: string[]) => kubectl(['--token', READ_ONLY, ...args]);
  t.match((await ro(['get', 'ph'])).out, /^server-01\s/m, 'the read-only token reads');
  const refused = await ro(['delete', 'b7m', 'worker-01']);
  t.match(refused.err, /Forbidden.*read-only token/);

  const deleted = await kubectl(['delete', 'b7m', 'worker-01', '--timeout=60s']);
  t.match(deleted.out, /beskar7machine\.infrastructure\.cluster\.x-k8s\.io "worker-01" deleted/, deleted.err);
  t.equal((await kubectl(['get', 'b7m', 'worker-01'])).code, 1, 'delete returned once the machine was gone');
  t.equal(bmc.power, 'Off', 'its host was powered off first');
  watch.kill();
});
