import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { ADMIN, inProcess, until } from '../helpers/appliance.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { bmcWithMachine, conditionsOf, PROVISIONED } from '../helpers/workflow.js';

/** The resource API's paths of the Beskar7 kinds in namespace default. */
const G = '/apis/infrastructure.cluster.x-k8s.io/v1beta1/namespaces/default';

/** Secret + PhysicalHost + Beskar7Machine as Beskar7 v1.0 writes them, pointed at a fake BMC on loopback. */
const manifests = (bmc: string, extra = '', config = 'http://config-server/worker-config.yaml') => `apiVersion: v1
kind: Secret
metadata:
  name: bmc-credentials
  namespace: default
stringData:
  username: "admin"
  password: "manifest-pw"
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
spec:
  inspectionImageURL: "http://boot-server/beskar7-inspector/boot"
  targetImageURL: "http://boot-server/kairos/v2.8.1.tar.gz"
  targetImageDigest: "sha256:${'b'.repeat(64)}"
  configurationURL: "${config}"
  hardwareRequirements:
    minCPUCores: 4
    minMemoryGB: 16
    minDiskGB: 100
${extra}`;

t.test('v1.0 manifests through the CLI: apply (idempotent), get, describe, delete', async (t) => {
  const dir = tempDir(t);
  let base = '';
  const mac = '52:54:00:0d:00:01';
  const { bmc, address } = await bmcWithMachine(t, () => base, mac, { password: 'manifest-pw' });
  const a = await inProcess(t);
  base = a.base;
  const cliIn = (input: string, ...args: string[]) => runCli(['--url', a.base, '--token', ADMIN, ...args], input);
  const cli = (...args: string[]) => cliIn('', ...args);
  const file = path.join(dir, 'lab.yaml');
  // the machine's configurationURL, which the appliance fetches for the bootstrap gate
  const config = http.createServer((_, res) => res.end('#cloud-config\nhostname: worker-01\n'));
  await new Promise<void>((r) => config.listen(0, '127.0.0.1', r));
  t.teardown(() => config.close());
  const configUrl = `http://127.0.0.1:${(config.address() as AddressInfo).port}/worker-config.yaml`;
  writeFileSync(file, manifests(address, '', configUrl));

  const first = await cli('apply', '-f', file);
  t.equal(first.code, 0, first.err);
  t.equal(
    first.out,
    'secret/bmc-credentials created\nphysicalhost/server-01 created\nbeskar7machine/worker-01 created\n',
  );
  const again = await cli('apply', '-f', file);
  t.match(
    again.out,
    /secret\/bmc-credentials unchanged\nphysicalhost\/server-01 unchanged\nbeskar7machine\/worker-01 unchanged/,
  );

  const m = await until('worker-01 Provisioned', async () => {
    const r = (await a.kube('GET', `${G}/beskar7machines/worker-01`)).json;
    return r.status?.phase === 'Provisioned' ? r : undefined;
  });
  t.equal(m.apiVersion, 'infrastructure.cluster.x-k8s.io/v1beta1');
  t.equal(m.kind, 'Beskar7Machine');
  t.same([m.spec.providerID, m.status.providerID], ['b7://default/server-01', 'b7://default/server-01']);
  t.same(m.status.addresses, [{ type: 'InternalIP', address: '10.0.0.5' }], 'the address the report gave');
  t.match(conditionsOf(m), PROVISIONED);

  const yaml = await cli('get', 'ph', 'server-01', '-o', 'yaml');
  const h = YAML.parse(yaml.out);
  t.same(h.metadata.labels, { 'topology.kubernetes.io/zone': 'rack-1' });
  t.match(h.metadata.resourceVersion, /^[0-9a-f]{8}\.\d+\.[0-9a-f]{16}$/, 'watch position and record version');
  t.equal(h.spec.redfishConnection.credentialsSecretRef, 'bmc-credentials');
  t.notMatch(yaml.out, /manifest-pw|passwordEnc|username/, 'no credentials in the host');
  t.same([h.status.state, h.status.inspectionPhase, h.spec.consumerRef.name], ['Provisioned', 'Complete', 'worker-01']);
  const r = h.status.inspectionReport;
  t.same(
    [r.cpus.count, r.cpus.cores, r.memory.totalGB, r.disks[0].device, r.disks[0].sizeGB, r.disks[0].type],
    [1, 4, 16, '/dev/vda', 100, 'SSD'],
    'the v1.0 inspectionReport shape',
  );
  t.same(r.nics[0].interface, 'eth0');
  t.ok(Date.parse(r.timestamp) >= Date.parse(h.status.inspectionTimestamp), 'the start of inspection comes first');

  const table = await cli('get', 'b7m', '-o', 'wide');
  t.match(table.out, /^NAME\s+PHASE\s+HOST\s+READY\s+AGE\s+CLUSTER\s+ATTEMPTS\s+PROVIDERID\s+ADDRESSES/m);
  t.match(
    table.out,
    /^worker-01\s+Provisioned\s+server-01\s+true\s+\d+s\s+-\s+1\s+b7:\/\/default\/server-01\s+10\.0\.0\.5/m,
  );
  t.notMatch((await cli('get', 'b7m')).out, /PROVIDERID/, 'wide columns only with -o wide');
  const described = await cli('describe', 'b7m', 'worker-01');
  t.match(described.out, /^Conditions:\nTYPE\s+STATUS\s+REASON/m);
  t.match(described.out, /^RequirementsMet\s+True\s+RequirementsMet/m);
  t.match(described.out, /^Events:[\s\S]*Provisioned/m);

  // the stored version moved on (status changed): an update naming the version read before is stale
  const stale = structuredClone(h);
  stale.metadata.labels.rack = 'r2';
  stale.metadata.resourceVersion = '0000000000000000';
  writeFileSync(path.join(dir, 'stale.yaml'), YAML.stringify(stale));
  const conflict = await cli('apply', '-f', path.join(dir, 'stale.yaml'));
  t.equal(conflict.code, 1, 'a document that fails fails the apply');
  t.match(
    conflict.err,
    /physicalhost\/server-01: host server-01 was changed since resourceVersion 0000000000000000.*HTTP 409/,
  );
  const fresh = YAML.parse((await cli('get', 'ph', 'server-01', '-o', 'yaml')).out);
  fresh.metadata.labels.rack = 'r2';
  writeFileSync(path.join(dir, 'fresh.yaml'), YAML.stringify(fresh));
  t.match((await cli('apply', '-f', path.join(dir, 'fresh.yaml'))).out, /physicalhost\/server-01 configured/);
  t.same(
    (await a.kube('GET', `${G}/physicalhosts/server-01`)).json.metadata.labels,
    { 'topology.kubernetes.io/zone': 'rack-1', rack: 'r2' },
    'a get -o yaml round trip applies (status and read-only metadata ignored)',
  );

  // hostile files: a billion laughs, and a file far larger than any manifest; one line each, no stack trace
  const laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < 9; i++)
    laughs.push(
      `${'b'.repeat(i)}: &${'b'.repeat(i)} [${Array(9)
        .fill(i === 1 ? '*a' : `*${'b'.repeat(i - 1)}`)
        .join(',')}]`,
    );
  writeFileSync(path.join(dir, 'laughs.yaml'), `${laughs.join('\n')}\n`);
  const bomb = await cli('apply', '-f', path.join(dir, 'laughs.yaml'));
  t.equal(bomb.code, 2, 'a billion laughs is refused');
  t.match(bomb.err, /^beskar7: .*laughs\.yaml: document 1: .*alias/i);
  t.equal(bomb.err.trim().split('\n').length, 1, 'in one line');
  const huge = await cliIn(`# ${'x'.repeat(5 << 20)}\n`, 'apply', '-f', '-');
  t.same([huge.code, huge.err.trim()], [2, 'beskar7: -: larger than 4 MiB']);

  delete fresh.metadata.resourceVersion;
  const piped = await cliIn(YAML.stringify(fresh), 'apply', '-f', '-');
  t.match(piped.out, /^physicalhost\/server-01 unchanged$/m, 'apply -f - reads standard input');
  const broken = await cliIn('kind: PhysicalHost\n  : [', 'apply', '-f', '-');
  t.equal(broken.code, 2);
  t.match(broken.err, /-: document 1: /, 'a YAML error names the document');
  t.equal((await cli('delete', 'secret', 'bmc-credentials')).code, 2, 'a Secret in use stays');
  t.match((await cli('delete', 'b7m', 'worker-01')).out, /beskar7machine\/worker-01 deleting/);
  await until('machine gone', async () =>
    (await a.kube('GET', `${G}/beskar7machines/worker-01`)).status === 404 ? true : undefined,
  );
  t.equal(bmc.power, 'Off', 'the host was powered off');
  t.match((await cli('delete', 'ph', 'server-01')).out, /physicalhost\/server-01 deleted/);
  t.match((await cli('delete', 'secrets', 'bmc-credentials')).out, /secret\/bmc-credentials deleted/);
});

