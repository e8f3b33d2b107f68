/**
 * NETLINK_KOBJECT_UEVENT listeners, one socket per network namespace (PROTOCOLS.md §6).
 *
 * A uevent of a namespaced kobject — `nfs_client` is tagged with its network namespace — goes only
 * to the uevent sockets of that namespace (lib/kobject_uevent.c, uevent_net_broadcast_tagged), and
 * a netlink socket belongs to the namespace of the task that created it, for good. So each
 * namespace gets its own socket, made by a thread that steps into the namespace with setns(2),
 * calls socket() and bind(), and steps back; the socket keeps listening there.
 *
 * That thread is a dedicated worker_threads Worker, not the main thread nor the libuv pool: setns
 * changes the calling thread only, and a pool thread caught in another namespace would run
 * unrelated I/O there. The worker also does the waiting — poll(2) over every socket, ticking every
 * TICK_MS to take commands (receiveMessageOnPort: its own event loop is busy in poll) — and posts
 * each kernel datagram (sender port 0) to the main thread, which parses it (codec.ts).
 *
 * What this cannot see: the KOBJ_ADD of `nfs_client` sent while a namespace is being created,
 * before any task is in it to listen. It is seen when the nfs module is loaded (or reloaded) while
 * the namespace exists — the module autoloads at the first NFS mount, so that is the usual case on
 * a host that starts its containers before it mounts NFS. A namespace created after the module is
 * loaded is covered by the supervisor's scan instead (see responders/uevent/clientid.ts).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../../log.js';
import { parseUevent, type Uevent } from './codec.js';

/** How often the worker looks for commands while poll(2) waits. */
const TICK_MS = 100;

/** Receive buffer: larger than any uevent (codec.ts, UEVENT_MAX); a longer datagram is dropped. */
const UEVENT_BUF = 16384;

/**
 * The worker, plain CommonJS (it is evaluated, not imported, so it runs the same under tsx and
 * from dist/). Constants: linux/socket.h, linux/netlink.h, sched.h, poll.h, asm-generic/errno.h.
 */
