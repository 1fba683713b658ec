import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { makeLab, skipUnlessCi, startAppliance } from '../helpers/lab.js';
import { tempDir } from '../helpers/tmp.js';
import { bootMachine } from '../lab/qemu.js';

const have = existsSync('/usr/share/OVMF/OVMF_CODE_4M.fd') && existsSync('/usr/sbin/dnsmasq');

/**
 * Beside a site's DHCPv6 server (dnsmasq on another host of the segment: router advertisements, leases), in
 * dhcp6 proxy mode: the appliance sends no DHCPv6 (a boot-file-only answer of ours stalled OVMF's PXEv6 client,
 * docs/booting.md), the site's server names our boot file (option 59), and we serve it over TFTP on IPv6.
 */
t.test(
  "IPv6 proxy mode: the site's DHCPv6 server names our boot file, OVMF PXEv6 loads it from us",
  { skip: skipUnlessCi(!have, 'run `make setup` (ovmf, dnsmasq)') },
  async (t) => {
    t.setTimeout(600_000);
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
        'dhcp-range=fd77::300,fd77::3ff,64,1h',
        'dhcp-option=option6:bootfile-url,tftp://[fd77::1]/snponly.efi',
        `dhcp-leasefile=${dir}/site.leases`,
        'log-dhcp',
        '',
      ].join('\n'),
    );
    lab.spawn(site, 'dnsmasq', ['--keep-in-foreground', `--conf-file=${conf}`, '--pid-file=']);
    const app = await startAppliance(t, lab, {
      dhcp: { enabled: false },
      dhcp6: { enabled: true, mode: 'proxy', interface: 'br0' },
      unknownHosts: { script: 'exit' },
    });
    const r = await bootMachine(lab, {
      firmware: 'uefi',
      ipv6: 'pxe',
      mac: '52:54:00:6e:76:10',
      tap: lab.addTap(),
      memoryMB: 512,
      // iPXE running is the proof; OVMF moving on to HTTP boot, its failure
      marker: /Start HTTP Boot over IPv4|iPXE initialising/,
      timeoutMs: 240_000,
    });
    const consoleText = r.console.replace(/\r/g, '');
    const station = /Station IP address is ([0-9A-F:]+)/.exec(consoleText)?.[1];
    const nbp = /NBP filename is (\S+)/.exec(consoleText)?.[1];
    t.comment(
      consoleText
        .split('\n')
        .filter((l) => /PXE|Station|NBP|iPXE/.test(l))
        .join('\n'),
    );
    t.notOk(app.find('dhcpv6 listening').length, 'the appliance sends no DHCPv6 in proxy mode');
    t.match(station ?? '', /^FD77:0:0:0:0:0:0:3/, "the firmware took its address from the site's server");
    t.equal(nbp, 'snponly.efi', "and its boot file's name");
    t.ok(
      app.find('tftp transfer done', { file: 'snponly.efi' }).some((l) => String(l.remote).startsWith('fd77::3')),
      'which it fetched from the appliance over TFTP on IPv6',
    );
    t.match(consoleText, /iPXE initialising/, 'and iPXE runs');
  },
);
