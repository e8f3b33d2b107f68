/**
 * The admin socket protocol: one JSON object per line each way (a Unix stream socket, mode 0600
 * root, or 0660 with an admin group). Requests carry an `id` echoed in the response.
 *
 *   → {"id":1,"op":"resolve","kind":"uid","value":"alice@example.com","iface":"keyring-nfs","pid":1234}
 *   ← {"id":1,"ok":true,"result":{…Answer…}}
 *   ← {"id":1,"ok":false,"error":{"code":"NSIDMAP_EREQUEST","message":"…"}}
 *
 * Pure: framing and validation only; the server does I/O. The framing (zod-free) is in
 * framing.ts and re-exported here.
 */
import { z } from 'zod';
import { INTERFACES } from '../../types.js';
import { errorResponse, type AdminResponse } from './framing.js';

export { encode, errorResponse, LineSplitter, MAX_LINE, type AdminError, type AdminResponse } from './framing.js';

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
