import { spawn } from 'node:child_process';
import { once } from 'node:events';
import t from 'tap';
import { repoRoot } from '../../src/paths.js';
import { freePort, until } from '../helpers/appliance.js';
import { haveDemoImage, skipUnlessCi } from '../helpers/lab.js';

t.test(
  'make run: four machines through the whole mission, narrated, with the dashboard reachable from this machine',
  { skip: skipUnlessCi(!haveDemoImage, 'run `make setup` first') },
  async (t) => {
    t.setTimeout(900_000);
    const port = await freePort();
    // as a user runs it, except that it ends after its table and forwards the dashboard to a free port
    // env -u: the test runner puts its loaders into NODE_OPTIONS of every child, make's tsc among them
    const p = spawn('env', ['-u', 'NODE_OPTIONS', 'make', '-s', 'run'], {
      cwd: repoRoot,
      env: { ...process.env, DEMO_EXIT: '1', DEMO_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.teardown(() => p.exitCode === null && p.kill('SIGTERM'));
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = once(p, 'exit');
    // what make run printed, when the test fails: the demo's own words say where it stopped
    t.teardown(() => {
      if (!t.passing()) t.comment(`make run printed:\n${out.slice(-4000)}`);
    });
    const token = await until('the token location', async () => /admin token: (\S+)/.exec(out)?.[1], 300_000);
    t.match(out, new RegExp(`dashboard: http://127\\.0\\.0\\.1:${port}/ui`), 'the demo says where the dashboard is');
    const ui = await until('the dashboard from this machine', async () => {
      const r = await fetch(`http://127.0.0.1:${port}/ui`).catch(() => undefined);
      return r?.ok ? r.text() : undefined;
    });
    t.match(ui, /<title>Beskar7/, 'the dashboard is served through the forwarder');
    const { readFileSync } = await import('node:fs');
    const hosts = await until('hosts through the forwarder', async () => {
      const r = await fetch(`http://127.0.0.1:${port}/apis/infrastructure.cluster.x-k8s.io/v1beta1/physicalhosts`, {
        headers: { Authorization: `Bearer ${readFileSync(token, 'utf8').trim()}` },
      }).catch(() => undefined);
      const items = r?.ok ? ((await r.json()) as { items: unknown[] }).items : [];
      return items.length === 4 ? items : undefined;
    });
    t.equal(hosts.length, 4, 'four hosts enrolled, seen with the admin token from the file the demo named');
    const [code] = await exited;
    t.equal(code, 0, out.slice(-3000));
    t.match(
      out,
      /rack1-bios runs its target OS: BESKAR7-DEMO-MARKER.*config_url=http:\S+\/assets\/demo\/target\.cmdline/,
      'rack1-bios kexec-ed',
    );
    t.match(
      out,
      /rack1-uefi rebooted into its installed system: BESKAR7-DISK-MARKER provider-id=b7:\/\/default\/rack1-uefi mode=600 config=#cloud-config hostname: web-2/,
      'rack1-uefi wrote the image to its disk and booted it, with its user-data',
    );
    t.match(
      out,
      /rack1-secure runs its target OS: BESKAR7-DEMO-MARKER[^\n]*secureboot=1 lockdown=integrity/,
      'rack1-secure went through shim and the signed GRUB, and runs its target under Secure Boot',
    );
    t.match(out, /^\[demo\] web-3\s+rack1-secure\s+(\d+\.\d s\s+){6}Provisioned\s+On$/m, 'table: web-3');
    t.match(out, /rack1-small\s+ReportReceived/, 'the small host was inspected');
    t.match(out, /RequirementsNotMet: 1 GiB memory < 4 GiB required/);
    t.match(out, /^\[demo\] web-1\s+rack1-bios\s+(\d+\.\d s\s+){6}Provisioned\s+On$/m, 'table: web-1');
    t.match(out, /^\[demo\] web-2\s+rack1-uefi\s+(\d+\.\d s\s+){6}Provisioned\s+On$/m, 'table: web-2');
    t.match(
      out,
      /^\[demo\] db-1\s+rack1-small\s+(\d+\.\d s\s+){5}-\s+Failed: RequirementsNotMet\s+Off$/m,
      'table: db-1 failed and powered off',
    );
    t.match(out, /\[demo\] lab removed/);
  },
);
