import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { repoRoot } from '../../src/paths.js';
import { tempDir } from '../helpers/tmp.js';
import { unitNodeFlags } from '../lab/appliance-process.js';

const unit = path.join(repoRoot, 'systemd/beskar7.service');

t.test('the unit passes systemd-analyze verify', async (t) => {
  const r = await promisify(execFile)('systemd-analyze', ['verify', unit]).then(
    (o) => ({ code: 0, stderr: o.stderr }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr.trim(), '', 'no warnings');
});

t.test('the unit is hardened and runs as its own user', async (t) => {
  const text = readFileSync(unit, 'utf8');
  for (const line of [
    'User=beskar7',
    'StateDirectory=beskar7',
    'ProtectSystem=strict',
    'NoNewPrivileges=yes',
    'CapabilityBoundingSet=CAP_NET_BIND_SERVICE',
    'AmbientCapabilities=CAP_NET_BIND_SERVICE',
    'SystemCallFilter=@system-service',
    'ProtectProc=invisible',
    'ProcSubset=pid',
    'RemoveIPC=yes',
  ]) {
    t.match(text, new RegExp(`^${line}$`, 'm'), line);
  }
  t.match(text, /^LimitNOFILE=\d+$/m);
  t.match(text, /^TasksMax=\d+$/m);
  t.match(text, /^MemoryMax=\S+$/m);
  t.notMatch(text, /^\w+=.*CAP_NET_BROADCAST/m, 'no capability Linux does not use for broadcast replies');
});

t.test('systemd-analyze security: exposure 2.0 or lower', async (t) => {
  const dir = tempDir(t);
  // the offline check reads the unit from a directory of its own
  const copy = path.join(dir, 'beskar7.service');
  writeFileSync(copy, readFileSync(unit));
  const r = await promisify(execFile)('systemd-analyze', ['security', '--offline=true', '--no-pager', copy]);
  const score = Number(/Overall exposure level for beskar7\.service: ([\d.]+)/.exec(r.stdout)?.[1]);
  t.ok(score <= 2.0, `exposure ${score}`);
});

t.test('the example config is valid and keeps its data where the unit gives it a state directory', async (t) => {
  const cfg = loadConfig({ file: path.join(repoRoot, 'systemd/beskar7.example.yaml') });
  t.equal(cfg.dhcp.mode, 'proxy');
  t.match(readFileSync(unit, 'utf8'), /^StateDirectory=beskar7$/m);
  t.equal(cfg.dataDir, '/var/lib/beskar7', 'the service and the CLI read the same data directory');
  t.same([cfg.dhcp.port, cfg.dhcp.proxyPort, cfg.tftp.port, cfg.http.port], [67, 4011, 69, 80]);
});

t.test("the unit's node flags: the ones the benchmarks run with, and this node accepts them", async (t) => {
  const flags = unitNodeFlags(readFileSync(unit, 'utf8'));
  t.ok(flags.length > 0 && flags.every((f) => f.startsWith('--')), flags.join(' '));
  // an option this node does not know stops it at once ("bad option", exit 9): the service would not start
  const r = await promisify(execFile)(process.execPath, [...flags, '-e', '0']).then(
    () => 0,
    (e: { code: number }) => e.code,
  );
  t.equal(r, 0, 'node starts with them');
  t.throws(() => unitNodeFlags('ExecStart=/usr/bin/beskar7\n'), /no node/, 'a unit without node …/main.js');
});
