import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Lab, stopProcess } from './netns.js';

export interface MachineSpec {
  /**
   * uefi-secureboot: OVMF enforcing Secure Boot with Microsoft's keys enrolled, as servers ship; aarch64: an ARM64
   * server (QEMU virt, AAVMF)
   */
  firmware: 'bios' | 'uefi' | 'uefi-secureboot' | 'aarch64';
  mac: string;
  tap: string;
  /** stop as soon as the serial console shows this */
  marker: RegExp;
  timeoutMs?: number;
  memoryMB?: number;
  cpus?: number;
  /** full -smp value, e.g. "2,sockets=2,cores=1,threads=1" */
  smp?: string;
  serial?: string;
  /** disks to attach, in GiB (sparse files, deleted afterwards) */
  disksGB?: number[];
  /** a bootable disk image, second in the boot order after the network (attached read-only via a snapshot) */
  localDisk?: string;
  /** a reboot restarts the machine, as a server's does (default: QEMU exits) */
  reboots?: boolean;
  /**
   * An IPv6-only segment (OVMF): the firmware's IPv4 boot options are switched off (each costs ~60 s there), and
   * it boots by PXEv6, or by HTTPv6 with its IPv4 stack off
   */
  ipv6?: 'pxe' | 'http';
}

export interface BootResult {
  ok: boolean;
  ms: number;
  console: string;
}

const OVMF = {
  uefi: { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/usr/share/OVMF/OVMF_VARS_4M.fd' },
  'uefi-secureboot': {
    code: '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd',
    vars: '/usr/share/OVMF/OVMF_VARS_4M.ms.fd',
  },
  aarch64: { code: '/usr/share/AAVMF/AAVMF_CODE.fd', vars: '/usr/share/AAVMF/AAVMF_VARS.fd' },
};

/** The QEMU that runs this machine. */
export const qemuBinary = (m: Pick<MachineSpec, 'firmware'>): string =>
  m.firmware === 'aarch64' ? 'qemu-system-aarch64' : 'qemu-system-x86_64';

/**
 * QEMU arguments for a network-booting machine; disks and OVMF variables go into `tmp`, and are
 * kept there when it holds them already (a machine powered on again keeps its disks).
 */
export function qemuArgs(m: Omit<MachineSpec, 'marker'>, tmp: string): string[] {
  // TCG's default CPUs are AMD without topology extensions, so Linux shows SMT threads as cores; an Intel
  // vendor makes it read the -smp topology from CPUID leaf 0xB
  const args = [
    '-accel',
    'tcg',
    '-cpu',
    m.firmware === 'aarch64' ? 'cortex-a57' : 'max,vendor=GenuineIntel',
    '-m',
    String(m.memoryMB ?? 512),
    '-smp',
    m.smp ?? String(m.cpus ?? 1),
    '-nographic',
    ...(m.reboots ? [] : ['-no-reboot']),
    '-serial',
    'mon:stdio',
    '-smbios',
    `type=1,serial=${m.serial ?? 'B7-E2E'},manufacturer=Beskar7Lab,product=QEMU-E2E`,
    '-netdev',
    `tap,id=n0,ifname=${m.tap},script=no,downscript=no`,
  ];
  // with disks the order comes from bootindex (network first, then the disks); SeaBIOS and OVMF honour it
  const nic = m.localDisk || m.disksGB?.length ? ',bootindex=1' : '';
  if (m.localDisk) {
    args.push('-drive', `if=none,id=ld,file=${m.localDisk},format=raw,snapshot=on`);
    args.push('-device', 'virtio-blk-pci,drive=ld,bootindex=2');
  } else if (!nic) args.push('-boot', 'n');
  if (m.firmware === 'bios') {
    args.push('-machine', 'pc', '-device', `virtio-net-pci,netdev=n0,mac=${m.mac}${nic}`);
  } else {
    const fw = OVMF[m.firmware];
    if (!existsSync(path.join(tmp, 'vars.fd'))) copyFileSync(fw.vars, path.join(tmp, 'vars.fd'));
    // Secure Boot needs SMM, and the variable store writable only from it, or the firmware would not enforce it
    if (m.firmware === 'uefi-secureboot') args.push('-global', 'driver=cfi.pflash01,property=secure,value=on');
    args.push(
      '-machine',
      m.firmware === 'aarch64' ? 'virt' : m.firmware === 'uefi-secureboot' ? 'q35,smm=on' : 'q35',
      '-drive',
      `if=pflash,format=raw,unit=0,readonly=on,file=${fw.code}`,
      '-drive',
      `if=pflash,format=raw,unit=1,file=${path.join(tmp, 'vars.fd')}`,
      '-device',
      `virtio-net-pci,netdev=n0,mac=${m.mac},romfile=${nic}`,
    );
  }
  const knob = (name: string, v: string) => ['-fw_cfg', `name=opt/org.tianocore/${name},string=${v}`];
  if (m.ipv6) args.push(...knob('IPv4PXESupport', 'n'));
  // OVMF's HTTPv6 boot fails at once when it starts before the IPv6 stack settles: a boot-menu wait gives it time
  if (m.ipv6 === 'http')
    args.push(...knob('IPv6PXESupport', 'n'), ...knob('IPv4Support', 'n'), '-boot', 'menu=on,splash-time=5000');
  (m.disksGB ?? []).forEach((gb, i) => {
    const f = path.join(tmp, `disk${i}.raw`);
    if (!existsSync(f)) {
      writeFileSync(f, '');
      truncateSync(f, gb * 2 ** 30); // sparse
    }
    args.push(
      '-drive',
      `if=none,id=d${i},file=${f},format=raw`,
      '-device',
      `virtio-blk-pci,drive=d${i},serial=B7DISK${i},bootindex=${i + 3}`,
    );
  });
  return args;
}

/**
 * Boots a QEMU (TCG) machine from the network inside the lab: SeaBIOS with QEMU's iPXE ROM, or OVMF with its
 * own UEFI PXE (ROM disabled), so the firmware's PXE client is what talks to our DHCP and TFTP.
 */
export async function bootMachine(lab: Lab, m: MachineSpec): Promise<BootResult> {
  const tmp = mkdtempSync(path.join(tmpdir(), 'b7-qemu-'));
  const args = qemuArgs(m, tmp);
  const started = Date.now();
  const p = spawn('ip', ['netns', 'exec', lab.ns, qemuBinary(m), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const done = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), m.timeoutMs ?? 120_000);
    const onData = (c: Buffer) => {
      out += c.toString('latin1');
      if (m.marker.test(out)) {
        clearTimeout(timer);
        resolve(true);
      }
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', onData);
    p.once('exit', () => {
      clearTimeout(timer);
      resolve(m.marker.test(out));
    });
  });
  const ok = await done;
  const ms = Date.now() - started;
  await stopProcess(p);
  rmSync(tmp, { recursive: true, force: true });
  return { ok, ms, console: out };
}
