// A fake BMC as its own process, run inside a lab namespace: its power actions start, restart and stop a
// real QEMU machine on a tap device of that namespace. Prints "listening <url>" when ready.
// usage: node --import tsx test/lab/fake-bmc/cli.ts '<json>'   json: { port, address, macs, machine: MachineSpec w/o marker, consoleLog }
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stopProcess } from '../netns.js';
import { type MachineSpec, qemuArgs, qemuBinary } from '../qemu.js';
import { FakeBmc, type Personality } from './server.js';

const cfg = JSON.parse(process.argv[2] as string) as {
  address: string;
  port: number;
  machine: Omit<MachineSpec, 'marker'>;
  consoleLog: string;
  personality?: Personality;
};
let vm: ChildProcess | undefined;
const out = createWriteStream(cfg.consoleLog, { flags: 'a' });
// the machine's disks and firmware variables: kept across power cycles, as a server keeps them
const tmp = mkdtempSync(path.join(tmpdir(), 'b7-bmc-vm-'));

async function stopVm(): Promise<void> {
  const p = vm;
  vm = undefined;
  if (p) await stopProcess(p);
}

const bmc = new FakeBmc({
  macs: [cfg.machine.mac],
  // what a server's BMC says of its firmware: enforcing with Microsoft's keys, or not, or (BIOS) nothing
  ...(cfg.machine.firmware === 'bios' ? {} : { secureBoot: cfg.machine.firmware === 'uefi-secureboot' }),
  personality: cfg.personality ?? {},
  onPower: (ev) => {
    void stopVm().then(() => {
      if (ev === 'off') return;
      out.write(`\n=== fake BMC: power ${ev} ===\n`);
      vm = spawn(qemuBinary(cfg.machine), qemuArgs(cfg.machine, tmp), { stdio: ['ignore', 'pipe', 'pipe'] });
      vm.stdout?.pipe(out, { end: false });
      vm.stderr?.pipe(out, { end: false });
      // a machine that powers itself off shows Off on the BMC
      vm.once('exit', () => {
        if (bmc.power === 'On') bmc.power = 'Off';
      });
    });
  },
});
process.stdout.write(`listening ${await bmc.start(cfg.address, cfg.port)}\n`);
process.on(
  'SIGTERM',
  () =>
    void stopVm().then(() => {
      rmSync(tmp, { recursive: true, force: true });
      process.exit(0);
    }),
);
