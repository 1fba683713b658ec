import path from 'node:path';
import t from 'tap';
import {
  type GrubDeps,
  grubArgs,
  grubFile,
  grubWord,
  loggableFile,
  optionalFile,
  renderGrubInspector,
  tftpPathOf,
} from '../../src/boot/grub.js';
import { loadTemplates } from '../../src/boot/ipxe.js';
import { type BootInstruction, bootChainOf } from '../../src/domain/boot.js';
import { repoRoot } from '../../src/paths.js';

const templates = loadTemplates(path.join(repoRoot, 'boot-scripts'));
const BASE = 'http://10.77.0.1';
const MAC = '52:54:00:5b:00:01';
const instr = (i: Partial<BootInstruction>): BootInstruction => ({
  script: 'exit',
  cmdline: '',
  localDiskMethod: 'exit',
  ...i,
});

/** Deps with one host per MAC; redemptions are recorded. */
function deps(stored: Record<string, BootInstruction>, claim: Awaited<ReturnType<GrubDeps['claimPath']>>) {
  const redeemed: { namespace: string; name: string; nonce: string; from: string }[] = [];
  const d: GrubDeps = {
    admit: (from) => from !== '10.77.0.66',
    templates,
    httpBase: BASE,
    storedInstruction: async (mac) => stored[mac],
    configuredInstruction: () => undefined,
    unknownHosts: instr({ script: 'exit' }),
    claimPath: async () => claim,
    redeem: async (c) => {
      redeemed.push(c);
      if (c.nonce === 'conflicted') return 'conflict';
      return c.nonce === 'n0nce' ? 'linux /assets/inspector/vmlinuz x\n' : undefined;
    },
  };
  return { d, redeemed };
}

t.test('GRUB words: safe ones bare, anything else single-quoted so nothing expands or chains', async (t) => {
  t.equal(grubWord('beskar7.api=https://10.0.0.1:8443'), 'beskar7.api=https://10.0.0.1:8443');
  t.equal(grubWord('a;reboot'), "'a;reboot'");
  t.equal(grubWord('x=${root}'), "'x=${root}'");
  t.equal(grubWord("it's"), "'it'\\''s'");
  t.equal(grubArgs('  a=1   b=c&d  '), "a=1 'b=c&d'", 'split on whitespace, each quoted alone');
});

t.test('only our own assets are reachable over TFTP', async (t) => {
  t.equal(tftpPathOf(`${BASE}/assets/inspector/`, BASE), '/assets/inspector/');
  t.equal(tftpPathOf(`${BASE}:80/assets/demo/vmlinuz`, BASE), '/assets/demo/vmlinuz', 'the same origin, port spelled');
  t.equal(tftpPathOf(`${BASE}/beskar7-inspector/boot`, BASE), '/assets/inspector/', 'the bundled inspector script');
  t.equal(tftpPathOf('http://images.example/inspector/', BASE), undefined, 'another server');
  t.equal(tftpPathOf(`${BASE}/ipxe/snponly.efi`, BASE), undefined, 'not under /assets');
});

t.test('the inspector as GRUB boots it: kernel and initrd over TFTP, the parameters quoted', async (t) => {
  const cfg = renderGrubInspector(
    templates,
    `${BASE}/assets/inspector/`,
    'beskar7.token=abc beskar7.target=http://x/a?b=1&c=2',
    BASE,
  );
  t.match(cfg, /^set b7dir=\/assets\/inspector$/m);
  t.match(cfg, /^if \[ "\$grub_cpu" = arm64 \]; then set b7dir=\/assets\/inspector\/arm64;/m, 'ARM64: the arm64 build');
  t.match(cfg, /^linux "\$\{b7dir\}\/vmlinuz" beskar7\.token=abc 'beskar7\.target=http:\/\/x\/a\?b=1&c=2' \$b7args$/m);
  t.match(cfg, /^initrd "\$\{b7dir\}\/initrd\.img"$/m);
  t.match(cfg, /^boot$/m);
  t.match(
    renderGrubInspector(templates, `${BASE}/assets/inspector`, 'x=1', BASE),
    /^set b7dir=\/assets\/inspector$/m,
    'the directory named without its slash',
  );
  t.match(
    renderGrubInspector(templates, `${BASE}/assets/other.ipxe`, 'x=1', BASE),
    /cannot boot the inspector/,
    'an iPXE script is no directory',
  );
  const far = renderGrubInspector(templates, 'http://images.example/insp/', 'x=1', BASE);
  t.notMatch(far, /^linux/m, 'no kernel line for an inspector GRUB cannot reach');
  t.match(
    far,
    /cannot boot the inspector http:\/\/images\.example\/insp\/: the signed GRUB loads from this appliance's assets only/,
  );
  t.match(far, /chainloader \$b7efi/, 'it leaves for the local disk');
});

