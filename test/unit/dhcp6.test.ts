import dgram from 'node:dgram';
import { once } from 'node:events';
import t, { type Test } from 'tap';
import { LeaseTable, type PoolSpec } from '../../src/boot/dhcp/leases.js';
import {
  classBytes,
  type Dhcp6Message,
  decode6,
  encode6,
  get6,
  Msg6,
  Opt6,
  option6,
  readOptions6,
  u32,
} from '../../src/boot/dhcp6/codec.js';
import { clientMac, type Decide6Context, decide6, duidLl, shown6 } from '../../src/boot/dhcp6/decide.js';
import { RouterAdverts, radvdConfig } from '../../src/boot/dhcp6/router-adverts.js';
import { Dhcp6Server } from '../../src/boot/dhcp6/server.js';
import { canonicalIpv6, ipv6Bytes, ipv6FromBytes, macFromLinkLocal, slaacAddress } from '../../src/domain/ipv6.js';
import { Metrics } from '../../src/metrics.js';
import { chooseAdvertiseAddress6 } from '../../src/net/advertise.js';
import { HttpBases } from '../../src/net/bases.js';
import { Store } from '../../src/store/store.js';
import { memoryLogger } from '../helpers/log.js';
import { tempDir } from '../helpers/tmp.js';

const MAC = '52:54:00:6e:76:00';
const LINK_LOCAL = 'fe80::5054:ff:fe6e:7600';
const SERVER_DUID = Buffer.from('000300010a0b0c0d0e0f', 'hex');
const DUID_UUID = Buffer.from('0004' + '6e76360000004000800052540000aa00', 'hex');

const ctx = (over: Partial<Decide6Context> = {}): Decide6Context => ({
  serverAddress: 'fd00::1',
  httpBase: 'http://[fd00::1]:8080',
  serverDuid: SERVER_DUID,
  bootFiles: {
    bios: 'undionly.kpxe',
    efi: 'snponly.efi',
    ipxeEfi: 'ipxe.efi',
    arm64: 'grubnetaa64.efi',
    secureBoot: 'shimx64.efi',
  },
  ipxeEfiMACs: new Set(),
  full: { leaseSeconds: 600, dnsServers: [] },
  ...over,
});
const table = () =>
  new LeaseTable({
    poolStart: 'fd00::100',
    poolEnd: 'fd00::1ff',
    leaseSeconds: 600,
    offerHoldSeconds: 30,
    reservations: [],
  });

const iaNa = (iaid: number, address?: string) =>
  option6(
    Opt6.IaNa,
    Buffer.concat([
      u32(iaid),
      u32(0),
      u32(0),
      address ? option6(Opt6.IaAddr, Buffer.concat([ipv6Bytes(address), u32(0), u32(0)])) : Buffer.alloc(0),
    ]),
  );

/** What OVMF's PXEv6 client sends (design.md): arch 7, vendor class 343 "PXEClient…", an IA_NA. */
function pxeSolicit(
  o: {
    duid?: Buffer;
    iaid?: number;
    type?: number;
    http?: boolean;
    ipxe?: boolean;
    address?: string;
    serverId?: Buffer;
  } = {},
): Dhcp6Message {
  const vendor = o.http ? 'HTTPClient:Arch:00016:UNDI:003000' : 'PXEClient:Arch:00007:UNDI:003000';
  return {
    type: o.type ?? Msg6.Solicit,
    xid: 0x123456,
    options: readOptions6(
      Buffer.concat([
        option6(Opt6.ClientId, o.duid ?? DUID_UUID),
        ...(o.serverId ? [option6(Opt6.ServerId, o.serverId)] : []),
        iaNa(o.iaid ?? 1, o.address),
        option6(Opt6.ClientArch, Buffer.from([0, o.http ? 16 : 7])),
        option6(Opt6.VendorClass, Buffer.concat([u32(343), classBytes([vendor])])),
        ...(o.ipxe ? [option6(Opt6.UserClass, classBytes(['iPXE']))] : []),
      ]),
    ),
  };
}

