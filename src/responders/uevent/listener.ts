/**
 * NETLINK_KOBJECT_UEVENT listeners, one socket per network namespace (PROTOCOLS.md §6).
 *
 * A uevent of a namespaced kobject — `nfs_client` is tagged with its network namespace — goes only
 * to the uevent sockets of that namespace (lib/kobject_uevent.c, uevent_net_broadcast_tagged), and
 * a netlink socket belongs to the namespace of the task that created it, for good. So each
 * namespace gets its own socket: the main thread steps into the namespace with setns(2), calls
 * socket() and bind(), and steps back, all in one synchronous stretch of JavaScript, so nothing
 * else of ours runs on that thread meanwhile (setns changes the calling thread only: libuv's pool
 * threads never leave our namespace). The socket keeps listening in the namespace it was made in.
 *
 * Waiting is the process-wide poller's (../poller.ts: one poll(2) on a pool thread for every
 * kernel fd of the daemon); each readable socket is drained with non-blocking recvfrom(2) and every
 * kernel datagram (sender port 0) is parsed (codec.ts). An earlier version ran all this in a
 * worker_threads Worker; its V8 isolate alone cost ~10 MB of resident memory for a few syscalls.
 *
 * What this cannot see: the KOBJ_ADD of `nfs_client` sent while a namespace is being created,
 * before any task is in it to listen. It is seen when the nfs module is loaded (or reloaded) while
 * the namespace exists — the module autoloads at the first NFS mount, so that is the usual case on
 * a host that starts its containers before it mounts NFS. A namespace created after the module is
 * loaded is covered by the supervisor's scan instead (see responders/uevent/clientid.ts).
 */
import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as KoffiModule from 'koffi';
import type { Logger } from '../../log.js';
import { sharedPoller, type Poller } from '../poller.js';
import { parseUevent, type Uevent } from './codec.js';

/** Receive buffer: larger than any uevent (codec.ts, UEVENT_MAX); a longer datagram is dropped. */
const UEVENT_BUF = 16384;

/** Datagrams read in one go before the event loop gets its turn back. */
const DRAIN_BATCH = 64;

/** linux/socket.h, linux/netlink.h, sched.h, asm-generic/errno.h */
const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_KOBJECT_UEVENT = 15;
const KERNEL_GROUP = 1;
const CLONE_NEWNET = 0x40000000;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const MSG_TRUNC = 0x20;
const EINTR = 4;
const EAGAIN = 11;
const ENOBUFS = 105;
/** sizeof(struct sockaddr_nl) */
const SOCKADDR_NL = 12;

interface Netlink {
  readonly socket: (domain: number, type: number, protocol: number) => number;
  readonly bind: (fd: number, addr: Buffer, len: number) => number;
  readonly setsockopt: (fd: number, level: number, name: number, val: Int32Array, len: number) => number;
  readonly recvfrom: (fd: number, buf: Buffer, len: number, flags: number, src: Buffer, srclen: Uint32Array) => number | bigint;
  readonly setns: (fd: number, nstype: number) => number;
  readonly close: (fd: number) => number;
  readonly errno: () => number;
}

let netlinkRef: Netlink | undefined;

/** glibc's socket calls through koffi, loaded on first use. */
function netlink(): Netlink {
  if (netlinkRef) return netlinkRef;
  const koffi = createRequire(import.meta.url)('koffi') as typeof KoffiModule;
  const libc = koffi.load('libc.so.6');
  netlinkRef = {
    socket: libc.func('int socket(int domain, int type, int protocol)') as Netlink['socket'],
    bind: libc.func('int bind(int fd, void *addr, uint32_t len)') as Netlink['bind'],
    setsockopt: libc.func('int setsockopt(int fd, int level, int name, void *val, uint32_t len)') as Netlink['setsockopt'],
    recvfrom: libc.func('intptr_t recvfrom(int fd, void *buf, size_t len, int flags, void *src, void *srclen)') as Netlink['recvfrom'],
    setns: libc.func('int setns(int fd, int nstype)') as Netlink['setns'],
    close: libc.func('int close(int fd)') as Netlink['close'],
    errno: () => koffi.errno(),
  };
  return netlinkRef;
}

export interface UeventListenerOptions {
  readonly log: Logger;
  /** a parsed kernel uevent seen in the namespace watched as `tag` */
  readonly onEvent: (tag: string, event: Uevent) => void;
  /** the socket of `tag` overflowed: events were lost (rescan to catch up) */
  readonly onOverflow?: (tag: string) => void;
  /** what waits for the sockets (default: the process-wide poller) */
  readonly poller?: Poller;
}

export class UeventListener {
  readonly #opts: UeventListenerOptions;
  #nl: Netlink | undefined;
  #poller: Poller | undefined;
  /** our own network namespace, held open to step back into */
  #home = -1;
  /** tag → socket fd */
  readonly #sockets = new Map<string, number>();
  readonly #buf = Buffer.alloc(UEVENT_BUF);
  readonly #src = Buffer.alloc(SOCKADDR_NL);
  readonly #srclen = new Uint32Array(1);
  #dead: string | undefined;

  constructor(opts: UeventListenerOptions) {
    this.#opts = opts;
  }

  /** Loads the socket calls and holds our own namespace open; throws when they cannot be had. */
  async start(): Promise<void> {
    this.#nl = netlink();
    this.#poller = this.#opts.poller ?? sharedPoller();
    this.#home = openSync('/proc/thread-self/ns/net', 'r');
  }

