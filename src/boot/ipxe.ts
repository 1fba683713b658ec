import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { BootInstruction } from '../domain/boot.js';

/** Which template a boot instruction renders with; `undefined` means answer HTTP 404 (some firmware needs it). */
export function templateFor(instr: BootInstruction): string | undefined {
  switch (instr.script) {
    case 'local-disk':
      return instr.localDiskMethod === 'http404' ? undefined : `local-disk-${instr.localDiskMethod}`;
    default:
      return instr.script;
  }
}

/** Stored instruction (orchestrator) wins over config; unknown hosts get the configured default. */
export function selectInstruction(
  stored: BootInstruction | undefined,
  configured: BootInstruction | undefined,
  unknown: BootInstruction,
): { instruction: BootInstruction; known: boolean } {
  const instruction = stored ?? configured;
  return instruction ? { instruction, known: true } : { instruction: unknown, known: false };
}

export class TemplateError extends Error {}

/** iPXE reads a script line by line: a value must never start a new command. */
const oneLine = (v: string) => v.replace(/[\r\n]+/g, ' ');

/** Replaces `{{name}}`; a name without a value is an error, never an empty string in a boot line. */
export function render(template: string, vars: Record<string, string | undefined>): string {
  return template.replace(/\{\{\s*([a-zA-Z][\w]*)\s*\}\}/g, (_, name: string) => {
    const v = vars[name];
    if (v === undefined) throw new TemplateError(`template variable "${name}" has no value`);
    return oneLine(v);
  });
}

export type Templates = ReadonlyMap<string, string>;

/** Where the inspector is booted from: an iPXE script to chain, or a directory with its kernel and initrd. */
export const inspectorIsScript = (url: string): boolean => /(\.ipxe|\/boot)$/.test(new URL(url).pathname);

/** The answer to a boot nonce's claim: the inspector at `url`, booted with `params`. */
export function renderInspector(t: Templates, url: string, host: string, params: string): string {
  if (inspectorIsScript(url)) return render(t.get('inspector-chain') ?? '', { params, url });
  return render(t.get('inspector-kernel') ?? '', { host, params, base: url.replace(/\/$/, '') });
}

export function loadTemplates(dir: string): Templates {
  const out = new Map<string, string>();
  for (const f of readdirSync(dir)) {
    const ext = path.extname(f);
    if (ext !== '.ipxe' && ext !== '.grub') continue;
    // comments are for whoever edits the template, not for every host that boots: only #!ipxe is sent
    const text = readFileSync(path.join(dir, f), 'utf8').replace(/^#(?!!).*\n/gm, '');
    out.set(path.basename(f, ext), text);
  }
  for (const need of [
    'entry',
    'inspect',
    'inspect-claimed',
    'inspector',
    'inspector-chain',
    'inspector-kernel',
    'boot-target',
    'discover',
    'exit',
    'local-disk-exit',
    'local-disk-sanboot',
    'grub-entry',
    'grub-inspect',
    'grub-claimed',
    'grub-local-disk',
    'grub-kernel',
    'grub-inspector',
  ]) {
    const file = need.startsWith('grub-') ? `${need}.grub` : `${need}.ipxe`;
    if (!out.has(need)) throw new TemplateError(`boot script template ${file} is missing from ${dir}`);
  }
  return out;
}
