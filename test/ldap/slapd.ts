/**
 * A real OpenLDAP slapd for tests and benchmarks, started as a child process on a free loopback
 * high port with a throwaway slapd.conf and mdb data directory under a temp dir, seeded with
 * slapadd from LDIF files. Installs nothing: test/setup.sh installs Debian's slapd (with
 * `slapd/no_configuration` preseeded, so no system database or service exists) and ldap-utils.
 *
 *   const s = await Slapd.start({ schema: 'nis', suffix: BASE, ldif: ['…/rfc2307.ldif'] });
 *   after(() => s.stop());          // kills it and removes the temp dir, whatever happened
 *
 * kill/restart (same ports, same data), pause/resume (SIGSTOP/SIGCONT) are there for the outage
 * and slow-server tests. Every child is also killed, and every temp dir removed, when the test
 * process exits — a failing test never leaves a slapd behind.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SLAPD = '/usr/sbin/slapd';
export const SLAPADD = '/usr/sbin/slapadd';
const SYSTEM_SCHEMA = '/etc/ldap/schema';
const MODULES = '/usr/lib/ldap';
const REPO_SCHEMA = new URL('../fixtures/ldap/schema/', import.meta.url).pathname;

/** Why slapd tests cannot run here, or undefined when they can. */
export function slapdMissing(): string | undefined {
  for (const f of [SLAPD, SLAPADD, join(SYSTEM_SCHEMA, 'nis.schema'), join(MODULES, 'back_mdb.so')]) {
    if (!existsSync(f)) return `${f} is missing (run test/setup.sh as root: it installs slapd and ldap-utils)`;
  }
  return undefined;
}

export interface SlapdOptions {
  /**
   * The posix schema: `nis` (Debian's RFC 2307) or `rfc2307bis` (ours). Either way the AD
   * classes (ad.schema), the test attributes (nsidmap-test.schema) and nfs-utils' umich_ldap
   * classes (umich.schema: NFSv4RemotePerson, NFSv4RemoteGroup) are loaded too.
   */
  readonly schema: 'nis' | 'rfc2307bis';
  readonly suffix: string;
  /** LDIF files slapadd loads, in order */
  readonly ldif: readonly string[];
  /** anonymous users see nothing: lookups must bind (simple or SASL EXTERNAL) */
  readonly requireBind?: boolean;
  /** serve ldaps:// on a second port, and StartTLS on the first */
  readonly tls?: { readonly ca: string; readonly cert: string; readonly key: string; readonly verifyClient?: boolean };
  /** parent of the temp dir (default: the OS temp dir) */
  readonly tmp?: string;
}

const running = new Set<Slapd>();
process.on('exit', () => {
  for (const s of running) s.killNow();
});

