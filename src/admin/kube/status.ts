import type { z } from 'zod';
import type { RefusalCode } from '../../domain/refusal.js';
import type { KindInfo } from './kinds.js';

/** A failure as a Kubernetes API server answers it: a `Status` object, which kubectl prints in its own words. */
export interface StatusBody {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message: string;
  reason: string;
  details?: {
    name?: string;
    group?: string;
    kind?: string;
    uid?: string;
    causes?: { reason: string; message: string; field: string }[];
  };
  code: number;
}

export interface Subject {
  name?: string | undefined;
  group: string;
  /** lower-case plural, as API servers name the resource in a Status */
  plural: string;
  kind: string;
}

const REASON: Record<
  | RefusalCode
  | 'forbidden'
  | 'methodNotAllowed'
  | 'gone'
  | 'unavailable'
  | 'badRequest'
  | 'tooLarge'
  | 'unsupportedMedia',
  [string, number]
> = {
  invalid: ['Invalid', 422],
  badRequest: ['BadRequest', 400],
  tooLarge: ['RequestEntityTooLarge', 413],
  unsupportedMedia: ['UnsupportedMediaType', 415],
  unauthorized: ['Unauthorized', 401],
  forbidden: ['Forbidden', 403],
  quota: ['Forbidden', 403],
  notFound: ['NotFound', 404],
  methodNotAllowed: ['MethodNotAllowed', 405],
  conflict: ['Conflict', 409],
  exists: ['AlreadyExists', 409],
  gone: ['Expired', 410],
  bmcFailed: ['InternalError', 502],
  unavailable: ['ServiceUnavailable', 503],
};
export type StatusCode = keyof typeof REASON;

/** The object a Status is about. */
export const subject = (i: KindInfo, name?: string): Subject => ({
  name,
  group: i.group,
  plural: i.plural,
  kind: i.kind,
});

const resource = (s: Subject) => (s.group ? `${s.plural}.${s.group}` : s.plural);

/** A refusal about one object (or none), with the message kubectl shows. */
export function failure(
  code: StatusCode,
  message: string,
  s?: Subject,
  causes?: NonNullable<StatusBody['details']>['causes'],
) {
  const [reason, http] = REASON[code];
  const about = s?.name ? `${resource(s)} "${s.name}"` : s ? resource(s) : '';
  const text =
    code === 'notFound' && s?.name
      ? `${about} not found`
      : code === 'exists' && s?.name
        ? `${about} already exists`
        : code === 'invalid' && s?.name
          ? `${s.kind}.${s.group || 'core'} "${s.name}" is invalid: ${message}`
          : message;
  const body: StatusBody = {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: text,
    reason,
    ...(s
      ? {
          details: {
            ...(s.name ? { name: s.name } : {}),
            group: s.group,
            kind: s.plural,
            ...(causes ? { causes } : {}),
          },
        }
      : {}),
    code: http,
  };
  // Invalid is reported by kind, not by resource: kubectl prints `The <Kind> "<name>" is invalid: ...`
  if (code === 'invalid' && body.details) body.details.kind = s?.kind as string;
  return body;
}

/** A field path of a zod issue as Kubernetes writes it: spec.bootMACs[0]. */
const fieldOf = (path: readonly PropertyKey[]) =>
  path.reduce<string>((p, k) => (typeof k === 'number' ? `${p}[${k}]` : p ? `${p}.${String(k)}` : String(k)), '');

/** A manifest that does not parse: Invalid, one cause per issue, each at its field. */
export function invalid(e: z.ZodError, s: Subject): StatusBody {
  const causes = e.issues.map((i) => ({
    reason: i.code === 'unrecognized_keys' ? 'FieldValueUnknown' : 'FieldValueInvalid',
    field: fieldOf(i.path),
    message:
      i.code === 'unrecognized_keys'
        ? `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}`
        : i.message,
  }));
  const message = causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message)).join(', ');
  return failure('invalid', message, s, causes);
}

/** A command's refusal: a message that starts with a field path names that field as its cause. */
export function refused(code: RefusalCode, message: string, s: Subject): StatusBody {
  if (code !== 'invalid') return failure(code, message, s);
  const m = /^((?:spec|metadata)\.[\w.[\]]+): (.*)$/s.exec(message);
  const cause = m ? { reason: 'FieldValueInvalid', field: m[1] as string, message: m[2] as string } : undefined;
  return failure('invalid', message, s, cause ? [cause] : undefined);
}
