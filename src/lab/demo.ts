// The demo lab: with no real network configured, `make run` starts the appliance inside a private network
// namespace (bridge 10.77.0.1/24, full DHCP), boots one BIOS and one UEFI QEMU machine through it to the demo
// image, and keeps serving until Ctrl-C. Needs root (network namespaces) and the packages test/setup-host.sh installs.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../paths.js';
import { ApplianceProcess } from './appliance-process.js';
import { Lab } from './netns.js';
import { bootMachine } from './qemu.js';

const say = (s: string) => process.stderr.write(`[demo] ${s}\n`);
const lab = new Lab('beskar7-demo').up();
lab.startRouterAdvertisements();
const dir = path.join(repoRoot, 'data', 'demo');
mkdirSync(dir, { recursive: true });
const http = `http://${lab.serverIp}:8080`;
const app = new ApplianceProcess(
  lab,
  {
    dataDir: path.join(dir, 'data'),
    advertiseAddress: lab.serverIp,
    http: { address: lab.serverIp, port: 8080 },
    tftp: { port: 69 },
    dhcp: {
      mode: 'full',
      interface: 'br0',
      full: { poolStart: '10.77.0.100', poolEnd: '10.77.0.199', router: lab.serverIp },
    },
    unknownHosts: {
      script: 'discover',
      kernelURL: `${http}/assets/demo/vmlinuz`,
      initrdURL: `${http}/assets/demo/initrd.gz`,
      cmdline: 'console=ttyS0 panic=-1 quiet',
    },
  },
  dir,
  true,
);

let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    await app.stop();
    await lab.down();
    say('lab removed');
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

try {
  await app.start();
  say(`appliance up in network namespace ${lab.ns}: DHCP (full) + TFTP on br0, HTTP ${http}`);
  for (const [firmware, mac] of [
    ['bios', '52:54:00:de:00:01'],
    ['uefi', '52:54:00:de:00:02'],
  ] as const) {
    say(`booting a QEMU ${firmware} machine (${mac}) from the network...`);
    const r = await bootMachine(lab, {
      firmware,
      mac,
      tap: lab.addTap(),
      marker: /BESKAR7-DEMO-MARKER[^\n]*/,
      timeoutMs: 180_000,
    });
    say(
      r.ok
        ? `${firmware} machine booted the demo image in ${(r.ms / 1000).toFixed(1)} s: ${/BESKAR7-DEMO-MARKER[^\n]*/.exec(r.console)?.[0].trim()}`
        : `${firmware} machine did not boot; last console output:\n${r.console.slice(-2000)}`,
    );
  }
  say(`still serving; try: ip netns exec ${lab.ns} curl -s ${http}/healthz   (Ctrl-C stops and removes the lab)`);
} catch (e) {
  say(`failed: ${(e as Error).message}`);
  await shutdown(1);
}
