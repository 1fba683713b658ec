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
