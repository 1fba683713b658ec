import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../src/paths.js';
import { until } from '../helpers/appliance.js';
import { makeLab, skipUnlessCi, startForQemuHosts } from '../helpers/lab.js';
import { addHost, addMachine, HOSTS, MACHINES, SECRETS } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';
import { labApi, labKube, labRedfish, startLabBmc } from '../lab/lab-api.js';
import type { Lab } from '../lab/netns.js';

const demo = path.join(repoRoot, 'assets/demo');
const ready = ['disk.img', 'disk.img.zst', 'disk.img.gz'].every((f) => existsSync(path.join(demo, f)));
const haveInspector = existsSync(path.join(repoRoot, 'assets/inspector/initrd'));
const ADMIN = 'e2e-admin-token-0123456789';
const sha = (f: string) =>
  `sha256:${createHash('sha256')
    .update(readFileSync(path.join(demo, f)))
    .digest('hex')}`;

const kube = (lab: Lab) => labKube(lab, `http://${lab.serverIp}:8080`, ADMIN);
const get = async (lab: Lab, p: string) => (await kube(lab)('GET', p)).json;
const api = (lab: Lab, method: string, p: string, body?: unknown) =>
  labApi(lab, `http://${lab.serverIp}:8080`, ADMIN, method, p, body);

/** What the console shows after the last power event of the fake BMC: the boot in progress. */
const lastBoot = (file: string) => {
  const all = readFileSync(file, 'latin1');
  return all.slice(all.lastIndexOf('=== fake BMC: power'));
};

