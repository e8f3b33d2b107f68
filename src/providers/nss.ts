/**
 * `nss` source: the host's NSS (getpwnam/getpwuid/getgrnam/getgrgid), as nfsidmap's `nsswitch`
 * method — whatever /etc/nsswitch.conf says (files, systemd, sss, ldap, winbind…).
 *
 * Implementation chosen by measurement (`npx tsx bench/nss.ts`, figures below): the reentrant libc
 * calls (`getpwnam_r` & co.) through koffi, run with koffi's `.async()` on a libuv worker thread.
 *
 *   node 20.20 x64, 2 vCPU shared VM, nsswitch `files systemd`; two runs, known entries (root):
 *                         p50 µs   p99 µs       32 callers: lookups/s   event-loop µs per lookup
 *   getent (spawn)        2400-3000  4600-30000   240-320                 3100-4200
 *   koffi sync            10         20-35        64k-79k                 13-16
 *   koffi async (kept)    35         85-110       17k-35k                 23-25
 *   unknown name: 70-100 µs sync, 110-125 µs async (nss_systemd asks its socket first).
 *   a module that waits 50 ms (usleep inside libc): loop held 50 ms sync, 0.2 ms async.
 *
 * Spawning `getent` costs a fork+exec per lookup: ~100× slower, and uv_spawn forks on the loop
 * thread, so it holds the loop for milliseconds per lookup as well; it also reads a numeric key as
 * an id (`getent passwd 0` is root), so a numeric name could never be asked.
 * A synchronous FFI call is the fastest, but it runs the NSS module on the event-loop thread: a
 * module that waits on the network (sssd, nslcd, winbindd, LDAP with a dead server: seconds to
 * minutes of timeout) would freeze every responder of the daemon. The async call costs ~25 µs of
 * thread hop — nothing next to a kernel upcall — and never holds the loop; at most MAX_IN_FLIGHT
 * calls use the libuv pool at once, so a hung module cannot starve the fs and dns work sharing it.
 */
import { constants as osConstants } from 'node:os';
import { z } from 'zod';
import { isValidId, type Entity } from '../types.js';
import type { SourceKind } from './kind.js';
import { SourceFault, type Source, type SourceEntry, type SourceHealth } from './source.js';

export const nssSchema = z.strictObject({ kind: z.literal('nss') });
export type NssConfig = z.infer<typeof nssSchema>;

type Koffi = typeof import('koffi');
type KoffiFunction = ReturnType<ReturnType<Koffi['load']>['func']>;

/** How a libc function is called: on a worker thread (the source) or inline (bench only). */
export type CallMode = 'async' | 'sync';

/** What we read from a struct passwd / struct group. */
export interface NssRecord {
  readonly name: string;
  readonly id: number;
}

const { ERANGE, ENOENT } = osConstants.errno;

/** libuv's pool has 4 threads by default; leave half of it to fs and dns work. */
export const MAX_IN_FLIGHT = 2;

/**
 * koffi runs an async call on its own stack block, 128 KiB by default; an NSS module that talks
 * to a directory (TLS, LDAP decoding) may need more. 1 MiB like the sync default; only touched
 * pages cost memory, and at most MAX_IN_FLIGHT + koffi's resident pools exist at once.
 */
const ASYNC_STACK = 1 << 20;

/** Initial buffer (sysconf _SC_GETPW_R_SIZE_MAX is 1024 on glibc); ×4 on ERANGE up to the limit. */
const FIRST_BUFFER: Record<Entity, number> = { user: 1024, group: 4096 };
const BUFFER_LIMIT = 64 << 20;

type Key = 'name' | 'id';
type LibcFns = Record<Entity, Record<Key, KoffiFunction>>;

/** The four reentrant NSS lookups, bound once. */
function bindLibc(koffi: Koffi): LibcFns {
  try {
    koffi.config({ async_stack_size: ASYNC_STACK });
  } catch {
    // another module loaded a library first: keep koffi's defaults
  }
  // null: the symbols of the running process, so glibc and musl alike (node links libc)
  const lib = koffi.load(null);
  const passwd = koffi.struct({
    pw_name: 'const char *', pw_passwd: 'void *', pw_uid: 'uint32_t', pw_gid: 'uint32_t',
    pw_gecos: 'void *', pw_dir: 'void *', pw_shell: 'void *',
  });
  const group = koffi.struct({ gr_name: 'const char *', gr_passwd: 'void *', gr_gid: 'uint32_t', gr_mem: 'void *' });
  // int getpwnam_r(const char *name, struct passwd *pwd, char *buf, size_t buflen, struct passwd **result)
  const fn = (sym: string, key: string, rec: unknown): KoffiFunction =>
    lib.func(sym, 'int', [key, koffi.out(koffi.pointer(rec as never)), 'void *', 'size_t', koffi.out(koffi.pointer('void *'))]);
  return {
    user: { name: fn('getpwnam_r', 'str', passwd), id: fn('getpwuid_r', 'uint32_t', passwd) },
    group: { name: fn('getgrnam_r', 'str', group), id: fn('getgrgid_r', 'uint32_t', group) },
  };
}

let loading: Promise<LibcFns> | undefined;

/** Load koffi and bind libc once per process, on first use (no native code when nss is unused). */
function libc(): Promise<LibcFns> {
  loading ??= import('koffi').then((m) => bindLibc(m.default));
  return loading;
}

