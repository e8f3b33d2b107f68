/**
 * What to do with one keyring upcall: decode the key description, resolve, encode the payload.
 * Pure but for the resolver call: the daemon's `upcall` op and the helper's in-process fallback
 * run this same function, so the fallback is slower but never different.
 *
 *   instantiate(payload, timeout)   the answer (also nobody/squashed answers: they carry a value)
 *   negate(timeout)                 not found: the scope's negative TTL (not the kernel's fixed 60 s)
 *   reject(timeout)                 a malformed description: EKEYREJECTED, logged
 */
import type { Logger } from '../../log.js';
import type { Resolver } from '../../resolver/resolver.js';
import type { Answer, Context } from '../../types.js';
import { decodeDescription, encodeAnswer, type KeyType } from './codec.js';

export type UpcallAction =
  | { readonly action: 'instantiate'; readonly payload: Buffer; readonly timeout: number; readonly answer: Answer }
  | { readonly action: 'negate'; readonly timeout: number; readonly answer?: Answer; readonly reason: string }
  | { readonly action: 'reject'; readonly timeout: number; readonly reason: string };

/** How long a malformed description stays rejected: long enough to stop a storm, short enough to fix. */
export const REJECT_TIMEOUT = 60;

export const PROTO_KEY_TYPE: Record<'nfs' | 'cifs', KeyType> = { nfs: 'id_resolver', cifs: 'cifs.idmap' };

/**
 * `audited`: the caller's audit trail logs the refusal (the daemon: `audit.refused`, once per
 * distinct description and interval), so this line drops to debug — at warn on every upcall it
 * would let anyone who can request a key write the journal at will. Without an audit trail (the
 * in-process fallback, or `audit.refused` turned off) it stays a warning.
 */
export function rejectUpcall(keyType: KeyType, reason: string, ctx: Context, log: Logger, audited = false): UpcallAction {
  const level = audited ? 'debug' : 'warn';
  if (log.on(level)) log[level]('upcall.rejected', { keyType, reason, pid: ctx.pid, container: ctx.container?.id.slice(0, 12) });
  return { action: 'reject', timeout: REJECT_TIMEOUT, reason };
}

export async function decideUpcall(resolver: Resolver, keyType: KeyType, description: string, ctx: Context, log: Logger): Promise<UpcallAction> {
  const dec = decodeDescription(keyType, description);
  if (!dec.ok) return rejectUpcall(keyType, dec.reason, ctx, log, resolver.audit?.on('refused') === true);
  const answer = await resolver.resolve(dec.request, ctx);
  if (answer.value === undefined) {
    const reason = answer.reason ?? answer.outcome;
    // cifs: a failed lookup makes the kernel silently use the mount's uid=/gid= — say so loudly.
    if (keyType === 'cifs.idmap') log.warn('upcall.cifs_unmapped', { description, reason, note: 'the kernel falls back to the mount uid=/gid=' });
    return { action: 'negate', timeout: answer.ttl, answer, reason };
  }
  try {
    return { action: 'instantiate', payload: encodeAnswer(keyType, dec.request, answer.value), timeout: answer.ttl, answer };
  } catch (e) {
    // e.g. a name longer than the 128 bytes the kernel accepts: never hand it a truncated name
    const reason = (e as Error).message;
    log.warn('upcall.unencodable', { keyType, description, reason });
    return { action: 'negate', timeout: answer.ttl, answer, reason };
  }
}

/** The wire form of an action for the admin socket (payload as hex). */
export function actionToWire(a: UpcallAction): Record<string, unknown> {
  switch (a.action) {
    case 'instantiate':
      return { action: a.action, payload: a.payload.toString('hex'), timeout: a.timeout, outcome: a.answer.outcome, scope: a.answer.scope };
    case 'negate':
      return { action: a.action, timeout: a.timeout, reason: a.reason };
    case 'reject':
      return { action: a.action, timeout: a.timeout, reason: a.reason };
  }
}
