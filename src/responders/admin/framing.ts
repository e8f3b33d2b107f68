/**
 * The admin socket's framing, without the request schema (protocol.ts): one JSON object per
 * line each way, the response shapes, and the line splitter. Kept free of zod so that a client
 * (idmapctl, nsidmap-upcall) that only sends requests and reads answers loads none of it.
 * protocol.ts re-exports all of this.
 */
import type { AdminRequest } from './protocol.js';

/** Longest request line accepted; longer input is refused and the connection closed. */
export const MAX_LINE = 64 * 1024;

export interface AdminError {
  readonly code: string;
  readonly message: string;
}
export type AdminResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: AdminError };

export function errorResponse(id: number, code: string, message: string): AdminResponse {
  return { id, ok: false, error: { code, message } };
}

export function encode(msg: AdminResponse | AdminRequest): string {
  return JSON.stringify(msg) + '\n';
}

/**
 * Splits a byte stream into lines. Returns false when a line exceeds MAX_LINE (the caller
 * answers once and closes: a client that never sends a newline must not grow our memory).
 */
export class LineSplitter {
  private buf = '';
  private over = false;
  /** `max`: the server's limit on what a client sends; a client reading the daemon passes Infinity */
  constructor(private readonly onLine: (line: string) => void, private readonly max = MAX_LINE) {}
  push(chunk: string): boolean {
    if (this.over) return false;
    // Only the new text can hold the next newline: a line dribbled in byte by byte stays O(n).
    let from = this.buf.length;
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n', from)) >= 0) {
      // The limit is on the line, however its bytes arrived (its newline may share a chunk with it).
      if (nl > this.max) return this.overflow();
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      from = 0;
      if (line.trim() !== '') this.onLine(line);
    }
    return this.buf.length <= this.max || this.overflow();
  }

  /** Once over the limit, stay there and hold nothing more. */
  private overflow(): false {
    this.over = true;
    this.buf = '';
    return false;
  }
}
