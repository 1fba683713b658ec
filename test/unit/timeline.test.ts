import t from 'tap';
import { BootTimeline } from '../../src/boot/timeline.js';
import { inProcess, until } from '../helpers/appliance.js';

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

t.test('bounded in bytes: long unique request paths from many MACs cannot grow it', async (t) => {
  const tl = new BootTimeline(2048, 100, 1024 * 1024);
  for (let m = 0; m < 300; m++) {
    for (let i = 0; i < 100; i++) tl.add(`52:54:00:00:${m}`, 'http', `GET /assets/${'x'.repeat(8000)}${m}-${i}`, false);
  }
  t.ok(tl.size <= 1024 * 1024, `${tl.size} bytes kept under a 1 MiB budget`);
  t.ok(tl.get('52:54:00:00:299').length > 0, 'the most recent MAC is kept');
  t.equal(tl.get('52:54:00:00:0').length, 0, 'the oldest went first');
  t.ok(tl.get('52:54:00:00:299')[0]!.what.length <= 201, 'each entry is cut');
});

t.test('a download is on the timeline when it ends, with its bytes and how long it took', async (t) => {
  const a = await inProcess(t);
  const res = await fetch(`${a.base}/assets/inspector-src/agent.sh`);
  const size = (await res.arrayBuffer()).byteLength;
  const e = await until('the download noted', async () =>
    a.app.timeline.get('ip:127.0.0.1').find((x) => x.what === 'GET /assets/inspector-src/agent.sh'),
  );
  t.match(e, { source: 'http', stage: 'download', bytes: size, ok: true });
  t.ok(typeof e.ms === 'number' && e.ms >= 0, 'with its duration');
});

t.test('an HTTP client cannot tie its address to a MAC by naming it', async (t) => {
  const a = await inProcess(t);
  const victim = '52:54:00:aa:bb:cc';
  await fetch(`${a.base}/boot/host.ipxe?mac=${victim}`);
  await fetch(`${a.base}/assets/nope`);
  t.notOk(
    a.app.timeline.get(victim).some((e) => e.what.includes('/assets/nope')),
    "the fetcher's downloads do not land on the MAC it named",
  );
  t.ok(
    a.app.timeline.get('ip:127.0.0.1').some((e) => e.what.includes('/assets/nope')),
    'they stay keyed by address',
  );
});
