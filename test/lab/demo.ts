// The demo lab (`make run` without CONFIG): the whole mission in a private network namespace. Four QEMU machines
// behind fake Redfish BMCs (BIOS, UEFI, UEFI with Secure Boot enforced, and one too small for its machine) are
// enrolled as hosts; four machines claim them; each host gets a one-time PXE override and is powered on, PXE-boots
// the inspector through our DHCP/TFTP/HTTP (the Secure Boot one through shim and Debian's signed GRUB), reports,
// and is validated. Those that fit get their target (kexec, or a whole-disk image); the small one fails
// RequirementsNotMet and is powered off. Needs root and the packages test/setup-host.sh installs.
// DEMO_EXIT=1 ends the demo after its table (the end-to-end test); otherwise it serves until Ctrl-C.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../src/paths.js';
import * as resources from '../helpers/resources.js';
import { ApplianceProcess, builtCommand } from './appliance-process.js';
import { labApi, labKube, labRedfish, startLabBmc } from './lab-api.js';
import { Lab, stopProcess } from './netns.js';

const say = (s: string) => process.stdout.write(`[demo] ${s}\n`);
const DASHBOARD_PORT = Number(process.env.DEMO_PORT ?? 8080);
const T0 = Date.now();

interface DemoHost {
  host: string;
  machine: string;
  firmware: 'bios' | 'uefi' | 'uefi-secureboot';
  mac: string;
  memoryMB: number;
  minMemoryGB: number;
  /** kexec a tar.gz, or write a whole-disk image and reboot into it */
  target: 'kexec' | 'disk';
}

/** The appliance's API, called from inside the lab; answers are parsed JSON. */
type Api = (method: string, p: string, body?: unknown) => ReturnType<typeof labApi>;

const HOSTS: DemoHost[] = [
  {
    host: 'rack1-bios',
    machine: 'web-1',
    firmware: 'bios',
    mac: '52:54:00:de:00:01',
    memoryMB: 2048,
    minMemoryGB: 1,
    target: 'kexec',
  },
  {
    host: 'rack1-uefi',
    machine: 'web-2',
    firmware: 'uefi',
    mac: '52:54:00:de:00:02',
    memoryMB: 2048,
    minMemoryGB: 1,
    target: 'disk',
  },
  {
    host: 'rack1-secure',
    machine: 'web-3',
    firmware: 'uefi-secureboot',
    mac: '52:54:00:de:00:04',
    memoryMB: 1024,
    minMemoryGB: 1,
    target: 'kexec',
  },
  {
    host: 'rack1-small',
    machine: 'db-1',
    firmware: 'bios',
    mac: '52:54:00:de:00:03',
    memoryMB: 1024,
    minMemoryGB: 4,
    target: 'kexec',
  },
];

const lab = new Lab('beskar7-demo').up();
lab.startRouterAdvertisements();
const dir = path.join(repoRoot, 'data', 'demo');
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const dataDir = path.join(dir, 'data');
const http = `http://${lab.serverIp}`;
const app = new ApplianceProcess(
  lab,
  {
    dataDir,
    logLevel: 'warn',
    dhcp: {
      mode: 'full',
      interface: 'br0',
      probeSeconds: 1,
      full: { poolStart: '10.77.0.100', poolEnd: '10.77.0.199', router: lab.serverIp },
    },
    unknownHosts: { script: 'exit' },
    orchestrator: { tickSeconds: 1, inspectionTimeoutSeconds: 600, powerDeadlineSeconds: 30 },
  },
  dir,
  false,
  // what the package runs: the compiled service with the unit's node flags (make run builds it)
  builtCommand,
);
let forwarder: ChildProcess | undefined;

let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    if (forwarder) await stopProcess(forwarder);
    await app.stop();
    await lab.down();
    say('lab removed');
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

/** 127.0.0.1:8080 on this machine reaches the appliance's HTTP port inside the lab (one socat per connection). */
function forwardDashboard(): ChildProcess {
  // socat reads ':' inside an EXEC address as its own separator: escaped
  const inside = `ip netns exec ${lab.ns} socat STDIO TCP\\:${lab.serverIp}\\:80`;
  return spawn('socat', [`TCP-LISTEN:${DASHBOARD_PORT},bind=127.0.0.1,fork,reuseaddr`, `EXEC:${inside}`], {
    stdio: 'ignore',
  });
}

async function main(): Promise<void> {
  await app.start(30_000);
  const token = readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
  const api = (method: string, p: string, body?: unknown) => labApi(lab, http, token, method, p, body);
  const kube = labKube(lab, http, token);
  forwarder = forwardDashboard();
  say(`appliance up in network namespace ${lab.ns}: full DHCP, TFTP and HTTP on ${lab.serverIp}`);
  say(`dashboard: http://127.0.0.1:${DASHBOARD_PORT}/ui   admin token: ${path.join(dataDir, 'admin-token')}`);
  await enrol(kube);
  // the user-data a whole-disk deployment puts into the image's COS_OEM partition (Cluster API's bootstrap secret)
  await kube('POST', resources.SECRETS, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'web-join', namespace: 'default' },
    stringData: { value: '#cloud-config\nhostname: web-2\n' },
  });
  for (const h of HOSTS) {
    const target =
      h.target === 'disk'
        ? { targetImageURL: `${http}/assets/demo/disk.img.zst`, bootstrap: { dataSecretName: 'web-join' } }
        : {
            targetImageURL: `${http}/assets/demo/target.tar.gz`,
            configurationURL: `${http}/assets/demo/target.cmdline`,
          };
    await resources.addMachine(kube, {
      name: h.machine,
      spec: {
        inspectionImageURL: `${http}/assets/inspector`,
        ...target,
        hardwareRequirements: { minCPUCores: 1, minMemoryGB: h.minMemoryGB, minDiskGB: 4 },
        hostSelector: { matchLabels: { demo: h.host } },
      },
    });
    const what = h.target === 'disk' ? 'a whole-disk image written to its disk' : 'a kexec target';
    say(`machine ${h.machine} created: wants ${h.minMemoryGB} GiB memory, a host labelled demo=${h.host}, ${what}`);
  }
  await narrate(api, kube);
  printTable(await api('GET', '/journal?limit=1000'), (await kube('GET', resources.HOSTS)).json.items);
  if (process.env.DEMO_EXIT === '1') return shutdown(0);
  say(`still serving: http://127.0.0.1:${DASHBOARD_PORT}/ui (Ctrl-C stops and removes the lab)`);
}

