import t from 'tap';
import { LeaseTable } from '../../src/boot/dhcp/leases.js';

const spec = {
  poolStart: '10.0.0.10',
  poolEnd: '10.0.0.12',
  leaseSeconds: 60,
  offerHoldSeconds: 5,
  reservations: [{ mac: 'aa:00:00:00:00:09', ip: '10.0.0.11' }],
};
const mac = (n: number) => `aa:00:00:00:00:${n.toString(16).padStart(2, '0')}`;

t.test('reserved addresses never go to other hosts', async (t) => {
  const l = new LeaseTable(spec);
  const got = [mac(1), mac(2), mac(3)].map((m) => {
    const ip = l.pickOffer(m, undefined, 0);
    if (ip) l.holdOffer(m, ip, 0);
    return ip;
  });
  t.same(got, ['10.0.0.10', '10.0.0.12', undefined], 'pool of 3 minus 1 reservation holds 2; the third gets nothing');
  t.equal(l.pickOffer(mac(9), undefined, 0), '10.0.0.11');
});

t.test('offers expire; leases persist across a new table; expired leases are reused last', async (t) => {
  const l = new LeaseTable(spec);
  l.holdOffer(mac(1), '10.0.0.10', 0);
  t.equal(l.pickOffer(mac(2), undefined, 1000), '10.0.0.12');
  t.equal(l.pickOffer(mac(2), '10.0.0.10', 6000), '10.0.0.10', 'requested address is free after the hold');
  const { lease } = l.bind(mac(1), '10.0.0.12', 0);
  const again = new LeaseTable(spec, [lease]);
  t.equal(again.leaseOf(mac(1))?.ip, '10.0.0.12', 'reloaded');
  t.equal(again.pickOffer(mac(1), undefined, 0), '10.0.0.12', 'same host, same address');
  t.match(again.conflict(mac(2), '10.0.0.12', 1000), /leased to/);
  t.equal(again.conflict(mac(2), '10.0.0.12', 61_000), undefined, 'expired lease frees the address');
});

t.test('rebinding moves a host; an evicted expired lease no longer maps its old MAC', async (t) => {
  const l = new LeaseTable(spec);
  l.bind(mac(1), '10.0.0.10', 0);
  const r = l.bind(mac(1), '10.0.0.12', 0);
  t.equal(r.replaced, '10.0.0.10');
  l.bind(mac(2), '10.0.0.12', 120_000);
  t.equal(l.leaseOf(mac(1)), undefined);
  t.equal(l.leaseOf(mac(2))?.ip, '10.0.0.12');
  t.equal(l.release(mac(1), '10.0.0.12'), undefined, 'a host cannot release what it does not hold');
  t.equal(l.release(mac(2), '10.0.0.12')?.ip, '10.0.0.12');
});

t.test('declined addresses are held back; only the holder can decline', async (t) => {
  const l = new LeaseTable(spec);
  l.bind(mac(1), '10.0.0.10', 0);
  t.equal(l.decline(mac(9), '10.0.0.10', 0), undefined, 'another MAC declines nothing');
  t.equal(l.leaseOf(mac(1))?.ip, '10.0.0.10', 'the holder keeps its lease');
  t.equal(l.conflict(mac(1), '10.0.0.10', 1000), undefined, 'and may renew it');
  for (const ip of ['10.0.0.11', '10.0.0.12']) t.equal(l.decline(mac(9), ip, 0), undefined);
  t.match(l.pickOffer(mac(2), undefined, 0), /^10\.0\.0\.1[12]$/, 'forged DECLINEs did not starve the pool');
  t.equal(l.decline(mac(1), '10.0.0.10', 0)?.mac, mac(1), 'the holder declines');
  t.match(l.conflict(mac(2), '10.0.0.10', 1000), /declined/);
});

