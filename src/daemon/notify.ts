/**
 * systemd readiness protocol (sd_notify(3)): datagrams like `READY=1` sent to $NOTIFY_SOCKET, a
 * Unix datagram socket (abstract when the path starts with `@`). Node has no Unix datagram
 * sockets, so this goes through libc via koffi — loaded only when NOTIFY_SOCKET is set, so the
 * daemon pays nothing outside systemd.
 */
import { endianness } from 'node:os';
import type { Logger } from '../log.js';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SUN_PATH = 108;

/** Pure: the sockaddr_un bytes for a NOTIFY_SOCKET value (exported for tests). */
export function sockaddrUn(path: string): Buffer {
  const p = Buffer.from(path.startsWith('@') ? '\0' + path.slice(1) : path);
  if (p.length >= SUN_PATH) throw new Error(`NOTIFY_SOCKET path too long: ${path}`);
  const addr = Buffer.alloc(2 + p.length + (path.startsWith('@') ? 0 : 1));
  // sa_family_t is in host byte order
  if (endianness() === 'LE') addr.writeUInt16LE(AF_UNIX, 0);
  else addr.writeUInt16BE(AF_UNIX, 0);
  p.copy(addr, 2);
  return addr;
}

export interface Notifier {
  send(state: string): void;
  close(): void;
}

const none: Notifier = { send: () => {}, close: () => {} };

export async function createNotifier(log: Logger, env = process.env): Promise<Notifier> {
  const path = env['NOTIFY_SOCKET'];
  if (!path) return none;
  try {
    const koffi = (await import('koffi')).default;
    const libc = koffi.load('libc.so.6');
    const socket = libc.func('int socket(int, int, int)');
    const sendto = libc.func('long sendto(int, const void *, size_t, int, const void *, uint32_t)');
    const close = libc.func('int close(int)');
    const fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
    if (fd < 0) throw new Error('socket(AF_UNIX, SOCK_DGRAM) failed');
    const addr = sockaddrUn(path);
    return {
      send: (state) => {
        const msg = Buffer.from(state);
        if ((sendto(fd, msg, msg.length, 0, addr, addr.length) as number) < 0) log.warn('notify.failed', { state });
      },
      close: () => void close(fd),
    };
  } catch (e) {
    log.warn('notify.unavailable', { error: (e as Error).message });
    return none;
  }
}

/** WATCHDOG=1 at half the interval systemd asks for (WATCHDOG_USEC), as sd_watchdog_enabled(3) advises. */
export function startWatchdog(n: Notifier, env = process.env): NodeJS.Timeout | undefined {
  const usec = Number(env['WATCHDOG_USEC']);
  const pid = env['WATCHDOG_PID'];
  if (!Number.isFinite(usec) || usec <= 0 || (pid !== undefined && Number(pid) !== process.pid)) return undefined;
  const t = setInterval(() => n.send('WATCHDOG=1'), Math.max(1, Math.floor(usec / 2000)));
  t.unref();
  return t;
}