t.test('manifest errors: removed v0.x fields, a missing Secret, names, kinds, as Status objects', async (t) => {
  const a = await inProcess(t);
  const post = (plural: string, body: unknown) => a.kube('POST', `${G}/${plural}`, body);
  const machine = (spec: Record<string, unknown>) => ({
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
    kind: 'Beskar7Machine',
    metadata: { name: 'old' },
    spec: { inspectionImageURL: 'http://x/boot', targetImageURL: 'http://x/t', ...spec },
  });
  const old = await post(
    'beskar7machines',
    machine({
      imageURL: 'http://x/a.iso',
      configURL: 'http://x/c',
      osFamily: 'kairos',
      provisioningMode: 'PXE',
      bootMode: 'UEFI',
    }),
  );
  t.equal(old.status, 422);
  t.match(old.json, { kind: 'Status', reason: 'Invalid', details: { name: 'old', kind: 'Beskar7Machine' } });
  for (const [f, why] of [
    ['imageURL', /use targetImageURL/],
    ['configURL', /use configurationURL/],
    ['osFamily', /the target image determines the OS/],
    ['provisioningMode', /iPXE \+ inspection only/],
    ['bootMode', /bootModeDetected/],
  ] as const) {
    const cause = old.json.details.causes.find((c: { field: string }) => c.field === `spec.${f}`);
    t.match(cause?.message, new RegExp(`removed in v1\\.0.*${why.source}`), `${f}: its replacement, at its field`);
  }
  const digest = await post('beskar7machines', machine({ targetImageDigest: 'md5:abc' }));
  t.match(digest.json.message, /spec\.targetImageDigest: must be sha256:<64 lower-case hex digits>/);
  const host = {
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
    kind: 'PhysicalHost',
    metadata: { name: 'server-02' },
    spec: { redfishConnection: { address: 'https://192.0.2.1', credentialsSecretRef: 'nope' } },
  };
  const missing = await post('physicalhosts', host);
  t.same(missing.status, 422);
  t.match(missing.json.details.causes, [
    {
      field: 'spec.redfishConnection.credentialsSecretRef',
      message: /no Secret nope in namespace default; apply it first/,
    },
  ]);
  const renamed = await a.kube('PUT', `${G}/physicalhosts/other`, host);
  t.match(renamed.json.message, /the name of the object \(server-02\) does not match the name on the URL \(other\)/);
  t.equal((await post('physicalhosts', { ...host, apiVersion: 'v1' })).status, 422);
  const secret = await a.kube('POST', '/api/v1/namespaces/default/secrets', {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 's' },
    data: { username: Buffer.from('root').toString('base64') },
  });
  t.match(
    secret.json.message,
    /stringData: a Secret here holds BMC credentials \(username and password\) or bootstrap data \(value\)/,
  );
  t.equal((await a.kube('GET', '/api/v1/namespaces/default/secrets')).json.items.length, 0, 'nothing was stored');
});
