import t from 'tap';
import { encode, ipBytes } from '../../src/boot/dhcp/codec.js';
import { MsgType, Opt } from '../../src/boot/dhcp/options.js';
import { offeringServers, probeDiscover } from '../../src/boot/dhcp/probe.js';

t.test('only address offers answering our probe count', async (t) => {
  const mac = '02:b7:00:00:00:01';
  const reply = (xid: number, yiaddr: string, server: string, type: number = MsgType.Offer, chaddr = mac) => {
    const p = probeDiscover(xid, chaddr);
    p.op = 2;
    p.yiaddr = yiaddr;
    p.options = new Map([
      [Opt.MessageType, Buffer.from([type])],
      [Opt.ServerId, ipBytes(server)],
    ]);
    return encode(p);
  };
  const got = offeringServers(
    [
      reply(7, '10.0.0.50', '10.0.0.2'),
      reply(7, '10.0.0.51', '10.0.0.3'),
      reply(7, '10.0.0.52', '10.0.0.2'),
      reply(7, '0.0.0.0', '10.0.0.9'), // a proxy offer: no address
      reply(8, '10.0.0.53', '10.0.0.4'), // another transaction
      reply(7, '10.0.0.54', '10.0.0.5', MsgType.Ack),
      reply(7, '10.0.0.55', '10.0.0.6', MsgType.Offer, '02:b7:00:00:00:02'),
      Buffer.from('garbage'),
    ],
    7,
    mac,
  );
  t.same(got, ['10.0.0.2', '10.0.0.3']);
});
