/**
 * Throwaway certificates for the TLS tests, made with the openssl CLI: a CA, a server certificate
 * for 127.0.0.1/localhost signed by it, and a client certificate (SASL EXTERNAL). P-256 keys: a
 * whole set takes a few tens of milliseconds.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Pki {
  readonly caFile: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** the client certificate's subject, as slapd names the SASL EXTERNAL identity */
  readonly clientDn: string;
}

/** Is the openssl CLI there? (test/setup.sh installs it) */
export async function opensslAvailable(): Promise<boolean> {
  try {
    await run('openssl', ['version']);
    return true;
  } catch {
    return false;
  }
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A CA named `name` and its certificates, in `dir/name/`. */
export async function makePki(dir: string, name: string): Promise<Pki> {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  const f = (x: string) => join(d, x);
  await run('openssl', ['req', '-x509', ...KEY, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', `/CN=nsidmap test CA ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await leaf(d, 'server', '/CN=localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await leaf(d, 'client', '/CN=nsidmap-client', 'extendedKeyUsage=clientAuth\n');
  return { caFile: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key'), clientDn: 'cn=nsidmap-client' };
}

async function leaf(d: string, what: string, subj: string, ext: string): Promise<void> {
  const f = (x: string) => join(d, x);
  writeFileSync(f(`${what}.ext`), ext);
  await run('openssl', ['req', ...KEY, '-keyout', f(`${what}.key`), '-out', f(`${what}.csr`), '-subj', subj]);
  await run('openssl', ['x509', '-req', '-in', f(`${what}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${what}.pem`), '-days', '2', '-extfile', f(`${what}.ext`)]);
}
