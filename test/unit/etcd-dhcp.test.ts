// Full-mode DHCP on two appliances sharing one pool through etcd: two clients asking two appliances for the
// same address at the same moment; one gets the ACK, the other a NAK, never two ACKs.
import dgram from 'node:dgram';
import { once } from 'node:events';
import t from 'tap';
import { decode, encode } from '../../src/boot/dhcp/codec.js';
import { MsgType, Opt } from '../../src/boot/dhcp/options.js';
import { EtcdBackend } from '../../src/store/etcd-backend.js';
import { Store } from '../../src/store/store.js';
import { until } from '../helpers/appliance.js';
import { loopbackDhcp } from '../helpers/dhcp.js';
import { startEtcd } from '../helpers/etcd.js';
import { pxe } from '../helpers/packets.js';

t.test('two appliances, one pool: every address acknowledged to one MAC, the loser gets a NAK', async (t) => {
  const etcd = await startEtcd({ base: 24370 });
  t.teardown(() => etcd.stop());
  const relay = dgram.createSocket('udp4');
  relay.bind(0, '127.0.0.1');
  await once(relay, 'listening');
  t.teardown(() => relay.close());
  const replies = new Map<number, ReturnType<typeof decode>>();
  relay.on('message', (m) => {
    const p = decode(m);
    replies.set(p.xid, p);
  });
  const servers = [];
  const logs = [];
  for (const serverIp of ['127.0.0.1', '127.0.0.2']) {
    const store = await Store.over(new EtcdBackend({ endpoints: etcd.endpoints, prefix: '/dhcp/', timeoutMs: 1000 }));
    const pool = { poolStart: '127.1.0.10', poolEnd: '127.1.0.200' };
    const s = await loopbackDhcp(t, store, { serverIp, relayPort: relay.address().port, pool });
    logs.push(s.lines);
    servers.push({ serverIp, port: s.port });
  }
  const N = 30;
  let xid = 1000;
  const asked: { ip: string; xids: number[] }[] = [];
  for (let i = 0; i < N; i++) {
    const ip = `127.1.0.${10 + i}`;
    const xids = [xid++, xid++];
    // both at once: each appliance decides before the other's lease can reach it
    for (const [k, s] of servers.entries()) {
      const mac = `52:54:00:00:${k}0:${String(i).padStart(2, '0')}`;
      const req = { mac, giaddr: '127.0.0.1', xid: xids[k] as number, type: MsgType.Request, requested: ip };
      relay.send(encode(pxe(0, { ...req, serverId: s.serverIp })), s.port, '127.0.0.1');
    }
    asked.push({ ip, xids });
  }
  await until('every request answered', async () => (replies.size === 2 * N ? true : undefined), 10_000);
  const kind = (x: number) => replies.get(x)?.options.get(Opt.MessageType)?.[0];
  const acks = asked.map(({ xids }) => xids.filter((x) => kind(x) === MsgType.Ack).length);
  const naks = asked.map(({ xids }) => xids.filter((x) => kind(x) === MsgType.Nak).length);
  t.same(acks, Array(N).fill(1), `each of ${N} addresses acknowledged to exactly one of the two MACs`);
  t.same(naks, Array(N).fill(1), 'and refused to the other with a NAK');
  const raced = logs.flat().filter((l) => l.msg === 'address bound by another appliance meanwhile; NAK').length;
  t.comment(`${raced} of ${N} were decided by the etcd transaction (the others by a lease already learnt)`);
});
