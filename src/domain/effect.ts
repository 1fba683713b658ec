import { z } from 'zod';
import { HostActionSchema } from './resources.js';

/**
 * Work for a host's BMC, stored in the same batch as the decision that needs it and carried out only by the
 * reconciler of the leading appliance, which records the outcome with a plan of its own and deletes the request.
 * A host with a request still stored cannot be claimed: a power-off that its BMC takes seconds to carry out
 * never lands in the next machine's boot. `host` is the host's key (`<namespace>/<name>`); a machine named is
 * one of the host's namespace.
 */
export const EffectSchema = z.discriminatedUnion('kind', [
  /** one-time PXE, then power on (or restart): the attempt's inspection boot */
  z.object({ kind: z.literal('bootInspector'), host: z.string(), machine: z.string(), attempt: z.string() }),
  /** one-time PXE, then power on (or restart): the inspector boots to erase the host's disks */
  z.object({ kind: z.literal('bootCleaner'), host: z.string(), attempt: z.string() }),
  /**
   * power off and clear the boot override: a host let go, or one whose machine is being deleted (`release`:
   * that machine goes, and the host is released, once the power is off)
   */
  z.object({ kind: z.literal('powerOff'), host: z.string(), reason: z.string(), release: z.string().optional() }),
  /** an operator's action; `id` names the event that tells its outcome */
  z.object({ kind: z.literal('hostAction'), host: z.string(), action: HostActionSchema, id: z.string() }),
]);
export type Effect = z.infer<typeof EffectSchema>;
