import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../src/paths.js';
import { until } from '../helpers/appliance.js';
import { haveDemoImage, makeLab, skipUnlessCi, startForQemuHosts } from '../helpers/lab.js';
import { addHost, addMachine, HOSTS, MACHINES } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';
import { labApi, labKube, labRedfish, startLabBmc } from '../lab/lab-api.js';
import type { Lab } from '../lab/netns.js';
import { bootMachine } from '../lab/qemu.js';

const ADMIN = 'e2e-admin-token-0123456789';
const haveChain =
  existsSync(path.join(repoRoot, 'assets/ipxe/shimx64.efi')) &&
  existsSync(path.join(repoRoot, 'assets/inspector/initrd')) &&
  existsSync('/usr/share/OVMF/OVMF_CODE_4M.secboot.fd');

const api = (lab: Lab, method: string, p: string, body?: unknown) =>
  labApi(lab, `http://${lab.serverIp}:8080`, ADMIN, method, p, body);
const kube = (lab: Lab) => labKube(lab, `http://${lab.serverIp}:8080`, ADMIN);
const get = async (lab: Lab, p: string) => (await kube(lab)('GET', p)).json;

t.test(
  'Secure Boot enforced (OVMF, Microsoft keys): iPXE is refused; shim, signed GRUB and the inspector over TFTP; kexec of a signed target',
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
    await startLabBmc(lab, {
      address: lab.serverIp,
      port: 9301,
      consoleLog,
      machine: { firmware: 'uefi-secureboot', mac, tap: lab.addTap(), memoryMB: 1024, disksGB: [2], serial: 'E2E-SB' },
    });
    await addHost(kube(lab), { name: 'h-sb', spec: { redfish: labRedfish(lab, 9301), labels: { fw: 'sb' } } });
    const host = await until('h-sb Available', async () => {
      const r = await get(lab, `${HOSTS}/h-sb`);
      return r.status.state === 'Available' ? r : undefined;
    });
    t.equal(host.status.secureBoot, true, "the BMC's SecureBoot resource is in the host's status");
    t.equal(host.spec.bootChain, 'Auto');

    const target = readFileSync(path.join(repoRoot, 'assets/demo/target.tar.gz'));
    await addMachine(kube(lab), {
      name: 'm-sb',
      spec: {
        inspectionImageURL: `${http}/assets/inspector`,
        targetImageURL: `${http}/assets/demo/target.tar.gz`,
        targetImageDigest: `sha256:${createHash('sha256').update(target).digest('hex')}`,
        hardwareRequirements: { minCPUCores: 1, minMemoryGB: 1, minDiskGB: 1 },
        hostSelector: { matchLabels: { fw: 'sb' } },
      },
    });
    const m = await until(
      'm-sb Provisioned',
      async () => {
        const r = await get(lab, `${MACHINES}/m-sb`);
        return r.status.phase === 'Provisioned' || r.status.phase === 'Failed' ? r : undefined;
      },
      600_000,
    );
    t.equal(m.status.phase, 'Provisioned', `m-sb: ${m.status.failureMessage ?? 'provisioned'}`);
    await until(
      'the target runs',
      async () => (/BESKAR7-DEMO-MARKER/.test(readFileSync(consoleLog, 'latin1')) ? true : undefined),
      120_000,
    );
    const c = readFileSync(consoleLog, 'latin1');
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
  },
);
