import t from 'tap';
import { poolSize } from '../../src/boot/dhcp/leases.js';
import { neighbourAdvice, neighbourLimit } from '../../src/net/neighbours.js';

t.test("the kernel's neighbour limit, where it can be read", async (t) => {
  const files: Record<string, string> = {
    '/proc/sys/net/ipv4/neigh/default/gc_thresh3': '1024\n',
    '/proc/sys/net/ipv6/neigh/default/gc_thresh3': 'many\n',
  };
  const read = (f: string) => {
    const v = files[f];
    if (v === undefined) throw new Error(`ENOENT: ${f}`);
    return v;
  };
  t.equal(neighbourLimit(4, read), 1024);
  t.equal(neighbourLimit(6, read), undefined, 'not a number');
  t.equal(
    neighbourLimit(4, () => '0'),
    undefined,
    'no limit of zero',
  );
  t.equal(
    neighbourLimit(4, () => {
      throw new Error('ENOENT');
    }),
    undefined,
    'absent (inside a namespace or container)',
  );
});

t.test('a pool larger than the neighbour table is named, with the sysctl that fixes it', async (t) => {
  const storm = poolSize({ poolStart: '10.92.64.0', poolEnd: '10.92.127.255' });
  t.equal(storm, 16384);
  const advice = neighbourAdvice(4, storm, 1024);
  t.match(advice, /16384 addresses/);
  t.match(advice, /for 1024 hosts at most \(net\.ipv4\.neigh\.default\.gc_thresh3\)/);
  t.match(advice, /60-beskar7\.conf/);
  t.match(neighbourAdvice(6, 2 ** 20, 1024), /net\.ipv6\.neigh\.default\.gc_thresh3/);
  t.equal(neighbourAdvice(4, 1024, 1024), undefined, 'a pool the table holds');
  t.equal(neighbourAdvice(4, 200, 1024), undefined);
  t.equal(neighbourAdvice(4, storm, undefined), undefined, 'nothing to compare with');
  t.equal(poolSize({ poolStart: 'fd77::100', poolEnd: 'fd77::1ff' }), 256, 'IPv6 pools too');
});