t.test(
  'Whole-disk deploy on QEMU BIOS and UEFI: the image on the disk, user-data in COS_OEM, boots from disk again after a BMC power cycle; a digest mismatch fails and the host deploys again',
  { skip: skipUnlessCi(!(ready && haveInspector), 'run `make setup` (disk image and inspector)') },
  async (t) => {
    t.setTimeout(1_500_000);
    const lab = makeLab(t, '10.87.0');
    const dir = tempDir(t);
    const http = `http://${lab.serverIp}:8080`;
    await startForQemuHosts(t, lab, ADMIN);
    // the BIOS host deploys to the smaller of its two disks (the first: SeaBIOS boots only the first hard disk);
    // the UEFI one to the disk its machine names
    const machines = {
      bios: { firmware: 'bios', mac: '52:54:00:e4:00:01', memoryMB: 1024, disksGB: [3, 6], serial: 'WD-BIOS' },
      uefi: { firmware: 'uefi', mac: '52:54:00:e4:00:02', memoryMB: 1024, disksGB: [2, 7], serial: 'WD-UEFI' },
    } as const;
    const consoles: Record<string, string> = {};
    let port = 9101;
    for (const [name, m] of Object.entries(machines)) {
      consoles[name] = path.join(dir, `${name}.console`);
      await startLabBmc(lab, {
        address: lab.serverIp,
        port,
        consoleLog: consoles[name],
        machine: { ...m, reboots: true, tap: lab.addTap() },
      });
      await addHost(kube(lab), {
        name: `h-${name}`,
        spec: {
          redfish: labRedfish(lab, port),
          labels: { fw: name },
        },
      });
      port++;
    }
    for (const name of Object.keys(machines)) {
      let last: unknown;
      await until(`h-${name} Available`, async () => {
        last = (await get(lab, `${HOSTS}/h-${name}`)).status;
        return (last as { state: string }).state === 'Available' ? true : undefined;
      }).catch((e) => {
        throw new Error(`${(e as Error).message}: ${JSON.stringify(last)}`);
      });
    }
    const userData = '#cloud-config\nhostname: from-the-secret\n';
    const secret = await kube(lab)('POST', SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'bios-join', namespace: 'default' },
      stringData: { value: userData },
    });
    t.equal(secret.status, 201, 'a bootstrap data Secret');
    const spec = (fw: string, extra: Record<string, unknown>) => ({
      inspectionImageURL: `${http}/beskar7-inspector/boot`,
      hardwareRequirements: { minCPUCores: 1, minMemoryGB: 0.5, minDiskGB: 8 },
      hostSelector: { matchLabels: { fw } },
      ...extra,
    });
    const phase = (name: string, want: string[]) =>
      until(
        `${name} ${want.join('|')}`,
        async () => {
          const r = await get(lab, `${MACHINES}/${name}`);
          return want.includes(r.status.phase) ? r : undefined;
        },
        600_000,
      );

    // BIOS: a zstd image with no digest in the spec (the appliance pins it), user-data from the Secret
    await addMachine(kube(lab), {
      name: 'm-bios',
      spec: spec('bios', {
        targetImageURL: `${http}/assets/demo/disk.img.zst`,
        bootstrap: { dataSecretName: 'bios-join' },
      }),
    });
    // UEFI: first a digest that is not the image's, then the raw image with its digest, on the disk named by serial
    await addMachine(kube(lab), {
      name: 'm-bad',
      spec: spec('uefi', {
        targetImageURL: `${http}/assets/demo/disk.img.gz`,
        targetImageDigest: `sha256:${'0'.repeat(64)}`,
      }),
    });
    const bad = await phase('m-bad', ['Failed', 'Provisioned']);
    t.equal(bad.status.failureReason, 'DigestMismatch', `m-bad: ${bad.status.failureMessage}`);
    t.match(bad.status.failureMessage, new RegExp(`is ${sha('disk.img.gz')}, want sha256:0{64}`));
    await kube(lab)('DELETE', `${MACHINES}/m-bad`);
    // the failed deployment wrote to the disk: the host is cleaned before it is Available again
    await until(
      'h-uefi cleaned and Available again',
      async () => ((await get(lab, `${HOSTS}/h-uefi`)).status.state === 'Available' ? true : undefined),
      600_000,
    );
    await addMachine(kube(lab), {
      name: 'm-uefi',
      spec: spec('uefi', {
        targetImageURL: `${http}/assets/demo/disk.img`,
        targetImageDigest: sha('disk.img'),
        targetDisk: 'serial=B7DISK1',
        configurationURL: `${http}/assets/demo/target.cmdline`,
      }),
    });

    for (const name of ['bios', 'uefi'] as const) {
      const m = await phase(`m-${name}`, ['Provisioned', 'Failed']);
      t.equal(m.status.phase, 'Provisioned', `m-${name}: ${m.status.failureMessage ?? 'provisioned'}`);
      const marker = new RegExp(`BESKAR7-DISK-MARKER provider-id=b7://default/h-${name} mode=600`);
      await until(
        `${name} boots its disk`,
        async () => (marker.test(lastBoot(consoles[name]!)) ? true : undefined),
        300_000,
      );
      t.pass(`${name}: rebooted into the installed system, which found its config in COS_OEM`);
    }
    t.match(
      lastBoot(consoles.bios!),
      /BESKAR7-DISK-MARKER provider-id=b7:\/\/default\/h-bios mode=600 config=#cloud-config hostname: from-the-secret/,
      "BIOS: the Secret's value as 99_beskar7.yaml",
    );
    t.match(lastBoot(consoles.uefi!), /mode=600 config=beskar7\.demo=configured/, "UEFI: configurationURL's content");
    const pinned = (await get(lab, `${MACHINES}/m-bios`)).status.pinnedTarget;
    t.equal(pinned?.digest, sha('disk.img.zst'), 'the appliance pinned the digest of the image it hosts');

    const journal = async () =>
      (await api(lab, 'GET', '/journal?limit=1000')).items.map(
        (e: { kind: string; host?: string; message: string }) => `${e.host ?? ''} ${e.kind} ${e.message}`,
      ) as string[];
    const events = await journal();
    t.ok(
      events.includes('h-uefi Cleaned erased /dev/vda /dev/vdb'),
      'the cleaner erased both disks after the mismatch',
    );
    t.ok(
      events.some((e: string) => /^h-bios InspectorStep target-write: \/dev\/vda: zstd image written/.test(e)),
      'BIOS: the smallest disk (vda, 3 GiB) got the zstd image',
    );
    t.ok(
      events.some((e: string) => /^h-uefi InspectorStep target-write: \/dev\/vdb: raw image written/.test(e)),
      'UEFI: the disk with serial B7DISK1 got the raw image',
    );

    // a BMC power cycle: the network boot leaves for the disk, which boots again
    for (const name of ['bios', 'uefi'] as const) {
      const before = readFileSync(consoles[name]!, 'latin1').length;
      const r = await api(lab, 'POST', `/hosts/h-${name}/actions`, { action: 'reset', resetType: 'ForceRestart' });
      t.ok(r, `${name}: reset asked`);
      await until(
        `${name} boots its disk after the power cycle`,
        async () =>
          /BESKAR7-DISK-MARKER provider-id=b7/.test(readFileSync(consoles[name]!, 'latin1').slice(before))
            ? true
            : undefined,
        300_000,
      );
      const after = readFileSync(consoles[name]!, 'latin1').slice(before);
      t.notMatch(after, /beskar7-agent/, `${name}: the inspector did not run again`);
      t.equal((await get(lab, `${MACHINES}/m-${name}`)).status.phase, 'Provisioned', `${name}: still Provisioned`);
    }

    // release cleans: deleting the BIOS machine erases its disks, and the host's next boot finds nothing on them
    await kube(lab)('DELETE', `${MACHINES}/m-bios`);
    await until(
      'h-bios cleaned and Available',
      async () => ((await get(lab, `${HOSTS}/h-bios`)).status.state === 'Available' ? true : undefined),
      600_000,
    );
    t.equal((await kube(lab)('GET', `${MACHINES}/m-bios`)).status, 404, 'the machine is gone');
    t.ok((await journal()).includes('h-bios Cleaned erased /dev/vda /dev/vdb'), 'BIOS: both disks erased');
    const before = readFileSync(consoles.bios!, 'latin1').length;
    await api(lab, 'POST', '/hosts/h-bios/actions', { action: 'powerOn' });
    await until(
      'the erased BIOS host has nothing to boot',
      async () => (/No bootable device/.test(readFileSync(consoles.bios!, 'latin1').slice(before)) ? true : undefined),
      240_000,
    );
    t.notMatch(
      readFileSync(consoles.bios!, 'latin1').slice(before),
      /BESKAR7-DISK/,
      'no trace of the installed system',
    );
  },
);
