/**
 * The KERNEL side of nfsd's idmap caches, simulated (this machine has no nfsd): written from
 * docs/PROTOCOLS.md §4 and net/sunrpc/cache.c + fs/nfsd/nfs4idmap.c, and on purpose not from the
 * codec under test — it shares no code with src/responders/nfsd/.
 *
 * What it models, per cache (nfs4.idtoname, nfs4.nametoid):
 * - `<procNetRpc>/<cache>/{channel,flush,content}` as real files under a temp dir;
 * - listeners: an upcall fails at once unless a channel is open for writing or was closed less
 *   than 30 s ago (cache_listeners_exist) — "nfsv4 idmapping failing";
 * - requests written as idtoname_request / nametoid_request do (qword_add quoting); one read()
 *   returns one request; every reader sees every request; a request already pending for the same
 *   key is not queued twice (CACHE_PENDING); a fresh cached entry answers without an upcall;
 * - replies parsed exactly as idtoname_parse / nametoid_parse parse them — qword_get with its
 *   `\ooo` and `\x` forms, simple_strtoul / get_int / get_expiry — with the kernel's errno
 *   (EINVAL, ENOENT). Beyond what the kernel refuses, the simulation counts as failures what it
 *   would accept but never use: an entry whose key matches no waiting request (`mismatched`: a
 *   crossed reply, or a key mangled by bad quoting), an expiry already past (`expired`), and —
 *   in strict mode, the default — a reply that is not byte for byte the canonical form of what
 *   the kernel stored (`nonCanonical`: a raw space or TAB, a stray `\`, `users` for `user`…);
 * - flush: write_flush takes one write at offset 0 of at most 19 bytes holding a number and an
 *   optional newline (else EINVAL), and empties the cache.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { channelError, type KernelChannel, type OpenChannel } from '../../src/responders/channel.js';

export type SimCache = 'idtoname' | 'nametoid';
const DIR: Record<SimCache, string> = { idtoname: 'nfs4.idtoname', nametoid: 'nfs4.nametoid' };
const NAMESZ = 128;
const PAGE = 4096;

export type NfsdResult =
  | { readonly kind: 'positive'; readonly value: number | string; readonly expiry: number }
  | { readonly kind: 'negative'; readonly expiry: number }
  /** nfsd failed the upcall: nobody listening */
  | { readonly kind: 'failed'; readonly reason: string };

interface Entry {
  readonly result: NfsdResult;
}

interface Queued {
  readonly cache: SimCache;
  readonly key: string;
  readonly line: Buffer;
  readonly readBy: Set<SimNfsdChannel>;
  readonly resolve: (r: NfsdResult) => void;
  readonly promise: Promise<NfsdResult>;
  done: boolean;
}

export interface SimNfsdCounters {
  requests: number;
  upcalls: number;
  /** answered from the simulated cache, no upcall */
  cached: number;
  noListener: number;
  positive: number;
  negative: number;
  /** writes the kernel refused (EINVAL, ENOENT) */
  rejected: number;
  /** accepted, but the key matched no waiting request */
  mismatched: number;
  /** accepted, but expired on arrival */
  expired: number;
  /** accepted, but not the canonical form of what was stored (strict mode) */
  nonCanonical: number;
  flushes: number;
}

// ------------------------------------------------------------------ the kernel's text primitives

