// Whole-disk deploy speed: a 1 GiB image (GPT, ESP, an empty ext4 filesystem: assets/build-disk-image.sh) written
// to a QEMU machine's disk by the inspector's own pipeline (download, sha256 on the way, decompression, dd) as
// raw, gzip and zstd, against `wget | dd` of the raw image in the same VM: the limit. The machine boots the
// inspector's kernel and initramfs with test/bench/deploy-init.sh laid over it as /init; the appliance serves
// the images. Bytes on the wire are the HTTP bodies (the files' sizes); seconds are measured in the guest.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../src/paths.js';
import { ApplianceProcess } from '../lab/appliance-process.js';
import { type Lab, stopProcess } from '../lab/netns.js';
import { median } from './peers.js';

const CASES = ['wget-dd', 'raw', 'gz', 'zst'] as const;
type Case = (typeof CASES)[number];
const FILE: Record<Case, string> = { 'wget-dd': '', raw: '', gz: '.gz', zst: '.zst' };

export interface DeployResult {
  imageMiB: number;
  runs: number;
  /** per case: median seconds in the guest, bytes on the wire */
  cases: Record<Case, { seconds: number; all: number[]; bytes: number }>;
}

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

export async function deployBench(lab: Lab, work: string, runs: number, sizeMiB = 1024): Promise<DeployResult> {
  const demo = path.join(repoRoot, 'assets/demo');
  const image = `disk-${sizeMiB}m.img`;
  execFileSync('bash', [path.join(repoRoot, 'assets/build-disk-image.sh'), demo, String(sizeMiB)], { stdio: 'ignore' });
  const bytes = Object.fromEntries(CASES.map((c) => [c, statSync(path.join(demo, image + FILE[c])).size])) as Record<
    Case,
    number
  >;
  const want: Record<string, string> = {};
  for (const c of ['raw', 'gz', 'zst'] as const) want[c] = `sha256:${await sha256(path.join(demo, image + FILE[c]))}`;

  // the inspector's initramfs with the bench's /init appended: the kernel unpacks both, the later file wins
  const overlay = path.join(work, 'overlay');
  mkdirSync(overlay, { recursive: true });
  execFileSync('install', ['-m', '0755', path.join(repoRoot, 'test/bench/deploy-init.sh'), path.join(overlay, 'init')]);
  const over = execFileSync('sh', ['-c', 'find . | cpio -o -H newc 2>/dev/null | gzip -1'], { cwd: overlay });
  const initrd = path.join(work, 'initrd.bench');
  writeFileSync(initrd, Buffer.concat([readFileSync(path.join(repoRoot, 'assets/inspector/initrd')), over]));
  const disk = path.join(work, 'bench-disk.raw');
  writeFileSync(disk, '');
  truncateSync(disk, (sizeMiB + 512) * 2 ** 20);

  const app = new ApplianceProcess(
    lab,
    {
      dataDir: path.join(work, 'deploy-data'),
      advertiseAddress: lab.serverIp,
      http: { address: lab.serverIp, port: 8080 },
      dhcp: {
        mode: 'full',
        interface: 'br0',
        full: { poolStart: `${lab.prefix}.100`, poolEnd: `${lab.prefix}.199`, router: lab.serverIp },
      },
    },
    work,
  );
  await app.start();
  const out: string[] = [];
  try {
    const append = [
      'console=ttyS0',
      'quiet',
      `bench.base=http://${lab.serverIp}:8080/assets/demo`,
      `bench.image=${image}`,
      `bench.runs=${runs}`,
      `bench.bytes=${bytes.raw}`,
    ].join(' ');
    const vm = lab.spawn(lab.ns, 'qemu-system-x86_64', [
      ...['-machine', 'accel=kvm:tcg', '-cpu', 'max', '-m', '1024', '-smp', '2', '-nographic', '-no-reboot'],
      ...['-kernel', path.join(repoRoot, 'assets/inspector/vmlinuz'), '-initrd', initrd, '-append', append],
      ...['-netdev', `tap,id=n0,ifname=${lab.addTap()},script=no,downscript=no`],
      ...['-device', 'virtio-net-pci,netdev=n0,mac=52:54:00:9d:00:01'],
      ...['-drive', `if=none,id=d0,file=${disk},format=raw`, '-device', 'virtio-blk-pci,drive=d0'],
    ]);
    await new Promise<void>((resolve, reject) => {
      let text = '';
      const timer = setTimeout(
        () => reject(new Error(`deploy bench: no BENCH-DONE:\n${text.slice(-3000)}`)),
        runs * 1_200_000,
      );
      vm.stderr?.on('data', (c: Buffer) => {
        text += c.toString('latin1');
      });
      vm.stdout?.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        const lines = text.split('\n');
        text = lines.pop() ?? '';
        for (const l of lines) {
          if (l.startsWith('BENCH')) out.push(l.trim());
          if (l.startsWith('BENCH-DONE') || l.startsWith('BENCH-ERROR')) {
            clearTimeout(timer);
            resolve();
          }
        }
      });
      vm.once('exit', () => {
        clearTimeout(timer);
        if (!out.some((l) => l.startsWith('BENCH-DONE')))
          reject(new Error(`deploy bench: the VM stopped:\n${text.slice(-3000)}`));
        resolve();
      });
    });
    await stopProcess(vm);
  } finally {
    await app.stop();
  }
  const cases = {} as DeployResult['cases'];
  for (const c of CASES) {
    const all: number[] = [];
    for (const l of out.filter((x) => x.startsWith(`BENCH case=${c} `))) {
      const m = /rc=(\d+) seconds=([\d.]+) digest=(\S*)/.exec(l);
      if (m?.[1] !== '0') throw new Error(`deploy bench: ${l}`);
      if (c !== 'wget-dd' && m[3] !== want[c])
        throw new Error(`deploy bench: ${c} hashed ${m[3]}, the file is ${want[c]}`);
      all.push(Number(m[2]));
    }
    if (all.length !== runs)
      throw new Error(`deploy bench: ${all.length} runs of ${c}, want ${runs}:\n${out.join('\n')}`);
    cases[c] = { seconds: median(all), all, bytes: bytes[c] };
  }
  const onDisk = out.find((l) => l.startsWith('BENCH-DISK '))?.split(' ')[1];
  if (`sha256:${onDisk}` !== want.raw)
    throw new Error(`deploy bench: the disk holds ${onDisk}, the image is ${want.raw}`);
  return { imageMiB: sizeMiB, runs, cases };
}
