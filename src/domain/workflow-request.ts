import { z } from 'zod';

/**
 * Work for the BMCs that an appliance which does not lead hands to the one that does (only the leader talks to
 * BMCs): stored, so it survives the leader changing before it is done.
 */
export const WorkflowRequestSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('powerDown'), host: z.string() }),
  z.object({
    kind: z.literal('failAttempt'),
    host: z.string(),
    attempt: z.string(),
    reason: z.string(),
    message: z.string(),
  }),
]);
