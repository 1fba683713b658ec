import t from 'tap';
import { BootTimeline } from '../../src/timeline.js';

t.test('entries per MAC, bounded, addresses tied to MACs', async (t) => {
  const tl = new BootTimeline(2, 3);
  const seen: string[] = [];
  tl.on('entry', (e) => seen.push(e.what));
  tl.add('aa', 'dhcp', 'discover → offer undionly.kpxe');
  tl.learnIp('10.0.0.5', 'aa');
  tl.add(tl.keyForIp('10.0.0.5'), 'tftp', 'undionly.kpxe 70000 bytes');
  tl.add(tl.keyForIp('::ffff:10.0.0.5'), 'http', 'script inspect');
  tl.add(tl.keyForIp('10.0.0.9'), 'tftp', 'refused', false);
  t.same(
    tl.get('aa').map((e) => e.source),
    ['dhcp', 'tftp', 'http'],
  );
  t.same(
    tl.get('ip:10.0.0.9').map((e) => e.ok),
    [false],
    'unknown address keyed by IP',
  );
  for (let i = 0; i < 5; i++) tl.add('aa', 'dhcp', `n${i}`);
  t.same(
    tl.get('aa').map((e) => e.what),
    ['n2', 'n3', 'n4'],
    'at most 3 per MAC',
  );
  tl.add('bb', 'dhcp', 'x');
  t.same(
    tl.latest().map((e) => e.key),
    ['bb', 'aa'],
    'two keys kept, newest first',
  );
  t.equal(seen.length, 10, 'every entry emitted');
});