const WORKER_SOURCE = `
'use strict';
const { parentPort, workerData, receiveMessageOnPort } = require('node:worker_threads');
const fs = require('node:fs');
const koffi = require(workerData.koffi);
const libc = koffi.load('libc.so.6');
const AF_NETLINK = 16, SOCK_RAW = 3, SOCK_NONBLOCK = 0x800, SOCK_CLOEXEC = 0x80000;
const NETLINK_KOBJECT_UEVENT = 15, KERNEL_GROUP = 1, CLONE_NEWNET = 0x40000000;
const SOL_SOCKET = 1, SO_RCVBUF = 8, MSG_TRUNC = 0x20, POLLIN = 1, EINTR = 4, EAGAIN = 11, ENOBUFS = 105;
const socket = libc.func('int socket(int domain, int type, int protocol)');
const bind = libc.func('int bind(int fd, void *addr, uint32_t len)');
const setsockopt = libc.func('int setsockopt(int fd, int level, int name, void *val, uint32_t len)');
const recvfrom = libc.func('intptr_t recvfrom(int fd, void *buf, size_t len, int flags, void *src, void *srclen)');
const poll = libc.func('int poll(void *fds, unsigned long nfds, int timeout)');
const setns = libc.func('int setns(int fd, int nstype)');
const close = libc.func('int close(int fd)');
const errno = () => koffi.errno();
const home = fs.openSync('/proc/thread-self/ns/net', 'r');
const sockets = new Map();
const buf = Buffer.alloc(${UEVENT_BUF});
const src = Buffer.alloc(12);
const srclen = new Uint32Array(1);
const nap = new Int32Array(new SharedArrayBuffer(4));

function makeSocket() {
  const fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  if (fd < 0) return { error: 'socket: errno ' + errno() };
  const size = new Int32Array([1 << 20]);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4);
  const addr = Buffer.alloc(12);
  addr.writeUInt16LE(AF_NETLINK, 0);
  addr.writeUInt32LE(KERNEL_GROUP, 8);
  if (bind(fd, addr, 12) !== 0) {
    const e = errno();
    close(fd);
    return { error: 'bind: errno ' + e };
  }
  return { fd };
}

function openIn(nsPath) {
  let target;
  try {
    target = fs.openSync(nsPath, 'r');
  } catch (e) {
    return { error: e.code === 'ENOENT' ? 'the namespace is gone' : String(e.message) };
  }
  try {
    if (setns(target, CLONE_NEWNET) !== 0) return { error: 'setns: errno ' + errno() };
    try {
      return makeSocket();
    } finally {
      if (setns(home, CLONE_NEWNET) !== 0) throw new Error('cannot return to our own network namespace: errno ' + errno());
    }
  } finally {
    fs.closeSync(target);
  }
}

function command(m) {
  if (m.op === 'watch') {
    const old = sockets.get(m.tag);
    if (old !== undefined) close(old);
    const r = openIn(m.nsPath);
    if (r.fd !== undefined) sockets.set(m.tag, r.fd); else sockets.delete(m.tag);
    parentPort.postMessage({ op: 'watched', seq: m.seq, tag: m.tag, error: r.error });
  } else if (m.op === 'unwatch') {
    const fd = sockets.get(m.tag);
    if (fd !== undefined) close(fd);
    sockets.delete(m.tag);
  } else if (m.op === 'stop') {
    return false;
  }
  return true;
}

function drain(tag, fd) {
  for (;;) {
    srclen[0] = 12;
    const n = Number(recvfrom(fd, buf, buf.length, MSG_TRUNC, src, srclen));
    if (n < 0) {
      const e = errno();
      if (e === ENOBUFS) { parentPort.postMessage({ op: 'overflow', tag }); continue; }
      if (e !== EAGAIN && e !== EINTR) parentPort.postMessage({ op: 'error', tag, message: 'recv: errno ' + e });
      return;
    }
    // Port 0 is the kernel: a task cannot send from it, so nothing else is taken for a uevent.
    // MSG_TRUNC makes n the datagram's real length: one cut short is dropped, not half-parsed.
    if (n > 0 && n <= buf.length && src.readUInt32LE(4) === 0) {
      parentPort.postMessage({ op: 'event', tag, data: Uint8Array.prototype.slice.call(buf, 0, n) });
    }
  }
}

let running = true;
parentPort.postMessage({ op: 'ready' });
while (running) {
  for (let m = receiveMessageOnPort(parentPort); m && running; m = receiveMessageOnPort(parentPort)) running = command(m.message);
  if (!running) break;
  const entries = [...sockets];
  if (entries.length === 0) { Atomics.wait(nap, 0, 0, ${TICK_MS}); continue; }
  const fds = Buffer.alloc(8 * entries.length);
  entries.forEach(([, fd], i) => { fds.writeInt32LE(fd, 8 * i); fds.writeInt16LE(POLLIN, 8 * i + 4); });
  const n = poll(fds, entries.length, ${TICK_MS});
  if (n <= 0) continue;
  entries.forEach(([tag, fd], i) => { if (fds.readInt16LE(8 * i + 6) !== 0) drain(tag, fd); });
}
for (const fd of sockets.values()) close(fd);
fs.closeSync(home);
`;

type FromWorker =
  | { op: 'ready' }
  | { op: 'watched'; seq: number; tag: string; error?: string }
  | { op: 'event'; tag: string; data: Uint8Array }
  | { op: 'overflow'; tag: string }
  | { op: 'error'; tag: string; message: string };

export interface UeventListenerOptions {
  readonly log: Logger;
  /** a parsed kernel uevent seen in the namespace watched as `tag` */
  readonly onEvent: (tag: string, event: Uevent) => void;
  /** the socket of `tag` overflowed: events were lost (rescan to catch up) */
  readonly onOverflow?: (tag: string) => void;
}