const addressOf = (m: Dhcp6Message) => {
  const ia = get6(m.options, Opt6.IaNa);
  const addr = ia && get6(readOptions6(ia.subarray(12)), Opt6.IaAddr);
  return addr && ipv6FromBytes(addr);
};
const url = (m: Dhcp6Message) => get6(m.options, Opt6.BootfileUrl)?.toString();

t.test('addresses: RFC 5952 text, bytes, EUI-64 both ways', async (t) => {
  t.equal(canonicalIpv6('FD00:0:0:0:0:0:0:100'), 'fd00::100');
  t.equal(
    canonicalIpv6('2001:db8:0:0:1:0:0:1'),
    '2001:db8::1:0:0:1',
    'the first longest zero run is the one compressed',
  );
  t.equal(canonicalIpv6('::ffff:10.0.0.1'), '::ffff:a00:1');
  t.equal(ipv6FromBytes(ipv6Bytes('fd00::1:2')), 'fd00::1:2');
  t.equal(macFromLinkLocal(LINK_LOCAL), MAC);
  t.equal(macFromLinkLocal(`${LINK_LOCAL}%br0`), MAC, 'with the zone node gives a link-local source');
  t.equal(macFromLinkLocal('fe80::1234:5678:9abc:def0'), undefined, 'a random interface id carries no MAC');
  t.equal(macFromLinkLocal('fd00::5054:ff:fe6e:7600'), undefined, 'only link-local addresses');
  t.equal(slaacAddress('fd00::100', MAC), 'fd00::5054:ff:fe6e:7600');
});

t.test('codec: round trip, and what cannot be decoded is refused with a reason', async (t) => {
  const m = pxeSolicit();
  const back = decode6(encode6(m));
  t.same({ type: back.type, xid: back.xid }, { type: Msg6.Solicit, xid: 0x123456 });
  t.same(
    back.options.map(([c]) => c),
    m.options.map(([c]) => c),
  );
  t.throws(() => decode6(Buffer.from([1, 0, 0])), /message of 3 bytes/);
  t.throws(() => decode6(Buffer.from([1, 0, 0, 1, 0, 1, 0, 9, 0])), /runs past the message/);
  t.throws(() => decode6(Buffer.from([12, 0, 0, 0])), /relayed/);
});

t.test('the client MAC: DUID-LL/LLT first, else the EUI-64 link-local source', async (t) => {
  t.equal(clientMac(duidLl(MAC), 'fe80::1'), MAC);
  const llt = Buffer.concat([Buffer.from([0, 1, 0, 1, 1, 2, 3, 4]), Buffer.from('525400000001', 'hex')]);
  t.equal(clientMac(llt, 'fe80::1'), '52:54:00:00:00:01');
  t.equal(clientMac(DUID_UUID, LINK_LOCAL), MAC, 'OVMF and iPXE send a DUID-UUID');
  t.equal(clientMac(DUID_UUID, 'fe80::1'), undefined);
});

