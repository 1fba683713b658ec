import dgram from 'node:dgram';
import { once } from 'node:events';
import t, { type Test } from 'tap';
import { AdminCommands } from '../../src/admin/commands.js';
import { decode, encode } from '../../src/boot/dhcp/codec.js';
import { MsgType, Opt } from '../../src/boot/dhcp/options.js';
import { takeBackup } from '../../src/store/backup.js';
import { SecretBox } from '../../src/store/secrets.js';
import { Store } from '../../src/store/store.js';
import { Pipeline } from '../../src/workflow/pipeline.js';
import { loopbackDhcp } from '../helpers/dhcp.js';
import { pxe, request } from '../helpers/packets.js';
import { tempDir } from '../helpers/tmp.js';

/** A relay on loopback: the server answers relayed packets unicast to giaddr, so nothing is broadcast. */
async function relay(t: Test) {
  const sock = dgram.createSocket('udp4');
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  t.teardown(() => sock.close());
  const replies: ReturnType<typeof decode>[] = [];
  sock.on('message', (m) => replies.push(decode(m)));
  return { sock, port: sock.address().port, replies };
}

async function start(t: Test, mode: 'proxy' | 'full', relayPort: number) {
  const dir = tempDir(t);
  const store = await Store.open(dir);
  const pool = mode === 'full' ? { poolStart: '127.1.0.10', poolEnd: '127.1.0.20' } : undefined;
  const s = await loopbackDhcp(t, store, { serverIp: '127.0.0.1', relayPort, ...(pool ? { pool } : {}) });
  return { ...s, store, dir };
}

const until = async (cond: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
};

t.test('proxy mode over real UDP: relayed PXE DISCOVER gets an OFFER, junk is counted', async (t) => {
  const r = await relay(t);
  const s = await start(t, 'proxy', r.port);
  r.sock.send(encode(pxe(0, { giaddr: '127.0.0.1', xid: 77 })), s.port, '127.0.0.1');
  for (const junk of [
    Buffer.alloc(10),
    Buffer.alloc(400, 0xff),
    Buffer.concat([encode(pxe(0)).subarray(0, 240), Buffer.from([60, 250, 1])]),
  ]) {
    r.sock.send(junk, s.port, '127.0.0.1');
  }
  // datagrams are handled in order: once the sentinel is answered, the junk before it was handled too
  r.sock.send(encode(pxe(0, { giaddr: '127.0.0.1', xid: 999 })), s.port, '127.0.0.1');
  await until(() => r.replies.some((p) => p.xid === 999));
  r.replies.splice(
    r.replies.findIndex((p) => p.xid === 999),
    1,
  );
  t.equal(r.replies.length, 1, 'one reply, junk unanswered');
  t.equal(r.replies[0]!.xid, 77);
  t.equal(r.replies[0]!.file, 'undionly.kpxe');
  t.equal(await s.metrics.value('beskar7_dhcp_malformed_total'), 3, 'three malformed packets counted');
  t.equal(
    await s.metrics.value('beskar7_dhcp_packets_total', { type: 'discover', result: 'reply' }),
    2,
    'the DISCOVER and the sentinel',
  );
  t.ok(
    s.lines.some((l) => l.msg === 'dhcp reply' && l.mac === '52:54:00:aa:bb:01'),
    'reply logged with the MAC',
  );
});

t.test(
  'proxy mode: the address a host asks the site for is the one it holds, for the inspector contract',
  async (t) => {
    const r = await relay(t);
    const s = await start(t, 'proxy', r.port);
    const mac = '52:54:00:00:00:61';
    t.same(s.server.leasedAddresses([mac]), [], 'nothing seen yet');
    // the firmware's DHCPREQUEST to the site's server, which a proxy sees and does not answer
    const siteRequest = pxe(0, { mac, type: MsgType.Request, requested: '10.9.0.21', serverId: '10.9.0.1' });
    r.sock.send(encode({ ...siteRequest, giaddr: '127.0.0.1' }), s.port, '127.0.0.1');
    await until(() => s.server.leasedAddresses([mac]).length > 0);
    t.same(s.server.leasedAddresses([mac]), ['10.9.0.21']);
    // the inspector's own DHCP (udhcpc) asks for another address: that is the one the host holds now
    const udhcpc = request({ mac, type: MsgType.Request, requested: '10.9.0.57', giaddr: '127.0.0.1' });
    r.sock.send(encode(udhcpc), s.port, '127.0.0.1');
    await until(() => s.server.leasedAddresses([mac])[0] === '10.9.0.57');
    t.same(s.server.leasedAddresses([mac]), ['10.9.0.57'], 'the newest address counts');
    t.same(s.server.leasedAddresses([mac], Date.now() + 3600_001), [], 'and only for the hour of an inspection');
  },
);

