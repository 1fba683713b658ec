import type { z } from 'zod';

/** Readable one-line-per-problem text that names the bad field. */
export function formatZodError(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
}
