/**
 * Client side of the admin socket (idmapctl, nsidmap-upcall). One connection, requests
 * pipelined by id, a timeout per request.
 */
import { connect, type Socket } from 'node:net';
import { NsidmapError } from '../../errors.js';
import { encode, LineSplitter, type AdminResponse } from './framing.js';

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

/** AdminRequest without `id` (the client numbers requests) */
export type ClientRequest = { op: string } & Record<string, unknown>;

export class AdminClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  private constructor(private readonly sock: Socket, private readonly timeoutMs: number) {
    // no limit on the daemon's answers: `cache list` of a large cache is one long line
    const lines = new LineSplitter((line) => this.onLine(line), Infinity);
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => lines.push(c));
    sock.on('close', () => this.failAll(new NsidmapError('NSIDMAP_ENODAEMON', 'the daemon closed the connection')));
    sock.on('error', () => undefined);
  }

  /** Connect, or throw NSIDMAP_ENODAEMON (absent socket, refused) / NSIDMAP_EADMIN (permission). */
  static connect(path: string, timeoutMs = 5000): Promise<AdminClient> {
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      const timer = setTimeout(() => { sock.destroy(); reject(new NsidmapError('NSIDMAP_ENODAEMON', `${path}: no answer within ${timeoutMs} ms`)); }, timeoutMs);
      sock.once('connect', () => { clearTimeout(timer); resolve(new AdminClient(sock, timeoutMs)); });
      sock.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const code = e.code === 'EACCES' || e.code === 'EPERM' ? 'NSIDMAP_EADMIN' : 'NSIDMAP_ENODAEMON';
        reject(new NsidmapError(code, `${path}: ${e.code ?? e.message}`));
      });
    });
  }

  request<T = unknown>(req: ClientRequest): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new NsidmapError('NSIDMAP_ENODAEMON', `no answer from the daemon within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.sock.write(encode({ ...req, id } as never));
    });
  }

  private onLine(line: string): void {
    let res: AdminResponse;
    try {
      res = JSON.parse(line) as AdminResponse;
    } catch {
      return;
    }
    const p = this.pending.get(res.id);
    if (!p) return;
    this.pending.delete(res.id);
    clearTimeout(p.timer);
    if (res.ok) p.resolve(res.result);
    else p.reject(new NsidmapError(res.error.code as never, res.error.message));
  }

  private failAll(e: Error): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(e);
      this.pending.delete(id);
    }
  }

  close(): void {
    this.sock.end();
    this.sock.destroy();
  }
}