t.test('full mode over real UDP: DORA stores the lease before the ACK; a restart keeps it', async (t) => {
  const r = await relay(t);
  const s = await start(t, 'full', r.port);
  const mac = '52:54:00:00:00:42';
  r.sock.send(encode(pxe(0, { mac, giaddr: '127.0.0.1', xid: 1 })), s.port, '127.0.0.1');
  await until(() => r.replies.length >= 1);
  const offer = r.replies[0]!;
  t.equal(offer.options.get(Opt.MessageType)![0], MsgType.Offer);
  r.sock.send(
    encode(
      pxe(0, {
        mac,
        giaddr: '127.0.0.1',
        xid: 2,
        type: MsgType.Request,
        requested: offer.yiaddr,
        serverId: '127.0.0.1',
      }),
    ),
    s.port,
    '127.0.0.1',
  );
  await until(() => r.replies.length >= 2);
  const ack = r.replies[1]!;
  t.equal(ack.options.get(Opt.MessageType)![0], MsgType.Ack);
  t.equal(ack.yiaddr, offer.yiaddr);
  const stored = await s.store.leases.get(offer.yiaddr);
  t.equal(stored?.mac, mac, 'lease is in LevelDB once the ACK is out');
  t.equal(s.server.leaseCount, 1);
});

t.test(
  'a second REQUEST soon after the bind (iPXE after the firmware) keeps the stored lease: no write, never ahead of it',
  async (t) => {
    const r = await relay(t);
    const s = await start(t, 'full', r.port);
    const ip = '127.1.0.10';
    const request = (mac: string, xid: number) =>
      r.sock.send(
        encode(pxe(0, { mac, giaddr: '127.0.0.1', xid, type: MsgType.Request, requested: ip, serverId: '127.0.0.1' })),
        s.port,
        '127.0.0.1',
      );
    const backend = s.store.backend;
    const commit = backend.commit.bind(backend);
    let commits = 0;
    let gate: Promise<void> | undefined;
    let fail = false;
    backend.commit = async (ops, guards) => {
      commits++;
      await gate;
      if (fail) throw new Error('disk full');
      return commit(ops, guards);
    };
    const acks = () => r.replies.filter((p) => p.options.get(Opt.MessageType)![0] === MsgType.Ack);
    const leaseTime = (p: ReturnType<typeof decode>) => p.options.get(Opt.LeaseTime)!.readUInt32BE(0);

    // the firmware's REQUEST is still being written when iPXE's (or a retransmission) comes: both ACKs wait for it
    let open!: () => void;
    gate = new Promise((res) => (open = res));
    request('52:54:00:00:00:61', 1);
    await until(() => commits === 1);
    request('52:54:00:00:00:61', 2);
    // decided (and counted) before their lease write: both are waiting on it once the count is 2
    const decided = () => s.metrics.value('beskar7_dhcp_packets_total', { type: 'request', result: 'reply' });
    for (let i = 0; i < 400 && (await decided()) < 2; i++) await new Promise((res) => setTimeout(res, 5));
    t.equal(await decided(), 2);
    t.equal(acks().length, 0, 'no ACK while the lease is not stored (both REQUESTs decided, both waiting)');
    open();
    await until(() => acks().length >= 2);
    t.same(
      acks()
        .map((p) => p.xid)
        .sort(),
      [1, 2],
      'both answered once it is stored',
    );
    t.equal(commits, 1, 'one write for the two');
    const first = await s.store.leases.get(ip);
    t.equal(first?.mac, '52:54:00:00:00:61');
    t.ok(
      acks().every((p) => leaseTime(p) <= 600 && leaseTime(p) > 590),
      'each ACK within the stored lease',
    );
    request('52:54:00:00:00:61', 3);
    await until(() => acks().length >= 3);
    t.ok(leaseTime(acks()[2]!) < 600, 'what is left of the stored lease');
    t.equal(commits, 1, 'no write for the renewal');
    t.same(await s.store.leases.get(ip), first, 'the stored lease is what the client was told');

    // a write that fails takes the ACK of the REQUEST that waited on it with it
    const release = encode(
      pxe(0, { mac: '52:54:00:00:00:61', giaddr: '127.0.0.1', xid: 4, type: MsgType.Release, ciaddr: ip }),
    );
    r.sock.send(release, s.port, '127.0.0.1');
    await until(() => s.server.leaseCount === 0);
    gate = new Promise((res) => (open = res));
    fail = true;
    const before = commits;
    request('52:54:00:00:00:62', 5);
    await until(() => commits === before + 1);
    request('52:54:00:00:00:62', 6);
    open();
    const withheld = () => s.lines.filter((l) => l.msg === 'lease not stored; ACK withheld').length;
    await until(() => withheld() >= 1 && s.server.leaseCount === 0);
    t.equal(acks().length, 3, 'no ACK for a lease that was not stored');
    t.equal(s.server.leaseCount, 0, 'and the table let the address go');
  },
);

