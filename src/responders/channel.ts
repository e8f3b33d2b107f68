/**
 * The I/O seam between a responder and a kernel file that speaks in messages: an rpc_pipefs
 * pipe (`…/clnt*​/idmap`), an nfsd cache channel (`…/nfs4.idtoname/channel`) or a cache's
 * `flush` file. One read() is one message, one write() is one reply, as the kernel frames them
 * (net/sunrpc/rpc_pipe.c rpc_pipe_read/rpc_pipe_write, net/sunrpc/cache.c cache_read/cache_write).
 *
 * Listeners take an `OpenChannel`; the default opens real file descriptors (below), tests pass
 * a simulation of the kernel side (test/sim/) that implements the same three calls.
 *
 * Why not a stream: neither file ever blocks a read. rpc_pipe_read() and cache_read() return 0
 * at once when nothing is queued, and poll() is the only way to wait (both implement it:
 * rpc_pipe_poll, cache_poll). Node has no public way to poll an arbitrary fd (net.Socket refuses
 * a regular file), so a read that finds nothing waits on FdPoller (./poller.ts) — one poll(2) on
 * a worker thread for every channel of the process — and then reads again. Reads and writes
 * themselves are synchronous: on these files they never wait for anything but an inode lock.
 */
import { closeSync, constants as fsc, openSync, readSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { getSystemErrorName } from 'node:util';
import { sharedPoller, type Poller } from './poller.js';

export interface KernelChannel {
  /** The next message, one read() each; null once the channel is gone (EPIPE, POLLHUP) or closed. One read at a time. */
  read(): Promise<Buffer | null>;
  /** One write(): resolves when the kernel took it; rejects with an Error whose `errnoName` (see errnoOf) says why. */
  write(bytes: Uint8Array): Promise<void>;
  /** Idempotent; a pending read() resolves null. */
  close(): Promise<void>;
}

/** `rw`: a channel to serve (read and write); `w`: write-only, for `flush` files. */
export type ChannelMode = 'rw' | 'w';
export type OpenChannel = (path: string, mode: ChannelMode) => Promise<KernelChannel>;

/**
 * errno numbers the kernel returns on these files that libuv has no name for (Node reports them
 * as "Unknown system error -126"): include/uapi/asm-generic/errno.h, the same on every Linux arch
 * Node supports.
 */
const LINUX_ERRNO: Record<number, string> = { 126: 'ENOKEY', 127: 'EKEYEXPIRED', 128: 'EKEYREVOKED', 129: 'EKEYREJECTED' };

/** The errno name of a failed channel call (`ENOKEY`, `EINVAL`, `EPIPE`…), or undefined. */
export function errnoOf(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const named = (e as { errnoName?: unknown }).errnoName;
  if (typeof named === 'string') return named;
  const errno = (e as { errno?: unknown }).errno;
  if (typeof errno === 'number') {
    const n = Math.abs(errno);
    if (LINUX_ERRNO[n]) return LINUX_ERRNO[n];
    const name = getSystemErrorName(-n);
    if (!name.startsWith('Unknown')) return name;
  }
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/** An Error carrying an errno name, as real and simulated channels throw them. */
export function channelError(errnoName: string, message: string): Error & { errnoName: string; code: string } {
  return Object.assign(new Error(`${message}: ${errnoName}`), { errnoName, code: errnoName });
}

/** Big enough for any message: an idmap_msg is 140 bytes, a cache request at most a page. */
const READ_SIZE = 8192;
/** empty reads after a wake-up that are still taken for races rather than a file that is always "readable" */
const SPURIOUS_WAKEUPS = 3;
/** errors that mean "nothing to read now" on a pipe-like file opened O_NONBLOCK */
const EMPTY = new Set(['EAGAIN', 'EWOULDBLOCK']);
/** errors that mean the file is gone: the pipe was unlinked (rpc_pipefs) or the fd is dead */
const GONE = new Set(['EPIPE', 'EBADF', 'ENODEV', 'ENXIO', 'EIO']);

/** A channel on a real file descriptor. */
export class FdChannel implements KernelChannel {
  private fd: number | undefined;
  private readonly buf = Buffer.allocUnsafe(READ_SIZE);
  private readonly poller: Poller;
  readonly path: string;

  constructor(path: string, fd: number, poller: Poller) {
    this.path = path;
    this.fd = fd;
    this.poller = poller;
  }

  async read(): Promise<Buffer | null> {
    for (let empty = 0; ; empty++) {
      const fd = this.fd;
      if (fd === undefined) return null;
      const got = this.tryRead(fd);
      if (got !== undefined) return got;
      // A file that polls readable yet has nothing to read (a plain file put where a pipe should
      // be, a confused driver) must not spin the loop: back off after the first few.
      if (empty >= SPURIOUS_WAKEUPS) {
        await sleep(Math.min(250, 2 ** empty));
        if (this.fd !== fd) return null; // closed meanwhile: its number may already be another file's
      }
      // poll says readable, hung up or in error: the next read says which
      const ready = await this.poller.wait(fd);
      if (ready === 'closed' || this.fd !== fd) return null;
    }
  }

  /** A message, null when gone, undefined when nothing is queued now. */
  private tryRead(fd: number): Buffer | null | undefined {
    let n: number;
    try {
      n = readSync(fd, this.buf, 0, READ_SIZE, null);
    } catch (e) {
      const name = errnoOf(e) ?? '';
      if (EMPTY.has(name)) return undefined;
      if (GONE.has(name)) return null;
      throw e;
    }
    // 0 is "nothing queued" here, not end of file: both kernel files return it when empty.
    return n === 0 ? undefined : Buffer.from(this.buf.subarray(0, n));
  }

  async write(bytes: Uint8Array): Promise<void> {
    const fd = this.fd;
    if (fd === undefined) throw channelError('EBADF', `write to closed ${this.path}`);
    // position null: write(2), not pwrite(2) — the channel files are not seekable, and a cache's
    // flush file takes only a write at offset 0 of a fresh open (cache.c write_flush).
    const n = writeSync(fd, bytes, 0, bytes.length, null);
    if (n !== bytes.length) throw channelError('EIO', `short write to ${this.path} (${n} of ${bytes.length} bytes)`);
  }

  async close(): Promise<void> {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    await this.poller.forget(fd);
    closeSync(fd);
  }
}

/**
 * The real opener: O_RDWR (a reader counts as the listener the kernel wants, and replies go back
 * on the same file), O_NONBLOCK (harmless on these files, and keeps a FIFO stand-in from blocking),
 * and close-on-exec (libuv adds O_CLOEXEC to every open). `poller` defaults to the process-wide one.
 */
export function fdChannelOpener(poller?: Poller): OpenChannel {
  return async (path, mode) => {
    const flags = mode === 'rw' ? fsc.O_RDWR | fsc.O_NONBLOCK : fsc.O_WRONLY;
    const fd = openSync(path, flags);
    return new FdChannel(path, fd, poller ?? sharedPoller());
  };
}
