/**
 * Waiting for kernel channels to become readable without blocking the event loop.
 *
 * rpc_pipefs pipes and nfsd cache channels are pollable (rpc_pipe_poll, cache_poll) but a read
 * of an empty one returns 0 at once instead of waiting, and Node cannot poll an arbitrary fd
 * itself (nor a netlink socket: the uevent listener waits here too). Two ways are offered,
 * measured in bench/responders.ts:
 *
 * - PollPoller (default): one poll(2) over every waited-on fd of the process plus an eventfd,
 *   made with koffi's async call, so it blocks a libuv pool thread and never the loop. A new fd
 *   or a forgotten one writes the eventfd, the poll returns and is made again with the new set.
 *   Wake-up latency is that of a thread hop (~0.1–0.5 ms). Cost: one of libuv's pool threads
 *   (4 by default; the systemd unit sets UV_THREADPOOL_SIZE=8) is held while any fd is waited on
 *   — in a daemon that watches uevents, for its whole life; with nothing to wait for no poll is
 *   made, so the thread is handed back and the process may exit.
 * - IntervalPoller (fallback, when koffi or glibc's poll/eventfd cannot be loaded): every waiter
 *   is woken after a fixed interval to read again. No native code; latency up to the interval,
 *   and one read(2) per open channel per interval while idle.
 */
import { createRequire } from 'node:module';
import { readSync, writeSync } from 'node:fs';
import type * as KoffiModule from 'koffi';

export type Readiness = 'ready' | 'closed';

export interface Poller {
  readonly kind: 'poll' | 'interval';
  /** Resolves 'ready' once fd is readable, hung up or in error; 'closed' when forgotten. */
  wait(fd: number): Promise<Readiness>;
  /** Stop waiting on fd (call before closing it): its pending wait resolves 'closed'. */
  forget(fd: number): Promise<void>;
}

interface Waiter {
  readonly resolve: (r: Readiness) => void;
}

/** include/uapi/asm-generic/poll.h */
const POLLIN = 0x001;
const POLLERR = 0x008;
const POLLHUP = 0x010;
const POLLNVAL = 0x020;
const WAKE_MASK = POLLIN | POLLERR | POLLHUP | POLLNVAL;
/** include/uapi/linux/eventfd.h (= O_NONBLOCK, O_CLOEXEC on x86 and arm64) */
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;

interface PollFd {
  fd: number;
  events: number;
  revents: number;
}
type PollFn = ((fds: PollFd[], n: number, timeout: number) => number) & {
  async: (fds: PollFd[], n: number, timeout: number, cb: (err: unknown, res: number) => void) => void;
};

interface Libc {
  readonly poll: PollFn;
  readonly eventfd: (initval: number, flags: number) => number;
}

let libcRef: Libc | null | undefined;

/** koffi and glibc's poll/eventfd, loaded once; null when unavailable (no koffi, musl…). */
function loadLibc(): Libc | null {
  if (libcRef !== undefined) return libcRef;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof KoffiModule;
    const lib = koffi.load('libc.so.6');
    // anonymous: a named koffi type is process-global and may be declared once only
    const pollfd = koffi.struct({ fd: 'int', events: 'short', revents: 'short' });
    libcRef = {
      poll: lib.func('poll', 'int', [koffi.inout(koffi.pointer(pollfd)), 'unsigned long', 'int']) as unknown as PollFn,
      eventfd: lib.func('int eventfd(unsigned int initval, int flags)') as unknown as (i: number, f: number) => number,
    };
  } catch {
    libcRef = null;
  }
  return libcRef;
}

/** One async poll(2) at a time over all waited-on fds; an eventfd interrupts it when the set changes. */
export class PollPoller implements Poller {
  readonly kind = 'poll' as const;
  private readonly libc: Libc;
  private readonly wakeFd: number;
  private readonly waiters = new Map<number, Waiter>();
  /** the fds of the poll in flight, or undefined when none is */
  private polling: ReadonlySet<number> | undefined;
  private woken = false;
  private readonly one = Buffer.alloc(8);
  private readonly drain = Buffer.alloc(8);
  /** poll(2) calls made (for tests and the bench) */
  polls = 0;

