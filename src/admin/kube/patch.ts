import jsonPatch from 'fast-json-patch';
import YAML from 'yaml';

/** What a PATCH body does to the current object, by its Content-Type. */
export type PatchType = 'merge' | 'json' | 'strategic' | 'apply';

export const PATCH_TYPES: Record<string, PatchType> = {
  'application/merge-patch+json': 'merge',
  'application/json-patch+json': 'json',
  'application/strategic-merge-patch+json': 'strategic',
  'application/apply-patch+yaml': 'apply',
};

/** RFC 7386: objects merge key by key, null removes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Strategic merge patch without a schema's merge keys is a merge patch, as for custom resources; its
 * directives (`$patch`, `$retainKeys`, `$setElementOrder/...`, `$deleteFromPrimitiveList/...`) only order or
 * prune lists of the built-in kinds, which these kinds do not have: they are dropped.
 */
function withoutDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutDirectives);
  if (!isObject(v)) return v;
  return Object.fromEntries(
    Object.entries(v)
      .filter(([k]) => !k.startsWith('$'))
      .map(([k, x]) => [k, withoutDirectives(x)]),
  );
}

/** The patched object, or why the patch cannot apply. */
export function applyPatch(
  current: unknown,
  type: PatchType,
  body: string,
): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    switch (type) {
      case 'json': {
        const ops = JSON.parse(body);
        if (!Array.isArray(ops)) return { ok: false, error: 'a JSON patch is an array of operations' };
        const doc = jsonPatch.applyPatch(structuredClone(current), ops, true, false).newDocument;
        return { ok: true, value: doc };
      }
      case 'apply':
        // server-side apply: the fields the applier sets win; fields it does not name are kept
        return { ok: true, value: mergePatch(current, YAML.parse(body, { maxAliasCount: 100 })) };
      case 'strategic':
        return { ok: true, value: mergePatch(current, withoutDirectives(JSON.parse(body))) };
      default:
        return { ok: true, value: mergePatch(current, JSON.parse(body)) };
    }
  } catch (e) {
    return { ok: false, error: (e as Error).message.split('\n')[0] as string };
  }
}
