import { z } from 'zod';

/**
 * A URL that goes into an iPXE script: http(s) only, and nothing iPXE would read as script (whitespace ends
 * the argument, `${...}` expands a setting, `||` and `&&` chain commands). Stored in its normalised form.
 */
const scriptSafe = (s: string) => !/[\s$]|\|\||&&/.test(s);
const UNSAFE = 'must not contain whitespace, "$", "||" or "&&": iPXE would run them';
export const ScriptUrl = z
  .string()
  // checked as it will be used: full-width ＆＆ is && once normalised (NFKC, and IDNA in the host)
  .transform((s) => s.normalize('NFKC'))
  .refine(scriptSafe, UNSAFE)
  .pipe(z.url({ protocol: /^https?$/ }))
  .transform((s) => new URL(s).href)
  .refine(scriptSafe, UNSAFE);

/** Kernel arguments rendered into a `kernel` line: no `${...}` expansion, no command chaining, one line. */
const ScriptArgs = z
  .string()
  .refine((s) => !/[$\r\n]|\|\||&&/.test(s), 'must not contain "$", "||", "&&" or line breaks: iPXE would run them');

/** Which UEFI PXE chain a host's MACs get (x86-64 UEFI; BIOS has no Secure Boot), and why, for the timeline. */
export function bootChainOf(h: {
  spec: { bootChain: 'Auto' | 'iPXE' | 'SignedGRUB' };
  status: { secureBoot?: boolean | undefined };
}): { signed: boolean; why: string } {
  if (h.spec.bootChain !== 'Auto')
    return { signed: h.spec.bootChain === 'SignedGRUB', why: `spec.bootChain ${h.spec.bootChain}` };
  if (h.status.secureBoot === undefined) return { signed: false, why: 'the BMC reports no Secure Boot state' };
  return h.status.secureBoot
    ? { signed: true, why: 'the BMC reports Secure Boot enabled' }
    : { signed: false, why: 'the BMC reports Secure Boot disabled' };
}

export const BootScript = z.enum(['inspect', 'boot-target', 'local-disk', 'discover', 'exit']);

/** What a MAC boots: stored per host by the orchestrator, given per MAC in config, or the unknown-host default. */
export const BootInstructionSchema = z.object({
  script: BootScript,
  /** inspect: the host (its key, `<namespace>/<name>`) whose boot nonce the script carries (rendered per fetch, never stored) */
  host: z.string().optional(),
  kernelURL: ScriptUrl.optional(),
  initrdURL: ScriptUrl.optional(),
  cmdline: ScriptArgs.default(''),
  /** local-disk: which method ends iPXE so firmware moves to the next boot device. */
  localDiskMethod: z.enum(['exit', 'sanboot', 'http404']).default('exit'),
});
export type BootInstruction = z.infer<typeof BootInstructionSchema>;
