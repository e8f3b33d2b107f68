/**
 * The admin socket protocol: one JSON object per line each way (a Unix stream socket, mode 0600
 * root, or 0660 with an admin group). Requests carry an `id` echoed in the response.
 *
 *   → {"id":1,"op":"resolve","kind":"uid","value":"alice@example.com","iface":"keyring-nfs","pid":1234}
 *   ← {"id":1,"ok":true,"result":{…Answer…}}
 *   ← {"id":1,"ok":false,"error":{"code":"NSIDMAP_EREQUEST","message":"…"}}
 *
 * Pure: framing and validation only; the server does I/O.
 */
import { z } from 'zod';
import { INTERFACES } from '../../types.js';

/** Longest request line accepted; longer input is refused and the connection closed. */
export const MAX_LINE = 64 * 1024;

const Resolve = z.strictObject({
  id: z.number().int(),
  op: z.literal('resolve'),
  kind: z.string(),
  value: z.string(),
  iface: z.enum(INTERFACES).optional(),
  /** requesting task: the daemon reads its context from /proc (never trusted from the wire) */
  pid: z.number().int().positive().optional(),
  /** answer in this process's namespaces (idmapctl query --ns PID) */
  nsPid: z.number().int().positive().optional(),
  scope: z.string().optional(),
  explain: z.boolean().optional(),
});
/**
 * A keyring upcall forwarded by nsidmap-upcall: the daemon decodes the description, resolves,
 * and answers what to do with the key. The description travels hex-encoded so that no byte the
 * kernel sent is altered on the way (it may not be UTF-8).
 */
const Upcall = z.strictObject({
  id: z.number().int(),
  op: z.literal('upcall'),
  keyType: z.enum(['id_resolver', 'cifs.idmap']),
  descriptionHex: z.string().regex(/^([0-9a-fA-F]{2}){1,4096}$/),
  pid: z.number().int().positive().optional(),
  /**
   * Instead of pid: the authorisation key (KEY_SPEC_REQKEY_AUTH_KEY) and the key being
   * constructed, whose /proc/keys line names the requester's pid. The daemon reads it only when
   * a log line or audit event needs the requester (src/responders/keyring/requester.ts).
   */
  authKey: z.number().int().positive().max(0x7fffffff).optional(),
  keySerial: z.number().int().positive().max(0x7fffffff).optional(),
});
const Simple = z.strictObject({ id: z.number().int(), op: z.enum(['ping', 'status', 'reload', 'cache.stats', 'stats']) });
const CacheList = z.strictObject({ id: z.number().int(), op: z.literal('cache.list'), scope: z.string().optional(), prefix: z.string().optional(), limit: z.number().int().positive().max(1_000_000).optional() });
const CacheFlush = z.strictObject({ id: z.number().int(), op: z.literal('cache.flush'), scope: z.string().optional(), key: z.string().optional() });

/** NFSv4 client identifiers per namespace key (idmapctl clientid): list, show one, set/import one. */
const ClientIdList = z.strictObject({ id: z.number().int(), op: z.literal('clientid.list') });
const ClientIdShow = z.strictObject({ id: z.number().int(), op: z.literal('clientid.show'), key: z.string().min(1).max(256) });
const ClientIdSet = z.strictObject({ id: z.number().int(), op: z.literal('clientid.set'), key: z.string().min(1).max(256), identifier: z.string().max(256), source: z.enum(['set', 'import']) });

export const AdminRequest = z.discriminatedUnion('op', [Resolve, Upcall, Simple, CacheList, CacheFlush, ClientIdList, ClientIdShow, ClientIdSet]);
export type AdminRequest = z.infer<typeof AdminRequest>;
export type AdminOp = AdminRequest['op'];

export interface AdminError {
  readonly code: string;
  readonly message: string;
}
export type AdminResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: AdminError };

/** Parse one request line; an error response (id 0 when unknown) for anything malformed. */
export function decodeRequest(line: string): { ok: true; req: AdminRequest } | { ok: false; res: AdminResponse } {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { ok: false, res: errorResponse(0, 'NSIDMAP_EREQUEST', 'request is not JSON') };
  }
  const parsed = AdminRequest.safeParse(raw);
  if (parsed.success) return { ok: true, req: parsed.data };
  const id = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : 0;
  const issue = parsed.error.issues[0];
  const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
  return { ok: false, res: errorResponse(id, 'NSIDMAP_EREQUEST', `${where}${issue?.message ?? 'invalid request'}`) };
}

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
