/**
 * The audit trail: every answer that is not what was asked for — a nobody fallback, a squashed
 * root, an id the reader's namespace cannot express — and every refused request (a malformed
 * upcall, a request no scope takes) leaves a journal line saying why, with the scope, the source
 * chain tried and, when known, the requesting container:
 *
 *   audit.nobody iface=keyring-nfs scope=host kind=name-to-uid query=bob@other.org
 *     reason="domain \"other.org\" is not accepted … domain mismatch" chain=files,nss container=3f2a91c07d1e
 *
 * Rate-limited per key (kind, interface, scope, lookup, query): the first occurrence is logged at
 * once; while the key keeps occurring, at most one more line per interval follows, carrying
 * `repeats=N` — how many occurrences it stands for since the previous line — and the fields of the
 * most recent one. A directory listing of a thousand files owned by one unknown user is one line,
 * not a thousand. The table of keys is bounded (`maxKeys`): past it, new keys are only counted
 * and reported as one `audit.overflow` line per interval, so a flood of distinct garbage can
 * neither grow memory nor the journal without bound.
 *
 * Off costs nothing: callers ask `on(kind)` (one level comparison) before building an event.
 */
import type { Fields, Level, Logger } from './log.js';
import type { Context } from './types.js';

export const AUDIT_KINDS = ['nobody', 'squashed', 'unmappable', 'refused'] as const;
export type AuditKind = (typeof AUDIT_KINDS)[number];

/** nobody/squashed/unmappable are answers working as configured; a refusal is someone's bug. */
const LEVEL: Record<AuditKind, Level> = { nobody: 'info', squashed: 'info', unmappable: 'info', refused: 'warn' };

export const DEFAULT_AUDIT_INTERVAL = 60;
export const DEFAULT_AUDIT_MAX_KEYS = 10_000;
/**
 * Longest query kept and logged: a key description may be 4 KiB of hostile bytes, and the table
 * holds up to maxKeys of them.
 */
export const AUDIT_QUERY_MAX = 256;

export interface AuditEvent {
  readonly iface: string;
  readonly scope?: string;
  /** lookup kind (name-to-uid, …) or key type (id_resolver, cifs.idmap) */
  readonly kind: string;
  /** what was asked: the name, id, SID or key description */
  readonly query: string;
  readonly reason: string;
  /** the scope's sources, in order (their names are written only when a line is) */
  readonly chain?: readonly { readonly name: string }[];
  /**
   * who asked: the request's Context. Read only when a line is written — a context may read
   * /proc lazily, and a repeat that is only counted must not cost that.
   */
  readonly requester?: Pick<Context, 'container' | 'pid'>;
}

export interface AuditSettings {
  /** seconds; at least 1 */
  readonly interval?: number;
  readonly maxKeys?: number;
}

export interface AuditOptions extends AuditSettings {
  /** ms clock (tests pass a fake one) */
  readonly now?: () => number;
}

interface Entry {
  readonly kind: AuditKind;
  /** ms: when the current interval started (the key's last line) */
  since: number;
  /** occurrences since the last line */
  repeats: number;
  last: AuditEvent;
}

export class Audit {
  private readonly log: Logger;
  private readonly now: () => number;
  private intervalMs: number;
  private maxKeys: number;
  private readonly entries = new Map<string, Entry>();
  private readonly overflow = new Map<AuditKind, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(log: Logger, opts: AuditOptions = {}) {
    this.log = log;
    this.now = opts.now ?? Date.now;
    this.intervalMs = (opts.interval ?? DEFAULT_AUDIT_INTERVAL) * 1000;
    this.maxKeys = opts.maxKeys ?? DEFAULT_AUDIT_MAX_KEYS;
  }

  /** Would an event of this kind be logged at all? (one integer comparison) */
  on(kind: AuditKind): boolean {
    return this.log.on(LEVEL[kind]);
  }

  /** New settings (policy reload); a running sweep timer follows the new interval. */
  configure(s: AuditSettings): void {
    this.intervalMs = (s.interval ?? DEFAULT_AUDIT_INTERVAL) * 1000;
    this.maxKeys = s.maxKeys ?? DEFAULT_AUDIT_MAX_KEYS;
    if (this.timer) {
      this.stop(false);
      this.start();
    }
  }

  /** Sweep periodically so that repeats are reported even when the key stops occurring. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), Math.max(1000, this.intervalMs / 2));
    this.timer.unref();
  }

  /** Stop sweeping; with `flush`, report what is still counted (the daemon is stopping). */
  stop(flush = true): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (flush) this.sweep(true);
  }

  get size(): number {
    return this.entries.size;
  }

  note(kind: AuditKind, event: AuditEvent): void {
    if (!this.on(kind)) return;
    const ev = event.query.length > AUDIT_QUERY_MAX ? { ...event, query: `${event.query.slice(0, AUDIT_QUERY_MAX)}…` } : event;
    const now = this.now();
    const key = `${kind}\x1f${ev.iface}\x1f${ev.scope ?? ''}\x1f${ev.kind}\x1f${ev.query}`;
    const e = this.entries.get(key);
    if (e === undefined) {
      if (this.entries.size >= this.maxKeys) {
        this.overflow.set(kind, (this.overflow.get(kind) ?? 0) + 1);
        return;
      }
      this.entries.set(key, { kind, since: now, repeats: 0, last: ev });
      return this.emit(kind, ev, 0);
    }
    e.last = ev;
    e.repeats++;
    if (now - e.since < this.intervalMs) return;
    // the interval is over and the sweep has not come by yet: this occurrence reports the interval
    this.emit(kind, ev, e.repeats === 1 ? 0 : e.repeats);
    e.since = now;
    e.repeats = 0;
  }

  /**
   * Report keys whose interval is over: one line for those that occurred again (their interval
   * starts anew), forget those that did not. `all`: every key now (stop).
   */
  sweep(all = false): void {
    const now = this.now();
    for (const [key, e] of this.entries) {
      if (!all && now - e.since < this.intervalMs) continue;
      if (e.repeats === 0) {
        this.entries.delete(key);
        continue;
      }
      this.emit(e.kind, e.last, e.repeats);
      e.since = now;
      e.repeats = 0;
    }
    if (this.overflow.size > 0) {
      const fields: Fields = { maxKeys: this.maxKeys, note: 'more distinct keys than audit.maxKeys within one interval: these were counted, not logged' };
      for (const [k, n] of this.overflow) fields[k] = n;
      this.overflow.clear();
      this.log.warn('audit.overflow', fields);
    }
  }

  private emit(kind: AuditKind, ev: AuditEvent, repeats: number): void {
    this.log[LEVEL[kind]](`audit.${kind}`, {
      iface: ev.iface,
      scope: ev.scope,
      kind: ev.kind,
      query: ev.query,
      reason: ev.reason,
      chain: ev.chain === undefined ? undefined : ev.chain.length === 0 ? '-' : ev.chain.map((s) => s.name).join(','),
      container: ev.requester?.container?.id.slice(0, 12),
      pid: ev.requester?.pid,
      repeats: repeats > 0 ? repeats : undefined,
    });
  }
}
