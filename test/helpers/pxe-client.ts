// A PXE-aware DHCP client for proxy-mode tests, run inside a lab host namespace that has a static address:
// broadcasts a PXE DISCOVER, collects every offer for a while (as firmware does), then asks the proxy's
// port 4011 for the boot file (as OVMF does). Prints one JSON line with what it saw.
import dgram from 'node:dgram';
import { decode, encode, ipFromBytes } from '../../src/boot/dhcp/codec.js';
import { MsgType, Opt } from '../../src/boot/dhcp/options.js';
import { pxe } from './packets.js';

const [mac, arch, myIp] = process.argv.slice(2) as [string, string, string];
const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
const offers: { server?: string; yiaddr: string; file: string; vendor?: string }[] = [];
sock.on('message', (m) => {
  const p = decode(m);
  if (p.chaddr !== mac || p.options.get(Opt.MessageType)?.[0] !== MsgType.Offer) return;
  const sid = p.options.get(Opt.ServerId);
  offers.push({
    ...(sid ? { server: ipFromBytes(sid) } : {}),
    yiaddr: p.yiaddr,
    file: p.file,
    ...(p.options.has(Opt.VendorClass) ? { vendor: p.options.get(Opt.VendorClass)!.toString() } : {}),
  });
});
sock.bind(68, () => {
  sock.setBroadcast(true);
  sock.send(encode(pxe(Number(arch), { mac, xid: 4242 })), 67, '255.255.255.255');
});
// busybox udhcpd probes an address with ARP before it offers it, which takes about 2 s
await new Promise((r) => setTimeout(r, 3500));
sock.close();
const proxy = offers.find((o) => o.yiaddr === '0.0.0.0' && o.server);
let ack: { file: string; type?: number } | undefined;
if (proxy?.server) {
  const s2 = dgram.createSocket('udp4');
  await new Promise<void>((r) => s2.bind(0, myIp, () => r()));
  const got = new Promise<void>((resolve) => {
    s2.on('message', (m) => {
      const p = decode(m);
      ack = { file: p.file, ...(p.options.has(Opt.MessageType) ? { type: p.options.get(Opt.MessageType)![0] } : {}) };
      resolve();
    });
  });
  s2.send(encode(pxe(Number(arch), { mac, type: MsgType.Request, ciaddr: myIp, xid: 4243 })), 4011, proxy.server);
  await Promise.race([got, new Promise((r) => setTimeout(r, 2000))]);
  s2.close();
}
process.stdout.write(`${JSON.stringify({ offers, ack })}\n`);
