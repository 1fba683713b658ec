import YAML from 'yaml';

/** One object of a manifest file, with the kind it names. */
export interface ManifestItem {
  kind: string;
  doc: Record<string, unknown>;
}

/** Namespaces first, then Secrets before the hosts that name them, hosts before the machines that claim them. */
const APPLY_ORDER = [
  'Namespace',
  'Secret',
  'PhysicalHost',
  'Beskar7Cluster',
  'Beskar7MachineTemplate',
  'Beskar7Machine',
];

/**
 * The objects of a multi-document YAML file (a List's items one by one) in the order they can apply. A document
 * that does not parse throws, naming it; so does one that expands an alias past 100 times (a billion-laughs
 * document is no manifest).
 */
export function manifestItems(text: string): ManifestItem[] {
  const items: ManifestItem[] = [];
  for (const [i, d] of YAML.parseAllDocuments(text).entries()) {
    if (d.errors.length) throw new Error(`document ${i + 1}: ${d.errors[0]?.message}`);
    let doc: unknown;
    try {
      doc = d.toJS({ maxAliasCount: 100 });
    } catch (e) {
      throw new Error(`document ${i + 1}: ${(e as Error).message}`);
    }
    if (doc === null || doc === undefined) continue;
    const o = doc as { kind?: unknown; items?: unknown };
    for (const one of o.kind === 'List' && Array.isArray(o.items) ? o.items : [doc])
      items.push({ kind: String((one as { kind?: unknown })?.kind ?? ''), doc: one as Record<string, unknown> });
  }
  const rank = (k: string) => (APPLY_ORDER.includes(k) ? APPLY_ORDER.indexOf(k) : APPLY_ORDER.length);
  return items.sort((a, b) => rank(a.kind) - rank(b.kind));
}
