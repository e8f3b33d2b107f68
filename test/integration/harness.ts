/**
 * What the daemon and CLI integration tests share: real processes (`node --import tsx …`), a
 * raw JSON-lines client for the admin socket (so malformed input can be sent as it is), and
 * temp directories that are removed — with every process still running — when the file ends.
 *
 * Each test file calls `scratch()` once: its own directory under the OS temp dir, so files that
 * node:test runs concurrently never share a socket, a cache or a policy.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const DAEMON_MAIN = join(REPO, 'src/daemon/main.ts');
export const CLI_MAIN = join(REPO, 'src/cli/main.ts');

/** Children started by this file; killed on `cleanup()` and, as a last resort, at process exit. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

export interface Scratch {
  readonly dir: string;
  path(name: string): string;
  /** SIGKILL every child still running, then remove the directory */
  cleanup(): Promise<void>;
}

export function scratch(prefix: string): Scratch {
  // short: a Unix socket path must fit in sun_path (108 bytes)
  const dir = mkdtempSync(join(tmpdir(), `nsidmap-${prefix}-`));
  return {
    dir,
    path: (name) => join(dir, name),
    async cleanup() {
      await Promise.all([...children].map((c) => killHard(c)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function killHard(c: ChildProcess): Promise<void> {
  if (c.exitCode === null && c.signalCode === null) {
    const gone = new Promise((resolve) => c.once('exit', resolve));
    c.kill('SIGKILL');
    await gone;
  }
  children.delete(c);
}

/** A policy with one `static` provider, so answers never depend on this machine's users. */
export function staticPolicy(alice = 1001, extra = ''): string {
  return `domain: example.com
providers:
  t: { kind: static, users: { alice: ${alice} }, groups: { staff: 50 } }
scopes:
  - name: host
    providers: [t]
${extra}`;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A running process with its output collected as it arrives. */
export class Proc {
  stdout = '';
  stderr = '';
  readonly spawnedAt = performance.now();
  readonly exited: Promise<Exit>;
  exit: Exit | undefined;
  private readonly waiters = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    children.add(child);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { this.stdout += d; this.wake(); });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { this.stderr += d; this.wake(); });
    this.exited = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        this.exit = { code, signal };
        children.delete(child);
        this.wake();
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error('spawn failed');
    return this.child.pid;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  private wake(): void {
    for (const w of this.waiters) w();
  }

  /** Resolve when `test(stdout, stderr)` holds; reject after `ms` or when the process exits first. */
  until<T>(what: string, test: () => T | undefined, ms = 10_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const v = test();
        if (v !== undefined) return done(() => resolve(v));
        if (this.exit) return done(() => reject(new Error(`${what}: the process exited (${JSON.stringify(this.exit)}) first\nstderr:\n${this.stderr}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`${what}: not within ${ms} ms\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`))), ms);
      const done = (f: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** The first stderr line after `from` (a length of `stderr` taken earlier) that matches. */
  logLine(re: RegExp, from = 0, ms = 10_000): Promise<string> {
    return this.until(`log line ${re}`, () => this.stderr.slice(from).split('\n').find((l) => re.test(l)), ms);
  }

  /** Wait for the exit, at most `ms`; SIGKILL and reject past it. */
  async waitExit(ms: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`did not exit within ${ms} ms\nstderr:\n${this.stderr}`));
      }, ms);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }
}

export function spawnTs(main: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Proc(child);
}

export interface DaemonPaths {
  readonly policy: string;
  readonly socket: string;
  readonly cache: string;
}

export function startDaemon(p: DaemonPaths, env: NodeJS.ProcessEnv = {}, extra: readonly string[] = []): Proc {
  return spawnTs(DAEMON_MAIN, ['--policy', p.policy, '--socket', p.socket, '--cache', p.cache, ...extra], env);
}

/** Poll the socket with `ping` until it answers; the ms since spawn. Fails fast if the daemon exits. */
export async function waitReady(d: Proc, socket: string, ms = 20_000, pollMs = 20): Promise<number> {
  const deadline = performance.now() + ms;
  for (;;) {
    if (!d.running) throw new Error(`the daemon exited before it answered ping: ${JSON.stringify(d.exit)}\nstderr:\n${d.stderr}`);
    try {
      const r = await request(socket, { id: 1, op: 'ping' }, 1000);
      if (r['ok'] === true) return performance.now() - d.spawnedAt;
    } catch {
      /* not listening yet */
    }
    if (performance.now() > deadline) throw new Error(`no ping answer on ${socket} within ${ms} ms\nstderr:\n${d.stderr}`);
    await sleep(pollMs);
  }
}

export type Json = Record<string, unknown>;

export interface Exchange {
  /** every response line, parsed */
  readonly responses: Json[];
  /** the server closed the connection (as opposed to us, after `settleMs` of quiet) */
  readonly closedByServer: boolean;
}

/**
 * Write `payload` as it is to the admin socket, collect response lines until `want` arrived or
 * the server closed the connection; then close. Rejects when nothing settles within `ms`.
 */
export function exchange(socket: string, payload: string, want: number, ms = 5000): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    const responses: Json[] = [];
    let buf = '';
    let settled = false;
    const finish = (closedByServer: boolean, err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve({ responses, closedByServer });
    };
    const timer = setTimeout(() => finish(false, new Error(`admin socket: ${responses.length} of ${want} responses within ${ms} ms`)), ms);
    s.setEncoding('utf8');
    let connected = false;
    s.on('connect', () => { connected = true; s.write(payload); });
    s.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        responses.push(JSON.parse(buf.slice(0, nl)) as Json);
        buf = buf.slice(nl + 1);
      }
      if (responses.length >= want) finish(false);
    });
    s.on('end', () => finish(true));
    // ECONNRESET after the server closed on us mid-write still means "closed by the server";
    // before any connection it is a real failure (ENOENT, ECONNREFUSED).
    s.on('error', (e) => finish(true, connected ? undefined : e));
    s.on('close', () => finish(true));
  });
}

/** One well-formed request, its response. */
export async function request(socket: string, req: Json, ms = 5000): Promise<Json> {
  const { responses } = await exchange(socket, JSON.stringify(req) + '\n', 1, ms);
  const r = responses[0];
  if (!r) throw new Error(`no response to ${JSON.stringify(req)}`);
  return r;
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run idmapctl to completion. */
export async function cli(args: readonly string[], env: NodeJS.ProcessEnv = {}, ms = 20_000): Promise<CliResult> {
  const p = spawnTs(CLI_MAIN, args, env);
  const exit = await p.waitExit(ms);
  return { code: exit.code, stdout: p.stdout, stderr: p.stderr };
}

/** No JavaScript stack frames in a user-facing error. */
export const STACK = /^\s+at .+\(?.+:\d+:\d+\)?$/m;