const isOct = (c: number | undefined) => c !== undefined && c >= 0x30 && c <= 0x37;
function hexToBin(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/**
 * qword_get: one field from `buf` at `pos` (buf ends in NUL as the kernel's does after it
 * replaces the newline). Returns the bytes and the position after the separating spaces, or -1.
 */
export function qwordGet(buf: Buffer, pos: number, bufsize: number): { len: number; bytes: Buffer; pos: number } {
  const out: number[] = [];
  const at = (i: number) => (i < buf.length ? buf[i]! : 0);
  while (at(pos) === 0x20) pos++;
  if (at(pos) === 0x5c && at(pos + 1) === 0x78) {
    pos += 2;
    while (out.length < bufsize - 1) {
      const h = hexToBin(at(pos));
      const l = hexToBin(at(pos + 1));
      if (h < 0 || l < 0) break;
      out.push((h << 4) | l);
      pos += 2;
    }
  } else {
    while (at(pos) !== 0x20 && at(pos) !== 0x0a && at(pos) !== 0 && out.length < bufsize - 1) {
      if (at(pos) === 0x5c && isOct(at(pos + 1)) && at(pos + 1) <= 0x33 && isOct(at(pos + 2)) && isOct(at(pos + 3))) {
        out.push(((at(pos + 1) - 0x30) << 6) | ((at(pos + 2) - 0x30) << 3) | (at(pos + 3) - 0x30));
        pos += 4;
      } else out.push(at(pos++));
    }
  }
  if (at(pos) !== 0x20 && at(pos) !== 0x0a && at(pos) !== 0) return { len: -1, bytes: Buffer.alloc(0), pos };
  while (at(pos) === 0x20) pos++;
  return { len: out.length, bytes: Buffer.from(out), pos };
}

/** The C string a char[] field holds: up to the first NUL. */
const cstr = (b: Buffer): Buffer => {
  const i = b.indexOf(0);
  return i < 0 ? b : b.subarray(0, i);
};

/** qword_add's quoting: space, TAB, LF and backslash as three-digit octal. */
export function kernelQuote(b: Buffer): Buffer {
  const out: number[] = [];
  for (const c of b) {
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x5c) out.push(0x5c, 0x30 + (c >> 6), 0x30 + ((c >> 3) & 7), 0x30 + (c & 7));
    else out.push(c);
  }
  return Buffer.from(out);
}

/** simple_strtoul(s, &end, 10): leading digits; undefined when there are none. */
function strtoul10(s: string): bigint | undefined {
  const m = /^[0-9]+/.exec(s);
  return m ? BigInt(m[0]) : undefined;
}

