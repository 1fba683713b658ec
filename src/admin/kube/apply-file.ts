import { DEFAULT_NAMESPACE } from '../../domain/resources.js';
import type { Applied } from '../commands.js';
import { KIND_INFO, type KindName, kindNamed } from './kinds.js';
import { manifestItems } from './manifest-file.js';
import type { Kind } from './resources.js';
import { failure, invalid, refused, type StatusBody, subject } from './status.js';

/** What applying one object of a file came to: what it did, or the Status that says why not (causes by field). */
export interface FileItem {
  kind: string;
  name: string;
  namespace?: string;
  result?: Applied;
  status?: StatusBody;
}

/**
 * A manifest file applied as `kubectl apply -f` does: every object that can apply does, in dependency order, and
 * each one that cannot is answered with its Status. The dashboard's apply box sends its text here.
 */
export async function applyFile(all: Record<KindName, Kind>, text: string): Promise<FileItem[]> {
  const out: FileItem[] = [];
  for (const { kind, doc } of manifestItems(text)) {
    const meta = (doc.metadata && typeof doc.metadata === 'object' ? doc.metadata : {}) as Record<string, unknown>;
    const name = String(meta.name ?? '');
    const known = kindNamed(kind);
    const k = known && KIND_INFO[known].kind === kind ? all[known] : undefined;
    if (!k?.write) {
      out.push({
        kind,
        name,
        status: failure('badRequest', `no kind "${kind}" is served here`, { group: '', plural: '', kind, name }),
      });
      continue;
    }
    const namespace = k.info.namespaced ? String(meta.namespace ?? DEFAULT_NAMESPACE) : undefined;
    const o = { ...doc, metadata: { ...meta, ...(namespace ? { namespace } : {}) } };
    const w = await k.write(o, 'apply');
    const at = { kind, name, ...(namespace ? { namespace } : {}) };
    if (w.ok) out.push({ ...at, result: w.value });
    else
      out.push({
        ...at,
        status: 'zod' in w ? invalid(w.zod, subject(k.info, name)) : refused(w.code, w.error, subject(k.info, name)),
      });
  }
  return out;
}
