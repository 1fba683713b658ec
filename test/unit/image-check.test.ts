import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { localImageProblem } from '../../src/admin/image-check.js';
import { tempDir } from '../helpers/tmp.js';

t.test('bundled image check: URLs compared parsed, not as strings', async (t) => {
  const assets = tempDir(t);
  mkdirSync(path.join(assets, 'inspector'));
  for (const f of ['vmlinuz', 'initrd', 'initrd.img']) writeFileSync(path.join(assets, 'inspector', f), 'x');
  const base = 'http://10.0.0.1:80';
  for (const url of [
    'http://10.0.0.1/assets/nope',
    'http://10.0.0.1:80/assets/nope/',
    'HTTP://10.0.0.1/assets/%6Eope',
  ]) {
    t.match(await localImageProblem(url, base, assets), /nope\/vmlinuz: no such file/, `${url} is ours and missing`);
  }
  t.equal(await localImageProblem('http://10.0.0.1/assets/inspector/', base, assets), undefined, 'present');
  t.equal(
    await localImageProblem('http://10.0.0.1:8080/assets/nope', base, assets),
    undefined,
    'another port is not ours',
  );
  t.equal(await localImageProblem('http://10.0.0.1/beskar7-inspector/boot', base, assets), undefined, 'the script');
  const empty = tempDir(t);
  t.match(
    await localImageProblem('http://10.0.0.1/beskar7-inspector/boot', base, empty),
    /assets\/inspector\/vmlinuz: no such file .*make inspector/,
    'the bundled script needs the bundled inspector',
  );
  mkdirSync(path.join(empty, 'contract'));
  writeFileSync(path.join(empty, 'contract', 'vmlinuz'), 'x');
  t.match(
    await localImageProblem('http://10.0.0.1/assets/contract', base, empty),
    /contract\/initrd\.img: no such file/,
  );
  writeFileSync(path.join(empty, 'contract', 'initrd.img'), 'x');
  t.equal(await localImageProblem('http://10.0.0.1/assets/contract', base, empty), undefined, "the contract's name");
  t.equal(
    await localImageProblem('http://10.0.0.1/assets/../../etc', base, assets),
    undefined,
    'dot segments resolve to /etc: not an asset URL',
  );
});
