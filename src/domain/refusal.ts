/** Why a command was refused, in the domain's words; only the HTTP layer turns it into a status code. */
export type RefusalCode =
  | 'invalid'
  | 'unauthorized'
  | 'notFound'
  | 'conflict'
  /** a create of what exists already */
  | 'exists'
  /** the BMC failed an operator's action */
  | 'bmcFailed'
  /** a configured limit on what is stored (api.maxObjects) */
  | 'quota';

export interface Refusal {
  code: RefusalCode;
  error: string;
}

export const refusal = (code: RefusalCode, error: string): Refusal => ({ code, error });

/** A command's answer: its value, or why it was refused. */
export type Result<T> = { ok: true; value: T } | ({ ok: false } & Refusal);
