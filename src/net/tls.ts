import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';

/** The appliance's own certificate authority and the serving certificate it issued, as PEM files. */
export interface Certificates {
  caFile: string;
  certFile: string;
  keyFile: string;
}

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/**
 * A CA made once in `dir`, and a serving certificate it issues for `names` (made again when the names change).
 * Clients pin the CA: kubectl's kubeconfig and the inspector's beskar7.ca. The leaf is CA:FALSE with
 * serverAuth, issued by a separate CA: webpki (the inspector's TLS) refuses a self-signed leaf.
 */
export function ensureCertificates(dir: string, names: string[]): Certificates {
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  const f = (n: string) => path.join(dir, n);
  const out = { caFile: f('ca.crt'), certFile: f('server.crt'), keyFile: f('server.key') };
  if (!existsSync(out.caFile) || !existsSync(f('ca.key'))) {
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('ca.key')]);
    openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      f('ca.key'),
      '-days',
      '3650',
      '-subj',
      '/CN=Beskar7 appliance CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      out.caFile,
    ]);
  }
  const san = [...new Set(names)].map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  const stamp = f('server.san');
  if (existsSync(out.certFile) && existsSync(out.keyFile) && existsSync(stamp) && readFileSync(stamp, 'utf8') === san)
    return out;
  const ext = f('server.ext');
  writeFileSync(
    ext,
    `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`,
  );
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', out.keyFile]);
  openssl(['req', '-new', '-key', out.keyFile, '-subj', '/CN=beskar7', '-out', f('server.csr')]);
  openssl([
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    out.caFile,
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '825',
    '-extfile',
    ext,
    '-out',
    out.certFile,
  ]);
  writeFileSync(stamp, san);
  return out;
}
