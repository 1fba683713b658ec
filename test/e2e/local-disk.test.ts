import { existsSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../src/paths.js';
import { fullDhcp, makeLab, skipUnlessCi, startAppliance } from '../helpers/lab.js';
import { bootMachine } from '../lab/qemu.js';

const disk = path.join(repoRoot, 'assets/demo/local-disk.img');
const MARKER = /BESKAR7-LOCAL-DISK-MARKER/;

t.test(
  'leaving network boot: a provisioned host and an unknown host reach their local disk, BIOS and UEFI, no retry loop',
  { skip: skipUnlessCi(!existsSync(disk), 'run `bash assets/build-local-disk.sh` first') },
  async (t) => {
    t.setTimeout(600_000);
    const lab = makeLab(t, '10.79.0');
    const provisioned = { bios: '52:54:00:b7:0d:01', uefi: '52:54:00:b7:0d:02' };
    // what the orchestrator stores for a Provisioned host's MACs; every other MAC is unknown and told to exit
    const localDisk = { script: 'local-disk', localDiskMethod: 'exit' };
    const app = await startAppliance(t, lab, {
      ...fullDhcp(lab),
      hosts: { [provisioned.bios]: localDisk, [provisioned.uefi]: localDisk },
      unknownHosts: { script: 'exit' },
    });
    const machines = [
      ['bios', provisioned.bios, 'local-disk-exit'],
      ['uefi', provisioned.uefi, 'local-disk-exit'],
      ['bios', '52:54:00:b7:0d:03', 'exit'],
      ['uefi', '52:54:00:b7:0d:04', 'exit'],
    ] as const;
    for (const [firmware, mac, script] of machines) {
      const r = await bootMachine(lab, {
        firmware,
        mac,
        tap: lab.addTap(),
        marker: MARKER,
        localDisk: disk,
        timeoutMs: 150_000,
      });
      t.ok(r.ok, `${firmware} ${script}: the local disk booted after network boot, in ${r.ms} ms`);
      if (!r.ok) t.comment(r.console.slice(-3000));
      t.notMatch(r.console, /retrying in 10 s/, `${firmware} ${script}: no retry loop`);
      // OVMF tries each of its network boot options (PXE, then HTTP boot) before the disk: one script each
      const scripts = app.find('ipxe script', { mac });
      const most = firmware === 'bios' ? 1 : 2;
      t.ok(
        scripts.length >= 1 && scripts.length <= most,
        `${firmware} ${script}: ${scripts.length} host script(s), then the disk`,
      );
      t.ok(
        scripts.every((l) => l.script === script),
        `${firmware}: every answer was ${script}`,
      );
    }
  },
);
