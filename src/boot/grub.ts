import type { BootInstruction } from '../domain/boot.js';
import { MacSchema } from '../domain/mac.js';
import { assetPathOf } from '../domain/safe-path.js';
import { inspectorIsScript, render, selectInstruction, type Templates } from './ipxe.js';

/**
 * The Secure Boot chain's configuration. Firmware enforcing Secure Boot loads shim (Microsoft-signed), shim loads
 * Debian's signed network GRUB from beside it, and that GRUB reads `grub/grub.cfg` from the TFTP server it came
 * from: it has no HTTP, so everything it loads is fetched over TFTP, and what iPXE scripts do over HTTP is done
 * here by files the TFTP server renders per request:
 *   grub/grub.cfg                       the entry, the same for every host: asks for its MAC's file
 *   grub/mac/<mac>.cfg                  the host's configuration, as host.ipxe is iPXE's
 *   grub/boot/<ns>/<host>/<nonce>.cfg   the claim of an inspection's boot nonce, as /api/v1/boot/... is iPXE's
 * Files under the assets directory are served as /assets/<path>, as over HTTP: kernels and initrds.
 */

/** A word GRUB reads literally, as one argument: single-quoted unless it is plainly safe. */
export const grubWord = (v: string): string => (/^[\w.,:/=+@%-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`);
/** Kernel arguments as GRUB words: no `$` expansion, no `;` or `|`, whatever they hold. */
export const grubArgs = (args: string): string => args.split(/\s+/).filter(Boolean).map(grubWord).join(' ');

/** Text inside a double-quoted echo: nothing GRUB would expand or end the string with. */
const grubText = (v: string): string => v.replace(/["$\\`]/g, '');

/** Why GRUB leaves for the disk instead of booting `what`. */
const unreachable = (what: string): string =>
  grubText(`cannot boot ${what}: the signed GRUB loads from this appliance's assets only, over TFTP`);

/** The TFTP path GRUB loads a URL of ours from: our own assets only; undefined for any other URL. */
export function tftpPathOf(url: string, httpBase: string): string | undefined {
  // the bundled inspector's chainable script is iPXE's way to the same kernel and initrd
  if (new URL(url).href === new URL('/beskar7-inspector/boot', httpBase).href) return '/assets/inspector/';
  try {
    const p = assetPathOf(url, httpBase);
    return p === undefined ? undefined : `/assets/${p}`;
  } catch {
    return undefined;
  }
}

/**
 * Where the signed GRUB reads an inspector from: a directory of our assets with vmlinuz and initrd.img (contract
 * §4.1), as iPXE's inspector-kernel reads it; undefined when GRUB cannot reach it (another server, a script).
 */
export const grubInspectorDir = (url: string, httpBase: string): string | undefined =>
  inspectorIsScript(url) && !url.endsWith('/beskar7-inspector/boot') ? undefined : tftpPathOf(url, httpBase);

/** GRUB's answer to a claimed nonce: the inspector's kernel and initrd over TFTP, with the contract's parameters. */
export function renderGrubInspector(t: Templates, url: string, params: string, httpBase: string): string {
  const dir = grubInspectorDir(url, httpBase);
  if (dir === undefined) return render(t.get('grub-local-disk') ?? '', { why: unreachable(`the inspector ${url}`) });
  return render(t.get('grub-inspector') ?? '', { base: grubWord(dir.replace(/\/$/, '')), args: grubArgs(params) });
}

/** The claim of a host's live attempt, as a TFTP path; 'claimed' when another address claimed it. */
export type ClaimPath = { namespace: string; name: string; nonce: string } | 'claimed' | undefined;

export interface GrubDeps {
  templates: Templates;
  httpBase: string;
  storedInstruction: (mac: string) => Promise<BootInstruction | undefined>;
  configuredInstruction: (mac: string) => BootInstruction | undefined;
  unknownHosts: BootInstruction;
  claimPath: (host: string, from: string) => Promise<ClaimPath>;
  /** the nonce's claim: GRUB's configuration that boots the inspector, 'conflict', or undefined (no such nonce) */
  redeem: (c: {
    namespace: string;
    name: string;
    nonce: string;
    from: string;
  }) => Promise<string | 'conflict' | undefined>;
  /** the boot plane's per-address budget: each rendered file costs a store read, a claim a write */
  admit: (from: string) => boolean;
}

