import { z } from 'zod';
import { MacSchema } from './mac.js';

export const LeaseSchema = z.object({
  ip: z.string(),
  mac: MacSchema,
  hostname: z.string().optional(),
  /**
   * DHCPv6: the client (DUID/IAID, hex) the lease is for. A host's firmware network stack, its PXE client and
   * iPXE are three clients: each holds an address of its own, and one releasing takes nothing from the others.
   */
  client: z.string().optional(),
  /** epoch ms */
  expiresAt: z.number(),
  boundAt: z.number(),
});
export type Lease = z.infer<typeof LeaseSchema>;
