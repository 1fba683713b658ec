import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { repoRoot } from '../../src/paths.js';
import { fullDhcp, makeLab, startAppliance, startSiteDhcp } from '../helpers/lab.js';
import { tempDir } from '../helpers/tmp.js';
import type { Lab } from '../lab/netns.js';

const PXE_BIOS = ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000'];
const PXE_EFI = ['-V', 'PXEClient:Arch:00007:UNDI:003016', '-x', '0x5d:0007'];
const IPXE = ['-V', 'PXEClient:Arch:00007:UNDI:003016', '-x', '0x5d:0007', '-x', '0x4d:69505845'];

/** busybox udhcpc in its own lab host; its script prints what it was given. */
async function udhcpc(t: Test, lab: Lab, name: string, mac: string, opts: string[], bridge = 'br0') {
  const dir = tempDir(t);
  const script = path.join(dir, 'script.sh');
  writeFileSync(
    script,
    '#!/bin/sh\n[ "$1" = bound ] && echo "ip=$ip siaddr=$siaddr boot_file=$boot_file serverid=$serverid"\nexit 0\n',
    { mode: 0o755 },
  );
  const host = lab.addHost(name, mac, undefined, bridge);
  const r = await lab.run(
    host,
    'busybox',
    ['udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '5', '-T', '1', '-s', script, ...opts],
    30_000,
  );
  const kv = Object.fromEntries([...r.stdout.matchAll(/(\w+)=(\S*)/g)].map((m) => [m[1], m[2]]));
  return { ...r, kv };
}

t.test('full mode: udhcpc and dhclient get an address and the right boot file', async (t) => {
  const lab = makeLab(t, '10.80.0');
  const app = await startAppliance(t, lab, fullDhcp(lab));
  const rows: [string, string, string[], string][] = [
    ['bios', '52:54:00:c0:00:01', PXE_BIOS, 'undionly.kpxe'],
    ['efi', '52:54:00:c0:00:02', PXE_EFI, 'snponly.efi'],
    ['ipxe', '52:54:00:c0:00:03', IPXE, 'http://10.80.0.1:8080/boot.ipxe'],
    ['plain', '52:54:00:c0:00:04', [], ''],
  ];
  const ips = new Set<string>();
  for (const [name, mac, opts, file] of rows) {
    const r = await udhcpc(t, lab, name, mac, opts);
    t.equal(r.code, 0, `${name}: udhcpc bound (${r.stderr.trim().split('\n').pop()})`);
    t.match(r.kv.ip, /^10\.80\.0\.1\d\d$/, `${name}: address from our pool`);
    t.equal(r.kv.boot_file ?? '', file, `${name}: boot file`);
    t.equal(r.kv.serverid, '10.80.0.1');
    if (file && !file.startsWith('http')) t.equal(r.kv.siaddr, '10.80.0.1', `${name}: next-server is us`);
    ips.add(r.kv.ip!);
  }
  t.equal(ips.size, rows.length, 'every client its own address');

  // dhclient, ISC's client, with the PXE options declared in its config
  const dir = tempDir(t);
  const conf = path.join(dir, 'dhclient.conf');
  writeFileSync(
    conf,
    'option pxe-arch code 93 = unsigned integer 16;\nsend pxe-arch 0;\nsend vendor-class-identifier "PXEClient:Arch:00000:UNDI:002001";\n',
  );
  const script = path.join(dir, 'script.sh');
  writeFileSync(
    script,
    `#!/bin/sh\n[ "$reason" = BOUND ] && echo "ip=$new_ip_address file=$new_filename" > ${dir}/bound\nexit 0\n`,
    { mode: 0o755 },
  );
  const host = lab.addHost('isc', '52:54:00:c0:00:05');
  const r = await lab.run(
    host,
    'dhclient',
    [
      '-4',
      '-1',
      '-d',
      '-q',
      '-cf',
      conf,
      '-sf',
      script,
      '-lf',
      path.join(dir, 'leases'),
      '-pf',
      path.join(dir, 'pid'),
      'eth0',
    ],
    8_000,
  );
  t.not(r.code, null, 'dhclient ran');
  t.match(
    readFileSync(path.join(dir, 'bound'), 'utf8'),
    /^ip=10\.80\.0\.1\d\d file=undionly\.kpxe$/m,
    'dhclient: address and undionly.kpxe',
  );

  t.equal(app.find('dhcp reply', { reply: 'ack' }).length, rows.length + 1, 'one ACK per client');
});

t.test('full mode: leases survive a restart of the appliance', async (t) => {
  const lab = makeLab(t, '10.81.0');
  const dir = tempDir(t);
  const over = { ...fullDhcp(lab), dataDir: path.join(dir, 'data') };
  const first = await startAppliance(t, lab, over);
  const a = await udhcpc(t, lab, 'a', '52:54:00:c1:00:01', PXE_BIOS);
  await first.stop();
  const second = await startAppliance(t, lab, over);
  t.equal(second.find('dhcp listening')[0]?.leases, 1, 'the lease was loaded from LevelDB');
  const b = await udhcpc(t, lab, 'b', '52:54:00:c1:00:02', PXE_BIOS);
  const a2 = await udhcpc(t, lab, 'a2', '52:54:00:c1:00:01', PXE_BIOS);
  t.equal(a2.kv.ip, a.kv.ip, 'same host, same address after restart');
  t.not(b.kv.ip, a.kv.ip, 'no address handed out twice');
});

t.test('proxy mode: the site server leases addresses; we only add boot info', async (t) => {
  const lab = makeLab(t, '10.82.0');
  const site = startSiteDhcp(t, lab);
  const app = await startAppliance(t, lab, { dhcp: { mode: 'proxy', interface: 'br0' } });

  const plain = await udhcpc(t, lab, 'plain', '52:54:00:c2:00:01', []);
  t.equal(plain.kv.serverid, site.ip, 'a plain client is leased by the site server');
  t.equal(app.find('dhcp reply', { mac: '52:54:00:c2:00:01' }).length, 0, 'and never answered by us');

  const host = lab.addHost('pxe', '52:54:00:c2:00:02', '10.82.0.50');
  for (const [arch, file] of [
    ['0', 'undionly.kpxe'],
    ['7', 'snponly.efi'],
  ] as const) {
    const r = await lab.run(
      host,
      process.execPath,
      ['--import', 'tsx', path.join(repoRoot, 'test/helpers/pxe-client.ts'), '52:54:00:c2:00:02', arch, '10.82.0.50'],
      20_000,
    );
    const seen = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as {
      offers: { server?: string; yiaddr: string; file: string; vendor?: string }[];
      ack?: { file: string; type: number };
    };
    const ours = seen.offers.filter((o) => o.server === '10.82.0.1');
    const theirs = seen.offers.filter((o) => o.server === site.ip);
    t.equal(ours.length, 1, `arch ${arch}: one proxy offer`);
    t.same(
      ours[0],
      { server: '10.82.0.1', yiaddr: '0.0.0.0', file, vendor: 'PXEClient' },
      `arch ${arch}: proxy offer names ${file}, no address`,
    );
    t.ok(theirs.length >= 1 && theirs[0]!.yiaddr.startsWith('10.82.0.1'), `arch ${arch}: address offer from the site`);
    t.same(seen.ack, { file, type: 5 }, `arch ${arch}: port 4011 ACKs with ${file}`);
  }
});

t.test('interface binding: a server bound to br0 does not answer another segment', async (t) => {
  const lab = makeLab(t, '10.83.0');
  lab.addBridge('br1', '10.84.0.1/24');
  const app = await startAppliance(t, lab, fullDhcp(lab));
  const other = await udhcpc(t, lab, 'other', '52:54:00:c3:00:01', PXE_BIOS, 'br1');
  t.not(other.code, 0, 'no lease on br1');
  t.match(other.stderr, /no lease/);
  t.equal(app.logs.filter((l) => l.mac === '52:54:00:c3:00:01').length, 0, 'its packets never reached the server');
  const here = await udhcpc(t, lab, 'here', '52:54:00:c3:00:02', PXE_BIOS);
  t.equal(here.code, 0, 'a client on br0 is served');
});

t.test('start-up probe: full mode refuses to start beside another DHCP server; proxy mode warns', async (t) => {
  const lab = makeLab(t, '10.87.0');
  const site = startSiteDhcp(t, lab);
  await new Promise((r) => setTimeout(r, 500));
  const full = fullDhcp(lab);
  const err = await startAppliance(t, lab, { dhcp: { ...full.dhcp, probeSeconds: 4 } }).then(
    () => 'started',
    (e: Error) => e.message,
  );
  t.match(
    err,
    /exited with 2: [\s\S]*another DHCP server answers on this segment \(10\.87\.0\.2\): refusing full mode/,
  );
  const app = await startAppliance(t, lab, { dhcp: { mode: 'proxy', interface: 'br0', probeSeconds: 4 } });
  t.same(
    app.find('another DHCP server answers on this segment; proxy mode adds boot information beside it')[0]?.servers,
    [site.ip],
  );
});
