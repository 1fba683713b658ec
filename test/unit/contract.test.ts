// The Beskar7 inspector contract v4.2 against its golden fixtures (../shared/contract/v4.2, as the real
// inspector vendors them): their report through our intake, and our boot render against theirs.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Agent, fetch as undiciFetch } from 'undici';
import { loadTemplates, renderInspector } from '../../src/boot/ipxe.js';
import { ContractReportSchema, normaliseReport } from '../../src/domain/inspection.js';
import type { StoredHost, StoredMachine } from '../../src/domain/resources.js';
import { providerId } from '../../src/domain/resources.js';
import { repoRoot } from '../../src/paths.js';
import { inspectorParams, unmetRequirements } from '../../src/workflow/transitions.js';
import { inProcess, until } from '../helpers/appliance.js';
import { addHost, addMachine } from '../helpers/resources.js';
import { callInspector, claim, claimUrlOf } from '../helpers/sim-inspector.js';
import { bmcWithMachine, hostBody, machineBody } from '../helpers/workflow.js';

// B7_CONTRACT_DIR: where the fixtures are when the tests run from a copy of the repo (make mutation's sandbox)
const GOLDEN = process.env.B7_CONTRACT_DIR ?? path.join(repoRoot, '..', 'shared', 'contract', 'v4.2');
const golden = (f: string) => readFileSync(path.join(GOLDEN, f), 'utf8');

t.test('the golden report parses, and is judged as the original controller judges it', async (t) => {
  const wire = ContractReportSchema.parse(JSON.parse(golden('golden_inspection_report.json')));
  const r = normaliseReport(wire);
  t.same(
    [r.cpus.count, r.cpus.cores, r.cpus.threads, r.memory.totalGB, r.disks.length, r.nics.length],
    [2, 64, 128, 128, 2, 2],
    'two packages of 32 cores, 4 x 32 GiB, two disks, two NICs',
  );
  t.same(unmetRequirements({ minCPUCores: 64, minMemoryGB: 128, minDiskGB: 1920 }, r), [], 'the disks are summed');
  t.same(unmetRequirements({ minCPUCores: 65, minMemoryGB: 128, minDiskGB: 1921 }, r), [
    '64 CPU cores < 65 required',
    '1920 GiB of disk < 1921 GiB required',
  ]);
});

t.test('every field of the report may be left out: a thin report is judged, not refused', async (t) => {
  for (const body of [
    {},
    { cpus: [], memory: [], disks: [], nics: [] },
    { cpus: [{ cores: 0 }], memory: [{ id: 'DIMM0' }], disks: [{ sizeGB: 0.5 }], nics: [{ name: 'eth0' }] },
  ]) {
    const r = ContractReportSchema.safeParse(body);
    t.ok(r.success, `${JSON.stringify(body)} parses`);
    if (r.success)
      t.ok(unmetRequirements({ minCPUCores: 1, minMemoryGB: 1, minDiskGB: 1 }, normaliseReport(r.data)).length === 3);
  }
  const bare = ContractReportSchema.safeParse({ memory: [{ capacity: '32' }] });
  t.notOk(bare.success, 'a capacity without a unit is still refused (§6.1)');
});

t.test("our boot render is the golden one, but for the initrd= that Debian's iPXE needs", async (t) => {
  // the golden render's inputs
  const host = {
    name: 'host-01',
    namespace: 'contract-test',
    spec: { redfish: {}, bootMACs: [], labels: {} },
    status: { state: 'Inspecting', nics: [] },
    createdAt: '',
  } as unknown as StoredHost;
  const machine = {
    name: 'm',
    namespace: 'contract-test',
    spec: {
      inspectionImageURL: 'http://images.example.invalid',
      targetImageURL: 'http://images.example.invalid/kairos.raw',
      targetImageDigest: `sha256:${'a'.repeat(64)}`,
      targetDisk: '/dev/vda',
    },
  } as unknown as StoredMachine;
  const params = inspectorParams(machine, host, {
    api: 'https://beskar7.example.invalid:8082',
    token: 'test-token-0123456789abcdef',
    mac: '52:54:00:12:34:56',
    ca: Buffer.from('test-ca-pem-placeholder').toString('base64'),
    kernelArgs: '',
  });
  const ours = renderInspector(
    loadTemplates(path.join(repoRoot, 'boot-scripts')),
    machine.spec.inspectionImageURL,
    host.name,
    params,
  );
  t.equal(ours.replace(' initrd=initrd.img', ''), golden('golden_boot_cmdline.txt'), 'byte for byte');
  const artifact = JSON.parse(golden('golden_provider_id_artifact.json'));
  t.equal(providerId(host), artifact.content, 'the provider-id the inspector writes to COS_OEM');
});

t.test('the golden report through a live intake: accepted, and a refetch of the boot URL is the same', async (t) => {
  const report = JSON.parse(golden('golden_inspection_report.json'));
  const mac = report.nics[0].macAddress as string;
  let base = '';
  const { address } = await bmcWithMachine(t, () => base, mac, { report: null });
  const a = await inProcess(t);
  base = a.base;
  await addHost(a.kube, hostBody('r650', address));
  await addMachine(a.kube, machineBody('m', { minCPUCores: 64, minMemoryGB: 128, minDiskGB: 1920 }));
  const url = await until('the boot URL', () => claimUrlOf(a.base, mac));
  const p = await claim(url, mac);
  if ('status' in p) throw new Error(`claim ${p.status}`);
  const again = await claim(url, mac);
  t.equal('script' in again && again.script, p.script, 'identical content for the same redeemer (§4.1, §7)');
  const r = await callInspector(p, 'inspection', report);
  t.same([r.status, await r.json()], [202, { status: 'accepted', approved: true }]);
});

t.test(
  'over HTTPS (inspector.https): beskar7.api and the issuing CA in beskar7.ca, which verifies the listener',
  async (t) => {
    const report = JSON.parse(golden('golden_inspection_report.json'));
    const mac = report.nics[0].macAddress as string;
    let base = '';
    const { address } = await bmcWithMachine(t, () => base, mac, { report: null });
    const a = await inProcess(t, { inspector: { https: true } });
    base = a.base;
    await addHost(a.kube, hostBody('r650', address));
    await addMachine(a.kube, machineBody('m'));
    const p = await claim(await until('the boot URL', () => claimUrlOf(a.base, mac)), mac);
    if ('status' in p) throw new Error(`claim ${p.status}`);
    t.equal(p.api, a.base.replace('http:', 'https:'), 'beskar7.api is HTTPS, on the boot port');
    const ca = Buffer.from(p.ca as string, 'base64').toString();
    t.equal(ca, readFileSync(path.join(a.dataDir, 'tls', 'ca.crt'), 'utf8'), 'the CA the appliance made');
    const issuer = new X509Certificate(ca);
    const leaf = new X509Certificate(readFileSync(path.join(a.dataDir, 'tls', 'server.crt')));
    t.ok(issuer.ca && !leaf.ca, 'a CA and a leaf that is not one (webpki refuses a self-signed leaf)');
    t.ok(leaf.checkIssued(issuer) && leaf.checkIP('127.0.0.1'), 'issued by it, for the advertised address');
    const dispatcher = new Agent({ connect: { ca } });
    const r = await undiciFetch(`${p.api}/api/v1/inspection/${p.namespace}/${p.host}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${p.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(report),
      dispatcher,
    });
    t.same(
      [r.status, await r.json()],
      [202, { status: 'accepted', approved: true }],
      'verified against beskar7.ca only',
    );
    await dispatcher.close();
  },
);
