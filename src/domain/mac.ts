import { z } from 'zod';

const MAC_RE = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i;

/** Canonical form everywhere: lower-case, colon-separated. Accepts colons or hyphens (iPXE's `hexhyp`). */
export function normalizeMac(s: string): string | undefined {
  return MAC_RE.test(s) ? s.toLowerCase().replace(/-/g, ':') : undefined;
}

export const MacSchema = z
  .string()
  .refine((s) => normalizeMac(s) !== undefined, 'must be a MAC address like 52:54:00:12:34:56')
  .transform((s) => normalizeMac(s) as string);
