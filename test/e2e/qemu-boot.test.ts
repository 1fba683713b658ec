import t from 'tap';
import { fullDhcp, haveDemoImage, makeLab, skipUnlessCi, startAppliance, startSiteDhcp } from '../helpers/lab.js';
import { bootMachine } from '../lab/qemu.js';

const MARKER = /BESKAR7-DEMO-MARKER[^\n]*/;

t.test(
  'QEMU machines PXE-boot through our DHCP (full mode), TFTP and HTTP alone',
  { skip: skipUnlessCi(!haveDemoImage, 'run `bash assets/build-demo-image.sh` first') },
  async (t) => {
    const lab = makeLab(t);
    const app = await startAppliance(t, lab, fullDhcp(lab));
    t.setTimeout(600_000);
    // SeaBIOS boots QEMU's own iPXE ROM, which is iPXE already: it gets the script URL at once. OVMF with the
    // ROM disabled uses its UEFI PXE client, which must chainload snponly.efi over TFTP first.
    for (const [firmware, mac, binary] of [
      ['bios', '52:54:00:b7:00:01', undefined],
      ['uefi', '52:54:00:b7:00:02', 'snponly.efi'],
    ] as const) {
      const r = await bootMachine(lab, { firmware, mac, tap: lab.addTap(), marker: MARKER, timeoutMs: 150_000 });
      t.ok(r.ok, `${firmware}: booted to the marker in ${r.ms} ms`);
      if (!r.ok) t.comment(r.console.slice(-3000));
      t.match(
        r.console.match(MARKER)?.[0] ?? '',
        /cmdline=.*console=ttyS0/,
        `${firmware}: kernel got the cmdline from our script`,
      );
      if (binary) {
        t.ok(
          app.find('dhcp reply', { mac, reply: 'offer', file: binary }).length,
          `${firmware}: firmware offered ${binary}`,
        );
        t.ok(app.find('tftp transfer done', { file: binary }).length, `${firmware}: ${binary} over TFTP`);
      }
      t.ok(
        app.find('dhcp reply', { mac, reply: 'ack', file: 'http://10.77.0.1:8080/boot.ipxe' }).length,
        `${firmware}: iPXE got the script URL`,
      );
      t.ok(
        app.find('ipxe script', { mac, script: 'discover', known: false }).length,
        `${firmware}: per-host script fetched with its MAC`,
      );
    }
  },
);

t.test(
  'proxy mode: QEMU machines boot with addresses from the site DHCP server and boot info from us',
  { skip: skipUnlessCi(!haveDemoImage, 'run `bash assets/build-demo-image.sh` first') },
  async (t) => {
    t.setTimeout(600_000);
    const lab = makeLab(t, '10.78.0');
    const site = startSiteDhcp(t, lab);
    const app = await startAppliance(t, lab, { dhcp: { mode: 'proxy', interface: 'br0' } });
    for (const [firmware, mac] of [
      ['bios', '52:54:00:b7:01:01'],
      ['uefi', '52:54:00:b7:01:02'],
    ] as const) {
      const r = await bootMachine(lab, { firmware, mac, tap: lab.addTap(), marker: MARKER, timeoutMs: 150_000 });
      t.ok(r.ok, `${firmware}: booted to the marker in ${r.ms} ms`);
      if (!r.ok) t.comment(r.console.slice(-3000));
      const replies = app.find('dhcp reply', { mac });
      t.ok(replies.length > 0, `${firmware}: we answered`);
      t.ok(
        replies.every((l) => l.yiaddr === '0.0.0.0'),
        `${firmware}: never an address from us (${replies.length} replies)`,
      );
      t.ok(app.find('ipxe script', { mac, script: 'discover' }).length, `${firmware}: per-host script fetched`);
      t.match(r.console, /10\.78\.0\.1\d\d/, `${firmware}: address from the site pool (server ${site.ip})`);
    }
    t.ok(
      app.find('tftp transfer done', { file: 'snponly.efi' }).length,
      'uefi: snponly.efi over TFTP after the proxy/4011 exchange',
    );
  },
);