/** simple_strtol(s, &end, 0) with `*end` required to be the end: get_int. */
function strtolBase0Whole(s: string): bigint | undefined {
  const m = /^([-+]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return undefined;
  const body = m[2]!;
  const v = /^0[xX]/.test(body) ? BigInt(body) : body.startsWith('0') && body.length > 1 ? BigInt(`0o${body.slice(1)}`) : BigInt(body);
  return m[1] === '-' ? -v : v;
}

/** kstrtoll(s, 0): the whole string, optional sign, base from its prefix. */
function kstrtoll0(s: string): bigint | undefined {
  return strtolBase0Whole(s);
}

/** (u32)(int)(long) of a parsed number, as the kernel's assignments truncate it. */
const u32 = (v: bigint): number => Number(BigInt.asUintN(32, v));

// ------------------------------------------------------------------------------- the simulation

export class SimNfsd {
  readonly procNetRpc: string;
  readonly strict: boolean;
  private readonly nowMs: () => number;
  readonly counters: SimNfsdCounters = {
    requests: 0, upcalls: 0, cached: 0, noListener: 0, positive: 0, negative: 0, rejected: 0, mismatched: 0, expired: 0, nonCanonical: 0, flushes: 0,
  };
  /** every failure, for test messages */
  readonly failures: { cache: SimCache; what: string; line: string }[] = [];
  readonly flushes: { cache: SimCache; text: string }[] = [];
  /** every reply line accepted, in order */
  readonly replies: { cache: SimCache; line: string }[] = [];
  private readonly entries: Record<SimCache, Map<string, Entry>> = { idtoname: new Map(), nametoid: new Map() };
  private readonly queue: Record<SimCache, Queued[]> = { idtoname: [], nametoid: [] };
  private readonly writers: Record<SimCache, number> = { idtoname: 0, nametoid: 0 };
  private readonly lastClose: Record<SimCache, number> = { idtoname: 0, nametoid: 0 };
  private readonly channels = new Set<SimNfsdChannel>();

  constructor(procNetRpc: string, opts: { now?: () => number; strict?: boolean } = {}) {
    this.procNetRpc = procNetRpc;
    this.nowMs = opts.now ?? Date.now;
    this.strict = opts.strict ?? true;
  }

  async init(): Promise<this> {
    for (const c of ['idtoname', 'nametoid'] as const) {
      const d = join(this.procNetRpc, DIR[c]);
      await mkdir(d, { recursive: true });
      for (const f of ['channel', 'flush', 'content']) await writeFile(join(d, f), '');
    }
    return this;
  }

  private nowSec(): number {
    return Math.floor(this.nowMs() / 1000);
  }

  /** cache_listeners_exist */
  hasListener(cache: SimCache): boolean {
    if (this.writers[cache] > 0) return true;
    return this.lastClose[cache] !== 0 && this.lastClose[cache] >= this.nowSec() - 30;
  }

  openWriters(cache: SimCache): number {
    return this.writers[cache];
  }

  /** What nfsd does when a client sends an owner (nametoid) or it encodes one (idtoname). */
  request(cache: SimCache, auth: string | Buffer, type: 'user' | 'group', key: number | string | Buffer): Promise<NfsdResult> {
    const a = Buffer.from(auth);
    const k = typeof key === 'number' ? Buffer.from(String(key >>> 0), 'latin1') : Buffer.from(key);
    const line = Buffer.concat([kernelQuote(a), Buffer.from(` ${type} `), cache === 'idtoname' ? k : kernelQuote(k), Buffer.from('\n')]);
    const id = entryKey(cstr(a), type, cache === 'idtoname' ? String(typeof key === 'number' ? key >>> 0 : Number(k.toString())) : cstr(k).toString('latin1'));
    return this.enqueue(cache, id, line);
  }

  /** Queue any bytes as a request (nfsd never sends garbage; tests do). Its key is read as the kernel reads fields. */
  requestRaw(cache: SimCache, line: Buffer): Promise<NfsdResult> {
    return this.enqueue(cache, kernelRequestKey(cache, line) ?? `unanswerable-${this.counters.requests}`, Buffer.from(line));
  }

  private enqueue(cache: SimCache, key: string, line: Buffer): Promise<NfsdResult> {
    this.counters.requests++;
    const hit = this.entries[cache].get(key);
    if (hit && !isExpired(hit.result, this.nowSec())) {
      this.counters.cached++;
      return Promise.resolve(hit.result);
    }
    const waiting = this.queue[cache].find((q) => q.key === key && !q.done);
    if (waiting) return waiting.promise;
    if (!this.hasListener(cache)) {
      this.counters.noListener++;
      return Promise.resolve({ kind: 'failed', reason: 'nfsd: nfsv4 idmapping failing: has idmapd not been started?' });
    }
    this.counters.upcalls++;
    let resolve!: (r: NfsdResult) => void;
    const promise = new Promise<NfsdResult>((r) => (resolve = r));
    this.queue[cache].push({ cache, key, line, readBy: new Set(), resolve, promise, done: false });
    for (const ch of this.channels) if (ch.cache === cache) ch.wake();
    return promise;
  }

  /** Entries the simulated cache holds (for tests). */
  cached(cache: SimCache): number {
    return this.entries[cache].size;
  }

  // ---- the file side, for the responder ----

  readonly openChannel: OpenChannel = async (path, mode) => {
    if (!existsSync(path)) throw channelError('ENOENT', `open ${path}`);
    for (const cache of ['idtoname', 'nametoid'] as const) {
      const d = join(this.procNetRpc, DIR[cache]);
      if (path === join(d, 'channel')) {
        const ch = new SimNfsdChannel(this, cache, mode);
        if (mode === 'rw') this.writers[cache]++;
        this.channels.add(ch);
        return ch;
      }
      if (path === join(d, 'flush')) return new SimFlushChannel(this, cache);
    }
    throw channelError('ENOENT', `open ${path}`);
  };

  /** cache_read: the first request this reader has not seen. */
  nextFor(ch: SimNfsdChannel): Buffer | undefined {
    const q = this.queue[ch.cache];
    for (const r of q) {
      if (r.done || r.readBy.has(ch)) continue;
      r.readBy.add(ch);
      return Buffer.from(r.line);
    }
    return undefined;
  }

  closed(ch: SimNfsdChannel): void {
    this.channels.delete(ch);
    if (ch.mode === 'rw') {
      this.writers[ch.cache]--;
      this.lastClose[ch.cache] = this.nowSec();
    }
  }

  /** cache_write → cache_downcall → <cache>_parse; throws the kernel's errno. */
  downcall(cache: SimCache, data: Uint8Array): void {
    const line = Buffer.from(data);
    const p = kernelParseReply(cache, line);
    if (!p.ok) {
      this.counters.rejected++;
      this.failures.push({ cache, what: `${p.errno}: ${p.what}`, line: line.toString('latin1') });
      throw channelError(p.errno, `${DIR[cache]} downcall: ${p.what}`);
    }
    this.store(cache, line, p);
  }

  private store(cache: SimCache, line: Buffer, p: Parsed): void {
    const text = line.toString('latin1');
    if (this.strict && !p.canonical.equals(line)) {
      this.counters.nonCanonical++;
      this.failures.push({ cache, what: `not canonical (want ${JSON.stringify(p.canonical.toString('latin1'))})`, line: text });
    }
    const waiting = this.queue[cache].find((q) => q.key === p.key && !q.done);
    if (isExpired(p.result, this.nowSec())) {
      this.counters.expired++;
      this.failures.push({ cache, what: `expiry ${p.result.kind === 'failed' ? '' : p.result.expiry} already past`, line: text });
      return; // the waiting request, if any, would upcall again
    }
    this.entries[cache].set(p.key, { result: p.result });
    this.replies.push({ cache, line: text });
    if (!waiting) {
      this.counters.mismatched++;
      this.failures.push({ cache, what: 'reply matches no waiting request', line: text });
      return;
    }
    waiting.done = true;
    this.queue[cache] = this.queue[cache].filter((q) => !q.done);
    if (p.result.kind === 'positive') this.counters.positive++;
    else this.counters.negative++;
    waiting.resolve(p.result);
  }

  /** write_flush */
  flush(cache: SimCache, ch: SimFlushChannel, data: Uint8Array): void {
    const text = Buffer.from(data).toString('latin1');
    if (ch.pos !== 0 || data.length > 19) throw channelError('EINVAL', `flush: write at offset ${ch.pos} of ${data.length} bytes`);
    // simple_strtoul(tbuf, &ep, 0), then `*ep && *ep != '\n'` is EINVAL
    const digits = /^(0[xX](?=[0-9a-fA-F])[0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*|)/.exec(text)![0];
    const rest = text.slice(digits.length);
    if (rest !== '' && rest[0] !== '\n') throw channelError('EINVAL', `flush: ${JSON.stringify(text)} is not a number`);
    ch.pos += data.length;
    this.entries[cache].clear();
    this.counters.flushes++;
    this.flushes.push({ cache, text });
  }

  /** Whether no accepted reply was crossed, mangled, late or refused. */
  clean(): boolean {
    const c = this.counters;
    return c.rejected === 0 && c.mismatched === 0 && c.expired === 0 && c.nonCanonical === 0;
  }
}


export type ParsedReply = { readonly ok: true; readonly key: string; readonly result: NfsdResult; readonly canonical: Buffer } | { readonly ok: false; readonly errno: string; readonly what: string };
type Parsed = Extract<ParsedReply, { ok: true }>;

class Refused extends Error {
  constructor(
    readonly errno: string,
    readonly what: string,
  ) {
    super(what);
  }
}
const refuse = (errno: string, what: string): never => {
  throw new Refused(errno, what);
};

/**
 * What idtoname_parse / nametoid_parse make of a reply line: the entry's key (auth, type and id or
 * name as the cache matches them), its content, and the canonical line that would store the same;
 * or the errno the write returns. Pure: the fuzzers call it directly.
 */
export function kernelParseReply(cache: SimCache, data: Uint8Array): ParsedReply {
  const line = Buffer.from(data);
  try {
    if (line.length === 0 || line.length >= 8192) refuse('EINVAL', `write of ${line.length} bytes`);
    if (line[line.length - 1] !== 0x0a) refuse('EINVAL', 'reply does not end in a newline');
    const buf = Buffer.concat([line.subarray(0, line.length - 1), Buffer.from([0])]);
    return cache === 'idtoname' ? parseIdtoname(buf) : parseNametoid(buf);
  } catch (e) {
    if (e instanceof Refused) return { ok: false, errno: e.errno, what: e.what };
    throw e;
  }
}

function parseIdtoname(buf: Buffer): Parsed {
  const auth = qwordGet(buf, 0, PAGE);
  if (auth.len <= 0 || auth.len >= NAMESZ) refuse('EINVAL', `auth length ${auth.len}`);
  const type = qwordGet(buf, auth.pos, PAGE);
  if (type.len <= 0) refuse('EINVAL', 'no type');
  const idf = qwordGet(buf, type.pos, PAGE);
  if (idf.len <= 0) refuse('EINVAL', 'no id');
  const id = strtoul10(idf.bytes.toString('latin1'));
  if (id === undefined) return refuse('EINVAL', `id ${idf.bytes.toString('latin1')} has no digits`);
  const expiry = getExpiry(buf, idf.pos);
  const name = qwordGet(buf, expiry.pos, PAGE);
  if (name.len < 0 || name.len >= NAMESZ) refuse('EINVAL', `name length ${name.len}`);
  const typeName = type.bytes.toString('latin1') === 'user' ? 'user' : 'group';
  const idText = String(u32(id));
  const nameOut = name.len === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from(' '), kernelQuote(cstr(name.bytes))]);
  return {
    ok: true,
    key: entryKey(cstr(auth.bytes), typeName, idText),
    result: name.len === 0 ? { kind: 'negative', expiry: expiry.value } : { kind: 'positive', value: cstr(name.bytes).toString('utf8'), expiry: expiry.value },
    canonical: Buffer.concat([kernelQuote(cstr(auth.bytes)), Buffer.from(` ${typeName} ${idText} ${expiry.value}`), nameOut, Buffer.from('\n')]),
  };
}