export class UeventListener {
  readonly #opts: UeventListenerOptions;
  #worker: Worker | undefined;
  #seq = 0;
  readonly #pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  readonly #watching = new Set<string>();
  #dead: string | undefined;

  constructor(opts: UeventListenerOptions) {
    this.#opts = opts;
  }

  /** Starts the worker; resolves once it can take commands. */
  async start(): Promise<void> {
    const koffi = createRequire(import.meta.url).resolve('koffi');
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { koffi }, execArgv: [], stdout: false, stderr: false });
    this.#worker = worker;
    await new Promise<void>((resolve, reject) => {
      const early = (e: Error): void => reject(e);
      worker.once('error', early);
      worker.once('message', (m: FromWorker) => {
        worker.off('error', early);
        if (m.op === 'ready') resolve();
        else reject(new Error(`uevent worker: unexpected ${m.op}`));
      });
    });
    worker.on('message', (m: FromWorker) => this.#onMessage(m));
    worker.on('error', (e) => this.#fail(`uevent worker failed: ${e.message}`));
    worker.on('exit', () => this.#fail('uevent worker exited'));
    // Listening alone does not keep the process alive; a command awaiting its answer does (watch, stop).
    worker.unref();
  }

  /** Listen in the namespace that `nsPath` enters (/proc/<pid>/ns/net, /run/netns/<name>) as `tag`. */
  watch(tag: string, nsPath: string): Promise<void> {
    const worker = this.#worker;
    if (!worker || this.#dead !== undefined) return Promise.reject(new Error(this.#dead ?? 'uevent listener not started'));
    const seq = ++this.#seq;
    worker.ref();
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(seq, { resolve, reject });
      worker.postMessage({ op: 'watch', seq, tag, nsPath });
    });
  }

  unwatch(tag: string): void {
    this.#watching.delete(tag);
    this.#worker?.postMessage({ op: 'unwatch', tag });
  }

  get watching(): ReadonlySet<string> {
    return this.#watching;
  }

  /** Why the listener stopped working, if it did. */
  get failure(): string | undefined {
    return this.#dead;
  }

  async stop(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    if (!worker) return;
    this.#dead = 'uevent listener stopped';
    worker.ref();
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ op: 'stop' });
    // The worker sees the command within one tick; terminate() only if it somehow does not.
    const timer = setTimeout(() => void worker.terminate(), 10 * TICK_MS);
    await exited;
    clearTimeout(timer);
    this.#watching.clear();
    this.#rejectAll('uevent listener stopped');
  }

  #onMessage(m: FromWorker): void {
    switch (m.op) {
      case 'ready':
        return;
      case 'watched': {
        const p = this.#pending.get(m.seq);
        this.#pending.delete(m.seq);
        if (this.#pending.size === 0) this.#worker?.unref();
        if (m.error === undefined) this.#watching.add(m.tag);
        else this.#watching.delete(m.tag);
        if (m.error === undefined) p?.resolve();
        else p?.reject(new Error(`cannot listen for uevents in ${m.tag}: ${m.error}`));
        return;
      }
      case 'event': {
        const parsed = parseUevent(m.data);
        if (parsed.ok) this.#opts.onEvent(m.tag, parsed.event);
        else this.#opts.log.debug('uevent.malformed', { ns: m.tag, reason: parsed.reason });
        return;
      }
      case 'overflow':
        this.#opts.log.warn('uevent.overflow', { ns: m.tag });
        this.#opts.onOverflow?.(m.tag);
        return;
      case 'error':
        this.#opts.log.warn('uevent.error', { ns: m.tag, error: m.message });
        return;
    }
  }

  #fail(why: string): void {
    if (this.#dead !== undefined) return;
    this.#dead = why;
    this.#opts.log.error('uevent.failed', { error: why });
    this.#rejectAll(why);
  }

  #rejectAll(why: string): void {
    for (const p of this.#pending.values()) p.reject(new Error(why));
    this.#pending.clear();
  }
}