t.test('full mode: PXEv6 gets an address, preference 255 and a TFTP URL; a Request binds it', async (t) => {
  const leases = table();
  const adv = decide6(pxeSolicit(), ctx(), leases, 0, LINK_LOCAL);
  if (adv.action !== 'reply') throw new Error(adv.reason);
  t.equal(adv.reply.type, Msg6.Advertise);
  t.same(get6(adv.reply.options, Opt6.Preference), Buffer.from([255]), 'the firmware need not wait for others');
  t.equal(url(adv.reply), 'tftp://[fd00::1]/snponly.efi');
  t.equal(addressOf(adv.reply), 'fd00::100');
  t.same(get6(adv.reply.options, Opt6.ServerId), SERVER_DUID);
  t.same(get6(adv.reply.options, Opt6.ClientId), DUID_UUID, 'the client id echoed');
  t.same(adv.leaseOp, { kind: 'offer', ip: 'fd00::100' });
  leases.holdOffer(adv.leaseKey as string, 'fd00::100', 0);

  const req = decide6(
    pxeSolicit({ type: Msg6.Request, serverId: SERVER_DUID, address: 'fd00::100' }),
    ctx(),
    leases,
    1,
    LINK_LOCAL,
  );
  if (req.action !== 'reply') throw new Error(req.reason);
  t.equal(req.reply.type, Msg6.Reply);
  t.same(req.leaseOp, { kind: 'bind', ip: 'fd00::100', mac: MAC }, 'bound for the host of this MAC');
  t.equal(req.leaseKey, adv.leaseKey);

  const other = decide6(
    pxeSolicit({ type: Msg6.Request, serverId: Buffer.from('0003000100ffffffffff', 'hex') }),
    ctx(),
    leases,
    1,
    LINK_LOCAL,
  );
  t.match(other, { action: 'ignore', reason: /another server/ });
});

t.test('each client of one host holds its own address: a release by one takes nothing from another', async (t) => {
  const leases = table();
  // OVMF's network stack and its PXE client are two DHCPv6 clients on one MAC (seen: the stack's Release
  // removed the address the PXE client was still fetching its file with)
  const bind = (iaid: number) => {
    const o = decide6(pxeSolicit({ type: Msg6.Request, serverId: SERVER_DUID, iaid }), ctx(), leases, 0, LINK_LOCAL);
    if (o.action !== 'reply' || o.leaseOp?.kind !== 'bind') throw new Error('no bind');
    leases.bind(o.leaseKey as string, o.leaseOp.ip, 0, undefined, o.leaseOp.mac);
    return o.leaseOp.ip;
  };
  const a = bind(1);
  const b = bind(2);
  t.not(a, b);
  t.same(leases.addressesOf([MAC], 1).sort(), [a, b].sort(), "both are the host's");
  const rel = decide6(
    pxeSolicit({ type: Msg6.Release, serverId: SERVER_DUID, iaid: 1, address: b }),
    ctx(),
    leases,
    1,
    LINK_LOCAL,
  );
  t.match(rel, { action: 'reply' });
  t.notOk(rel.action === 'reply' && rel.leaseOp, "a client cannot release another client's address");
  const own = decide6(
    pxeSolicit({ type: Msg6.Release, serverId: SERVER_DUID, iaid: 1, address: a }),
    ctx(),
    leases,
    1,
    LINK_LOCAL,
  );
  t.same(own.action === 'reply' && own.leaseOp, { kind: 'release', ip: a });
});

t.test('HTTPv6 gets the HTTP URL and option 16 exactly as OVMF needs it; iPXE gets its script', async (t) => {
  const http = decide6(pxeSolicit({ http: true }), ctx(), table(), 0, LINK_LOCAL);
  if (http.action !== 'reply') throw new Error(http.reason);
  t.equal(url(http.reply), 'http://[fd00::1]:8080/ipxe/snponly.efi');
  t.same(get6(http.reply.options, Opt6.VendorClass), Buffer.from('00000157000a48545450436c69656e74', 'hex'));
  const ipxe = decide6(pxeSolicit({ ipxe: true }), ctx(), table(), 0, LINK_LOCAL);
  t.equal(ipxe.action === 'reply' && url(ipxe.reply), 'http://[fd00::1]:8080/boot.ipxe');
  t.notOk(ipxe.action === 'reply' && get6(ipxe.reply.options, Opt6.VendorClass), 'no vendor class for iPXE');
  const signed = decide6(pxeSolicit({ http: true }), ctx({ signedChain: () => 'Secure Boot' }), table(), 0, LINK_LOCAL);
  t.notOk(signed.action === 'reply' && url(signed.reply), 'a Secure Boot host gets no HTTP boot file');
});