/** A counting gate: at most `max` calls run, the others wait in arrival order. */
class Gate {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly max: number) {}

  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((go) => this.waiting.push(go));
    else this.running++;
    try {
      return await f();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

function invoke(fn: KoffiFunction, args: unknown[], mode: CallMode): Promise<number> {
  if (mode === 'sync') return Promise.resolve(fn(...args) as number);
  return new Promise((resolve, reject) => {
    fn.async(...args, (err: unknown, rc: number) => (err ? reject(err) : resolve(rc)));
  });
}

/** Raw record fields from koffi's decoded struct. */
function recordOf(entity: Entity, out: Record<string, unknown>): NssRecord | undefined {
  const name = entity === 'user' ? out['pw_name'] : out['gr_name'];
  const id = entity === 'user' ? out['pw_uid'] : out['gr_gid'];
  return typeof name === 'string' && typeof id === 'number' && isValidId(id) ? { name, id } : undefined;
}

/** Thrown for an errno that means neither "found" nor "not found". */
export class NssError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super(`${call} failed: ${errnoName(errno)}`);
  }
}

function errnoName(n: number): string {
  const hit = Object.entries(osConstants.errno).find(([, v]) => v === n);
  return hit ? hit[0] : `errno ${n}`;
}

export interface LibcNssOptions {
  /** default 'async'; 'sync' exists for the benchmark */
  readonly mode?: CallMode;
  /** first buffer size in bytes; tests make it tiny to exercise the ERANGE retry */
  readonly firstBuffer?: number;
}

/** One gate per process, as the libuv pool is: several nss sources share it. */
const gate = new Gate(MAX_IN_FLIGHT);

/**
 * The host's NSS through libc. One lookup: call with a buffer, retry with a bigger one on ERANGE
 * (a group with many members), NULL result (rc 0 or ENOENT) → not found.
 */
export class LibcNss {
  private readonly mode: CallMode;
  constructor(
    private readonly fns: LibcFns,
    private readonly options: LibcNssOptions = {},
  ) {
    this.mode = options.mode ?? 'async';
  }

  static async open(options: LibcNssOptions = {}): Promise<LibcNss> {
    return new LibcNss(await libc(), options);
  }

  lookup(entity: Entity, key: string | number): Promise<NssRecord | undefined> {
    const fn = this.fns[entity][typeof key === 'string' ? 'name' : 'id'];
    return this.mode === 'sync' ? this.attempts(fn, entity, key) : gate.run(() => this.attempts(fn, entity, key));
  }

  private async attempts(fn: KoffiFunction, entity: Entity, key: string | number): Promise<NssRecord | undefined> {
    for (let size = this.options.firstBuffer ?? FIRST_BUFFER[entity]; ; size *= 4) {
      const out: Record<string, unknown> = {};
      const result: unknown[] = [null];
      // buf must stay referenced until the call completes: the struct's strings point into it
      const buf = Buffer.allocUnsafe(size);
      const rc = await invoke(fn, [key, out, buf, size, result], this.mode);
      if (rc === 0 || rc === ENOENT) return result[0] === null ? undefined : recordOf(entity, out);
      if (rc !== ERANGE || size >= BUFFER_LIMIT) throw new NssError(`${fn.info.name}(${String(key)})`, rc);
    }
  }
}

/** Names libc could be asked: a C string cannot hold NUL. */
function askable(name: string): boolean {
  return name !== '' && !name.includes('\0');
}

class NssSource implements Source {
  readonly kind = 'nss';
  private nss: Promise<LibcNss> | undefined;
  private failure: string | undefined;
  private lastFault: string | undefined;

  constructor(readonly name: string) {}

  async start(): Promise<void> {
    await this.open();
  }

  async byName(entity: Entity, name: string): Promise<SourceEntry | undefined> {
    return askable(name) ? this.ask(entity, name) : undefined;
  }

  async byId(entity: Entity, id: number): Promise<SourceEntry | undefined> {
    return isValidId(id) ? this.ask(entity, id) : undefined;
  }

  health(): SourceHealth {
    if (this.failure !== undefined) return { state: 'down', detail: `libc NSS unavailable: ${this.failure}` };
    if (this.lastFault !== undefined) return { state: 'degraded', detail: `last lookup failed: ${this.lastFault}` };
    return { state: 'up' };
  }

  private open(): Promise<LibcNss> {
    this.nss ??= LibcNss.open().catch((e: unknown) => {
      this.failure = e instanceof Error ? e.message : String(e);
      throw new SourceFault(this.name, `cannot bind libc NSS functions: ${this.failure}`, { cause: e });
    });
    return this.nss;
  }

  private async ask(entity: Entity, key: string | number): Promise<SourceEntry | undefined> {
    const nss = await this.open();
    try {
      const rec = await nss.lookup(entity, key);
      this.lastFault = undefined;
      return rec && { id: rec.id, name: rec.name };
    } catch (e) {
      this.lastFault = e instanceof Error ? e.message : String(e);
      throw new SourceFault(this.name, this.lastFault, { cause: e });
    }
  }
}

export const nssKind: SourceKind<NssConfig> = {
  kind: 'nss',
  schema: nssSchema,
  summary: "the host's NSS (getpwnam/getgrnam…, as nsswitch.conf says), like nfsidmap's nsswitch method",
  create: (name) => new NssSource(name),
};