/** A loopback port nobody listens on right now (slapd binds it a moment later; start() retries on a clash). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function conf(o: SlapdOptions, dir: string): string {
  const posix = o.schema === 'nis' ? join(SYSTEM_SCHEMA, 'nis.schema') : join(REPO_SCHEMA, 'rfc2307bis.schema');
  const schemas = [join(SYSTEM_SCHEMA, 'core.schema'), join(SYSTEM_SCHEMA, 'cosine.schema'), posix, join(REPO_SCHEMA, 'ad.schema'), join(REPO_SCHEMA, 'nsidmap-test.schema'), join(REPO_SCHEMA, 'umich.schema')];
  const tls = o.tls
    ? [`TLSCACertificateFile ${o.tls.ca}`, `TLSCertificateFile ${o.tls.cert}`, `TLSCertificateKeyFile ${o.tls.key}`, `TLSVerifyClient ${o.tls.verifyClient ? 'try' : 'never'}`]
    : [];
  return [
    ...schemas.map((s) => `include ${s}`),
    `pidfile ${join(dir, 'slapd.pid')}`,
    `argsfile ${join(dir, 'slapd.args')}`,
    `modulepath ${MODULES}`,
    'moduleload back_mdb',
    ...tls,
    'database mdb',
    'maxsize 67108864',
    `suffix "${o.suffix}"`,
    `rootdn "cn=admin,${o.suffix}"`,
    `directory ${join(dir, 'data')}`,
    'index objectClass eq',
    'index uid,cn,memberUid,sAMAccountName,sidText eq',
    'index uidNumber,gidNumber eq',
    'index objectSid eq',
    'index nfsv4Name eq,sub',
    'access to attrs=userPassword by anonymous auth by * none',
    `access to * by users read by * ${o.requireBind ? 'none' : 'read'}`,
    '',
  ].join('\n');
}

export class Slapd {
  private child: ChildProcess | undefined;
  private stderr = '';
  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly tlsPort: number | undefined,
    private readonly confFile: string,
  ) {}

  /** ldap://127.0.0.1:PORT */
  get uri(): string {
    return `ldap://127.0.0.1:${this.port}`;
  }
  /** ldaps://127.0.0.1:PORT (with tls) */
  get ldapsUri(): string {
    if (this.tlsPort === undefined) throw new Error('slapd started without tls');
    return `ldaps://127.0.0.1:${this.tlsPort}`;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }

  static async start(o: SlapdOptions): Promise<Slapd> {
    const missing = slapdMissing();
    if (missing) throw new Error(missing);
    const dir = mkdtempSync(join(o.tmp ?? tmpdir(), 'nsidmap-slapd-'));
    try {
      mkdirSync(join(dir, 'data'));
      const confFile = join(dir, 'slapd.conf');
      writeFileSync(confFile, conf(o, dir));
      for (const f of o.ldif) await run(SLAPADD, ['-q', '-f', confFile, '-l', f]);
      for (let attempt = 0; ; attempt++) {
        const s = new Slapd(dir, await freePort(), o.tls ? await freePort() : undefined, confFile);
        try {
          await s.launch();
          return s;
        } catch (e) {
          if (attempt >= 4) throw e;
        }
      }
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  private async launch(): Promise<void> {
    const urls = [`ldap://127.0.0.1:${this.port}/`];
    if (this.tlsPort !== undefined) urls.push(`ldaps://127.0.0.1:${this.tlsPort}/`);
    // -d 0: stay in the foreground (a child we can kill) and log nothing
    const child = spawn(SLAPD, ['-f', this.confFile, '-h', urls.join(' '), '-d', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    running.add(this);
    this.stderr = '';
    child.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    const exited = new Promise<never>((_, reject) => child.once('exit', (code, sig) => reject(new Error(`slapd exited (${code ?? sig}) while starting: ${this.stderr.trim()}`))));
    exited.catch(() => undefined);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const up = await Promise.race([this.listening(), exited]);
      if (up) return;
      if (Date.now() > deadline) {
        this.killChild();
        throw new Error(`slapd did not listen on ${this.port} within 10 s: ${this.stderr.trim()}`);
      }
      await sleep(10);
    }
  }

  private async listening(): Promise<boolean> {
    if (!(await canConnect(this.port))) return false;
    return this.tlsPort === undefined || canConnect(this.tlsPort);
  }

  /** SIGKILL and wait for the exit: the directory is down. */
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGCONT'); // a stopped process takes SIGKILL too, but make sure it is not left stopped if it lingers
    c.kill('SIGKILL');
    await gone;
    running.delete(this);
  }

  /** Start again on the same ports with the same data. */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  /** SIGSTOP: the server accepts connections (the kernel does) but answers nothing. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Kill it and remove the temp dir. Safe to call twice. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** synchronous, for the exit hook */
  killNow(): void {
    this.killChild();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private killChild(): void {
    try {
      this.child?.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }

  /** the last lines slapd wrote to stderr (diagnostics) */
  get log(): string {
    return this.stderr;
  }

  /** the generated slapd.conf (diagnostics) */
  get config(): string {
    return readFileSync(this.confFile, 'utf8');
  }
}
