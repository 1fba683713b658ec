import { execFile, spawnSync } from 'node:child_process';
import { chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { repoRoot } from '../../src/paths.js';
import { until } from '../helpers/appliance.js';
import { fullDhcp, haveDemoImage, makeLab, skipUnlessCi } from '../helpers/lab.js';
import { HOSTS, hostManifests, MACHINES, machineManifest } from '../helpers/resources.js';
import { keepSysctls, sysctlValues } from '../helpers/sysctl.js';
import { tempDir } from '../helpers/tmp.js';
import { ApplianceProcess } from '../lab/appliance-process.js';
import { labKube, startLabBmc } from '../lab/lab-api.js';

const run = promisify(execFile);
const haveInspector = existsSync(path.join(repoRoot, 'assets/inspector/initrd'));
// the test installs and purges its own package: it leaves an operator's installation alone
const installedHere = spawnSync('dpkg-query', ['-W', '-f=${Status}', 'beskar7'])
  .stdout?.toString()
  .includes('ok installed');
const UNIT = '/lib/systemd/system/beskar7.service';
const CONFIG = '/etc/beskar7/beskar7.yaml';

/** The [Service] settings the unit gives, one list per key. */
function unitSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^(\w+)=(.*)$/.exec(line);
    if (m) out.set(m[1] as string, [...(out.get(m[1] as string) ?? []), m[2] as string]);
  }
  return out;
}

/** The unit's ExecStart as systemd runs it: its User and Group, Environment only, its capabilities, no new privileges. */
function asSystemdWould(unit: Map<string, string[]>): string[] {
  const one = (k: string) => unit.get(k)?.[0] ?? '';
  const caps = (k: string) =>
    one(k)
      .split(/\s+/)
      .filter(Boolean)
      .map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)
      .join(',');
  return [
    'setpriv',
    `--reuid=${one('User')}`,
    `--regid=${one('Group')}`,
    '--init-groups',
    `--inh-caps=${caps('AmbientCapabilities')}`,
    `--ambient-caps=${caps('AmbientCapabilities')}`,
    `--bounding-set=-all,${caps('CapabilityBoundingSet')}`,
    ...(one('NoNewPrivileges') === 'yes' ? ['--no-new-privs'] : []),
    'env',
    '-i',
    ...(unit.get('Environment') ?? []),
    ...one('ExecStart').split(/\s+/),
  ];
}

