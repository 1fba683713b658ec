import dgram from 'node:dgram';
import { createServer } from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { Appliance, StartupError } from '../../src/appliance.js';
import { parseConfig } from '../../src/config.js';
import { chooseAdvertiseAddress } from '../../src/net/advertise.js';
import { bindFailure } from '../../src/net/bind-error.js';
import { repoRoot } from '../../src/paths.js';
import { freePort } from '../helpers/appliance.js';
import { memoryLogger } from '../helpers/log.js';
import { tempDir } from '../helpers/tmp.js';

const addr = (address: string, internal = false) => ({
  address,
  family: 'IPv4' as const,
  internal,
  netmask: '255.255.255.0',
  mac: '52:54:00:00:00:01',
  cidr: `${address}/24`,
});

t.test('advertise address: the DHCP interface, the only address, or a clear refusal', async (t) => {
  const lo = { lo: [addr('127.0.0.1', true)] };
  t.same(chooseAdvertiseAddress({ ...lo, eth0: [addr('10.0.0.5')] }, undefined), { ok: true, address: '10.0.0.5' });
  const two = { ...lo, eth0: [addr('10.0.0.5')], eth1: [addr('192.168.7.2')] };
  t.same(chooseAdvertiseAddress(two, 'eth1'), { ok: true, address: '192.168.7.2' }, 'dhcp.interface decides');
  const many = chooseAdvertiseAddress(two, undefined);
  t.match(many, {
    ok: false,
    reason: /several IPv4 addresses: 10\.0\.0\.5 \(eth0\), 192\.168\.7\.2 \(eth1\); set advertiseAddress/,
  });
  t.match(chooseAdvertiseAddress(lo, undefined), { ok: false, reason: /no IPv4 address but loopback/ });
  t.match(chooseAdvertiseAddress(two, 'eth9'), { ok: false, reason: /dhcp.interface eth9 has no IPv4 address/ });
  const { log } = memoryLogger();
  t.throws(() => new Appliance(parseConfig({ dataDir: tempDir(t) }), log, two), {
    constructor: StartupError,
    message: /^advertiseAddress: this machine has several IPv4 addresses/,
  });
});

/** An appliance on loopback whose TFTP (and maybe HTTP) port is given; DHCP off. */
const appliance = (t: Test, over: Record<string, unknown>) => {
  const { log } = memoryLogger();
  const cfg = parseConfig({
    dataDir: tempDir(t),
    assetsDir: path.join(repoRoot, 'assets'),
    advertiseAddress: '127.0.0.1',
    dhcp: { enabled: false },
    ...over,
  });
  const a = new Appliance(cfg, log);
  t.teardown(() => a.stop());
  return a;
};

t.test('a port that cannot be had stops start-up with the port and the reason', async (t) => {
  const http = await freePort();
  // the HTTP port is held by another listener in this very process
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(http, '127.0.0.1', () => r()));
  t.teardown(() => holder.close());
  const busy = appliance(t, { http: { address: '127.0.0.1', port: http }, tftp: { enabled: false } });
  await t.rejects(busy.start(), {
    constructor: StartupError,
    message: new RegExp(
      `^HTTP 127\\.0\\.0\\.1:${http}/tcp is in use by node \\(pid ${process.pid}\\); stop it or set http\\.port`,
    ),
  });

  const udp = dgram.createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => udp.close());
  const tftpBusy = appliance(t, {
    http: { address: '127.0.0.1', port: await freePort() },
    tftp: { address: '127.0.0.1', port: udp.address().port },
  });
  await t.rejects(tftpBusy.start(), {
    constructor: StartupError,
    message: /^TFTP 127\.0\.0\.1:\d+\/udp is in use by node/,
  });
});

t.test('a privileged port without the capability names the capability', async (t) => {
  const e = Object.assign(new Error('listen EACCES: permission denied 0.0.0.0:67'), { code: 'EACCES' });
  const b = { what: 'DHCP', setting: 'dhcp.port', proto: 'udp' as const, address: '0.0.0.0', port: 67 };
  t.match(
    bindFailure(e, b).message,
    /^DHCP 0\.0\.0\.0:67\/udp: permission denied: ports below 1024 need CAP_NET_BIND_SERVICE .*or set dhcp\.port/,
  );
});
