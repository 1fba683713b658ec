import { z } from 'zod';

export const BootScript = z.enum(['inspect', 'boot-target', 'local-disk', 'discover', 'exit']);

/** What a MAC boots: stored per host by the orchestrator, given per MAC in config, or the unknown-host default. */
export const BootInstructionSchema = z.object({
  script: BootScript,
  kernelURL: z.string().optional(),
  initrdURL: z.string().optional(),
  cmdline: z.string().default(''),
  /** local-disk: which method ends iPXE so firmware moves to the next boot device. */
  localDiskMethod: z.enum(['exit', 'sanboot', 'http404']).default('exit'),
});
export type BootInstruction = z.infer<typeof BootInstructionSchema>;
