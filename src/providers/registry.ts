/**
 * The source kinds, one list. The policy schema is composed from their schemas and the compiler
 * creates sources through their factories, so a new kind (LDAP, later) is one line here.
 */
import { filesKind } from './files.js';
import { ldapKind } from './ldap/source.js';
import { nssKind } from './nss.js';
import { sidKind } from './sid.js';
import { staticKind } from './static.js';

export const SOURCE_KINDS = [filesKind, nssKind, staticKind, sidKind, ldapKind] as const;

export type AnySourceKind = (typeof SOURCE_KINDS)[number];

/** The kind named `kind` in a policy's `providers` block, or undefined when there is none. */
export function sourceKind(kind: string): AnySourceKind | undefined {
  return SOURCE_KINDS.find((k) => k.kind === kind);
}
