import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../src/paths.js';
import { targetConsole, until } from '../helpers/appliance.js';
import {
  demoMachineSpec,
  enrolQemuHost,
  haveDemoImage,
  makeLab,
  skipUnlessCi,
  startForQemuHosts,
} from '../helpers/lab.js';
import { addMachine, HOSTS, MACHINES, settled } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';
import { labApi, labKube } from '../lab/lab-api.js';
import type { Lab } from '../lab/netns.js';
import { bootMachine } from '../lab/qemu.js';

const ADMIN = 'e2e-admin-token-0123456789';
const haveChain =
  existsSync(path.join(repoRoot, 'assets/ipxe/shimx64.efi')) &&
  existsSync(path.join(repoRoot, 'assets/inspector/initrd')) &&
  existsSync('/usr/share/OVMF/OVMF_CODE_4M.secboot.fd');

/** The kernel with its Authenticode signature cut off: the PE security directory emptied, the certificates gone. */
function unsigned(kernel: Buffer): Buffer {
  const pe = kernel.readUInt32LE(0x3c);
  const dirs = pe + 24 + (kernel.readUInt16LE(pe + 24) === 0x20b ? 112 : 96);
  const [at, size] = [kernel.readUInt32LE(dirs + 4 * 8), kernel.readUInt32LE(dirs + 4 * 8 + 4)];
  if (!size) throw new Error('the kernel is not signed');
  const out = Buffer.from(kernel.subarray(0, at));
  out.writeBigUInt64LE(0n, dirs + 4 * 8);
  return out;
}

const api = (lab: Lab, method: string, p: string, body?: unknown) =>
  labApi(lab, `http://${lab.serverIp}:8080`, ADMIN, method, p, body);
const kube = (lab: Lab) => labKube(lab, `http://${lab.serverIp}:8080`, ADMIN);
const get = async (lab: Lab, p: string) => (await kube(lab)('GET', p)).json;

