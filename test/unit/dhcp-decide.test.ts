import t from 'tap';
import { decode, encode } from '../../src/boot/dhcp/codec.js';
import { bootFileFor, classify, type DecideContext, decide, observedAddress } from '../../src/boot/dhcp/decide.js';
import { LeaseTable } from '../../src/boot/dhcp/leases.js';
import { MsgType, Opt } from '../../src/boot/dhcp/options.js';
import { BOOT_FILES } from '../helpers/dhcp.js';
import { pxe, request } from '../helpers/packets.js';

const base: Omit<DecideContext, 'mode'> = {
  port: 'dhcp',
  serverIp: '10.77.0.1',
  httpBase: 'http://10.77.0.1:8080',
  bootFiles: BOOT_FILES,
  ipxeEfiMACs: new Set(['52:54:00:00:00:99']),
  clientPort: 68,
  serverPort: 67,
};
const proxy: DecideContext = { ...base, mode: 'proxy' };
const fullCtx: DecideContext = {
  ...base,
  mode: 'full',
  full: { subnetMask: '255.255.255.0', router: '10.77.0.1', dnsServers: ['10.77.0.1'], leaseSeconds: 3600 },
};
const pool = () =>
  new LeaseTable({
    poolStart: '10.77.0.100',
    poolEnd: '10.77.0.102',
    leaseSeconds: 3600,
    offerHoldSeconds: 30,
    reservations: [{ mac: '52:54:00:00:00:aa', ip: '10.77.0.50', hostname: 'reserved' }],
  });
/** The pool with 10.77.0.100 bound to ...:01, and that address asked for in a REQUEST from `mac`. */
const renewal = (mac: string) => {
  const leases = pool();
  leases.bind('52:54:00:00:00:01', '10.77.0.100', 0);
  return decide(request({ mac, type: MsgType.Request, ciaddr: '10.77.0.100' }), fullCtx, leases, 0);
};

t.test('boot file by client architecture (option 93) and vendor class', async (t) => {
  const rows: [string, ReturnType<typeof pxe>, string | undefined, string | undefined][] = [
    ['BIOS PXE', pxe(0), 'undionly.kpxe', 'PXEClient'],
    ['x86 EFI', pxe(6), 'snponly.efi', 'PXEClient'],
    ['x64 EFI', pxe(7), 'snponly.efi', 'PXEClient'],
    ['EFI BC', pxe(9), 'snponly.efi', 'PXEClient'],
    ['x64 EFI listed in ipxeEfiMACs', pxe(7, { mac: '52:54:00:00:00:99' }), 'ipxe.efi', 'PXEClient'],
    ['ARM64 EFI', pxe(11), 'grubnetaa64.efi', 'PXEClient'],
    [
      'x64 UEFI HTTP boot',
      pxe(16, { vendor: 'HTTPClient:Arch:00016:UNDI:003000' }),
      'http://10.77.0.1:8080/ipxe/snponly.efi',
      'HTTPClient',
    ],
    [
      'ia32 UEFI HTTP boot',
      pxe(15, { vendor: 'HTTPClient:Arch:00015:UNDI:003000' }),
      'http://10.77.0.1:8080/ipxe/snponly.efi',
      'HTTPClient',
    ],
    [
      'ARM64 UEFI HTTP boot: the firmware goes on to PXE',
      pxe(19, { vendor: 'HTTPClient:Arch:00019:UNDI:003000' }),
      undefined,
      undefined,
    ],
    ['iPXE by user class', pxe(0, { userClass: '\x04iPXE' }), 'http://10.77.0.1:8080/boot.ipxe', 'PXEClient'],
    ['iPXE by bare user class', pxe(7, { userClass: 'iPXE' }), 'http://10.77.0.1:8080/boot.ipxe', 'PXEClient'],
    ['iPXE by option 175', pxe(7, { ipxeEncap: true }), 'http://10.77.0.1:8080/boot.ipxe', 'PXEClient'],
    ['unknown arch', pxe(2), undefined, undefined],
    ['no option 93', request({ vendor: 'PXEClient' }), undefined, undefined],
    ['plain DHCP client', request({ vendor: 'udhcp 1.35.0' }), undefined, undefined],
  ];
  for (const [name, pkt, file, vendor] of rows) {
    const b = bootFileFor(classify(pkt), proxy);
    t.equal(b?.file, file, `${name}: file`);
    t.equal(b?.vendorClass, vendor, `${name}: vendor class`);
  }
});