/** Four fake BMCs, each powering a QEMU machine, enrolled as hosts. */
async function enrol(kube: resources.Request): Promise<void> {
  for (const [i, h] of HOSTS.entries()) {
    const port = 9001 + i;
    await startLabBmc(lab, {
      address: lab.serverIp,
      port,
      consoleLog: path.join(dir, `${h.host}.console`),
      machine: {
        firmware: h.firmware,
        mac: h.mac,
        memoryMB: h.memoryMB,
        disksGB: [8],
        reboots: true,
        tap: lab.addTap(),
      },
      personality: h.firmware === 'uefi' ? { requireIfMatch: true } : {},
    });
    await resources.addHost(kube, {
      name: h.host,
      spec: {
        redfish: labRedfish(lab, port),
        labels: { demo: h.host },
      },
    });
    const fw = h.firmware === 'uefi-secureboot' ? 'UEFI (Secure Boot enforced)' : h.firmware.toUpperCase();
    say(`host ${h.host}: a ${fw} QEMU machine with ${h.memoryMB} MB behind a Redfish BMC`);
  }
}

/** Prints each workflow event as it happens, until every machine is Provisioned or Failed. */
async function narrate(api: Api, kube: resources.Request): Promise<void> {
  const seen = new Set<string>();
  const running = new Set<string>();
  for (;;) {
    const { items } = await api('GET', '/journal?limit=1000');
    for (const e of items as { at: string; kind: string; host?: string; machine?: string; message: string }[]) {
      const key = `${e.at}${e.kind}${e.host}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const t = ((Date.parse(e.at) - T0) / 1000).toFixed(1).padStart(6);
      say(`${t} s  ${(e.machine ?? '').padEnd(6)} ${(e.host ?? '').padEnd(12)} ${e.kind}: ${e.message}`);
    }
    for (const h of HOSTS) {
      const file = path.join(dir, `${h.host}.console`);
      const c = existsSync(file) ? readFileSync(file, 'latin1') : '';
      if (!running.has(h.host) && /BESKAR7-DEMO-MARKER/.test(c)) {
        running.add(h.host);
        say(`${h.host} runs its target OS: ${/BESKAR7-DEMO-MARKER[^\n]*/.exec(c)?.[0].trim()}`);
      }
      if (!running.has(h.host) && /BESKAR7-DISK-MARKER/.test(c)) {
        running.add(h.host);
        say(`${h.host} rebooted into its installed system: ${/BESKAR7-DISK-MARKER[^\n]*/.exec(c)?.[0].trim()}`);
      }
    }
    const machines = (await kube('GET', resources.MACHINES)).json.items as { status: { phase: string } }[];
    const settled = machines.every((m) => m.status.phase === 'Provisioned' || m.status.phase === 'Failed');
    const provisioned = machines.filter((m) => m.status.phase === 'Provisioned').length;
    if (settled && running.size >= provisioned) return;
    if (Date.now() - T0 > 900_000) throw new Error('the machines did not settle within 15 minutes');
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const STAGES = ['Claimed', 'PowerOn', 'CredentialClaimed', 'ReportReceived', 'Ready|RequirementsNotMet', 'Provisioned'];

/** Seconds from the machine's creation to each stage, and how it ended. */
function printTable(
  { items }: { items: { at: string; kind: string; machine?: string; host?: string }[] },
  hosts: { metadata: { name: string }; status: { observedPowerState?: string } }[],
): void {
  const head = [
    'MACHINE',
    'HOST',
    'CLAIMED',
    'POWER ON',
    'CLAIM',
    'REPORT',
    'VERDICT',
    'PROVISIONED',
    'OUTCOME',
    'POWER',
  ];
  const rows = HOSTS.map((h) => {
    const mine = items.filter((e) => e.machine === h.machine || (e.host === h.host && !e.machine));
    const t0 = Date.parse(mine.find((e) => e.kind === 'MachineCreated')?.at ?? '');
    const at = (kinds: string) => {
      const e = mine.find((x) => new RegExp(`^(${kinds})$`).test(x.kind) && (x.host === h.host || !x.host));
      return e ? `${((Date.parse(e.at) - t0) / 1000).toFixed(1)} s` : '-';
    };
    const outcome = mine.some((e) => e.kind === 'Provisioned')
      ? 'Provisioned'
      : mine.some((e) => e.kind === 'RequirementsNotMet')
        ? 'Failed: RequirementsNotMet'
        : 'unfinished';
    const power = hosts.find((x) => x.metadata.name === h.host)?.status.observedPowerState ?? '-';
    return [h.machine, h.host, ...STAGES.map(at), outcome, power];
  });
  const width = head.map((_, i) => Math.max(...[head, ...rows].map((r) => (r[i] ?? '').length)));
  say('');
  for (const r of [head, ...rows])
    say(
      r
        .map((c, i) => c.padEnd(width[i] ?? 0))
        .join('  ')
        .trimEnd(),
    );
}

main().catch(async (e: Error) => {
  say(`failed: ${e.message}`);
  await shutdown(1);
});