t.test('a restore reloads the running lease table: restored leases are not offered to others', async (t) => {
  const r = await relay(t);
  const s = await start(t, 'full', r.port);
  const owner = '52:54:00:00:00:51';
  const lease = { ip: '127.1.0.10', mac: owner, expiresAt: Date.now() + 600_000, boundAt: Date.now() };
  const backup = await takeBackup(s.store);
  backup.collections.leases = [[lease.ip, lease]];
  const commands = new AdminCommands({
    pipeline: new Pipeline(s.store),
    secrets: SecretBox.inDir(s.dir),
    imageProblem: async () => undefined,
    forgetBmc: async () => {},
    actionWaitMs: 0,
    maxObjects: 10,
    restored: () => s.server.reloadLeases(),
  });
  t.ok((await commands.restore(backup)).ok);
  t.equal(s.server.leaseCount, 1, 'the running table holds the restored lease');
  r.sock.send(encode(pxe(0, { mac: '52:54:00:00:00:52', giaddr: '127.0.0.1', xid: 9 })), s.port, '127.0.0.1');
  r.sock.send(encode(pxe(0, { mac: owner, giaddr: '127.0.0.1', xid: 10 })), s.port, '127.0.0.1');
  await until(() => r.replies.length >= 2);
  const byXid = new Map(r.replies.map((p) => [p.xid, p.yiaddr]));
  t.not(byXid.get(9), '127.1.0.10', 'another MAC is offered another address');
  t.equal(byXid.get(10), '127.1.0.10', 'the owner gets its restored address back');
});

t.test('datagrams over dhcp.maxPacketBytes are dropped before decoding, and counted', async (t) => {
  const r = await relay(t);
  const s = await start(t, 'proxy', r.port);
  const valid = encode(pxe(0, { giaddr: '127.0.0.1', xid: 5 }));
  r.sock.send(Buffer.concat([valid, Buffer.alloc(1600 - valid.length)]), s.port, '127.0.0.1');
  r.sock.send(encode(pxe(0, { giaddr: '127.0.0.1', xid: 6 })), s.port, '127.0.0.1');
  // handled in order: the answer to the second is proof the first was handled
  await until(() => r.replies.length >= 1);
  t.same(
    r.replies.map((p) => p.xid),
    [6],
    'only the packet within the limit is answered',
  );
  t.equal(await s.metrics.value('beskar7_dhcp_malformed_total', { reason: 'oversize' }), 1);
});
