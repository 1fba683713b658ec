import { existsSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../src/paths.js';
import { targetConsole } from '../helpers/appliance.js';
import { demoMachineSpec, enrolQemuHost, makeLab, skipUnlessCi, startForQemuHosts } from '../helpers/lab.js';
import { addMachine, HOSTS, settled } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';
import { labApi, labKube } from '../lab/lab-api.js';
import type { Lab } from '../lab/netns.js';

const ADMIN = 'e2e-admin-token-0123456789';
const TARGET = path.join(repoRoot, 'assets/demo/arm64/target.tar.gz');
const have =
  existsSync(path.join(repoRoot, 'assets/ipxe/grubnetaa64.efi')) &&
  existsSync(path.join(repoRoot, 'assets/inspector/arm64/initrd')) &&
  existsSync(TARGET) &&
  existsSync('/usr/share/AAVMF/AAVMF_CODE.fd');

const api = (lab: Lab, method: string, p: string, body?: unknown) =>
  labApi(lab, `http://${lab.serverIp}:8080`, ADMIN, method, p, body);
const kube = (lab: Lab) => labKube(lab, `http://${lab.serverIp}:8080`, ADMIN);
const get = async (lab: Lab, p: string) => (await kube(lab)('GET', p)).json;

t.test(
  'ARM64 (QEMU virt, AAVMF, TCG): signed arm64 GRUB over PXE, the arm64 inspector over TFTP, kexec of an arm64 target',
  { skip: skipUnlessCi(!have, 'run `make setup` (arm64 GRUB, arm64 inspector and target, qemu-efi-aarch64)') },
  async (t) => {
    t.setTimeout(1_500_000);
    const lab = makeLab(t, '10.90.0');
    const dir = tempDir(t);
    await startForQemuHosts(t, lab, ADMIN);
    const mac = '52:54:00:a6:40:01';
    const consoleLog = path.join(dir, 'arm64.console');
    const machine = { firmware: 'aarch64', mac, tap: lab.addTap(), memoryMB: 1024, disksGB: [2], serial: 'E2E-ARM64' };
    await enrolQemuHost(lab, kube(lab), { name: 'h-arm', port: 9401, consoleLog, machine, labels: { arch: 'arm64' } });
    await addMachine(kube(lab), {
      name: 'm-arm',
      spec: { ...demoMachineSpec(lab, 'demo/arm64/target.tar.gz'), hostSelector: { matchLabels: { arch: 'arm64' } } },
    });
    const m = await settled(kube(lab), 'm-arm', 1_200_000);
    t.equal(m.status.phase, 'Provisioned', `m-arm: ${m.status.failureMessage ?? 'provisioned'}`);
    const c = await targetConsole(consoleLog, 240_000);
    t.match(c, /Beskar7: inspecting 52:54:00:a6:40:01/, 'the signed arm64 GRUB read our configuration for its MAC');
    t.match(
      c,
      /BESKAR7-DEMO-MARKER[^\n]*machine=aarch64[^\n]*beskar7\.provisioned=h-arm/,
      'the arm64 target runs, kexecd',
    );
    const report = (await get(lab, `${HOSTS}/h-arm`)).status.inspectionReport;
    t.equal(report.architecture, 'aarch64', 'the report says aarch64');
    t.equal(report.bootMode, 'UEFI');
    t.ok(
      report.disks.some((d: { sizeGB: number }) => d.sizeGB === 2),
      'its disk reported',
    );

    const timeline = (await api(lab, 'GET', `/timeline/${mac}`)).items.map((e: { what: string }) => e.what);
    t.ok(
      timeline.some((w: string) => /grubnetaa64\.efi \(signed chain: ARM64: Debian ships no arm64 iPXE\)/.test(w)),
      'the timeline says which chain and why',
    );
    t.ok(
      timeline.some((w: string) => /^\/assets\/inspector\/arm64\/vmlinuz: \d+ bytes/.test(w)),
      'the arm64 inspector kernel over TFTP',
    );
    t.comment(timeline.join('\n'));
  },
);
