/**
 * The admin socket listener: Unix stream socket, JSON lines (protocol.ts). Access is the socket
 * file's mode: 0600 root-owned, or 0660 with the admin group. Every request is answered, also a
 * malformed one; a handler that throws answers an error and never takes the daemon down.
 */
import { chmodSync, chownSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { describeError, NsidmapError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { decodeRequest, encode, errorResponse, LineSplitter, type AdminRequest } from './protocol.js';

export type AdminHandler = (req: AdminRequest) => Promise<unknown>;

export interface AdminServerOptions {
  readonly path: string;
  /** gid allowed to connect (mode 0660); undefined → 0600 */
  readonly gid?: number;
  readonly log: Logger;
}

export class AdminServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly opts: AdminServerOptions, private readonly handler: AdminHandler) {}

  async start(): Promise<void> {
    const { path } = this.opts;
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    } catch (e) {
      throw cannotListen(path, e);
    }
    await removeStaleSocket(path);
    const server = createServer((s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(cannotListen(path, e)));
      server.listen(path, () => resolve());
    });
    server.on('error', (e) => this.opts.log.error('admin.error', { error: e.message }));
    chmodSync(path, this.opts.gid === undefined ? 0o600 : 0o660);
    if (this.opts.gid !== undefined) chownSync(path, process.getuid?.() ?? 0, this.opts.gid);
    this.server = server;
  }

  private accept(sock: Socket): void {
    this.sockets.add(sock);
    sock.setEncoding('utf8');
    const lines = new LineSplitter((line) => void this.serve(sock, line));
    const onData = (chunk: string) => {
      if (lines.push(chunk)) return;
      // answer once, ignore whatever else comes, and close: the client may never stop sending
      sock.off('data', onData);
      sock.end(encode(errorResponse(0, 'NSIDMAP_EREQUEST', 'request line too long')), () => sock.destroy());
    };
    sock.on('data', onData);
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.sockets.delete(sock));
  }

  private async serve(sock: Socket, line: string): Promise<void> {
    const dec = decodeRequest(line);
    if (!dec.ok) {
      this.opts.log.warn('admin.bad_request', { error: dec.res.ok ? '' : dec.res.error.message });
      if (!sock.destroyed) sock.write(encode(dec.res));
      return;
    }
    let out;
    try {
      out = { id: dec.req.id, ok: true as const, result: await this.handler(dec.req) };
    } catch (e) {
      const { code, message } = describeError(e);
      if (!(e instanceof NsidmapError)) this.opts.log.error('admin.handler_failed', { op: dec.req.op, error: (e as Error)?.stack ?? message });
      out = errorResponse(dec.req.id, code, message);
    }
    if (!sock.destroyed) sock.write(encode(out));
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (!server) return; // never listened: the path is not ours to remove
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(this.opts.path, { force: true });
  }
}

/**
 * A socket file left by a crashed daemon would make listen() fail with EADDRINUSE: remove it —
 * but only when nothing listens on it. Unlinking a live daemon's socket would leave that daemon
 * running and unreachable.
 */
async function removeStaleSocket(path: string): Promise<void> {
  try {
    if (!statSync(path).isSocket()) return; // listen() reports EADDRINUSE: not ours to delete
  } catch {
    return; // absent
  }
  const probe = await probeSocket(path);
  if (probe === 'stale') rmSync(path, { force: true });
  else if (probe === 'alive') throw new NsidmapError('NSIDMAP_EDAEMON', `${path}: another daemon is listening on this socket: stop it first, or pass another --socket`);
  else throw new NsidmapError('NSIDMAP_EDAEMON', `${path}: cannot tell whether another daemon listens on this socket (${probe}): remove it if it is stale`);
}

/** `stale` when connecting is refused (nobody listens), `alive` when it connects or the backlog is full. */
function probeSocket(path: string): Promise<'stale' | 'alive' | string> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve('alive'); });
    s.once('error', (e: NodeJS.ErrnoException) => {
      s.destroy();
      resolve(e.code === 'ECONNREFUSED' || e.code === 'ENOENT' ? 'stale' : e.code === 'EAGAIN' ? 'alive' : (e.code ?? e.message));
    });
  });
}

function cannotListen(path: string, e: unknown): NsidmapError {
  const code = (e as NodeJS.ErrnoException)?.code;
  const why = code === 'EADDRINUSE' ? ': something other than a stale socket is at this path; remove it or pass another --socket' : '';
  return new NsidmapError('NSIDMAP_EDAEMON', `${path}: cannot listen: ${code ?? (e as Error)?.message ?? String(e)}${why}`, { cause: e });
}