  /** Listen in the namespace that `nsPath` enters (/proc/<pid>/ns/net, /run/netns/<name>) as `tag`. */
  async watch(tag: string, nsPath: string): Promise<void> {
    if (!this.#nl || this.#dead !== undefined) throw new Error(this.#dead ?? 'uevent listener not started');
    this.#close(tag);
    let fd: number;
    try {
      fd = this.#openIn(nsPath);
    } catch (e) {
      throw new Error(`cannot listen for uevents in ${tag}: ${(e as Error).message}`);
    }
    this.#sockets.set(tag, fd);
    void this.#listen(tag, fd);
  }

  unwatch(tag: string): void {
    this.#close(tag);
  }

  get watching(): ReadonlySet<string> {
    return new Set(this.#sockets.keys());
  }

  /** Why the listener stopped working, if it did. */
  get failure(): string | undefined {
    return this.#dead;
  }

  async stop(): Promise<void> {
    if (!this.#nl) return;
    this.#dead = 'uevent listener stopped';
    for (const tag of [...this.#sockets.keys()]) this.#close(tag);
    if (this.#home >= 0) closeSync(this.#home);
    this.#home = -1;
  }

  /** Makes the socket inside the namespace; the thread is back home before this returns. */
  #openIn(nsPath: string): number {
    const nl = this.#nl!;
    let target: number;
    try {
      target = openSync(nsPath, 'r');
    } catch (e) {
      throw new Error((e as NodeJS.ErrnoException).code === 'ENOENT' ? 'the namespace is gone' : (e as Error).message);
    }
    try {
      if (nl.setns(target, CLONE_NEWNET) !== 0) throw new Error(`setns: errno ${nl.errno()}`);
      try {
        return makeSocket(nl);
      } finally {
        if (nl.setns(this.#home, CLONE_NEWNET) !== 0) this.#stranded(nl.errno());
      }
    } finally {
      closeSync(target);
    }
  }

  /**
   * The main thread could not step back into our own namespace: every socket it made from now on
   * (the admin socket's peers excepted) would belong to a container. Nothing sane is left to do.
   */
  #stranded(errno: number): never {
    this.#opts.log.error('uevent.stranded', { error: `cannot return to our own network namespace: errno ${errno}` });
    process.abort();
  }

  /** Waits, drains, waits again, until the socket is closed (unwatch, stop). */
  async #listen(tag: string, fd: number): Promise<void> {
    const poller = this.#poller!;
    const mine = () => this.#sockets.get(tag) === fd;
    try {
      while (mine()) {
        if ((await poller.wait(fd)) === 'closed' || !mine()) return;
        // A full batch may mean more is queued: let the rest of the daemon run, then read on
        // without waiting (a flood of uevents must not hold the event loop; the kernel drops
        // what overflows the socket and says so with ENOBUFS).
        while (this.#drain(tag, fd) === 'more') {
          await new Promise((r) => setImmediate(r));
          if (!mine()) return;
        }
      }
    } catch (e) {
      this.#opts.log.error('uevent.listen_failed', { ns: tag, error: (e as Error)?.stack ?? String(e) });
      this.#close(tag);
    }
  }

  /** Reads at most DRAIN_BATCH datagrams: 'more' when the batch filled, 'done' at EAGAIN or close. */
  #drain(tag: string, fd: number): 'more' | 'done' {
    const nl = this.#nl!;
    const buf = this.#buf;
    for (let i = 0; i < DRAIN_BATCH; i++) {
      // a callback may have unwatched this namespace; the fd number may already be another's
      if (this.#sockets.get(tag) !== fd) return 'done';
      this.#srclen[0] = SOCKADDR_NL;
      const n = Number(nl.recvfrom(fd, buf, buf.length, MSG_TRUNC, this.#src, this.#srclen));
      if (n < 0) {
        const e = nl.errno();
        if (e === ENOBUFS) {
          this.#opts.log.warn('uevent.overflow', { ns: tag });
          this.#call(tag, () => this.#opts.onOverflow?.(tag));
          continue;
        }
        if (e !== EAGAIN && e !== EINTR) this.#opts.log.warn('uevent.error', { ns: tag, error: `recv: errno ${e}` });
        return 'done';
      }
      // Port 0 is the kernel: a task cannot send from it, so nothing else is taken for a uevent.
      // MSG_TRUNC makes n the datagram's real length: one cut short is dropped, not half-parsed.
      if (n === 0 || n > buf.length || this.#src.readUInt32LE(4) !== 0) continue;
      const parsed = parseUevent(buf.subarray(0, n));
      if (!parsed.ok) {
        this.#opts.log.debug('uevent.malformed', { ns: tag, reason: parsed.reason });
        continue;
      }
      const event = parsed.event;
      this.#call(tag, () => this.#opts.onEvent(tag, event));
    }
    return 'more';
  }

  /** One handler's bug must not stop this namespace's socket from being read. */
  #call(tag: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.#opts.log.error('uevent.handler_failed', { ns: tag, error: (e as Error)?.stack ?? String(e) });
    }
  }

  #close(tag: string): void {
    const fd = this.#sockets.get(tag);
    if (fd === undefined) return;
    this.#sockets.delete(tag);
    // forget resolves the pending wait at once, before the fd number can be reused
    void this.#poller!.forget(fd);
    this.#nl!.close(fd);
  }
}

function makeSocket(nl: Netlink): number {
  const fd = nl.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  if (fd < 0) throw new Error(`socket: errno ${nl.errno()}`);
  nl.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, new Int32Array([1 << 20]), 4);
  const addr = Buffer.alloc(SOCKADDR_NL);
  addr.writeUInt16LE(AF_NETLINK, 0);
  addr.writeUInt32LE(KERNEL_GROUP, 8);
  if (nl.bind(fd, addr, SOCKADDR_NL) !== 0) {
    const e = nl.errno();
    nl.close(fd);
    throw new Error(`bind: errno ${e}`);
  }
  return fd;
}