t.test(
  'a Secure Boot host gets shim over PXE, and no HTTP boot; BIOS, iPXE and other hosts are unchanged',
  async (t) => {
    const SB = '52:54:00:00:00:5b';
    const ctx: DecideContext = {
      ...proxy,
      signedChain: (mac) => (mac === SB ? 'the BMC reports Secure Boot enabled' : undefined),
    };
    const sb = bootFileFor(classify(pxe(7, { mac: SB })), ctx);
    t.equal(sb?.file, 'shimx64.efi', 'x64 UEFI PXE: shim');
    t.equal(sb?.tftpServer, '10.77.0.1', 'over TFTP from us');
    t.equal(sb?.signed, 'the BMC reports Secure Boot enabled', 'with the reason for the timeline');
    t.equal(bootFileFor(classify(pxe(9, { mac: SB })), ctx)?.file, 'shimx64.efi', 'EFI BC: shim');
    t.equal(bootFileFor(classify(pxe(7)), ctx)?.file, 'snponly.efi', 'another host: iPXE');
    t.equal(bootFileFor(classify(pxe(0, { mac: SB })), ctx)?.file, 'undionly.kpxe', 'BIOS has no Secure Boot: iPXE');
    t.equal(
      bootFileFor(classify(pxe(7, { mac: SB, userClass: 'iPXE' })), ctx)?.file,
      'http://10.77.0.1:8080/boot.ipxe',
      'iPXE itself asking (the spec forced iPXE after all) is handed its script',
    );
    const http = pxe(16, { mac: SB, vendor: 'HTTPClient:Arch:00016:UNDI:003000' });
    t.equal(bootFileFor(classify(http), ctx), undefined, 'HTTP boot: nothing (the GRUB has no HTTP)');
    const out = decide(http, ctx, undefined, 0);
    t.equal(out.action, 'ignore');
    if (out.action === 'ignore')
      t.match(out.reason, /HTTP boot: the signed GRUB \(the BMC reports Secure Boot enabled\) loads over PXE only/);
    const offer = decide(pxe(7, { mac: SB }), ctx, undefined, 0);
    if (offer.action !== 'reply') return t.fail(`expected reply, got ${offer.action}`);
    t.equal(offer.reply.file, 'shimx64.efi', 'the proxy offer names shim');
    t.equal(offer.reply.siaddr, '10.77.0.1');
  },
);

t.test('proxy mode offers boot info, never an address', async (t) => {
  const out = decide(pxe(0, { uuid: Buffer.from('00112233445566778899aabbccddeeff00', 'hex') }), proxy, undefined, 0);
  if (out.action !== 'reply') return t.fail(`expected reply, got ${out.action}`);
  t.equal(out.replyType, 'offer');
  t.equal(out.reply.yiaddr, '0.0.0.0');
  t.equal(out.reply.siaddr, '10.77.0.1');
  t.equal(out.reply.file, 'undionly.kpxe');
  t.equal(out.reply.options.get(Opt.VendorClass)?.toString(), 'PXEClient');
  t.equal(out.reply.options.get(Opt.ClientUuid)?.toString('hex'), '00112233445566778899aabbccddeeff00', 'UUID echoed');
  t.notOk(out.reply.options.has(Opt.LeaseTime), 'no lease time');
  t.notOk(out.reply.options.has(Opt.IpxeEncap), 'no iPXE options for a PXE ROM');
  t.same(out.to, { address: '255.255.255.255', port: 68 });
  t.equal(decode(encode(out.reply)).file, 'undionly.kpxe', 'encodes');
});