function parseNametoid(buf: Buffer): Parsed {
  const auth = qwordGet(buf, 0, PAGE);
  if (auth.len <= 0 || auth.len >= NAMESZ) refuse('EINVAL', `auth length ${auth.len}`);
  const type = qwordGet(buf, auth.pos, PAGE);
  if (type.len <= 0) refuse('EINVAL', 'no type');
  const name = qwordGet(buf, type.pos, PAGE);
  if (name.len <= 0 || name.len >= NAMESZ) refuse('EINVAL', `name length ${name.len}`);
  const expiry = getExpiry(buf, name.pos);
  // get_int: a field of at most 49 bytes; empty → ENOENT → a negative entry
  const idf = qwordGet(buf, expiry.pos, 50);
  if (idf.len < 0) refuse('EINVAL', 'bad id field');
  let result: NfsdResult;
  let idText = '';
  if (idf.len === 0) result = { kind: 'negative', expiry: expiry.value };
  else {
    const v = strtolBase0Whole(idf.bytes.toString('latin1'));
    if (v === undefined) return refuse('EINVAL', `id ${idf.bytes.toString('latin1')} is not a number`);
    const id = u32(BigInt.asIntN(32, v));
    idText = String(id);
    result = { kind: 'positive', value: id, expiry: expiry.value };
  }
  const typeName = type.bytes.toString('latin1') === 'user' ? 'user' : 'group';
  return {
    ok: true,
    key: entryKey(cstr(auth.bytes), typeName, cstr(name.bytes).toString('latin1')),
    result,
    canonical: Buffer.concat([kernelQuote(cstr(auth.bytes)), Buffer.from(` ${typeName} `), kernelQuote(cstr(name.bytes)), Buffer.from(` ${expiry.value}${idText ? ` ${idText}` : ''}\n`)]),
  };
}

