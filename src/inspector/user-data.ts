import type { StoredMachine, StoredSecret } from '../domain/resources.js';
import { readCapped } from '../net/read-capped.js';

/** A bootstrap payload larger than this is refused: Kubernetes caps a Secret at 1 MiB too. */
export const MAX_USER_DATA = 1024 * 1024;

/** Where a machine's user-data comes from, decided without I/O. */
export type UserDataSource =
  | { kind: 'secret'; name: string }
  | { kind: 'url'; url: string }
  | { kind: 'generated'; text: string };

/**
 * The machine's bootstrap data source: the Secret it names (Cluster API's bootstrap data secret, key `value`),
 * else its configurationURL, else a minimal cloud-config with the host's name, so GET /bootstrap never answers
 * an empty 200 and a machine that names no configuration still deploys.
 */
export function userDataSource(m: StoredMachine, hostName: string): UserDataSource {
  if (m.spec.bootstrap) return { kind: 'secret', name: m.spec.bootstrap.dataSecretName };
  if (m.spec.configurationURL) return { kind: 'url', url: m.spec.configurationURL };
  return {
    kind: 'generated',
    text: `#cloud-config\n# Beskar7: machine ${m.namespace}/${m.name} names no bootstrap data (spec.bootstrap.dataSecretName or spec.configurationURL)\nhostname: ${hostName}\n`,
  };
}

/** The Secret's `value` (the one in the machine's namespace), opened; undefined: not there yet. */
export function secretUserData(s: StoredSecret | undefined, open: (sealed: string) => string): string | undefined {
  return s?.valueEnc !== undefined ? open(s.valueEnc) : undefined;
}

/** configurationURL's content, fetched by the appliance: bounded in size and time; undefined on any failure. */
export async function fetchUserData(url: string, timeoutMs = 10_000): Promise<string | undefined> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
    if (!r.ok || !r.body) return undefined;
    const body = await readCapped(r.body as AsyncIterable<Buffer>, MAX_USER_DATA);
    return body?.length ? body.toString('utf8') : undefined;
  } catch {
    return undefined;
  }
}
