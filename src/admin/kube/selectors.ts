import type { Obj } from './kinds.js';

/** One requirement of a label selector (Kubernetes' grammar: =, ==, !=, in, notin, key, !key). */
type Requirement = { key: string; op: 'in' | 'notin'; values: string[] } | { key: string; op: 'exists' | '!exists' };

export type Selector = (labels: Record<string, string>) => boolean;

const KEY = /^([a-z0-9A-Z]([\w.-]*[a-zA-Z0-9])?\/)?[a-zA-Z0-9]([\w.-]*[a-zA-Z0-9])?$/;
const VALUE = /^([a-zA-Z0-9]([\w.-]*[a-zA-Z0-9])?)?$/;

/** Splits at commas outside parentheses: `a in (x,y),b` is two requirements. */
function parts(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((p) => p.trim()).filter(Boolean);
}

function requirement(p: string): Requirement {
  let m = /^(\S+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(p);
  if (m) {
    const values = (m[3] as string).split(',').map((v) => v.trim());
    return check({ key: m[1] as string, op: m[2] as 'in' | 'notin', values });
  }
  m = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(p);
  if (m) return check({ key: m[1] as string, op: m[2] === '!=' ? 'notin' : 'in', values: [m[3] as string] });
  m = /^(!?)\s*(\S+)$/.exec(p);
  if (m) return check({ key: m[2] as string, op: m[1] ? '!exists' : 'exists' });
  throw new Error(`unable to parse requirement: "${p}"`);
}

function check(r: Requirement): Requirement {
  if (!KEY.test(r.key)) throw new Error(`invalid label key "${r.key}"`);
  for (const v of 'values' in r ? r.values : []) if (!VALUE.test(v)) throw new Error(`invalid label value: "${v}"`);
  return r;
}

/** A label selector as a predicate; throws with the reason on bad syntax. */
export function labelSelector(s: string | undefined): Selector {
  const reqs = parts(s ?? '').map(requirement);
  return (labels) =>
    reqs.every((r) => {
      const has = Object.hasOwn(labels, r.key);
      switch (r.op) {
        case 'exists':
          return has;
        case '!exists':
          return !has;
        case 'in':
          return has && r.values.includes(labels[r.key] as string);
        default:
          return !has || !r.values.includes(labels[r.key] as string);
      }
    });
}

/** A field selector (`a.b=x,c!=y`) over the object's JSON, by dotted path; throws on bad syntax. */
export function fieldSelector(s: string | undefined, allowed: readonly string[]): (o: Obj) => boolean {
  const reqs = parts(s ?? '').map((p) => {
    const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(p);
    if (!m) throw new Error(`invalid selector: '${p}'; can't understand '${p}'`);
    const field = m[1] as string;
    if (!allowed.includes(field)) throw new Error(`field label not supported: ${field}`);
    return { path: field.split('.'), neg: m[2] === '!=', value: m[3] as string };
  });
  return (o) =>
    reqs.every((r) => {
      const v = r.path.reduce<unknown>((x, k) => (x && typeof x === 'object' ? (x as Obj)[k] : undefined), o);
      return (String(v ?? '') === r.value) !== r.neg;
    });
}
