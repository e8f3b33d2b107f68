/**
 * The `ldap` provider block: its zod schema, and the attribute mapping each directory schema
 * implies (RFC 2307, draft-howard-rfc2307bis, Active Directory), with the policy's overrides.
 */
import { z } from 'zod';
import { ATTRIBUTE_NAME } from './filter.js';

/** `ldap://host[:port][/]` or `ldaps://…`; host/port only (ldapts takes no DN, scope or filter in the URL). */
const URI = /^ldaps?:\/\/(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?\/?$/i;
const Uri = z.string().regex(URI, 'an LDAP URI: ldap://host[:port] or ldaps://host[:port]');

const Attr = z.string().regex(ATTRIBUTE_NAME, 'an attribute or object class name (letters, digits, -) or an OID');

/** `4`, `"4s"`, `"500ms"`, `"1.5s"` → milliseconds. A bare number is seconds, like every policy duration. */
export const Timeout = z
  .union([
    z.number().positive().max(600),
    z.string().regex(/^[0-9]+(?:\.[0-9]+)?(?:ms|s)?$/, 'a timeout: 4, "4s" or "500ms"'),
  ])
  .transform((v) => (typeof v === 'number' ? v * 1000 : v.endsWith('ms') ? parseFloat(v) : parseFloat(v) * 1000))
  .refine((ms) => ms >= 1 && ms <= 600_000, 'a timeout between 1 ms and 10 minutes');

export const DIRECTORY_SCHEMAS = ['rfc2307', 'rfc2307bis', 'ad'] as const;
export type DirectorySchema = (typeof DIRECTORY_SCHEMAS)[number];

const Attributes = z.strictObject({
  /** objectClass of user entries */
  userClass: Attr.optional(),
  /** objectClass of group entries */
  groupClass: Attr.optional(),
  /** attribute holding a user's name (rfc2307*: uid; ad: sAMAccountName) */
  userName: Attr.optional(),
  /** attribute holding a group's name (rfc2307*: cn; ad: sAMAccountName) */
  groupName: Attr.optional(),
  uidNumber: Attr.optional(),
  gidNumber: Attr.optional(),
  /** attribute carrying the NFSv4 wire name `name@domain` (as umich_ldap's NFSv4Name); off by default */
  nfsv4Name: Attr.optional(),
  /** attribute carrying the SID (ad: objectSid); rfc2307*: none unless set */
  objectSid: Attr.optional(),
  /** how the SID attribute stores it: packed binary (AD objectSid) or text `S-1-…` (Samba's sambaSID) */
  sidSyntax: z.enum(['binary', 'text']).optional(),
  /** ad: the RID of a user's primary group (its SID is the user's domain SID + this RID) */
  primaryGroupId: Attr.optional(),
});

export const ldapSchema = z
  .strictObject({
    kind: z.literal('ldap'),
    /** one URI, or several tried in order (failover, with back-off on a server that failed) */
    uri: z.union([Uri, z.array(Uri).min(1).max(16)]),
    /** search base for users and groups */
    base: z.string().min(1),
    userBase: z.string().min(1).optional(),
    groupBase: z.string().min(1).optional(),
    schema: z.enum(DIRECTORY_SCHEMAS),
    /** simple bind; the password is read from the file at start (a trailing newline is dropped) */
    bind: z.strictObject({ dn: z.string().min(1), passwordFile: z.string().min(1) }).optional(),
    /** SASL EXTERNAL bind (RFC 4422 appendix A): the identity is the TLS client certificate */
    sasl: z.literal('EXTERNAL').optional(),
    tls: z
      .strictObject({
        /** upgrade ldap:// connections with StartTLS (RFC 4511 §4.14) */
        startTls: z.boolean().optional(),
        caFile: z.string().min(1).optional(),
        certFile: z.string().min(1).optional(),
        keyFile: z.string().min(1).optional(),
        /** verify the server's certificate and name (default true) */
        verify: z.boolean().optional(),
      })
      .optional(),
    /** per request: connect, TLS, bind and each search (default 4s, as idmapd's LDAP_timeout_seconds) */
    timeout: Timeout.optional(),
    /** persistent connections (default 2) */
    pool: z.number().int().min(1).max(32).optional(),
    /**
     * most entries one lookup reads (default 16): a lookup expects one and reads a few more to see
     * conflicts; an id shared by more entries than this is answered from those the server sent
     */
    sizeLimit: z.number().int().min(2).max(1000).optional(),
    scope: z.enum(['sub', 'one']).optional(),
    attributes: Attributes.optional(),
  })
  .refine((c) => !(c.bind && c.sasl), { message: 'bind and sasl exclude each other', path: ['sasl'] })
  .refine((c) => c.sasl === undefined || (c.tls?.certFile !== undefined && c.tls.keyFile !== undefined), {
    message: 'sasl: EXTERNAL authenticates with the TLS client certificate: set tls.certFile and tls.keyFile',
    path: ['sasl'],
  })
  .refine((c) => (c.tls?.certFile === undefined) === (c.tls?.keyFile === undefined), {
    message: 'tls.certFile and tls.keyFile go together',
    path: ['tls'],
  });

export type LdapConfig = z.infer<typeof ldapSchema>;

export const DEFAULT_TIMEOUT_MS = 4000;
export const DEFAULT_POOL = 2;
export const DEFAULT_SIZE_LIMIT = 16;

/** What the lookups read, after the schema's defaults and the policy's overrides. */
export interface AttributeMap {
  readonly userClass: string;
  readonly groupClass: string;
  readonly userName: string;
  readonly groupName: string;
  readonly uidNumber: string;
  readonly gidNumber: string;
  readonly nfsv4Name?: string;
  readonly objectSid?: string;
  readonly sidSyntax: 'binary' | 'text';
  readonly primaryGroupId?: string;
  /** names compare case-insensitively (AD: sAMAccountName is case-insensitive and unique per domain) */
  readonly caseInsensitiveNames: boolean;
}

/**
 * Schema defaults. RFC 2307 §5.2/§5.3: posixAccount (uid, uidNumber) and posixGroup (cn,
 * gidNumber). rfc2307bis keeps the same classes and attributes (posixGroup becomes auxiliary, on a
 * groupOfNames whose members are DNs): for name ↔ id and SID ↔ id lookups the two read the same.
 * AD: user/group entries named by sAMAccountName, ids from the RFC 2307 attributes AD carries
 * since 2003 R2, objectSid as the packed binary SID (MS-DTYP 2.4.2.2).
 */
const DEFAULTS: Record<DirectorySchema, Omit<AttributeMap, 'sidSyntax' | 'caseInsensitiveNames'>> = {
  rfc2307: { userClass: 'posixAccount', groupClass: 'posixGroup', userName: 'uid', groupName: 'cn', uidNumber: 'uidNumber', gidNumber: 'gidNumber' },
  rfc2307bis: { userClass: 'posixAccount', groupClass: 'posixGroup', userName: 'uid', groupName: 'cn', uidNumber: 'uidNumber', gidNumber: 'gidNumber' },
  ad: {
    userClass: 'user',
    groupClass: 'group',
    userName: 'sAMAccountName',
    groupName: 'sAMAccountName',
    uidNumber: 'uidNumber',
    gidNumber: 'gidNumber',
    objectSid: 'objectSid',
    primaryGroupId: 'primaryGroupID',
  },
};

export function attributeMap(config: LdapConfig): AttributeMap {
  const base = DEFAULTS[config.schema];
  const o = config.attributes ?? {};
  const ad = config.schema === 'ad';
  return {
    userClass: o.userClass ?? base.userClass,
    groupClass: o.groupClass ?? base.groupClass,
    userName: o.userName ?? base.userName,
    groupName: o.groupName ?? base.groupName,
    uidNumber: o.uidNumber ?? base.uidNumber,
    gidNumber: o.gidNumber ?? base.gidNumber,
    nfsv4Name: o.nfsv4Name,
    objectSid: o.objectSid ?? base.objectSid,
    sidSyntax: o.sidSyntax ?? (ad ? 'binary' : 'text'),
    primaryGroupId: o.primaryGroupId ?? base.primaryGroupId,
    caseInsensitiveNames: ad,
  };
}

/** The URIs in failover order. */
export function urisOf(config: LdapConfig): string[] {
  return typeof config.uri === 'string' ? [config.uri] : [...config.uri];
}
