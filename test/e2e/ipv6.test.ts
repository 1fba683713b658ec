import { existsSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../src/paths.js';
import { targetConsole } from '../helpers/appliance.js';
import { demoMachineSpec, enrolQemuHost, fullDhcp, makeLab, skipUnlessCi, startForQemuHosts } from '../helpers/lab.js';
import { addMachine, HOSTS, settled } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';
import { labApi, labKube } from '../lab/lab-api.js';

const ADMIN = 'e2e-admin-token-0123456789';
const TARGET = path.join(repoRoot, 'assets/demo/target.tar.gz');
const have =
  existsSync(path.join(repoRoot, 'assets/inspector/initrd')) &&
  existsSync(TARGET) &&
  existsSync('/usr/share/OVMF/OVMF_CODE_4M.fd') &&
  existsSync('/usr/sbin/radvd');

/**
 * QEMU hosts on a segment with no IPv4 at all: the appliance's DHCPv6 (full mode, radvd's router advertisements
 * with the managed flag) is all they get. One boots by OVMF's PXEv6 (TFTP over IPv6), one by its HTTPv6; both go
 * on through iPXE, the inspector and its report to their target, over IPv6 only.
 */
for (const [n, via] of [
  [0, 'pxe'],
  [1, 'http'],
] as const) {
  t.test(
    `IPv6-only segment: OVMF ${via === 'pxe' ? 'PXEv6 (TFTP)' : 'HTTPv6'} → iPXE → inspector → target`,
    { skip: skipUnlessCi(!have, 'run `make setup` (inspector, demo image, ovmf, radvd)') },
    async (t) => {
      t.setTimeout(1_200_000);
      const lab = makeLab(t, `10.9${1 + n}.0`, false).ipv6Only();
      const dir = tempDir(t);
      const api = (method: string, p: string, body?: unknown) =>
        labApi(lab, `http://${lab.serverIp}:8080`, ADMIN, method, p, body);
      const kube = labKube(lab, `http://${lab.serverIp}:8080`, ADMIN);
      const get = async (p: string) => (await kube('GET', p)).json;
      const app = await startForQemuHosts(t, lab, ADMIN, {
        // no DHCPv4 on this segment at all
        dhcp: { ...fullDhcp(lab).dhcp, enabled: false },
        dhcp6: {
          enabled: true,
          interface: 'br0',
          full: { poolStart: 'fd77::100', poolEnd: 'fd77::1ff', leaseSeconds: 600 },
        },
      });
      const mac = `52:54:00:6e:76:0${n}`;
      const consoleLog = path.join(dir, 'v6.console');
      const machine = {
        firmware: 'uefi',
        ipv6: via,
        mac,
        tap: lab.addTap(),
        memoryMB: 1024,
        disksGB: [2],
        serial: `E2E-V6-${n}`,
      };
      await enrolQemuHost(lab, kube, { name: 'h-v6', port: 9501, consoleLog, machine });
      // the manifest names the appliance's IPv4 URLs, as one written for a mixed site does: a host that
      // reached us over IPv6 is given them over IPv6
      await addMachine(kube, { name: 'm-v6', spec: demoMachineSpec(lab) });
      const m = await settled(kube, 'm-v6', 1_000_000);
      t.equal(m.status.phase, 'Provisioned', `m-v6: ${m.status.failureMessage ?? 'provisioned'}`);
      const c = await targetConsole(consoleLog, 240_000);
      t.match(c, /BESKAR7-DEMO-MARKER[^\n]*beskar7\.provisioned=h-v6/, 'the target runs, kexecd');
      t.match(c, /beskar7\.api=http:\/\/\[fd77::1\]:8080/, 'the inspector was told the appliance by its IPv6 address');

      const timeline = (await api('GET', `/timeline/${mac}`)).items.map((e: { what: string }) => e.what);
      t.comment(timeline.join('\n'));
      const first =
        via === 'pxe'
          ? /^DHCPv6 request → reply fd77::1[0-9a-f]{2} tftp:\/\/\[fd77::1\]\/snponly\.efi$/
          : /^DHCPv6 request → reply fd77::1[0-9a-f]{2} http:\/\/\[fd77::1\]:8080\/ipxe\/snponly\.efi$/;
      t.ok(
        timeline.some((w: string) => first.test(w)),
        `the firmware leased an address and was sent to ${via === 'pxe' ? 'TFTP' : 'HTTP'} over IPv6`,
      );
      t.ok(
        timeline.some((w: string) =>
          /^DHCPv6 request → reply fd77::1[0-9a-f]{2} http:\/\/\[fd77::1\]:8080\/boot\.ipxe$/.test(w),
        ),
        'iPXE leased an address and was sent to its script over IPv6',
      );
      t.notOk(
        app.logs.some((l) => l.msg === 'dhcp reply'),
        'no DHCPv4 answer was given (none is served on this segment)',
      );
      const claims = (await api('GET', '/journal?limit=500')).items.filter(
        (e: { kind: string }) => e.kind === 'CredentialClaimed',
      );
      t.ok(claims.length > 0, 'the boot nonce was claimed');
      t.ok(
        claims.every((e: { message: string }) => /fd77::/.test(e.message)),
        `claimed from the host's IPv6 address: ${claims.map((e: { message: string }) => e.message).join('; ')}`,
      );
      const health = (await kube('GET', '/healthz')).json;
      t.equal(health.dhcp6.mode, 'full');
      // the firmware's two clients released theirs when iPXE took over; iPXE's stands
      t.ok(health.dhcp6.leases >= 1, `healthz counts the DHCPv6 leases: ${health.dhcp6.leases}`);
      const host = await get(`${HOSTS}/h-v6`);
      const addrs = (host.status.addresses ?? []).map((a: { address: string }) => a.address);
      t.ok(
        addrs.some((a: string) => /^fd77::1[0-9a-f]{2}$/.test(a)),
        `the host's status lists its IPv6 lease: ${addrs.join(', ')}`,
      );
    },
  );
}