t.test('what is not ours or not netboot gets what RFC 8415 says', async (t) => {
  const leases = table();
  const linux = decide6(
    {
      type: Msg6.Solicit,
      xid: 1,
      options: readOptions6(Buffer.concat([option6(Opt6.ClientId, duidLl(MAC)), iaNa(9)])),
    },
    ctx(),
    leases,
    0,
    'fe80::1',
  );
  t.ok(
    linux.action === 'reply' && addressOf(linux.reply) && !url(linux.reply),
    'a plain client: an address, no boot file',
  );
  t.match(
    decide6(pxeSolicit({ serverId: SERVER_DUID }), ctx(), leases, 0, LINK_LOCAL),
    { action: 'ignore' },
    'solicit with a server id',
  );
  t.match(decide6(pxeSolicit(), ctx(), leases, 0, 'fe80::1'), { action: 'ignore', reason: /no MAC/ });
  const confirm = decide6(pxeSolicit({ type: Msg6.Confirm, address: '2001:db8::1' }), ctx(), leases, 0, LINK_LOCAL);
  t.same(confirm.action === 'reply' && get6(confirm.reply.options, Opt6.StatusCode)?.readUInt16BE(0), 4, 'NotOnLink');
  const info = decide6(pxeSolicit({ type: Msg6.InformationRequest }), ctx(), leases, 0, LINK_LOCAL);
  t.ok(info.action === 'reply' && !addressOf(info.reply) && url(info.reply), 'information-request: options only');
  const known = decide6(pxeSolicit(), ctx({ known: () => false }), leases, 0, LINK_LOCAL);
  t.match(known, { action: 'ignore', reason: /not a known host/ });
  const full = new LeaseTable({
    poolStart: 'fd00::100',
    poolEnd: 'fd00::100',
    leaseSeconds: 600,
    offerHoldSeconds: 30,
    reservations: [],
  });
  full.bind('someone/00000001', 'fd00::100', 0, undefined, '52:54:00:00:00:99');
  const none = decide6(pxeSolicit(), ctx(), full, 1, LINK_LOCAL);
  const ia = none.action === 'reply' ? get6(none.reply.options, Opt6.IaNa) : undefined;
  t.equal(ia && get6(readOptions6(ia.subarray(12)), Opt6.StatusCode)?.readUInt16BE(0), 2, 'NoAddrsAvail in the IA');
});

t.test('a lease table keeps to its family; base URLs follow the client', async (t) => {
  const v4 = { ip: '10.0.0.5', mac: MAC, expiresAt: 10, boundAt: 0 };
  const v6 = { ip: 'fd00::105', mac: MAC, client: 'x/1', expiresAt: 10, boundAt: 0 };
  const six = new LeaseTable(
    { poolStart: 'fd00::100', poolEnd: 'fd00::1ff', leaseSeconds: 60, offerHoldSeconds: 30, reservations: [] },
    [v4, v6],
  );
  t.same(six.addressesOf([MAC], 1), ['fd00::105'], 'the IPv4 lease stays out of the IPv6 table');
  const four = new LeaseTable(
    { poolStart: '10.0.0.2', poolEnd: '10.0.0.9', leaseSeconds: 60, offerHoldSeconds: 30, reservations: [] },
    [v4, v6],
  );
  t.same(four.addressesOf([MAC], 1), ['10.0.0.5']);
  t.same(four.addressesOf([MAC], 11), [], 'expired');

  const b = new HttpBases('http://10.0.0.1:80', 'http://[fd00::1]:80');
  t.equal(b.for('fd00::105'), 'http://[fd00::1]:80');
  t.equal(b.for('10.0.0.5'), 'http://10.0.0.1:80');
  t.equal(b.rebase('http://10.0.0.1:80/assets/inspector', 'fd00::105'), 'http://[fd00::1]:80/assets/inspector');
  t.equal(b.rebase('http://images.example/a', 'fd00::105'), 'http://images.example/a', 'not ours: as it is');
  t.equal(new HttpBases('http://10.0.0.1:80').for('fd00::105'), 'http://10.0.0.1:80', 'no IPv6 served');
});