t.test('proxy mode ignores what belongs to the site DHCP server', async (t) => {
  const rows: [string, ReturnType<typeof pxe>, RegExp][] = [
    ['plain client', request({ vendor: 'MSFT 5.0' }), /not a netboot client/],
    ['REQUEST', pxe(0, { type: MsgType.Request, requested: '10.77.0.100', serverId: '10.77.0.2' }), /site's DHCP/],
    ['unknown arch', pxe(2), /unsupported client architecture 2/],
    ['BOOTREPLY', { ...pxe(0), op: 2 }, /BOOTREQUEST/],
    [
      'BOOTP',
      (() => {
        const p = pxe(0);
        p.options.delete(Opt.MessageType);
        return p;
      })(),
      /BOOTP/,
    ],
  ];
  for (const [name, pkt, re] of rows) {
    const out = decide(pkt, proxy, undefined, 0);
    t.equal(out.action, 'ignore', name);
    if (out.action === 'ignore') t.match(out.reason, re, name);
  }
});

t.test('iPXE clients get the script URL and ipxe.no-pxedhcp (175.176=1)', async (t) => {
  const out = decide(pxe(7, { userClass: '\x04iPXE', ipxeEncap: true }), proxy, undefined, 0);
  if (out.action !== 'reply') return t.fail('no reply');
  t.equal(out.reply.file, 'http://10.77.0.1:8080/boot.ipxe');
  t.same([...out.reply.options.get(Opt.IpxeEncap)!], [176, 1, 1]);
  t.equal(
    out.reply.options.get(Opt.VendorClass)?.toString(),
    'PXEClient',
    'iPXE takes a proxy offer only with PXEClient',
  );
  t.equal(out.reply.options.get(Opt.BootfileName)?.toString(), 'http://10.77.0.1:8080/boot.ipxe');
});

t.test('relayed requests are answered unicast to the relay on the server port', async (t) => {
  const out = decide(pxe(0, { giaddr: '10.9.0.1' }), proxy, undefined, 0);
  if (out.action !== 'reply') return t.fail('no reply');
  t.same(out.to, { address: '10.9.0.1', port: 67 });
  t.equal(out.reply.giaddr, '10.9.0.1');
  t.equal(out.reply.flags & 0x8000, 0, 'broadcast flag left as the client set it');
});

t.test('PXE port 4011 answers REQUEST with an ACK to the sender', async (t) => {
  const ctx: DecideContext = { ...proxy, port: 'pxe' };
  const out = decide(pxe(7, { type: MsgType.Request, ciaddr: '10.77.0.150' }), ctx, undefined, 0, {
    address: '10.77.0.150',
    port: 4011,
  });
  if (out.action !== 'reply') return t.fail('no reply');
  t.equal(out.replyType, 'ack');
  t.equal(out.reply.file, 'snponly.efi');
  t.equal(out.reply.ciaddr, '10.77.0.150');
  t.same(out.to, { address: '10.77.0.150', port: 4011 });
  t.equal(decide(pxe(7), ctx, undefined, 0).action, 'ignore', 'DISCOVER on 4011 is ignored');
});

t.test('full mode: DORA with lease options and boot info', async (t) => {
  const leases = pool();
  const offer = decide(pxe(0, { mac: '52:54:00:00:00:01' }), fullCtx, leases, 1000);
  if (offer.action !== 'reply') return t.fail('no offer');
  t.equal(offer.reply.yiaddr, '10.77.0.100');
  t.same(offer.leaseOp, { kind: 'offer', ip: '10.77.0.100' });
  t.equal(offer.reply.options.get(Opt.LeaseTime)?.readUInt32BE(0), 3600);
  t.equal(offer.reply.options.get(Opt.RenewalTime)?.readUInt32BE(0), 1800);
  t.same([...offer.reply.options.get(Opt.SubnetMask)!], [255, 255, 255, 0]);
  t.same([...offer.reply.options.get(Opt.Router)!], [10, 77, 0, 1]);
  t.equal(offer.reply.file, 'undionly.kpxe');
  t.notOk(
    offer.reply.options.has(Opt.VendorClass),
    'no "PXEClient" in a full offer: EDK2 would go to port 4011 for it',
  );
  const http = decide(
    pxe(16, { mac: '52:54:00:00:00:05', vendor: 'HTTPClient:Arch:00016:UNDI:003000' }),
    fullCtx,
    pool(),
    1000,
  );
  t.equal(
    http.action === 'reply' && http.reply.options.get(Opt.VendorClass)?.toString(),
    'HTTPClient',
    'UEFI HTTP boot needs HTTPClient echoed',
  );
  leases.holdOffer('52:54:00:00:00:01', '10.77.0.100', 1000);

  const other = decide(pxe(0, { mac: '52:54:00:00:00:02' }), fullCtx, leases, 1000);
  t.equal(other.action === 'reply' && other.reply.yiaddr, '10.77.0.101', 'held offer is not offered twice');

  const ack = decide(
    pxe(0, { mac: '52:54:00:00:00:01', type: MsgType.Request, requested: '10.77.0.100', serverId: '10.77.0.1' }),
    fullCtx,
    leases,
    1000,
  );
  if (ack.action !== 'reply') return t.fail('no ack');
  t.equal(ack.replyType, 'ack');
  t.same(ack.leaseOp, { kind: 'bind', ip: '10.77.0.100', hostname: undefined });
  t.equal(ack.reply.file, 'undionly.kpxe');

  const plain = decide(request({ mac: '52:54:00:00:00:03', vendor: 'udhcp 1.35.0' }), fullCtx, leases, 1000);
  t.equal(plain.action === 'reply' && plain.reply.file, '', 'non-netboot clients get an address and no boot file');
});

t.test(
  'full mode: a renewal within the first quarter of the lease keeps the stored lease (Kea cache-threshold)',
  async (t) => {
    const leases = pool();
    const mac = '52:54:00:00:00:01';
    const req = (ip: string) =>
      pxe(7, { mac, type: MsgType.Request, requested: ip, serverId: '10.77.0.1', userClass: 'iPXE' });
    leases.bind(mac, '10.77.0.100', 1000);
    const again = decide(req('10.77.0.100'), fullCtx, leases, 11_000);
    if (again.action !== 'reply') return t.fail('no ack');
    t.equal(again.replyType, 'ack');
    t.same(
      again.leaseOp,
      { kind: 'keep', ip: '10.77.0.100', seconds: 3590 },
      'iPXE 10 s after the firmware: nothing to write',
    );
    t.equal(again.reply.yiaddr, '10.77.0.100');
    t.equal(again.reply.options.get(Opt.LeaseTime)?.readUInt32BE(0), 3590, 'the rest of the stored lease');
    t.equal(again.reply.options.get(Opt.RenewalTime)?.readUInt32BE(0), 1795);
    t.equal(again.reply.options.get(Opt.RebindingTime)?.readUInt32BE(0), 3141);
    t.ok(again.reply.options.has(Opt.SubnetMask), 'the ACK carries the network options as a bind does');
    const late = decide(req('10.77.0.100'), fullCtx, leases, 1000 + 900_000);
    t.same(
      late.action === 'reply' && late.leaseOp,
      { kind: 'bind', ip: '10.77.0.100', hostname: undefined },
      'a quarter in: a new lease, written',
    );
    const moved = decide(req('10.77.0.101'), fullCtx, leases, 11_000);
    t.same(
      moved.action === 'reply' && moved.leaseOp,
      { kind: 'bind', ip: '10.77.0.101', hostname: undefined },
      'another address: written',
    );
    // a reservation's hostname is part of the lease: a lease stored without it is written again
    leases.bind('52:54:00:00:00:aa', '10.77.0.50', 1000);
    const reserved = decide(
      pxe(0, { mac: '52:54:00:00:00:aa', type: MsgType.Request, requested: '10.77.0.50', serverId: '10.77.0.1' }),
      fullCtx,
      leases,
      2000,
    );
    t.same(reserved.action === 'reply' && reserved.leaseOp, { kind: 'bind', ip: '10.77.0.50', hostname: 'reserved' });
  },
);

t.test('full mode: REQUEST for another server, a taken address, a reservation', async (t) => {
  const leases = pool();
  leases.bind('52:54:00:00:00:01', '10.77.0.100', 0);
  const chose = decide(
    pxe(0, { mac: '52:54:00:00:00:02', type: MsgType.Request, requested: '10.77.0.101', serverId: '10.77.0.9' }),
    fullCtx,
    leases,
    0,
  );
  t.equal(chose.action, 'ignore');
  const taken = decide(
    pxe(0, { mac: '52:54:00:00:00:02', type: MsgType.Request, requested: '10.77.0.100', serverId: '10.77.0.1' }),
    fullCtx,
    leases,
    0,
  );
  if (taken.action !== 'reply') return t.fail('expected NAK');
  t.equal(taken.replyType, 'nak');
  t.match(taken.reply.options.get(Opt.Message)?.toString(), /leased to 52:54:00:00:00:01/);
  t.equal(taken.reply.yiaddr, '0.0.0.0');

  const res = decide(pxe(0, { mac: '52:54:00:00:00:aa' }), fullCtx, leases, 0);
  t.equal(res.action === 'reply' && res.reply.yiaddr, '10.77.0.50', 'reservation offered');
  const wrong = decide(
    pxe(0, { mac: '52:54:00:00:00:aa', type: MsgType.Request, requested: '10.77.0.101' }),
    fullCtx,
    leases,
    0,
  );
  t.equal(wrong.action === 'reply' && wrong.replyType, 'nak', 'reserved host asking for another address is NAKed');
  const resAck = decide(
    pxe(0, { mac: '52:54:00:00:00:aa', type: MsgType.Request, requested: '10.77.0.50' }),
    fullCtx,
    leases,
    0,
  );
  t.same(resAck.action === 'reply' && resAck.leaseOp, { kind: 'bind', ip: '10.77.0.50', hostname: 'reserved' });
});

t.test('full mode: release and decline are silent lease changes; only the holder may decline', async (t) => {
  const leases = pool();
  const rel = decide(request({ type: MsgType.Release, ciaddr: '10.77.0.100' }), fullCtx, leases, 0);
  t.same(rel.action === 'silent' && rel.leaseOp, { kind: 'release', ip: '10.77.0.100' });
  const holder = '52:54:00:00:00:01';
  leases.bind(holder, '10.77.0.101', 0);
  const dec = decide(request({ mac: holder, type: MsgType.Decline, requested: '10.77.0.101' }), fullCtx, leases, 0);
  t.same(dec.action === 'silent' && dec.leaseOp, { kind: 'decline', ip: '10.77.0.101' });
  // anyone else's DECLINE, for a leased or a free address, is ignored (RFC 2131 4.3.3)
  for (const ip of ['10.77.0.101', '10.77.0.100', '10.77.0.102']) {
    const forged = decide(
      request({ mac: '52:54:00:66:66:66', type: MsgType.Decline, requested: ip }),
      fullCtx,
      leases,
      0,
    );
    t.match(forged, { action: 'ignore', reason: /not leased to this client/ }, `forged DECLINE of ${ip} ignored`);
  }
});

t.test('full mode: knownMACsOnly answers enrolled hosts and reservations only', async (t) => {
  const ctx = { ...fullCtx, known: (mac: string) => mac === '52:54:00:00:00:01' };
  t.equal(decide(pxe(0, { mac: '52:54:00:00:00:01' }), ctx, pool(), 0).action, 'reply', 'an enrolled host');
  t.equal(decide(pxe(0, { mac: '52:54:00:00:00:aa' }), ctx, pool(), 0).action, 'reply', 'a reservation');
  t.match(decide(pxe(0, { mac: '52:54:00:66:66:66' }), ctx, pool(), 0), {
    action: 'ignore',
    reason: /not a known host \(dhcp\.full\.knownMACsOnly\)/,
  });
});

t.test('full mode: renewing client is answered unicast', async (t) => {
  const out = renewal('52:54:00:00:00:01');
  t.same(out.action === 'reply' && out.to, { address: '10.77.0.100', port: 68 });
});

t.test('classify: netboot needs option 60 PXEClient/HTTPClient and a whole option 93', async (t) => {
  const c = (s: Parameters<typeof request>[0]) => classify(request(s));
  t.match(c({ vendor: 'PXEClient:Arch:00007', arch: 7 }), { netboot: true, httpClient: false, archClass: 'efi-x64' });
  t.match(c({ vendor: 'HTTPClient:Arch:00016', arch: 16 }), { netboot: true, httpClient: true });
  t.match(c({ vendor: 'PXEClient' }), { netboot: false, arch: undefined, archClass: undefined }, 'no option 93');
  t.match(c({ vendor: 'MSFT 5.0', arch: 7 }), { netboot: false, httpClient: false }, 'option 93 alone');
  t.match(c({ vendor: 'xPXEClient', arch: 7 }), { netboot: false }, 'PXEClient must lead option 60');
  const short = request({ vendor: 'PXEClient' });
  short.options.set(Opt.ClientArch, Buffer.from([7]));
  t.match(classify(short), { arch: undefined, netboot: false }, 'a one-byte option 93 is no architecture');
  t.equal(c({ userClass: '\x04iPXE' }).ipxe, true);
  t.equal(c({ userClass: '\x04iPXEv2' }).ipxe, false, 'the user class ends in iPXE');
  t.equal(c({ userClass: 'gPXE\x04iPXE' }).ipxe, true, 'the last of a list');
  t.equal(c({ userClass: 'NotiPXE' }).ipxe, false, 'a whole entry, not a suffix');
  t.equal(bootFileFor(c({ vendor: 'MSFT 5.0', arch: 7 }), proxy), undefined, 'no boot file for a non-PXE client');
});

t.test('replies: header fields, option 66/67, long URLs, UEFI HTTP boot', async (t) => {
  const out = decide(pxe(7, { ciaddr: '0.0.0.0', xid: 77 }), proxy, undefined, 0);
  if (out.action !== 'reply') return t.fail('no reply');
  t.match(out.reply, { op: 2, hops: 0, secs: 0, xid: 77, sname: '', htype: 1, hlen: 6, chaddr: '52:54:00:aa:bb:01' });
  t.equal(out.reply.flags & 0x8000, 0x8000, 'a direct reply asks for broadcast');
  t.equal(out.reply.options.get(Opt.TftpServerName)?.toString(), '10.77.0.1', 'option 66: the TFTP server');
  t.same(out.boot, { file: 'snponly.efi', tftpServer: '10.77.0.1', vendorClass: 'PXEClient', ipxe: false });

  const http = decide(pxe(16, { vendor: 'HTTPClient:Arch:00016:UNDI:003000' }), proxy, undefined, 0);
  if (http.action !== 'reply') return t.fail('no HTTP reply');
  t.equal(http.reply.siaddr, '10.77.0.1', 'siaddr is ours for an HTTP boot too');
  t.notOk(http.reply.options.has(Opt.TftpServerName), 'no option 66 for an HTTP URL');
  t.notOk(http.reply.options.has(Opt.IpxeEncap), 'firmware loading iPXE over HTTP is not iPXE yet');
  t.equal(http.boot?.ipxe, false);

  // the file field holds 127 bytes and a NUL: a longer URL goes in option 67 only
  const longBase = (n: number) => `http://10.77.0.1:8080/${'x'.repeat(n - 'http://10.77.0.1:8080//boot.ipxe'.length)}`;
  for (const [len, inField] of [
    [127, true],
    [128, false],
  ] as const) {
    const ctx = { ...proxy, httpBase: longBase(len) };
    const o = decide(pxe(7, { userClass: 'iPXE' }), ctx, undefined, 0);
    if (o.action !== 'reply') return t.fail('no reply');
    t.equal(o.reply.options.get(Opt.BootfileName)?.length, len);
    t.equal(o.reply.file.length, inField ? len : 0, `a ${len}-byte URL ${inField ? 'in' : 'not in'} the file field`);
  }
});

t.test('replies go to the relay, the PXE sender, the renewing client, or broadcast', async (t) => {
  const src = { address: '10.77.0.150', port: 68 };
  const direct = decide(pxe(0), proxy, undefined, 0, src);
  t.same(
    direct.action === 'reply' && direct.to,
    { address: '255.255.255.255', port: 68 },
    'port 67: not to the source',
  );
  const nak = renewal('52:54:00:00:00:02');
  if (nak.action !== 'reply') return t.fail('no NAK');
  t.equal(nak.replyType, 'nak');
  t.same(nak.to, { address: '255.255.255.255', port: 68 }, 'a NAK is broadcast, not sent to the address refused');
  t.equal(nak.reply.ciaddr, '0.0.0.0', 'and echoes no ciaddr');
  t.notOk(nak.reply.options.has(Opt.SubnetMask), 'a NAK carries no network options');
  t.notOk(nak.reply.options.has(Opt.LeaseTime));
  t.match(nak.reply.options.get(Opt.Message)?.toString(), /leased to 52:54:00:00:00:01/);
});

t.test('full mode: the network options, and only on replies that give an address', async (t) => {
  const ctx: DecideContext = {
    ...fullCtx,
    full: {
      subnetMask: '255.255.255.0',
      dnsServers: ['10.77.0.53', '10.77.0.54'],
      domainName: 'lab.example',
      leaseSeconds: 3600,
    },
  };
  const offer = decide(pxe(0), ctx, pool(), 0);
  if (offer.action !== 'reply') return t.fail('no offer');
  t.same([...offer.reply.options.get(Opt.DnsServers)!], [10, 77, 0, 53, 10, 77, 0, 54]);
  t.equal(offer.reply.options.get(Opt.DomainName)?.toString(), 'lab.example');
  t.notOk(offer.reply.options.has(Opt.Router), 'no router when none is set');
  t.equal(offer.reply.options.get(Opt.RebindingTime)?.readUInt32BE(0), 3150);
  const noDns = decide(pxe(0), { ...ctx, full: { ...ctx.full!, dnsServers: [] } }, pool(), 0);
  t.notOk(noDns.action === 'reply' && noDns.reply.options.has(Opt.DnsServers), 'no option 6 without DNS servers');
  // INFORM: the client has its address; the ACK carries the options and the boot file, and no lease
  const inform = decide(pxe(0, { type: MsgType.Inform, ciaddr: '10.77.0.77' }), ctx, pool(), 0);
  if (inform.action !== 'reply') return t.fail('no ACK to INFORM');
  t.equal(inform.replyType, 'ack');
  t.equal(inform.reply.yiaddr, '0.0.0.0');
  t.equal(inform.reply.ciaddr, '10.77.0.77');
  t.notOk(inform.reply.options.has(Opt.LeaseTime), 'no lease');
  t.ok(inform.reply.options.has(Opt.SubnetMask), 'the network options');
  t.equal(inform.reply.file, 'undionly.kpxe');
  t.equal(inform.leaseOp, undefined);
  t.same(inform.to, { address: '10.77.0.77', port: 68 });
  // a proxy never hands out network options, even with a pool configured beside it
  const prox = decide(pxe(0), { ...ctx, mode: 'proxy' }, pool(), 0);
  t.notOk(prox.action === 'reply' && prox.reply.options.has(Opt.SubnetMask));
  // port 4011 in full mode: the boot server's ACK carries PXEClient, as the PXE spec asks
  const pxePort = decide(pxe(7, { type: MsgType.Request, ciaddr: '10.77.0.100' }), { ...ctx, port: 'pxe' }, pool(), 0, {
    address: '10.77.0.100',
    port: 4011,
  });
  t.equal(pxePort.action === 'reply' && pxePort.reply.options.get(Opt.VendorClass)?.toString(), 'PXEClient');
  // an iPXE that sends no option 60/93 is no PXE client: option 60 is not echoed to it
  const bare = decide(request({ userClass: '\x04iPXE' }), proxy, undefined, 0);
  if (bare.action !== 'reply') return t.fail('no reply to iPXE');
  t.equal(bare.reply.file, 'http://10.77.0.1:8080/boot.ipxe');
  t.notOk(bare.reply.options.has(Opt.VendorClass));
  const booting = decide(pxe(0), fullCtx, pool(), 0);
  t.equal(booting.action === 'reply' && booting.reply.siaddr, '10.77.0.1', 'a TFTP boot names us as next server');
  const plain = decide(request({ vendor: 'udhcp' }), fullCtx, pool(), 0);
  t.equal(plain.action === 'reply' && plain.reply.siaddr, '0.0.0.0', 'no boot, no next server');
});

t.test('every refusal says why', async (t) => {
  const pxePort: DecideContext = { ...proxy, port: 'pxe' };
  const full = pool();
  for (const ip of ['10.77.0.100', '10.77.0.101', '10.77.0.102'])
    full.holdOffer(`52:54:00:00:01:${ip.slice(-2)}`, ip, 0);
  const rows: [string, ReturnType<typeof decide>, string][] = [
    ['DISCOVER on 4011', decide(pxe(7), pxePort, undefined, 0), 'discover on the PXE port'],
    [
      'plain REQUEST on 4011',
      decide(request({ type: MsgType.Request, ciaddr: '10.77.0.9' }), pxePort, undefined, 0),
      'not a netboot client',
    ],
    ['full without a pool', decide(pxe(0), fullCtx, undefined, 0), 'full mode without a pool'],
    [
      'full without its options',
      decide(pxe(0), { ...fullCtx, full: undefined }, pool(), 0),
      'full mode without a pool',
    ],
    ['pool exhausted', decide(pxe(0), fullCtx, full, 0), 'pool exhausted'],
    [
      'REQUEST for another server',
      decide(pxe(0, { type: MsgType.Request, requested: '10.77.0.100', serverId: '10.77.0.9' }), fullCtx, pool(), 0),
      'client chose server 10.77.0.9',
    ],
    [
      'REQUEST without an address',
      decide(pxe(0, { type: MsgType.Request }), fullCtx, pool(), 0),
      'request without an address',
    ],
    [
      'RELEASE without ciaddr',
      decide(request({ type: MsgType.Release }), fullCtx, pool(), 0),
      'release without ciaddr',
    ],
    [
      'DECLINE without an address',
      decide(request({ type: MsgType.Decline }), fullCtx, pool(), 0),
      'decline without an address',
    ],
    ['a client sending OFFER', decide(request({ type: MsgType.Offer }), fullCtx, pool(), 0), 'unhandled offer'],
    ['type 9', decide(request({ type: 9 }), fullCtx, pool(), 0), 'unhandled type9'],
  ];
  for (const [name, out, reason] of rows) t.match(out, { action: 'ignore', reason }, name);
  const inform = decide(pxe(7, { type: MsgType.Inform, ciaddr: '10.77.0.150' }), pxePort, undefined, 0, {
    address: '10.77.0.150',
    port: 4011,
  });
  t.equal(inform.action === 'reply' && inform.replyType, 'ack', 'INFORM on 4011 is answered like a REQUEST');
});

t.test('full mode: INIT-REBOOT for a foreign address is left to its own network (RFC 2131 4.3.2)', async (t) => {
  const mac = '52:54:00:00:00:07';
  const ask = (ip: string, extra = {}) => request({ mac, type: MsgType.Request, requested: ip, ...extra });
  t.match(decide(ask('192.168.5.5'), fullCtx, pool(), 0), {
    action: 'ignore',
    reason: 'unknown client asks for foreign address 192.168.5.5',
  });
  const nakOf = (out: ReturnType<typeof decide>) => out.action === 'reply' && out.replyType;
  t.equal(nakOf(decide(ask('192.168.5.5', { serverId: '10.77.0.1' }), fullCtx, pool(), 0)), 'nak', 'SELECTING: NAK');
  t.equal(nakOf(decide(ask('10.77.0.7'), fullCtx, pool(), 0)), 'nak', 'our subnet, outside the pool: NAK');
  const held = pool();
  held.bind(mac, '10.77.0.101', 0);
  t.equal(nakOf(decide(ask('192.168.5.5'), fullCtx, held, 0)), 'nak', 'a client we lease to: NAK');
  // a relayed pool on another subnet than the server's own: an address in it is ours to refuse
  const relayed: DecideContext = { ...fullCtx, serverIp: '10.78.0.1' };
  const taken = pool();
  taken.bind('52:54:00:00:00:01', '10.77.0.100', 0);
  t.equal(nakOf(decide(ask('10.77.0.100'), relayed, taken, 0)), 'nak', 'in our pool: NAK');
});

t.test('observedAddress: what a client shows it holds', async (t) => {
  const src = { address: '10.77.0.150', port: 4011 };
  t.equal(observedAddress(pxe(7, { type: MsgType.Request }), 'pxe', src), '10.77.0.150', '4011: the source');
  t.equal(observedAddress(pxe(7), 'pxe', { address: '0.0.0.0', port: 68 }), undefined, 'not from 0.0.0.0');
  t.equal(observedAddress(pxe(7), 'pxe', undefined), undefined);
  t.equal(observedAddress(pxe(7, { type: MsgType.Request, requested: '10.77.0.9' }), 'dhcp', src), '10.77.0.9');
  t.equal(
    observedAddress(pxe(7, { type: MsgType.Request, ciaddr: '10.77.0.8' }), 'dhcp', src),
    '10.77.0.8',
    'renewing',
  );
  t.equal(observedAddress(pxe(7, { type: MsgType.Request }), 'dhcp', src), undefined, 'a REQUEST without an address');
  t.equal(observedAddress(pxe(7, { requested: '10.77.0.9' }), 'dhcp', src), undefined, 'a DISCOVER holds nothing');
  const bootp = pxe(7, { requested: '10.77.0.9' });
  bootp.options.delete(Opt.MessageType);
  t.equal(observedAddress(bootp, 'dhcp', src), undefined, 'BOOTP');
});
