// Inspection benchmark: one BIOS and one UEFI QEMU machine through the whole chain, with the time each stage
// took, read from the appliance's own log lines and events. `make bench-inspection`.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { addHost, addMachine, HOSTS } from '../helpers/resources.js';
import { ApplianceProcess } from '../lab/appliance-process.js';
import { labApi, labKube, startLabBmc } from '../lab/lab-api.js';
import { Lab } from '../lab/netns.js';

const ADMIN = 'bench-admin-token-0123456789';
const work = mkdtempSync(path.join(tmpdir(), 'b7bench-insp-'));
const lab = new Lab('b7benchi', '10.91.0').up();
lab.startRouterAdvertisements();
const http = `http://${lab.serverIp}:8080`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const api = (method: string, p: string, body?: unknown) => labApi(lab, http, ADMIN, method, p, body);
const kube = labKube(lab, http, ADMIN);

const t = (iso: unknown) => Date.parse(String(iso));

try {
  const app = new ApplianceProcess(
    lab,
    {
      dataDir: path.join(work, 'data'),
      advertiseAddress: lab.serverIp,
      http: { address: lab.serverIp, port: 8080 },
      dhcp: {
        mode: 'full',
        interface: 'br0',
        full: { poolStart: '10.91.0.100', poolEnd: '10.91.0.199', router: lab.serverIp },
      },
      api: { adminToken: ADMIN },
      orchestrator: { tickSeconds: 0.5, powerDeadlineSeconds: 30 },
    },
    work,
  );
  await app.start();
  const rows: [string, string, string][] = [];
  let port = 9101;
  for (const firmware of ['bios', 'uefi'] as const) {
    const mac = firmware === 'bios' ? '52:54:00:be:00:01' : '52:54:00:be:00:02';
    const consoleLog = path.join(work, `${firmware}.console`);
    await startLabBmc(lab, {
      address: lab.serverIp,
      port,
      consoleLog,
      machine: { firmware, mac, tap: lab.addTap(), memoryMB: 1024, smp: '2', disksGB: [4] },
    });
    await addHost(kube, {
      name: `b-${firmware}`,
      spec: {
        redfish: {
          address: `http://${lab.serverIp}:${port++}`,
          username: 'admin',
          password: 'secret',
          allowPlainHttp: true,
        },
      },
    });
    while ((await kube('GET', `${HOSTS}/b-${firmware}`)).json.status.state !== 'Available') await sleep(200);
    await addMachine(kube, {
      name: `m-${firmware}`,
      spec: {
        inspectionImageURL: `${http}/assets/inspector`,
        targetImageURL: `${http}/assets/demo/target.tar.gz`,
        hostSelector: { matchLabels: {} },
      },
    });
    const deadline = Date.now() + 300_000;
    let markerAt = 0;
    while (Date.now() < deadline) {
      if (/BESKAR7-DEMO-MARKER/.test(readFileSync(consoleLog, 'latin1'))) {
        markerAt = Date.now();
        break;
      }
      await sleep(100);
    }
    const events = (
      (await api('GET', '/journal?limit=1000')).items as { at: string; kind: string; host?: string; message: string }[]
    ).filter((e) => e.host === `b-${firmware}`);
    const ev = (kind: string, re = /./) => t(events.find((e) => e.kind === kind && re.test(e.message))?.at);
    const logs = app.logs.filter((l) => l.mac === mac || l.msg === 'tftp transfer done' || l.msg === 'asset served');
    const lg = (msg: string, f: (l: Record<string, unknown>) => boolean = () => true) =>
      t(logs.find((l) => l.msg === msg && f(l))?.time);
    const powerOn = ev('PowerOn');
    const firstOffer = lg('dhcp reply', (l) => l.reply === 'offer');
    const scriptAt = lg('ipxe script');
    const lastAckBeforeScript = t(
      logs.filter((l) => l.msg === 'dhcp reply' && l.reply === 'ack' && t(l.time) <= scriptAt).at(-1)?.time,
    );
    const initrdServed = lg(
      'asset served',
      (l) => String(l.path).endsWith('/inspector/initrd') && t(l.time) >= powerOn,
    );
    const net = ev('InspectorStep', /^network/);
    const report = ev('ReportReceived');
    const kexec = ev('InspectorStep', /^kexec/);
    const stages: [string, number, number][] = [
      ['firmware to DHCP offer', powerOn, firstOffer],
      [
        firmware === 'uefi' ? 'DHCP + TFTP snponly.efi + iPXE DHCP' : 'DHCP (ROM iPXE)',
        firstOffer,
        lastAckBeforeScript,
      ],
      ['script fetched', lastAckBeforeScript, scriptAt],
      ['kernel fetched, initrd requested', scriptAt, initrdServed],
      ['initrd transfer, boot to network', initrdServed, net],
      ['inspection + report', net, report],
      ['target download + kexec', report, kexec],
      ['target kernel to marker', kexec, markerAt],
      ['total (power-on to target)', powerOn, markerAt],
    ];
    for (const [name, a, b] of stages)
      rows.push([
        firmware,
        name,
        Number.isFinite(a) && Number.isFinite(b) && b >= a ? ((b - a) / 1000).toFixed(2) : 'n/a',
      ]);
  }
  console.log('stage costs, seconds (QEMU TCG, no KVM; 2 cores shared with the appliance):');
  for (const [fw, name, s] of rows) console.log(`  ${fw.padEnd(5)} ${name.padEnd(34)} ${s.padStart(7)}`);
  await app.stop();
} finally {
  await lab.down();
  rmSync(work, { recursive: true, force: true });
}