t.test(
  'Secure Boot enforced (OVMF, Microsoft keys): iPXE refused; shim, signed GRUB, inspector over TFTP; a signed kexec target; cleaning; an unsigned one refused; a whole-disk image rebooted into',
  { skip: skipUnlessCi(!(haveDemoImage && haveChain), 'run `make setup` (shim, GRUB, inspector, demo image, ovmf)') },
  async (t) => {
    t.setTimeout(900_000);
    const lab = makeLab(t, '10.89.0');
    const dir = tempDir(t);
    const http = `http://${lab.serverIp}:8080`;
    await startForQemuHosts(t, lab, ADMIN);

    // what the firmware does with Debian's iPXE: an unknown MAC gets snponly.efi, as every host did before
    const refused = await bootMachine(lab, {
      firmware: 'uefi-secureboot',
      mac: '52:54:00:5b:00:99',
      tap: lab.addTap(),
      marker: /Access Denied|Security Violation|iPXE initialising/,
      timeoutMs: 180_000,
    });
    t.match(refused.console, /snponly\.efi/, 'the unknown host was offered iPXE');
    t.match(refused.console, /Access Denied|Security Violation/, 'the firmware refuses the unsigned iPXE');
    t.notMatch(refused.console, /iPXE initialising/, 'iPXE never runs');

    const mac = '52:54:00:5b:00:01';
    const consoleLog = path.join(dir, 'sb.console');
    const machine = {
      firmware: 'uefi-secureboot',
      mac,
      tap: lab.addTap(),
      memoryMB: 1024,
      disksGB: [2],
      serial: 'E2E-SB',
      reboots: true,
    };
    const host = await enrolQemuHost(lab, kube(lab), {
      name: 'h-sb',
      port: 9301,
      consoleLog,
      machine,
      labels: { fw: 'sb' },
    });
    t.equal(host.status.secureBoot, true, "the BMC's SecureBoot resource is in the host's status");
    t.equal(host.spec.bootChain, 'Auto');

    await addMachine(kube(lab), {
      name: 'm-sb',
      spec: { ...demoMachineSpec(lab), hostSelector: { matchLabels: { fw: 'sb' } } },
    });
    const m = await settled(kube(lab), 'm-sb', 600_000);
    t.equal(m.status.phase, 'Provisioned', `m-sb: ${m.status.failureMessage ?? 'provisioned'}`);
    const c = await targetConsole(consoleLog, 120_000);
    t.match(c, /Beskar7: inspecting 52:54:00:5b:00:01/, 'the signed GRUB read our configuration for its MAC');
    t.match(c, /EFI stub: UEFI Secure Boot is enabled/, "the inspector's kernel booted under Secure Boot");
    t.match(c, /"secureBoot":true/, 'the inspector reported the firmware enforcing it');
    t.match(
      c,
      /BESKAR7-DEMO-MARKER[^\n]*secureboot=1 lockdown=integrity[^\n]*beskar7\.provisioned=h-sb/,
      'the target, kexecd as a signed kernel, runs with Secure Boot on and its kernel locked down',
    );
    const report = (await get(lab, `${HOSTS}/h-sb`)).status.inspectionReport;
    t.equal(report.secureBoot, true, 'the report says so');

    const timeline = (await api(lab, 'GET', `/timeline/${mac}`)).items.map((e: { what: string }) => e.what);
    t.ok(
      timeline.some((w: string) => /shimx64\.efi \(signed chain: the BMC reports Secure Boot enabled\)/.test(w)),
      'the timeline says which chain the host got and why',
    );
    for (const f of ['shimx64.efi', 'grubx64.efi', 'grub/grub.cfg', 'grub/mac/', 'assets/inspector/vmlinuz']) {
      t.ok(
        timeline.some((w: string) => w.startsWith(f) || w.includes(` ${f}`) || w.includes(f)),
        `over TFTP: ${f}`,
      );
    }
    t.ok(
      timeline.some((w: string) => /grub\/boot\/default\/h-sb\/<nonce>: inspector/.test(w)),
      'the nonce claimed over TFTP, never shown',
    );
    t.comment(timeline.join('\n'));

    // released, the host is cleaned through the same chain; then a target whose kernel is not signed is refused
    // by the locked-down kernel, and the machine says why
    await kube(lab)('DELETE', `${MACHINES}/m-sb`);
    await until(
      'h-sb cleaned and Available',
      async () => ((await get(lab, `${HOSTS}/h-sb`)).status.state === 'Available' ? true : undefined),
      300_000,
    );
    const cleaned = (await api(lab, 'GET', '/journal?limit=500')).items.filter(
      (e: { kind: string; host?: string }) => e.host === 'h-sb' && e.kind === 'Cleaned',
    );
    t.equal(cleaned.length, 1, 'the erase ran under Secure Boot (the cleaner booted through shim and GRUB)');
    const www = path.join(dir, 'www');
    mkdirSync(path.join(www, 't'), { recursive: true });
    execFileSync('tar', ['-xzf', path.join(repoRoot, 'assets/demo/target.tar.gz'), '-C', path.join(www, 't')]);
    writeFileSync(path.join(www, 't/vmlinuz'), unsigned(readFileSync(path.join(www, 't/vmlinuz'))));
    execFileSync('tar', ['-czf', path.join(www, 'unsigned.tar.gz'), '-C', path.join(www, 't'), 'vmlinuz', 'initrd.gz']);
    lab.spawn(lab.ns, 'busybox', ['httpd', '-f', '-p', `${lab.serverIp}:8099`, '-h', www]);
    await addMachine(kube(lab), {
      name: 'm-unsigned',
      spec: {
        inspectionImageURL: `${http}/assets/inspector`,
        targetImageURL: `http://${lab.serverIp}:8099/unsigned.tar.gz`,
        hardwareRequirements: { minCPUCores: 1, minMemoryGB: 1, minDiskGB: 1 },
        hostSelector: { matchLabels: { fw: 'sb' } },
      },
    });
    const bad = await settled(kube(lab), 'm-unsigned', 600_000);
    t.equal(bad.status.phase, 'Failed', 'an unsigned kernel is not kexecd under Secure Boot');
    t.match(
      bad.status.failureMessage,
      /Secure Boot: the locked-down kernel kexecs only kernels signed by a key it trusts, and refused the target's\. Use a signed kernel, or a whole-disk image that boots under Secure Boot \(kexec_file_load failed/,
      `the machine says so plainly: ${bad.status.failureMessage}`,
    );

    // a whole-disk image whose ESP holds shim and Debian's signed GRUB: written, rebooted, booted under Secure Boot
    await until(
      'h-sb cleaned again',
      async () => ((await get(lab, `${HOSTS}/h-sb`)).status.state === 'Available' ? true : undefined),
      300_000,
    );
    await addMachine(kube(lab), {
      name: 'm-disk',
      spec: {
        inspectionImageURL: `${http}/assets/inspector`,
        targetImageURL: `${http}/assets/demo/disk.img.zst`,
        hardwareRequirements: { minCPUCores: 1, minMemoryGB: 1, minDiskGB: 1 },
        hostSelector: { matchLabels: { fw: 'sb' } },
      },
    });
    const disk = await settled(kube(lab), 'm-disk', 600_000);
    t.equal(disk.status.phase, 'Provisioned', `m-disk: ${disk.status.failureMessage ?? 'provisioned'}`);
    const booted = await until(
      'the installed system boots from its disk',
      async () => /BESKAR7-DISK-BOOTED[^\n]*/.exec(readFileSync(consoleLog, 'latin1'))?.[0],
      400_000,
    );
    t.match(
      booted,
      /secureboot=1 lockdown=integrity/,
      `rebooted from its disk through shim and the signed GRUB: ${booted}`,
    );
    const last = (await api(lab, 'GET', `/timeline/${mac}`)).items.map((e: { what: string }) => e.what);
    t.ok(
      last.some((w: string) => /grub\/mac\/52:54:00:5b:00:01\.cfg: local-disk/.test(w)),
      'after the reboot, the network boot sent it on to its disk',
    );
  },
);
