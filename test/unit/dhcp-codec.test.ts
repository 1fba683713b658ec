import t from 'tap';
import { DecodeError, decode, encode } from '../../src/boot/dhcp/codec.js';
import { Opt } from '../../src/boot/dhcp/options.js';
import { pxe } from '../helpers/packets.js';

t.test('round trip keeps header fields and raw options', async (t) => {
  const p = pxe(7, { mac: '52:54:00:12:34:56', xid: 0xdeadbeef, giaddr: '10.1.2.3', uuid: Buffer.alloc(17, 7) });
  const back = decode(encode(p));
  t.equal(back.chaddr, '52:54:00:12:34:56');
  t.equal(back.xid, 0xdeadbeef);
  t.equal(back.giaddr, '10.1.2.3');
  t.same([...back.options.get(Opt.ClientArch)!], [0, 7]);
  t.equal(back.options.get(Opt.VendorClass)!.toString(), 'PXEClient:Arch:00007:UNDI:002001');
  t.same(back.options.get(Opt.ClientUuid), Buffer.alloc(17, 7));
  t.ok(encode(p).length >= 300, 'padded to the BOOTP minimum');
});

t.test('Pad bytes between options are skipped one at a time', async (t) => {
  const b = Buffer.from(encode(pxe(0)));
  const start = 240;
  // rebuild options as: Pad Pad 53=1 Pad 93=0000 End
  const opts = Buffer.from([0, 0, 53, 1, 1, 0, 93, 2, 0, 0, 255]);
  opts.copy(b, start);
  const p = decode(b.subarray(0, start + opts.length));
  t.same([...p.options.get(Opt.MessageType)!], [1]);
  t.same([...p.options.get(Opt.ClientArch)!], [0, 0]);
});

t.test('long options are split and re-joined (RFC 3396)', async (t) => {
  const p = pxe(0);
  const long = Buffer.alloc(600, 0x41);
  p.options.set(Opt.VendorSpecific, long);
  t.same(decode(encode(p)).options.get(Opt.VendorSpecific), long);
});

t.test('option overload reads options from file and sname', async (t) => {
  const b = Buffer.from(encode(pxe(0)));
  const optStart = 240;
  Buffer.from([52, 1, 3, 53, 1, 1, 255]).copy(b, optStart);
  Buffer.from([60, 9, ...Buffer.from('PXEClient'), 255]).copy(b, 108); // file
  Buffer.from([93, 2, 0, 7, 255]).copy(b, 44); // sname
  const p = decode(b);
  t.equal(p.options.get(Opt.VendorClass)!.toString(), 'PXEClient');
  t.same([...p.options.get(Opt.ClientArch)!], [0, 7]);
  t.equal(p.file, '');
});

t.test('malformed packets throw DecodeError with a reason', async (t) => {
  const good = encode(pxe(0));
  const cases: [string, Buffer, RegExp][] = [
    ['empty', Buffer.alloc(0), /too short/],
    ['truncated header', good.subarray(0, 200), /too short/],
    ['wrong magic', Buffer.concat([good.subarray(0, 236), Buffer.from([1, 2, 3, 4]), good.subarray(240)]), /magic/],
    ['option past end', Buffer.concat([good.subarray(0, 240), Buffer.from([60, 200, 1, 2])]), /runs past/],
    ['length byte missing', Buffer.concat([good.subarray(0, 240), Buffer.from([60])]), /no length/],
  ];
  const badOp = Buffer.from(good);
  badOp[0] = 9;
  cases.push(['bad op', badOp, /bad op/]);
  const ib = Buffer.from(good);
  ib[1] = 32;
  ib[2] = 20;
  cases.push(['infiniband', ib, /hardware type/]);
  for (const [name, buf, re] of cases) {
    t.throws(() => decode(buf), { constructor: DecodeError, message: re }, name);
  }
});

t.test('fuzz: mutated and random packets either decode or throw DecodeError', async (t) => {
  let seed = 42;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const seeds = [
    encode(pxe(0)),
    encode(pxe(7, { userClass: '\x04iPXE', ipxeEncap: true })),
    encode(pxe(16, { vendor: 'HTTPClient:Arch:00016' })),
  ];
  let decoded = 0;
  let rejected = 0;
  for (let i = 0; i < 20000; i++) {
    let buf: Buffer;
    if (i % 10 === 0) {
      buf = Buffer.alloc(Math.floor(rnd() * 1500));
      for (let j = 0; j < buf.length; j++) buf[j] = Math.floor(rnd() * 256);
    } else {
      buf = Buffer.from(seeds[i % seeds.length]!);
      const flips = 1 + Math.floor(rnd() * 8);
      for (let f = 0; f < flips; f++) buf[Math.floor(rnd() * buf.length)] = Math.floor(rnd() * 256);
      if (rnd() < 0.2) buf = buf.subarray(0, Math.floor(rnd() * buf.length));
    }
    try {
      decode(buf);
      decoded++;
    } catch (e) {
      if (!(e instanceof DecodeError)) t.fail(`non-DecodeError ${(e as Error).message} on case ${i}`);
      rejected++;
    }
  }
  t.equal(decoded + rejected, 20000);
  t.ok(decoded > 1000 && rejected > 1000, `both outcomes exercised (decoded ${decoded}, rejected ${rejected})`);
});

t.test('a repeated option is joined once: decoding stays linear in the packet size', async (t) => {
  const base = encode(pxe(0));
  const end = base.indexOf(255, 240); // the End option
  const repeats = 20_000;
  const opts = Buffer.alloc(repeats * 5);
  for (let i = 0; i < repeats; i++) opts.set([77, 3, 0x61, 0x62, 0x63], i * 5);
  const packet = Buffer.concat([base.subarray(0, end), opts, Buffer.from([255])]);
  const concat = Buffer.concat;
  let calls = 0;
  Buffer.concat = ((list: readonly Uint8Array[], n?: number) => {
    calls++;
    return concat(list, n);
  }) as typeof Buffer.concat;
  let p: ReturnType<typeof decode>;
  try {
    p = decode(packet);
  } finally {
    Buffer.concat = concat;
  }
  t.equal(p.options.get(77)?.length, repeats * 3, `${repeats} parts of option 77 joined`);
  t.equal(calls, 1, 'one join, not one per repeat');
});
