import { z } from 'zod';
import { MacSchema } from './mac.js';

export const LeaseSchema = z.object({
  ip: z.string(),
  mac: MacSchema,
  hostname: z.string().optional(),
  /** epoch ms */
  expiresAt: z.number(),
  boundAt: z.number(),
});
export type Lease = z.infer<typeof LeaseSchema>;