/** get_expiry → get_time: kstrtoll base 0 of a field of at most 49 bytes; an empty one is ENOENT. */
function getExpiry(buf: Buffer, pos: number): { value: number; pos: number } {
  const f = qwordGet(buf, pos, 50);
  if (f.len < 0) refuse('EINVAL', 'bad expiry field');
  if (f.len === 0) refuse('ENOENT', 'no expiry');
  const v = kstrtoll0(f.bytes.toString('latin1'));
  if (v === undefined) return refuse('EINVAL', `expiry ${f.bytes.toString('latin1')} is not a number`);
  return { value: Number(v), pos: f.pos };
}

/** The key the kernel holds for a request line it wrote (or that a test injected). */
export function kernelRequestKey(cache: SimCache, line: Buffer): string | undefined {
  const buf = Buffer.concat([line.subarray(0, line.length - (line[line.length - 1] === 0x0a ? 1 : 0)), Buffer.from([0])]);
  const f1 = qwordGet(buf, 0, PAGE);
  const f2 = qwordGet(buf, f1.pos, PAGE);
  const f3 = qwordGet(buf, f2.pos, PAGE);
  if (f1.len <= 0 || f2.len <= 0 || f3.len <= 0) return undefined;
  const type = f2.bytes.toString('latin1') === 'user' ? 'user' : 'group';
  const k = cache === 'idtoname' ? String(u32(strtoul10(f3.bytes.toString('latin1')) ?? 0n)) : cstr(f3.bytes).toString('latin1');
  return entryKey(cstr(f1.bytes), type, k);
}

