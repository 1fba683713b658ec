import path from 'node:path';
import t from 'tap';
import { loadTemplates, render, selectInstruction, TemplateError, templateFor } from '../../src/boot/ipxe.js';
import { repoRoot } from '../../src/paths.js';

t.test('template per instruction', async (t) => {
  t.equal(templateFor({ script: 'inspect', cmdline: '', localDiskMethod: 'exit' }), 'inspect');
  t.equal(templateFor({ script: 'local-disk', cmdline: '', localDiskMethod: 'sanboot' }), 'local-disk-sanboot');
  t.equal(templateFor({ script: 'local-disk', cmdline: '', localDiskMethod: 'http404' }), undefined);
});

t.test('stored instruction beats config; unknown hosts get the default', async (t) => {
  const a = { script: 'inspect' as const, cmdline: '', localDiskMethod: 'exit' as const };
  const b = { script: 'local-disk' as const, cmdline: '', localDiskMethod: 'exit' as const };
  const u = { script: 'exit' as const, cmdline: '', localDiskMethod: 'exit' as const };
  t.same(selectInstruction(a, b, u), { instruction: a, known: true });
  t.same(selectInstruction(undefined, b, u), { instruction: b, known: true });
  t.same(selectInstruction(undefined, undefined, u), { instruction: u, known: false });
});

t.test('render substitutes, refuses missing values and newline injection', async (t) => {
  t.equal(
    render('kernel {{kernelURL}} {{ cmdline }}', { kernelURL: 'http://x/k', cmdline: 'a=1' }),
    'kernel http://x/k a=1',
  );
  t.throws(() => render('kernel {{kernelURL}}', {}), {
    constructor: TemplateError,
    message: /"kernelURL" has no value/,
  });
  t.equal(render('echo {{serial}}', { serial: 'x\nshell' }), 'echo x shell');
  t.equal(render('chain ${netX/mac:hexhyp}', {}), 'chain ${netX/mac:hexhyp}', 'iPXE settings are left alone');
});

t.test('shipped templates load and the entry script reports the host to us', async (t) => {
  const tpl = loadTemplates(path.join(repoRoot, 'boot-scripts'));
  const entry = render(tpl.get('entry')!, { httpBase: 'http://10.0.0.1:8080' });
  t.match(entry, /^#!ipxe\n/);
  t.match(
    entry,
    /chain --autofree http:\/\/10\.0\.0\.1:8080\/boot\/host\.ipxe\?mac=\$\{netX\/mac:hexhyp\}&uuid=\$\{uuid\}&arch=\$\{buildarch\}&platform=\$\{platform\}&serial=\$\{serial:uristring\}/,
  );
  t.match(render(tpl.get('local-disk-exit')!, { mac: 'm' }), /\nexit 1\n/);
});

t.test('scripts that leave network boot end the entry script too, instead of its retry loop', async (t) => {
  const tpl = loadTemplates(path.join(repoRoot, 'boot-scripts'));
  const entry = render(tpl.get('entry')!, { httpBase: 'http://10.0.0.1:8080' });
  t.match(
    entry,
    /&& goto done \|\| iseq \$\{beskar7-leave\} 1 && goto leave \|\|\n/,
    'a failed chain checks the leave flag first',
  );
  t.match(entry, /:leave\nexit 1\n/);
  for (const name of ['local-disk-exit', 'local-disk-sanboot', 'exit']) {
    t.match(tpl.get(name)!, /^set beskar7-leave 1$/m, `${name} sets the flag before it exits`);
  }
});