t.test('radvd is told the managed flag, the on-link autonomous /64, and that we route nothing', async (t) => {
  const c = radvdConfig('br0', 'fd00::100');
  t.match(c, /interface br0 \{/);
  t.match(c, /AdvManagedFlag on;/);
  t.match(c, /AdvDefaultLifetime 0;/);
  t.match(c, /prefix fd00::\/64 \{\s+AdvOnLink on;\s+AdvAutonomous on;/);
  const { log } = memoryLogger('warn');
  const missing = new RouterAdverts('lo', 'fd00::100', tempDir(t), log, '/nonexistent/radvd');
  await t.rejects(
    missing.start(),
    /radvd, which is not installed: apt-get install radvd/,
    'start-up says what to install',
  );
});

/** A DHCPv6 server on loopback, its store in a temp dir, and a client socket it answers to. */
async function loopbackServer(t: Test, pool?: PoolSpec) {
  const store = await Store.open(tempDir(t));
  t.teardown(() => store.close());
  const client = dgram.createSocket({ type: 'udp6', ipv6Only: true });
  client.bind(0, '::1');
  await once(client, 'listening');
  t.teardown(() => client.close());
  const metrics = new Metrics();
  const server = new Dhcp6Server(
    { interface: 'lo', port: 0, clientPort: client.address().port, maxPacketBytes: 1500, context: ctx(), pool },
    store,
    memoryLogger('warn').log,
    metrics,
  );
  const { port } = await server.start();
  t.teardown(() => server.stop());
  return { store, client, metrics, server, port };
}

t.test('the server over real UDP (loopback): a bind is stored before the Reply; junk is counted', async (t) => {
  const { store, client, metrics, server, port } = await loopbackServer(t, {
    poolStart: 'fd00::100',
    poolEnd: 'fd00::1ff',
    leaseSeconds: 600,
    offerHoldSeconds: 30,
    reservations: [],
  });
  const replies: Dhcp6Message[] = [];
  client.on('message', (m) => replies.push(decode6(m)));
  const ask = async (m: Dhcp6Message) => {
    const n = replies.length;
    client.send(encode6(m), port, '::1');
    const end = Date.now() + 2000;
    while (replies.length === n && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    return replies[n];
  };
  const adv = await ask(pxeSolicit({ duid: duidLl(MAC) }));
  t.equal(adv?.type, Msg6.Advertise);
  const ip = adv && addressOf(adv);
  const reply = await ask(pxeSolicit({ duid: duidLl(MAC), type: Msg6.Request, serverId: SERVER_DUID, address: ip }));
  t.equal(reply?.type, Msg6.Reply);
  t.same(
    await store.leases.get(ip as string),
    {
      ip,
      mac: MAC,
      client: `${duidLl(MAC).toString('hex')}/00000001`,
      expiresAt: (await store.leases.get(ip as string))?.expiresAt,
      boundAt: (await store.leases.get(ip as string))?.boundAt,
    },
    'stored with its client',
  );
  t.same(server.leasedAddresses([MAC]), [ip, slaacAddress('fd00::100', MAC)], 'the lease and the SLAAC address');
  client.send(Buffer.from([1, 0, 0]), port, '::1');
  const end = Date.now() + 2000;
  while (
    !(await metrics.registry.getSingleMetricAsString('beskar7_dhcp_malformed_total')).includes('v6') &&
    Date.now() < end
  )
    await new Promise((r) => setTimeout(r, 5));
  t.match(
    await metrics.registry.getSingleMetricAsString('beskar7_dhcp_malformed_total'),
    /reason="v6 message of N bytes"\} 1/,
  );
});

t.test("proxy mode: what a host asks the site's server for, seen and not answered", async (t) => {
  t.same(shown6(pxeSolicit(), LINK_LOCAL), { mac: MAC }, 'a Solicit names no address; the MAC from the EUI-64 source');
  const asks = pxeSolicit({
    type: Msg6.Request,
    serverId: Buffer.from('0003000152540000aaaa', 'hex'),
    address: 'fd00::333',
  });
  t.same(shown6(asks, LINK_LOCAL), { mac: MAC, address: 'fd00::333' }, 'a Request names the address it takes');
  t.same(shown6(pxeSolicit({ type: Msg6.Renew, address: 'fd00::333' }), LINK_LOCAL)?.address, 'fd00::333');
  t.same(
    shown6(pxeSolicit({ type: Msg6.Release, address: 'fd00::333' }), LINK_LOCAL),
    { mac: MAC },
    'a Release gives it up',
  );
  t.equal(shown6(pxeSolicit(), 'fe80::1'), undefined, 'no MAC, nothing shown');

  // over real UDP: a proxy-mode server (no pool) answers nothing and remembers what each MAC asked for
  const { store, client, metrics, server, port } = await loopbackServer(t);
  const replies: Buffer[] = [];
  client.on('message', (m) => replies.push(m));
  t.same(server.leasedAddresses([MAC]), [], 'before: nothing seen, nothing binds the host');
  const sent = [
    pxeSolicit({ duid: duidLl(MAC) }),
    { ...asks, options: [[Opt6.ClientId, duidLl(MAC)], ...asks.options.slice(1)] },
  ];
  sent.push(pxeSolicit({ duid: duidLl(MAC), type: Msg6.InformationRequest }));
  for (const m of sent) client.send(encode6(m as Dhcp6Message), port, '::1');
  const counted = () => metrics.registry.getSingleMetricAsString('beskar7_dhcp_packets_total');
  const end = Date.now() + 2000;
  while (((await counted()).match(/result="observed"\} (\d+)/g) ?? []).length < 3 && Date.now() < end)
    await new Promise((r) => setTimeout(r, 5));
  const text = await counted();
  t.match(text, /type="request",result="observed"\} 1/, 'the Request was seen');
  t.notMatch(text, /port="dhcpv6"[^\n]*result="reply"/, 'and nothing was answered: no reply counted');
  t.same(
    server.leasedAddresses([MAC]),
    ['fd00::333', slaacAddress('fd00::1', MAC)],
    'after: the address it asked for, and its SLAAC address in our prefix',
  );
  t.same(await store.leases.all(), [], 'and no lease is stored');
  t.equal(replies.length, 0, 'the client got nothing');
});

t.test(
  'the advertised IPv6 address: one the interface was given, not one it formed from router advertisements',
  async (t) => {
    const mac = '9e:fc:94:17:38:bb';
    const addr = (address: string) => ({
      address,
      netmask: 'ffff:ffff:ffff:ffff::',
      family: 'IPv6' as const,
      mac,
      internal: false,
      cidr: `${address}/64`,
      scopeid: 0,
    });
    const br0 = [addr('fd77::9cfc:94ff:fe17:38bb'), addr('fd77::1'), addr('fe80::9cfc:94ff:fe17:38bb')];
    t.same(chooseAdvertiseAddress6({ br0 }, 'br0'), { ok: true, address: 'fd77::1' });
    t.same(
      chooseAdvertiseAddress6({ br0: [br0[0] as (typeof br0)[0]] }, 'br0'),
      { ok: true, address: 'fd77::9cfc:94ff:fe17:38bb' },
      'the only global one',
    );
    t.match(chooseAdvertiseAddress6({ br0: [br0[2] as (typeof br0)[0]] }, 'br0'), {
      ok: false,
      reason: /no global IPv6 address/,
    });
  },
);