  constructor(libc: Libc) {
    this.libc = libc;
    this.wakeFd = libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.wakeFd < 0) throw new Error('eventfd() failed');
    this.one.writeBigUInt64LE(1n);
  }

  wait(fd: number): Promise<Readiness> {
    const old = this.waiters.get(fd);
    return new Promise((resolve) => {
      // one waiter per fd: a second wait on the same fd replaces (and releases) the first
      this.waiters.set(fd, { resolve });
      old?.resolve('closed');
      this.kick();
    });
  }

  async forget(fd: number): Promise<void> {
    const w = this.waiters.get(fd);
    if (!w) return;
    this.waiters.delete(fd);
    w.resolve('closed');
    this.kick();
  }

  /** Start a poll, or interrupt the one in flight when its set is no longer the waited-on set. */
  private kick(): void {
    if (this.polling === undefined) {
      if (this.waiters.size > 0) this.start();
      return;
    }
    if (this.woken || sameSet(this.polling, this.waiters)) return;
    this.woken = true;
    writeSync(this.wakeFd, this.one);
  }

  private start(): void {
    const fds: PollFd[] = [{ fd: this.wakeFd, events: POLLIN, revents: 0 }];
    for (const fd of this.waiters.keys()) fds.push({ fd, events: POLLIN, revents: 0 });
    this.polling = new Set(this.waiters.keys());
    this.polls++;
    this.libc.poll.async(fds, fds.length, -1, (err) => this.done(fds, err));
  }

  private done(fds: PollFd[], err: unknown): void {
    this.polling = undefined;
    if (this.woken || (fds[0]!.revents & POLLIN) !== 0) this.clearWake();
    if (err) {
      // poll itself failed (EINTR, ENOMEM): wake everyone; each reads, then waits again
      for (const [fd, w] of this.waiters) this.release(fd, w);
    } else {
      for (let i = 1; i < fds.length; i++) {
        const p = fds[i]!;
        if ((p.revents & WAKE_MASK) === 0) continue;
        const w = this.waiters.get(p.fd);
        if (w) this.release(p.fd, w);
      }
    }
    this.kick();
  }

  private release(fd: number, w: Waiter): void {
    this.waiters.delete(fd);
    w.resolve('ready');
  }

  private clearWake(): void {
    this.woken = false;
    try {
      readSync(this.wakeFd, this.drain, 0, 8, null);
    } catch {
      // EAGAIN: already drained
    }
  }
}

function sameSet(a: ReadonlySet<number>, b: ReadonlyMap<number, unknown>): boolean {
  if (a.size !== b.size) return false;
  for (const k of b.keys()) if (!a.has(k)) return false;
  return true;
}

/** Wakes every waiter after `intervalMs`: no native code, bounded latency, a little idle work. */
export class IntervalPoller implements Poller {
  readonly kind = 'interval' as const;
  private readonly waiters = new Map<number, { resolve: (r: Readiness) => void; timer: NodeJS.Timeout }>();
  constructor(private readonly intervalMs = 10) {}

  wait(fd: number): Promise<Readiness> {
    this.waiters.get(fd)?.resolve('closed');
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(fd);
        resolve('ready');
      }, this.intervalMs);
      this.waiters.set(fd, { resolve, timer });
    });
  }

  async forget(fd: number): Promise<void> {
    const w = this.waiters.get(fd);
    if (!w) return;
    clearTimeout(w.timer);
    this.waiters.delete(fd);
    w.resolve('closed');
  }
}

let shared: Poller | undefined;

/** The process-wide poller: PollPoller where koffi and glibc allow, else IntervalPoller. */
export function sharedPoller(): Poller {
  if (shared) return shared;
  const libc = loadLibc();
  try {
    shared = libc ? new PollPoller(libc) : new IntervalPoller();
  } catch {
    shared = new IntervalPoller();
  }
  return shared;
}

/** A new PollPoller, or undefined where poll/eventfd cannot be loaded (bench and tests). */
export function createPollPoller(): PollPoller | undefined {
  const libc = loadLibc();
  return libc ? new PollPoller(libc) : undefined;
}