t.test('offer state stays within the pool, however many MACs ask', async (t) => {
  const l = new LeaseTable(spec);
  for (let i = 0; i < 1000; i++) {
    const m = `bb:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    const ip = l.pickOffer(m, undefined, i * 31_000); // each earlier offer has expired
    if (ip) l.holdOffer(m, ip, i * 31_000);
  }
  t.ok(l.offerCount <= 3, `${l.offerCount} offers held for a 3-address pool`);
});

t.test('unbind undoes a bind whose write failed', async (t) => {
  const l = new LeaseTable(spec);
  const { lease } = l.bind(mac(1), '10.0.0.10', 0);
  l.unbind(lease);
  t.equal(l.leaseOf(mac(1)), undefined);
  t.equal(l.conflict(mac(2), '10.0.0.10', 0), undefined);
});

t.test('the pool is exactly poolStart..poolEnd; an empty one is refused', async (t) => {
  const l = new LeaseTable(spec);
  t.same(
    ['10.0.0.9', '10.0.0.10', '10.0.0.12', '10.0.0.13'].map((ip) => l.inPool(ip)),
    [false, true, true, false],
  );
  t.match(l.conflict(mac(1), '10.0.0.13', 0), /10\.0\.0\.13 is outside the pool/);
  t.throws(() => new LeaseTable({ ...spec, poolStart: '10.0.0.12', poolEnd: '10.0.0.11' }), /empty pool/);
  t.equal(new LeaseTable({ ...spec, poolStart: '10.0.0.12', poolEnd: '10.0.0.12' }).inPool('10.0.0.12'), true);
});

t.test('conflict: each reason, and each hold ends at its instant', async (t) => {
  const l = new LeaseTable({ ...spec, reservations: [{ mac: mac(9), ip: '10.0.0.11', hostname: 'nine' }] });
  t.equal(l.hostnameFor(mac(9)), 'nine');
  t.equal(l.hostnameFor(mac(1)), undefined);
  t.equal(l.isReserved(mac(9)), true);
  t.equal(l.isReserved(mac(1)), false);
  t.equal(l.conflict(mac(9), '10.0.0.11', 0), undefined, 'a reservation may use its address');
  t.equal(l.conflict(mac(9), '10.0.0.10', 0), 'reserved address is 10.0.0.11', 'and no other');
  t.equal(l.conflict(mac(1), '10.0.0.11', 0), '10.0.0.11 is reserved for another host');
  l.bind(mac(1), '10.0.0.10', 0); // expires at 60 s
  t.equal(l.leaseCount, 1);
  t.equal(l.conflict(mac(2), '10.0.0.10', 59_999), `10.0.0.10 is leased to ${mac(1)}`);
  t.equal(l.conflict(mac(2), '10.0.0.10', 60_000), undefined, 'free the instant the lease expires');
  t.equal(l.conflict(mac(1), '10.0.0.10', 0), undefined, 'the holder may renew');
  l.holdOffer(mac(3), '10.0.0.12', 0); // held until 5 s
  t.equal(l.offerCount, 1);
  t.equal(l.conflict(mac(2), '10.0.0.12', 4999), `10.0.0.12 is offered to ${mac(3)}`);
  t.equal(l.conflict(mac(2), '10.0.0.12', 5000), undefined, 'free the instant the offer lapses');
  t.equal(l.conflict(mac(3), '10.0.0.12', 0), undefined, 'the one it was offered to may take it');
  l.bind(mac(4), '10.0.0.12', 0);
  l.decline(mac(4), '10.0.0.12', 1000);
  t.equal(l.conflict(mac(4), '10.0.0.12', 1000 + 10 * 60_000 - 1), '10.0.0.12 was declined', 'for everyone');
  t.equal(l.conflict(mac(2), '10.0.0.12', 1000 + 10 * 60_000), undefined, 'for ten minutes');
});

t.test('pickOffer: reservation, lease, offer, requested address, then the next free one', async (t) => {
  const l = new LeaseTable({ ...spec, poolEnd: '10.0.0.14', reservations: [] });
  t.equal(l.pickOffer(mac(1), '10.0.0.13', 0), '10.0.0.13', 'the requested address when free');
  t.equal(l.pickOffer(mac(1), '10.0.0.99', 0), '10.0.0.10', 'a requested address outside the pool is not given');
  l.holdOffer(mac(1), '10.0.0.12', 0);
  t.equal(l.pickOffer(mac(1), '10.0.0.13', 0), '10.0.0.12', 'its offer before the requested address');
  l.bind(mac(1), '10.0.0.14', 0);
  l.holdOffer(mac(1), '10.0.0.12', 0);
  t.equal(l.pickOffer(mac(1), '10.0.0.13', 0), '10.0.0.14', 'its lease before its offer');
  t.equal(l.pickOffer(mac(1), undefined, 60_000), '10.0.0.14', 'an expired lease of its own is offered again');
  const r = new LeaseTable(spec);
  t.equal(r.pickOffer(mac(9), '10.0.0.10', 0), '10.0.0.11', 'a reservation whatever it asks for');
  const outside = new LeaseTable({ ...spec, reservations: [{ mac: mac(9), ip: '10.0.0.200' }] });
  t.equal(outside.pickOffer(mac(9), undefined, 0), '10.0.0.200', 'a reservation outside the dynamic range');
  t.equal(outside.conflict(mac(9), '10.0.0.200', 0), undefined, 'which it may request');
  // the cursor moves past each address it hands out, round the pool
  const c = new LeaseTable({ ...spec, reservations: [] });
  const seq = [1, 2, 3, 4].map((n) => c.pickOffer(mac(n), undefined, 0));
  t.same(seq, ['10.0.0.10', '10.0.0.11', '10.0.0.12', '10.0.0.10']);
});

t.test('pickOffer takes a never-leased address before an expired lease', async (t) => {
  const l = new LeaseTable({ ...spec, reservations: [] });
  l.bind(mac(1), '10.0.0.10', 0);
  l.bind(mac(2), '10.0.0.11', 0);
  // at 70 s both leases have expired; 10.0.0.12 was never leased
  t.equal(l.pickOffer(mac(3), undefined, 70_000), '10.0.0.12');
  l.bind(mac(3), '10.0.0.12', 70_000);
  t.equal(l.pickOffer(mac(4), undefined, 70_000), '10.0.0.10', 'then the expired ones');
  t.equal(l.pickOffer(mac(4), undefined, 30_000), undefined, 'none while they are all held');
});

t.test('holdOffer: one offer per MAC and per address, held offerHoldSeconds', async (t) => {
  const l = new LeaseTable({ ...spec, reservations: [] });
  l.holdOffer(mac(1), '10.0.0.10', 0);
  l.holdOffer(mac(1), '10.0.0.11', 0);
  t.equal(l.offerCount, 1, 'a new offer replaces the MAC’s earlier one');
  t.equal(l.conflict(mac(2), '10.0.0.10', 0), undefined, 'whose address is free again');
  l.holdOffer(mac(2), '10.0.0.11', 10_000); // mac(1)'s offer lapsed at 5 s
  t.equal(l.offerCount, 1, 'an address offered to another MAC is that MAC’s only');
  t.equal(l.pickOffer(mac(1), undefined, 10_000), '10.0.0.10', 'mac(1) no longer holds it');
  t.equal(l.conflict(mac(1), '10.0.0.11', 14_999), `10.0.0.11 is offered to ${mac(2)}`);
  l.dropOffer(mac(1));
  t.equal(l.conflict(mac(1), '10.0.0.11', 0), `10.0.0.11 is offered to ${mac(2)}`, "dropping mac(1)'s keeps mac(2)'s");
  l.dropOffer(mac(2));
  t.equal(l.offerCount, 0);
  t.equal(l.conflict(mac(1), '10.0.0.11', 0), undefined);
});

t.test('bind: the lease it stores, the address it replaces, the offer it ends', async (t) => {
  const l = new LeaseTable({ ...spec, reservations: [] });
  l.holdOffer(mac(1), '10.0.0.11', 0);
  const a = l.bind(mac(1), '10.0.0.10', 1000, 'h1');
  t.same(a, { lease: { ip: '10.0.0.10', mac: mac(1), expiresAt: 61_000, boundAt: 1000, hostname: 'h1' } });
  t.equal(l.offerCount, 0, 'its offer ended');
  t.equal(l.conflict(mac(2), '10.0.0.11', 0), undefined, 'and that address is free');
  const b = l.bind(mac(1), '10.0.0.10', 2000);
  t.same(b, { lease: { ip: '10.0.0.10', mac: mac(1), expiresAt: 62_000, boundAt: 2000 } }, 'no hostname key');
  t.notOk('hostname' in b.lease || 'replaced' in a || 'replaced' in b, 'nothing replaced: no such key');
  const c = l.bind(mac(1), '10.0.0.12', 3000);
  t.equal(c.replaced, '10.0.0.10');
  t.equal(l.conflict(mac(2), '10.0.0.10', 3000), undefined, 'the old address is free');
  t.equal(l.leaseCount, 1);
  l.unbind({ ...c.lease, mac: mac(2) });
  t.equal(l.leaseOf(mac(1))?.ip, '10.0.0.12', 'unbind of a lease it does not hold changes nothing');
  l.unbind({ ...c.lease, ip: '10.0.0.11' });
  t.equal(l.leaseOf(mac(1))?.ip, '10.0.0.12');
  t.equal(l.leaseCount, 1);
});

t.test('release and decline end only the holder’s lease', async (t) => {
  const l = new LeaseTable({ ...spec, reservations: [] });
  l.bind(mac(1), '10.0.0.10', 0);
  t.equal(l.release(mac(2), '10.0.0.10'), undefined);
  t.equal(l.leaseCount, 1);
  t.equal(l.release(mac(1), '10.0.0.10')?.mac, mac(1));
  t.equal(l.leaseOf(mac(1)), undefined);
  t.equal(l.leaseCount, 0);
  l.bind(mac(1), '10.0.0.10', 0);
  l.holdOffer(mac(1), '10.0.0.11', 0);
  t.equal(l.decline(mac(1), '10.0.0.10', 0)?.ip, '10.0.0.10');
  t.equal(l.offerCount, 0, 'a decline ends the client’s offer too');
  t.equal(l.leaseOf(mac(1)), undefined);
});

t.test('learn and forget: leases another appliance wrote', async (t) => {
  const l = new LeaseTable({ ...spec, reservations: [] });
  l.learn({ ip: '10.0.0.10', mac: mac(1), expiresAt: 60_000, boundAt: 0 });
  t.equal(l.conflict(mac(2), '10.0.0.10', 0), `10.0.0.10 is leased to ${mac(1)}`);
  l.learn({ ip: '10.0.0.11', mac: mac(1), expiresAt: 60_000, boundAt: 0 });
  t.equal(l.leaseCount, 1, 'a MAC that moved leaves its old address');
  t.equal(l.conflict(mac(2), '10.0.0.10', 0), undefined);
  l.learn({ ip: '10.0.0.11', mac: mac(2), expiresAt: 60_000, boundAt: 0 });
  t.equal(l.leaseOf(mac(1)), undefined, 'an address taken over is no longer the old MAC’s');
  t.equal(l.leaseOf(mac(2))?.ip, '10.0.0.11');
  l.learn({ ip: '10.0.0.12', mac: mac(2), expiresAt: 60_000, boundAt: 0 });
  l.forget('10.0.0.11');
  t.equal(l.leaseOf(mac(2))?.ip, '10.0.0.12', 'forgetting an address its MAC left keeps the MAC’s lease');
  l.forget('10.0.0.12');
  t.equal(l.leaseOf(mac(2)), undefined);
  t.equal(l.leaseCount, 0);
  l.forget('10.0.0.12');
  t.equal(l.leaseCount, 0, 'forgetting an unknown address is harmless');
});

t.test('spreadFrom: appliances start their search at a hash of their address', async (t) => {
  const big = { ...spec, poolStart: '10.0.1.0', poolEnd: '10.0.1.255', reservations: [] };
  const first = (server: string) => {
    const l = new LeaseTable(big);
    l.spreadFrom(server);
    return l.pickOffer(mac(1), undefined, 0);
  };
  t.equal(first('10.0.0.1'), first('10.0.0.1'), 'the same address starts at the same place');
  t.not(first('10.0.0.1'), first('10.0.0.3'), 'neighbours start apart');
  t.not(first('10.0.0.1'), '10.0.1.0');
});
