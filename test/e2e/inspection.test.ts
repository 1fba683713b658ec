import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../src/paths.js';
import { until } from '../helpers/appliance.js';
import { haveDemoImage, makeLab, skipUnlessCi, startForQemuHosts } from '../helpers/lab.js';
import { addHost, addMachine, HOSTS, MACHINES } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';
import { labApi, labKube, labRedfish, startLabBmc } from '../lab/lab-api.js';
import type { Lab } from '../lab/netns.js';

const haveInspector = existsSync(path.join(repoRoot, 'assets/inspector/initrd'));
const ADMIN = 'e2e-admin-token-0123456789';

const api = (lab: Lab, method: string, p: string, body?: unknown) =>
  labApi(lab, `http://${lab.serverIp}:8080`, ADMIN, method, p, body);
const kube = (lab: Lab) => labKube(lab, `http://${lab.serverIp}:8080`, ADMIN);
const get = async (lab: Lab, p: string) => (await kube(lab)('GET', p)).json;

t.test(
  'Machines through fake BMCs that power real QEMU machines: inspect, validate, kexec the target',
  { skip: skipUnlessCi(!(haveDemoImage && haveInspector), 'run `make setup` (demo image and inspector)') },
  async (t) => {
    t.setTimeout(900_000);
    const lab = makeLab(t, '10.86.0');
    const dir = tempDir(t);
    const http = `http://${lab.serverIp}:8080`;
    await startForQemuHosts(t, lab, ADMIN);
    const machines = {
      bios: {
        firmware: 'bios',
        mac: '52:54:00:e3:00:01',
        memoryMB: 2048,
        smp: '2,sockets=1,cores=1,threads=2',
        disksGB: [8, 2],
        serial: 'E2E-BIOS',
      },
      uefi: {
        firmware: 'uefi',
        mac: '52:54:00:e3:00:02',
        memoryMB: 1536,
        smp: '2,sockets=2,cores=1,threads=1',
        disksGB: [4],
        serial: 'E2E-UEFI',
      },
    } as const;
    const consoles: Record<string, string> = {};
    let port = 9001;
    for (const [name, m] of Object.entries(machines)) {
      consoles[name] = path.join(dir, `${name}.console`);
      const cfg = {
        address: lab.serverIp,
        port,
        consoleLog: consoles[name],
        machine: { ...m, tap: lab.addTap() },
        personality: name === 'uefi' ? { requireIfMatch: true, powerLagMs: 1500 } : { onceRevertsOnBoot: true },
      };
      await startLabBmc(lab, cfg);
      const created = await addHost(kube(lab), {
        name: `h-${name}`,
        spec: {
          redfish: labRedfish(lab, port),
          labels: { fw: name },
        },
      });
      t.equal(created.json.status.state, 'Enrolling', `h-${name} created`);
      port++;
    }
    for (const name of Object.keys(machines)) {
      const h = await until(`h-${name} Available`, async () => {
        const r = await get(lab, `${HOSTS}/h-${name}`);
        return r.status.state === 'Available' ? r : undefined;
      });
      t.same(h.status.nics, [{ mac: machines[name as keyof typeof machines].mac }], `h-${name}: MAC from the BMC`);
    }
    const target = readFileSync(path.join(repoRoot, 'assets/demo/target.tar.gz'));
    const digest = `sha256:${createHash('sha256').update(target).digest('hex')}`;
    const spec = (fw: string, req: Record<string, number>, inspector: string) => ({
      inspectionImageURL: inspector,
      targetImageURL: `${http}/assets/demo/target.tar.gz`,
      targetImageDigest: digest,
      configurationURL: `${http}/assets/demo/target.cmdline`,
      hardwareRequirements: req,
      hostSelector: { matchLabels: { fw } },
    });
    // the v1.0 form (an iPXE script to chain) and the contract's (a directory with vmlinuz and initrd)
    await addMachine(kube(lab), {
      name: 'm-pass',
      spec: spec('bios', { minCPUCores: 1, minMemoryGB: 2, minDiskGB: 8 }, `${http}/beskar7-inspector/boot`),
    });
    await addMachine(kube(lab), {
      name: 'm-fail',
      spec: spec('uefi', { minCPUCores: 1, minMemoryGB: 64, minDiskGB: 1 }, `${http}/assets/inspector`),
    });

    const pass = await until(
      'm-pass Provisioned',
      async () => {
        const r = await get(lab, `${MACHINES}/m-pass`);
        return r.status.phase === 'Provisioned' || r.status.phase === 'Failed' ? r : undefined;
      },
      400_000,
    );
    t.equal(pass.status.phase, 'Provisioned', `m-pass: ${pass.status.failureMessage ?? 'provisioned'}`);
    const rb = (await get(lab, `${HOSTS}/h-bios`)).status.inspectionReport;
    t.same(
      rb.cpus,
      { ...rb.cpus, count: 1, cores: 1, threads: 2 },
      'BIOS: 1 socket, 1 core, 2 threads (threads are not cores)',
    );
    t.equal(rb.memory.totalGB, 2, 'BIOS: 2048 MB given = 2 GB');
    t.same(
      rb.disks.map((d: { device: string; sizeGB: number }) => [d.device, d.sizeGB]),
      [
        ['/dev/vda', 8],
        ['/dev/vdb', 2],
      ],
      'BIOS: disk sizes',
    );
    t.equal(rb.bootMode, 'Legacy');
    t.equal(rb.serialNumber, 'E2E-BIOS');
    t.ok(
      rb.nics.some((n: { macAddress: string }) => n.macAddress === machines.bios.mac),
      'BIOS: boot NIC in the report',
    );
    await until(
      'target kernel marker',
      async () =>
        /BESKAR7-DEMO-MARKER[^\n]*beskar7\.provisioned=h-bios/.test(readFileSync(consoles.bios!, 'latin1'))
          ? true
          : undefined,
      200_000,
    );
    t.match(
      readFileSync(consoles.bios!, 'latin1'),
      /BESKAR7-DEMO-MARKER[^\n]*beskar7\.provisioned=h-bios config_url=http:\S+\/assets\/demo\/target\.cmdline beskar7\.config=http:\S+\/target\.cmdline/,
      'kexec into the target, which gets its configuration URL',
    );
    t.match(
      pass.status.conditions.find((c: { type: string }) => c.type === 'Provisioned'),
      { status: 'True' },
    );
    t.notOk(
      pass.status.conditions.some((c: { type: string }) => c.type === 'TargetDigestPinned'),
      'a pinned digest: no warning condition',
    );

    const fail = await until(
      'm-fail Failed',
      async () => {
        const r = await get(lab, `${MACHINES}/m-fail`);
        return r.status.phase === 'Failed' || r.status.phase === 'Provisioned' ? r : undefined;
      },
      400_000,
    );
    t.equal(fail.status.failureReason, 'RequirementsNotMet');
    t.equal(fail.status.failureMessage, '1.5 GiB memory < 64 GiB required');
    const ru = (await get(lab, `${HOSTS}/h-uefi`)).status.inspectionReport;
    t.same([ru.cpus.count, ru.cpus.cores, ru.cpus.threads], [2, 2, 2], 'UEFI: 2 sockets, 2 cores, 2 threads');
    t.equal(ru.bootMode, 'UEFI');
    t.equal(ru.memory.totalGB, 1.5, 'UEFI: 1536 MB given = 1.5 GB');
    t.ok(
      ru.nics.some((n: { macAddress: string }) => n.macAddress === machines.uefi.mac),
      'UEFI: boot NIC in the report',
    );
    t.same(
      ru.disks.map((d: { sizeGB: number }) => d.sizeGB),
      [4],
    );
    const events = (await api(lab, 'GET', '/journal?limit=500')).items.map(
      (e: { kind: string; host?: string; message: string }) => `${e.host ?? ''} ${e.kind} ${e.message}`,
    );
    t.ok(
      events.some((e: string) => e === `h-bios InspectorStep target-verify: verified ${digest}`),
      'the inspector verified the digest before the kexec',
    );
    const order = ['CredentialClaimed', 'ReportReceived', 'Ready', 'InspectorStep target-verify', 'Provisioned'];
    const bios = events.filter((e: string) => e.startsWith('h-bios '));
    const at = order.map((k) => bios.findIndex((e: string) => e.startsWith(`h-bios ${k}`)));
    t.ok(
      at.every((i, n) => i >= 0 && (n === 0 || i > at[n - 1]!)),
      `in order: ${order.join(' < ')}`,
    );
    // the dashboard's waterfall draws these: a real boot fills every lane but TFTP (QEMU's NIC ROM is iPXE already,
    // so it asks for its script over HTTP) and the first boot from disk (kexec here)
    const biosTimeline = (await api(lab, 'GET', `/timeline/${machines.bios.mac}`)).items as {
      what: string;
      stage?: string;
      ms?: number;
      bytes?: number;
    }[];
    const lanes = new Set(biosTimeline.map((e) => e.stage));
    t.same(
      ['power', 'dhcp', 'script', 'download', 'inspector', 'report', 'provisioned'].filter((l) => !lanes.has(l)),
      [],
      `every step of the boot on its lane (${[...lanes].join(', ')})`,
    );
    t.ok(
      biosTimeline.some((e) => e.stage === 'download' && (e.bytes ?? 0) > 0 && typeof e.ms === 'number'),
      'downloads with their bytes and how long they took',
    );
    const uefiTimeline = (await api(lab, 'GET', `/timeline/${machines.uefi.mac}`)).items.map(
      (e: { what: string }) => e.what,
    );
    t.ok(
      uefiTimeline.some((w: string) => /ReportReceived/.test(w)),
      'the failing host reported',
    );
    t.notOk(
      uefiTimeline.some((w: string) => /target\.tar\.gz/.test(w)),
      'the host that failed its requirements never fetched the target',
    );
    t.comment(events.filter((e: string) => /Inspector|Report|Ready|Provisioned|RequirementsNotMet/.test(e)).join('\n'));
  },
);