t.test(
  'the Debian package, run as systemd runs its unit, takes a QEMU machine from BMC power-on to a kexec into its target',
  {
    skip:
      skipUnlessCi(!(haveDemoImage && haveInspector), 'run `make setup` (demo image and inspector)') ||
      (installedHere && 'beskar7 is installed on this machine'),
  },
  async (t) => {
    t.setTimeout(900_000);
    const debDir = tempDir(t);
    // as a user runs it: the test runner's loaders stay out of the build
    const built = await run('env', ['-u', 'NODE_OPTIONS', `DEB_DIR=${debDir}`, 'make', '-s', 'deb'], {
      cwd: repoRoot,
      maxBuffer: 1 << 24,
    });
    const deb = path.resolve(repoRoot, built.stdout.trim().split('\n').at(-1) as string);
    t.match(path.basename(deb), /^beskar7_[\d.]+_amd64\.deb$/);
    t.teardown(async () => {
      // what the test added beside the package goes first, so the purge leaves nothing behind
      rmSync('/opt/beskar7/assets/demo', { recursive: true, force: true });
      await run('dpkg', ['--purge', 'beskar7']).catch(() => undefined);
    });
    // postinst applies the package's sysctls to this machine: the values before are put back
    t.teardown(keepSysctls());
    await run('dpkg', ['-i', deb]);
    t.ok(existsSync('/usr/lib/sysctl.d/60-beskar7.conf'), 'installed: the neighbour-table sysctls');
    const thresh = ['ipv4', 'ipv6'].flatMap((f) => [1, 2, 3].map((n) => `net.${f}.neigh.default.gc_thresh${n}`));
    t.same(sysctlValues(thresh), ['4096', '8192', '16384', '4096', '8192', '16384'], 'and applied by postinst');
    const uid = Number((await run('id', ['-u', 'beskar7'])).stdout);
    t.ok(uid > 0, 'postinst created the beskar7 user');
    const conf = statSync(CONFIG);
    t.equal((conf.mode & 0o777).toString(8), '640', 'the config is readable by root and the beskar7 group only');
    for (const f of ['dist/src/main.js', 'dist/src/admin/ui/dashboard.html', 'boot-scripts/entry.ipxe']) {
      t.ok(existsSync(path.join('/opt/beskar7', f)), `installed: ${f}`);
    }
    for (const f of ['ipxe/undionly.kpxe', 'ipxe/snponly.efi', 'inspector/vmlinuz', 'inspector/initrd']) {
      t.ok(existsSync(path.join('/opt/beskar7/assets', f)), `installed: assets/${f}`);
    }
    t.notOk(existsSync('/opt/beskar7/test'), 'no tests installed');

    // what systemd's StateDirectory= would make, and the OS image the operator hosts on the appliance
    mkdirSync('/var/lib/beskar7', { recursive: true, mode: 0o750 });
    chownSync('/var/lib/beskar7', uid, uid);
    mkdirSync('/opt/beskar7/assets/demo', { recursive: true });
    for (const f of ['target.tar.gz', 'target.cmdline']) {
      copyFileSync(path.join(repoRoot, 'assets/demo', f), path.join('/opt/beskar7/assets/demo', f));
    }

    const lab = makeLab(t, '10.88.0');
    const http = `http://${lab.serverIp}`;
    const unit = unitSettings(readFileSync(UNIT, 'utf8'));
    // the operator's edit of the installed config: the lab's segment; ports and advertise address by default
    const config = {
      dataDir: '/var/lib/beskar7',
      ...fullDhcp(lab),
      unknownHosts: { script: 'exit' },
      orchestrator: { tickSeconds: 1, inspectionTimeoutSeconds: 400, powerDeadlineSeconds: 30, retryBaseSeconds: 5 },
    };
    const dir = tempDir(t);
    const app = new ApplianceProcess(
      lab,
      config,
      dir,
      false,
      () => asSystemdWould(unit) as [string, ...string[]],
      CONFIG,
    );
    await app.start(30_000);
    t.teardown(() => app.stop());
    const ready = app.find('beskar7 ready')[0] ?? {};
    t.same(ready.listening, { http: 80, tftp: 69, dhcp: 67, pxe: 4011 }, 'the ports PXE firmware asks');
    t.equal(ready.advertise, lab.serverIp, 'advertise address from dhcp.interface');
    const status = readFileSync(`/proc/${app.pid}/status`, 'utf8');
    t.match(status, new RegExp(`^Uid:\\s+${uid}\\s`, 'm'), 'runs as the beskar7 user');
    t.match(status, /^CapEff:\s+0000000000000400$/m, 'with CAP_NET_BIND_SERVICE alone');

    const bmcPort = 9101;
    const consoleLog = path.join(dir, 'machine.console');
    await startLabBmc(lab, {
      address: lab.serverIp,
      port: bmcPort,
      consoleLog,
      machine: { firmware: 'bios', mac: '52:54:00:e4:00:01', memoryMB: 1024, disksGB: [4], tap: lab.addTap() },
      personality: { requireIfMatch: true },
    });
    // the installed CLI, as root: URL and token from /etc/beskar7/beskar7.yaml and the service's data directory
    const cli = (...args: string[]) => lab.run(lab.ns, '/usr/bin/beskar7', args, 30_000);
    const hostFile = path.join(dir, 'host.json');
    writeFileSync(
      hostFile,
      JSON.stringify({
        kind: 'List',
        items: Object.values(
          hostManifests({
            name: 'r1-s01',
            spec: {
              redfish: {
                address: `http://${lab.serverIp}:${bmcPort}`,
                username: 'admin',
                password: 'secret',
                allowPlainHttp: true,
              },
            },
          }),
        ),
      }),
    );
    const added = await cli('apply', '-f', hostFile);
    t.match(added.stdout, /physicalhost\/r1-s01 created/, added.stderr);
    const token = readFileSync('/var/lib/beskar7/admin-token', 'utf8').trim();
    const get = async (p: string) => (await labKube(lab, http, token)('GET', p)).json;
    await until('host Available', async () =>
      (await get(`${HOSTS}/r1-s01`)).status.state === 'Available' ? true : undefined,
    );
    const machineFile = path.join(dir, 'machine.json');
    writeFileSync(
      machineFile,
      JSON.stringify(
        machineManifest({
          name: 'db-1',
          spec: {
            inspectionImageURL: `${http}/assets/inspector`,
            targetImageURL: `${http}/assets/demo/target.tar.gz`,
            configurationURL: `${http}/assets/demo/target.cmdline`,
            hardwareRequirements: { minCPUCores: 1, minMemoryGB: 1, minDiskGB: 4 },
          },
        }),
      ),
    );
    t.match((await cli('apply', '-f', machineFile)).stdout, /beskar7machine\/db-1 created/);
    const m = await until(
      'db-1 done',
      async () => {
        const r = await get(`${MACHINES}/db-1`);
        return r.status.phase === 'Provisioned' || r.status.phase === 'Failed' ? r : undefined;
      },
      400_000,
    );
    t.equal(m.status.phase, 'Provisioned', m.status.failureMessage ?? 'provisioned');
    await until(
      'the target kernel',
      async () =>
        /BESKAR7-DEMO-MARKER[^\n]*config_url=http:\S+\/assets\/demo\/target\.cmdline/.test(
          readFileSync(consoleLog, 'latin1'),
        )
          ? true
          : undefined,
      200_000,
    );
    t.pass('the machine kexec-ed into its target with its configuration');
    const bmcLog = readFileSync(consoleLog, 'latin1');
    t.match(bmcLog, /=== fake BMC: power on ===/, 'powered on through the BMC');
    t.ok(app.find('inspection boot started', { host: 'r1-s01' }).length, 'one-time PXE and power on');
    t.match((await cli('hosts')).stdout, /^r1-s01\s+Provisioned/m, 'the installed CLI lists the host');
  },
);