export function entryKey(auth: Buffer, type: string, key: string): string {
  return `${auth.toString('hex')}\u001f${type}\u001f${key}`;
}

function isExpired(r: NfsdResult, nowSec: number): boolean {
  return r.kind !== 'failed' && r.expiry < nowSec;
}

export class SimNfsdChannel implements KernelChannel {
  private closedFlag = false;
  private waker: (() => void) | undefined;
  constructor(
    private readonly sim: SimNfsd,
    readonly cache: SimCache,
    readonly mode: 'rw' | 'w',
  ) {}

  wake(): void {
    this.waker?.();
  }

  async read(): Promise<Buffer | null> {
    for (;;) {
      if (this.closedFlag) return null;
      const next = this.sim.nextFor(this);
      if (next) return next;
      await new Promise<void>((r) => (this.waker = r));
      this.waker = undefined;
    }
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.closedFlag) throw channelError('EBADF', 'write to a closed channel');
    this.sim.downcall(this.cache, bytes);
  }

  async close(): Promise<void> {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.sim.closed(this);
    this.waker?.();
  }
}

export class SimFlushChannel implements KernelChannel {
  pos = 0;
  constructor(
    private readonly sim: SimNfsd,
    private readonly cache: SimCache,
  ) {}
  async read(): Promise<Buffer | null> {
    return null;
  }
  async write(bytes: Uint8Array): Promise<void> {
    this.sim.flush(this.cache, this, bytes);
  }
  async close(): Promise<void> {}
}
