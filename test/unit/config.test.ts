import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ConfigError, loadConfig, parseConfig } from '../../src/config.js';

t.test('defaults are complete and proxy mode', async (t) => {
  const c = parseConfig({});
  t.equal(c.dhcp.mode, 'proxy');
  t.equal(c.dhcp.bootFiles.bios, 'undionly.kpxe');
  t.equal(c.unknownHosts.script, 'exit');
  t.same(
    [c.dhcp.port, c.dhcp.proxyPort, c.tftp.port, c.http.port],
    [67, 4011, 69, 80],
    'the ports PXE firmware asks, whoever runs it: other ports only when the config says so',
  );
  t.equal(c.advertiseAddress, undefined, 'chosen at start when not given');
  t.equal(c.dhcp6.enabled, false, 'IPv6 only when asked for');
  t.equal(
    parseConfig({ dhcp6: { full: { poolStart: 'FD00:0::100', poolEnd: 'fd00::1ff' } } }).dhcp6.full?.poolStart,
    'fd00::100',
    'addresses kept in RFC 5952 form: leases are found by them',
  );
});

t.test('errors name the bad field', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{ dhcp: { mode: 'relay' } }, /dhcp\.mode/],
    [{ dhcp: { mode: 'full' } }, /dhcp\.full: mode "full" needs a pool/],
    [{ advertiseAddress: 'host.example' }, /advertiseAddress: must be an IPv4 address/],
    [{ http: { port: 70000 } }, /http\.port/],
    [{ hosts: { 'not-a-mac': { script: 'exit' } } }, /hosts/],
    [{ tftp: { blksize: 1 } }, /tftp: Unrecognized key/],
    [{ dhcp6: { enabled: true } }, /dhcp6\.interface: DHCPv6 needs the segment's interface/],
    [{ dhcp6: { enabled: true, interface: 'br0' } }, /dhcp6\.full: mode "full" needs a pool/],
    [{ dhcp6: { advertiseAddress: '10.0.0.1' } }, /dhcp6\.advertiseAddress: must be an IPv6 address/],
    [
      { dhcp6: { full: { poolStart: 'fd00::1', poolEnd: 'fd00:0:0:1::1' } } },
      /dhcp6\.full\.poolEnd: poolStart and poolEnd must share one \/64/,
    ],
    [
      { dhcp6: { full: { poolStart: 'fd00::1', poolEnd: 'fd00::ffff:ffff' } } },
      /dhcp6\.full\.poolEnd: the pool must hold 1 to 16777216 addresses/,
    ],
  ];
  for (const [raw, re] of cases)
    t.throws(() => parseConfig(raw), { constructor: ConfigError, message: re }, JSON.stringify(raw));
});

t.test('file < env < --set, MACs normalised', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'b7cfg-'));
  const file = path.join(dir, 'c.yaml');
  writeFileSync(
    file,
    'dhcp:\n  mode: full\n  full: {poolStart: 10.0.0.10, poolEnd: 10.0.0.20}\nhttp: {port: 9000}\nhosts:\n  52-54-00-AA-BB-CC: {script: local-disk}\n',
  );
  const c = loadConfig({
    file,
    env: { BESKAR7_HTTP__PORT: '9100', BESKAR7_LOG_LEVEL: 'debug', HOME: '/x' },
    sets: ['tftp.port=7000'],
  });
  t.equal(c.dhcp.mode, 'full');
  t.equal(c.http.port, 9100, 'env beats file');
  t.equal(c.logLevel, 'debug');
  t.equal(c.tftp.port, 7000);
  t.same(Object.keys(c.hosts), ['52:54:00:aa:bb:cc']);
  t.throws(() => loadConfig({ file: path.join(dir, 'missing.yaml') }), /cannot read config file/);
  writeFileSync(file, 'dhcp: [unclosed');
  t.throws(() => loadConfig({ file }), /not valid YAML/);
  t.throws(() => loadConfig({ sets: ['novalue'] }), /key=value/);
});