t.test("GRUB's files: the entry, a host's file by MAC, the nonce's claim", async (t) => {
  const inspect = instr({ script: 'inspect', host: 'lab/sb-1' });
  const { d, redeemed } = deps({ [MAC]: inspect }, { namespace: 'lab', name: 'sb-1', nonce: 'n0nce' });
  const entry = await grubFile(d, 'grub/grub.cfg', '10.77.0.50');
  t.match(
    entry && 'text' in entry && entry.text,
    /source \/grub\/mac\/\$\{net_default_mac\}\.cfg/,
    'entry asks by MAC',
  );
  t.notMatch(entry && 'text' in entry && entry.text, /^#/m, 'comments are not sent');

  const host = await grubFile(d, `/grub/mac/${MAC}.cfg`, '10.77.0.50');
  t.same(host && 'what' in host && host.what, 'inspect');
  t.match(host && 'text' in host && host.text, /^source \/grub\/boot\/lab\/sb-1\/n0nce\.cfg$/m, 'the claim, by TFTP');

  const claim = await grubFile(d, 'grub/boot/lab/sb-1/n0nce.cfg', '10.77.0.50');
  t.same(claim, { text: 'linux /assets/inspector/vmlinuz x\n', what: 'inspector' });
  t.same(redeemed, [{ namespace: 'lab', name: 'sb-1', nonce: 'n0nce', from: '10.77.0.50' }], 'claimed from the reader');
  t.same(await grubFile(d, 'grub/boot/lab/sb-1/wrong.cfg', '10.77.0.50'), { refuse: 'no such boot nonce' });
  const conflict = await grubFile(d, 'grub/boot/lab/sb-1/conflicted.cfg', '10.77.0.50');
  t.match(conflict && 'text' in conflict && conflict.text, /claimed from another address/);
  t.notMatch(conflict && 'text' in conflict && conflict.text, /^exit/m, 'a conflict returns: the entry asks again');

  t.same(await grubFile(d, 'grub/mac/not-a-mac.cfg', '10.77.0.50'), { refuse: 'not a MAC address' });
  t.same(await grubFile(d, 'grub/x86_64-efi/grub.cfg', '10.77.0.50'), { refuse: 'no such file' });
  t.equal(await grubFile(d, 'shimx64.efi', '10.77.0.50'), undefined, 'not one of GRUB’s files');
  t.same(
    await grubFile(d, 'grub/boot/lab/sb-1/n0nce.cfg', '10.77.0.66'),
    { refuse: 'too many requests from this address' },
    'over its budget, an address gets nothing rendered and claims nothing',
  );
  t.equal(redeemed.length, 3, 'no redemption for the address over its budget');
  t.equal(loggableFile('grub/boot/lab/sb-1/n0nce.cfg'), 'grub/boot/lab/sb-1/<nonce>', 'the nonce never reaches a log');
});

t.test("a host's file follows its instruction", async (t) => {
  const claimed = deps({ [MAC]: instr({ script: 'inspect', host: 'default/a' }) }, 'claimed');
  const c = await grubFile(claimed.d, `grub/mac/${MAC}.cfg`, '10.77.0.51');
  t.match(c && 'text' in c && c.text, /claimed from another address/, 'a claimant elsewhere: no nonce');
  t.notMatch(c && 'text' in c && c.text, /grub\/boot/);

  const over = deps({ [MAC]: instr({ script: 'inspect', host: 'default/a' }) }, undefined);
  const o = await grubFile(over.d, `grub/mac/${MAC}.cfg`, '10.77.0.51');
  t.match(
    o && 'text' in o && o.text,
    /no inspection running; leaving network boot(.|\n)*chainloader/,
    'no live attempt: leave network boot',
  );

  const disk = deps({ [MAC]: instr({ script: 'local-disk' }) }, undefined);
  const l = await grubFile(disk.d, `grub/mac/${MAC}.cfg`, '10.77.0.51');
  const lt = l && 'text' in l ? l.text : '';
  t.match(
    lt,
    /^ {2}set root=\$b7disk\n {2}chainloader \$b7efi$/m,
    "local disk: the disk's own loader, started directly",
  );
  t.match(lt, /boots from local disk/);

  const unknown = await grubFile(disk.d, 'grub/mac/52:54:00:ff:ff:ff.cfg', '10.77.0.51');
  t.same(unknown && 'what' in unknown && unknown.what, 'exit (not enrolled)');

  const target = instr({
    script: 'boot-target',
    kernelURL: `${BASE}/assets/demo/vmlinuz`,
    initrdURL: `${BASE}/assets/demo/initrd.gz`,
    cmdline: 'console=ttyS0 x=$y',
  });
  const bt = await grubFile(deps({ [MAC]: target }, undefined).d, `grub/mac/${MAC}.cfg`, '10.77.0.51');
  t.match(bt && 'text' in bt && bt.text, /^linux \/assets\/demo\/vmlinuz console=ttyS0 'x=\$y'$/m);
  t.match(bt && 'text' in bt && bt.text, /^initrd \/assets\/demo\/initrd\.gz$/m);
  const remote = { ...target, kernelURL: 'http://images.example/vmlinuz' };
  const r = await grubFile(deps({ [MAC]: remote }, undefined).d, `grub/mac/${MAC}.cfg`, '10.77.0.51');
  t.notMatch(r && 'text' in r && r.text, /^linux/m, 'a kernel elsewhere cannot be loaded');
});

t.test("the chain's optional probes are told apart from files missing for real", async (t) => {
  for (const f of ['revocations_sku.efi', 'revocations_sbat.efi', 'shim_certificate_0.efi', 'fbx64.efi', 'mmx64.efi'])
    t.ok(optionalFile(f), `shim: ${f}`);
  t.ok(optionalFile('/grub/x86_64-efi/command.lst'), 'GRUB: its module lists');
  t.ok(optionalFile('/grub/arm64-efi/fs.lst'));
  for (const f of ['grubx64.efi', 'shimx64.efi', 'snponly.efi', 'grub/grub.cfg', 'assets/inspector/vmlinuz'])
    t.notOk(optionalFile(f), `needed: ${f}`);
});

t.test('which chain a host gets, and why', async (t) => {
  const h = (bootChain: 'Auto' | 'iPXE' | 'SignedGRUB', secureBoot?: boolean) => ({
    spec: { bootChain },
    status: secureBoot === undefined ? {} : { secureBoot },
  });
  t.same(bootChainOf(h('Auto', true)), { signed: true, why: 'the BMC reports Secure Boot enabled' });
  t.same(bootChainOf(h('Auto', false)), { signed: false, why: 'the BMC reports Secure Boot disabled' });
  t.same(bootChainOf(h('Auto')), { signed: false, why: 'the BMC reports no Secure Boot state' });
  t.same(bootChainOf(h('iPXE', true)), { signed: false, why: 'spec.bootChain iPXE' });
  t.same(bootChainOf(h('SignedGRUB', false)), { signed: true, why: 'spec.bootChain SignedGRUB' });
});