/** A rendered file, or a refusal; undefined: not one of GRUB's files. */
export type GrubFile = { text: string; what: string } | { refuse: string } | undefined;

const CLAIM = /^grub\/boot\/([a-z0-9-]{1,63})\/([a-z0-9-]{1,63})\/([\w-]{1,128})\.cfg$/;

/**
 * Files the chain asks for whether or not they exist: shim's optional revocation lists and certificates (its
 * fallback and MOK manager too), GRUB's module lists beside its prefix. "Not found" is the answer they expect.
 */
export const optionalFile = (file: string): boolean =>
  /(^|\/)(revocations_\w+|shim_certificate_\d+|fb\w+|mm\w+)\.efi$/.test(file) || /^\/?grub\/[\w-]+-efi\//.test(file);

/** A boot nonce is a credential until it is claimed: it never reaches a log line or the timeline. */
export const loggableFile = (file: string): string => file.replace(/^(\/?grub\/boot\/[^/]+\/[^/]+\/).*$/, '$1<nonce>');

/** What GRUB asked for over TFTP, from `from`. */
export async function grubFile(d: GrubDeps, requested: string, from: string): Promise<GrubFile> {
  const file = requested.replace(/^\/+/, '');
  if (!file.startsWith('grub/')) return undefined;
  // refused, GRUB's entry asks again in 10 s
  if (!d.admit(from)) return { refuse: 'too many requests from this address' };
  if (file === 'grub/grub.cfg') return { text: render(d.templates.get('grub-entry') ?? '', {}), what: 'entry' };
  const mac = /^grub\/mac\/(.+)\.cfg$/.exec(file)?.[1];
  if (mac !== undefined) {
    const m = MacSchema.safeParse(mac);
    return m.success ? hostFile(d, m.data, from) : { refuse: 'not a MAC address' };
  }
  const claim = CLAIM.exec(file);
  if (claim) {
    const [, namespace = '', name = '', nonce = ''] = claim;
    const r = await d.redeem({ namespace, name, nonce, from });
    if (r === undefined) return { refuse: 'no such boot nonce' };
    if (r === 'conflict') return { text: render(d.templates.get('grub-claimed') ?? '', {}), what: 'claim conflict' };
    return { text: r, what: 'inspector' };
  }
  // GRUB looks for more than we serve (grub/x86_64-efi/grub.cfg, modules, fonts): not found sends it on
  return { refuse: 'no such file' };
}

/** The host's configuration: as host.ipxe, for a GRUB that reaches only our TFTP server. */
async function hostFile(d: GrubDeps, mac: string, from: string): Promise<GrubFile> {
  const { instruction: i, known } = selectInstruction(
    await d.storedInstruction(mac),
    d.configuredInstruction(mac),
    d.unknownHosts,
  );
  const t = d.templates;
  const file = (name: string, vars: Record<string, string | undefined>, what: string) => ({
    text: render(t.get(name) ?? '', { mac, ...vars }),
    what: `${what}${known ? '' : ' (not enrolled)'}`,
  });
  switch (i.script) {
    case 'inspect': {
      const c = i.host ? await d.claimPath(i.host, from) : undefined;
      if (c === 'claimed') return file('grub-claimed', {}, 'inspect-claimed');
      if (!c) return file('grub-local-disk', { why: `${mac} has no inspection running; leaving network boot` }, 'exit');
      return file('grub-inspect', { claim: `/grub/boot/${c.namespace}/${c.name}/${c.nonce}.cfg` }, 'inspect');
    }
    case 'local-disk':
      return file('grub-local-disk', { why: `${mac} boots from local disk` }, 'local-disk');
    case 'exit':
      return file('grub-local-disk', { why: `${mac} has nothing to boot from the network here` }, 'exit');
    case 'boot-target':
    case 'discover': {
      const kernel = i.kernelURL && tftpPathOf(i.kernelURL, d.httpBase);
      const initrd = i.initrdURL && tftpPathOf(i.initrdURL, d.httpBase);
      if (!kernel || !initrd)
        return file('grub-local-disk', { why: unreachable(`${i.script} ${i.kernelURL ?? ''}`) }, i.script);
      return file('grub-kernel', { what: i.script, kernel, initrd, args: grubArgs(i.cmdline) }, i.script);
    }
  }
}
