import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { slaacAddress } from '../../src/domain/ipv6.js';
import { repoRoot } from '../../src/paths.js';
import { targetConsole } from '../helpers/appliance.js';
import { demoMachineSpec, enrolQemuHost, makeLab, skipUnlessCi, startForQemuHosts } from '../helpers/lab.js';
import { addMachine, HOSTS, settled } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';
import { labApi, labKube } from '../lab/lab-api.js';

const ADMIN = 'e2e-admin-token-0123456789';
const have =
  existsSync(path.join(repoRoot, 'assets/inspector/initrd')) &&
  existsSync(path.join(repoRoot, 'assets/demo/target.tar.gz')) &&
  existsSync('/usr/share/OVMF/OVMF_CODE_4M.fd') &&
  existsSync('/usr/sbin/dnsmasq');

/**
 * Beside a site's DHCPv6 server (dnsmasq on another host of the segment: router advertisements, leases), in
 * dhcp6 proxy mode: the appliance sends no DHCPv6 (a boot-file-only answer of ours stalled OVMF's PXEv6 client,
 * docs/booting.md); the site's server names our boot file (option 59) and iPXE's script URL, and the appliance
 * notes the address each host asks the site's server for. The host goes on through iPXE, the inspector and its
 * report to its target.
 */
t.test(
  "IPv6 proxy mode: beside the site's DHCPv6 server, OVMF PXEv6 → iPXE → inspector → target",
  { skip: skipUnlessCi(!have, 'run `make setup` (inspector, demo image, ovmf, dnsmasq)') },
  async (t) => {
    t.setTimeout(1_200_000);
    const lab = makeLab(t, '10.93.0', false).ipv6Only();
    const dir = tempDir(t);
    const site = lab.addHost('site6', '52:54:00:5e:06:02');
    await lab.run(site, 'ip', ['-6', 'addr', 'add', 'fd77::2/64', 'dev', 'eth0', 'nodad']);
    const conf = path.join(dir, 'site.conf');
    writeFileSync(
      conf,
      [
        'port=0',
        'interface=eth0',
        'bind-interfaces',
        'enable-ra',
        'dhcp-authoritative',
        // addresses by DHCPv6, and the prefix autonomous too: the inspector's Linux has no DHCPv6 client
        'dhcp-range=fd77::300,fd77::3ff,slaac,64,1h',
        'dhcp-userclass=set:ipxe,iPXE',
        'dhcp-option=tag:!ipxe,option6:bootfile-url,tftp://[fd77::1]/snponly.efi',
        'dhcp-option=tag:ipxe,option6:bootfile-url,http://[fd77::1]:8080/boot.ipxe',
        `dhcp-leasefile=${dir}/site.leases`,
        'log-dhcp',
        '',
      ].join('\n'),
    );
    lab.spawn(site, 'dnsmasq', ['--keep-in-foreground', `--conf-file=${conf}`, '--pid-file=']);
    const app = await startForQemuHosts(t, lab, ADMIN, {
      dhcp: { enabled: false },
      dhcp6: { enabled: true, mode: 'proxy', interface: 'br0' },
    });
    const api = (method: string, p: string, body?: unknown) =>
      labApi(lab, `http://${lab.serverIp}:8080`, ADMIN, method, p, body);
    const kube = labKube(lab, `http://${lab.serverIp}:8080`, ADMIN);
    const get = async (p: string) => (await kube('GET', p)).json;
    const mac = '52:54:00:6e:76:10';
    const consoleLog = path.join(dir, 'v6p.console');
    const machine = {
      firmware: 'uefi',
      ipv6: 'pxe',
      mac,
      tap: lab.addTap(),
      memoryMB: 1024,
      disksGB: [2],
      serial: 'E2E-V6P',
    };
    await enrolQemuHost(lab, kube, { name: 'h-v6p', port: 9503, consoleLog, machine });
    await addMachine(kube, { name: 'm-v6p', spec: demoMachineSpec(lab) });
    const m = await settled(kube, 'm-v6p', 1_000_000);
    t.equal(m.status.phase, 'Provisioned', `m-v6p: ${m.status.failureMessage ?? 'provisioned'}`);
    const c = await targetConsole(consoleLog, 240_000);
    t.match(c, /BESKAR7-DEMO-MARKER[^\n]*beskar7\.provisioned=h-v6p/, 'the target runs, kexecd');

    const timeline = (await api('GET', `/timeline/${mac}`)).items.map((e: { what: string }) => e.what);
    t.comment(timeline.join('\n'));
    t.ok(
      timeline.some((w: string) => /^DHCPv6 request to the site's server for fd77::3[0-9a-f]{2}$/.test(w)),
      "the appliance saw the host ask the site's server for its address",
    );
    t.notOk(
      app.logs.some((l) => l.msg === 'dhcpv6 reply'),
      'and sent no DHCPv6 itself',
    );
    t.ok(
      app.find('tftp transfer done', { file: 'snponly.efi' }).some((l) => String(l.remote).startsWith('fd77::3')),
      "the firmware, at the site's address, fetched iPXE from the appliance over TFTP on IPv6",
    );
    const journal = (await api('GET', '/journal?limit=500')).items as { kind: string; message: string }[];
    const claims = journal.filter((e) => e.kind === 'CredentialClaimed');
    t.ok(claims.length > 0, 'the boot nonce was claimed');
    t.ok(
      claims.every((e) => /from fd77::3[0-9a-f]{2}$/.test(e.message)),
      `from the address the site leased: ${claims.map((e) => e.message).join('; ')}`,
    );
    t.notOk(
      journal.some((e) => e.kind === 'CredentialMisuse' || e.kind === 'CredentialConflict'),
      "no callback was refused: the inspector's SLAAC address counts as the host's",
    );
    const host = await get(`${HOSTS}/h-v6p`);
    const addrs = (host.status.addresses ?? []).map((a: { address: string }) => a.address);
    t.ok(
      addrs.includes(slaacAddress('fd77::1', mac)) && addrs.some((a: string) => /^fd77::3[0-9a-f]{2}$/.test(a)),
      `the host's status lists both: ${addrs.join(', ')}`,
    );
  },
);
