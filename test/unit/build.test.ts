import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { repoRoot } from '../../src/paths.js';
import { freePort, until } from '../helpers/appliance.js';
import { tempDir } from '../helpers/tmp.js';

t.test('make build: dist runs the service with its dashboard, and holds no tests', async (t) => {
  // as a user runs it: without the loaders the test runner puts into NODE_OPTIONS of every child
  await promisify(execFile)('env', ['-u', 'NODE_OPTIONS', 'npm', 'run', '-s', 'build'], { cwd: repoRoot });
  const dist = path.join(repoRoot, 'dist');
  t.same(readdirSync(dist), ['src'], 'only the compiled service');
  t.ok(existsSync(path.join(dist, 'src/admin/ui/dashboard.html')), 'the dashboard is in dist');
  const files = readdirSync(dist, { recursive: true, encoding: 'utf8' });
  t.ok(files.includes(path.join('src', 'boot', 'dhcp', 'server.js')), 'the boot plane is in dist');
  t.same(
    files.filter((f) => /(^|\/)(lab|test)(\/|$)|fake-bmc|\.test\./.test(f)),
    [],
    'no lab, fake BMC or test in dist',
  );
  const port = await freePort();
  const sets = [
    'http.address=127.0.0.1',
    `http.port=${port}`,
    'dhcp.enabled=false',
    'tftp.enabled=false',
    `dataDir=${tempDir(t)}`,
  ];
  // run from another directory: nothing may be read from the checkout's src/
  const args = [path.join(dist, 'src/main.js'), ...sets.flatMap((s) => ['--set', s])];
  const p = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, ...args], { cwd: tempDir(t), stdio: 'pipe' });
  t.teardown(() => p.kill('SIGKILL'));
  const ui = await until('dashboard', async () => {
    const r = await fetch(`http://127.0.0.1:${port}/ui`).catch(() => undefined);
    return r?.ok ? r.text() : undefined;
  });
  t.match(ui, /<title>Beskar7/, 'the dashboard is served from dist');
  p.kill('SIGTERM');
  const [code] = await once(p, 'exit');
  t.equal(code, 0, 'clean exit on SIGTERM');
});
