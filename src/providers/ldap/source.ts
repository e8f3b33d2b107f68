/**
 * `ldap` source: users and groups from a directory — RFC 2307 (posixAccount/posixGroup),
 * rfc2307bis, or Active Directory (sAMAccountName, uidNumber/gidNumber, binary objectSid) — over a
 * pool of persistent connections (pool.ts).
 *
 * One lookup is one search with an equality filter built from escaped values (filter.ts). What a
 * search returns is checked again here: an entry answers only when its name matches exactly (the
 * directory's matching rule may be case-insensitive: RFC 2307's uid uses caseIgnoreMatch) and its
 * id is a valid id. When several entries answer:
 * - name → id and SID → id: one id, or a fault when they disagree (which id is right cannot be
 *   known, and a wrong id is worse than none; the resolver serves from cache meanwhile);
 * - id → name and id → SID: the smallest name (SID) — the same choice on every host and replica,
 *   as nss_files takes the first line (several names sharing one id is ordinary: aliases).
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import type { Client, Entry } from 'ldapts';
import { NsidmapError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { parseSid } from '../../sid.js';
import { isValidId, type Entity, type Sid } from '../../types.js';
import type { SourceKind } from '../kind.js';
import { SourceFault, type NameHint, type Source, type SourceEntry, type SourceEnv, type SourceHealth, type SourceMetrics } from '../source.js';
import { attributeMap, DEFAULT_POOL, DEFAULT_SIZE_LIMIT, DEFAULT_TIMEOUT_MS, ldapSchema, urisOf, type AttributeMap, type LdapConfig } from './config.js';
import { idOf, localPart, rdnValue, sidBytes, sidOf, smallest, stringValues } from './entry.js';
import { and, eq, isWellFormed, not, or, parseFilter, present, startsWith } from './filter.js';
import { LdapPool, type Auth, type PoolOptions, type PoolStats, type TlsSettings } from './pool.js';

/** Longest name searched for: NFSv4 names are bounded (IDMAP_NAMESZ 128 in the kernel), and so is a search. */
const NAME_MAX = 256;

interface Found {
  readonly dn: string;
  readonly id: number;
  readonly names: readonly string[];
  readonly sid?: Sid;
}

/** What one entity's lookups read. */
interface EntityMap {
  readonly base: string;
  readonly objectClass: string;
  readonly name: string;
  readonly id: string;
  readonly attributes: string[];
}

export class LdapSource implements Source {
  readonly kind = 'ldap';
  /** present only when the directory carries SIDs (ad, or a configured SID attribute) */
  readonly bySid?: (entity: Entity, sid: Sid) => Promise<SourceEntry | undefined>;
  readonly sidOf?: (entity: Entity, id: number) => Promise<SourceEntry | undefined>;
  private pool: LdapPool | undefined;
  private readonly attrs: AttributeMap;
  private readonly maps: Record<Entity, EntityMap>;
  private readonly sizeLimit: number;
  private readonly scope: 'sub' | 'one';

  constructor(
    readonly name: string,
    private readonly config: LdapConfig,
    private readonly env: SourceEnv,
    /** tests: pool settings the policy does not expose (queue length, back-off) */
    private readonly poolTuning: Partial<Pick<PoolOptions, 'pipeline' | 'queue' | 'backoffMs'>> = {},
  ) {
    this.attrs = attributeMap(config);
    this.sizeLimit = config.sizeLimit ?? DEFAULT_SIZE_LIMIT;
    this.scope = config.scope ?? 'sub';
    this.maps = { user: this.entityMap('user'), group: this.entityMap('group') };
    if (this.attrs.objectSid !== undefined) {
      this.bySid = (entity, sid) => this.lookupSid(entity, sid);
      this.sidOf = (entity, id) => this.lookupSidOf(entity, id);
    }
  }

  private entityMap(entity: Entity): EntityMap {
    const a = this.attrs;
    const user = entity === 'user';
    const name = user ? a.userName : a.groupName;
    const id = user ? a.uidNumber : a.gidNumber;
    const attributes = [name, id];
    if (a.nfsv4Name) attributes.push(a.nfsv4Name);
    if (a.objectSid) attributes.push(a.objectSid);
    return {
      base: (user ? this.config.userBase : this.config.groupBase) ?? this.config.base,
      objectClass: user ? a.userClass : a.groupClass,
      name,
      id,
      attributes,
    };
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    const [auth, tls] = await Promise.all([this.readAuth(), this.readTls()]);
    const log = this.env.log;
    if (auth.kind === 'simple' && !tls?.startTls && urisOf(this.config).some((u) => /^ldap:/i.test(u))) {
      log.warn('ldap.cleartext.bind', { detail: 'simple bind over ldap:// without StartTLS sends the password in clear' });
    }
    if (tls && !tls.verify) log.warn('ldap.tls.unverified', { detail: 'tls.verify is false: any server certificate is accepted' });
    this.pool = new LdapPool({
      source: this.name,
      uris: urisOf(this.config),
      size: this.config.pool ?? DEFAULT_POOL,
      timeoutMs: this.config.timeout ?? DEFAULT_TIMEOUT_MS,
      tls,
      auth,
      log,
      ...this.poolTuning,
    });
    await this.pool.start();
  }

  async stop(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.stop();
  }

  health(): SourceHealth {
    return this.pool?.health() ?? { state: 'down', detail: 'not started' };
  }

  /** pool figures (in flight, queued, refused, timeouts) */
  stats(): PoolStats | undefined {
    return this.pool?.stats();
  }

  metrics(): SourceMetrics {
    const s = this.pool?.stats();
    if (!s) return {};
    return { connections: s.connections, connectionsMax: s.size, inFlight: s.inFlight, queued: s.queued, failovers: s.failovers, rejected: s.saturated, timeouts: s.timeouts };
  }

  private path(p: string): string {
    return isAbsolute(p) ? p : resolve(this.env.baseDir, p);
  }

  private async readFileOrThrow(what: string, p: string): Promise<Buffer> {
    try {
      return await readFile(this.path(p));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      throw new NsidmapError('NSIDMAP_EPOLICY_READ', `providers.${this.name}: ${what} ${this.path(p)} cannot be read (${code})`);
    }
  }

  private async readAuth(): Promise<Auth> {
    const { bind, sasl } = this.config;
    if (sasl === 'EXTERNAL') return { kind: 'external' };
    if (!bind) return { kind: 'anonymous' };
    // one trailing newline is the file's line end (`echo secret > file`), not part of the password
    const password = (await this.readFileOrThrow('bind.passwordFile', bind.passwordFile)).toString('utf8').replace(/\r?\n$/, '');
    // RFC 4513 §5.1.2: a DN with an empty password is an unauthenticated bind, which servers may
    // treat as anonymous — a silent downgrade; refuse it
    if (password === '') throw new NsidmapError('NSIDMAP_EPOLICY_READ', `providers.${this.name}: bind.passwordFile ${this.path(bind.passwordFile)} is empty`);
    return { kind: 'simple', dn: bind.dn, password };
  }

  private async readTls(): Promise<TlsSettings | undefined> {
    const t = this.config.tls;
    if (!t) return undefined;
    const read = (what: string, p: string | undefined) => (p === undefined ? undefined : this.readFileOrThrow(`tls.${what}`, p));
    const [ca, cert, key] = await Promise.all([read('caFile', t.caFile), read('certFile', t.certFile), read('keyFile', t.keyFile)]);
    return { startTls: t.startTls ?? false, ca, cert, key, verify: t.verify ?? true };
  }

  // ---- the four lookups ----

  async byName(entity: Entity, name: string, hint?: NameHint): Promise<SourceEntry | undefined> {
    if (name === '' || name.length > NAME_MAX || !isWellFormed(name)) return undefined;
    const m = this.maps[entity];
    const found = (await this.search(m, this.nameFilter(m, name, hint?.domain))).filter((f) => f.names.some((n) => this.sameName(n, name)));
    const one = this.single(found, `${entity} name ${JSON.stringify(name)}`);
    if (!one) return undefined;
    return { id: one.id, name: one.names.find((n) => this.sameName(n, name))! };
  }

  async byId(entity: Entity, id: number): Promise<SourceEntry | undefined> {
    if (!isValidId(id)) return undefined;
    const m = this.maps[entity];
    const found = (await this.search(m, and(eq('objectClass', m.objectClass), eq(m.id, String(id))))).filter((f) => f.id === id);
    const name = smallest(found.map((f) => f.names[0]).filter((n): n is string => n !== undefined));
    return name === undefined ? undefined : { id, name };
  }

  private async lookupSid(entity: Entity, sid: Sid): Promise<SourceEntry | undefined> {
    const canon = parseSid(sid);
    const attr = this.attrs.objectSid!;
    const value = canon === undefined ? undefined : this.attrs.sidSyntax === 'binary' ? sidBytes(canon) : canon;
    if (canon === undefined || value === undefined) return undefined;
    const m = this.maps[entity];
    const found = (await this.search(m, and(eq('objectClass', m.objectClass), eq(attr, value)))).filter((f) => f.sid === canon);
    const one = this.single(found, `${entity} SID ${canon}`);
    return one ? { id: one.id, sid: canon } : undefined;
  }

  private async lookupSidOf(entity: Entity, id: number): Promise<SourceEntry | undefined> {
    if (!isValidId(id)) return undefined;
    const m = this.maps[entity];
    const filter = and(eq('objectClass', m.objectClass), eq(m.id, String(id)), present(this.attrs.objectSid!));
    const found = (await this.search(m, filter)).filter((f) => f.id === id);
    const sid = smallest(found.map((f) => f.sid).filter((s): s is Sid => s !== undefined));
    return sid === undefined ? undefined : { id, sid: sid as Sid };
  }

  /**
   * AD: the SID of a user's primary group — the user's domain SID with the RID in primaryGroupID
   * (MS-ADTS 3.1.1.1.4: the primary group is not listed in the group's `member`) — and that
   * group's gid when the directory has one. Not part of the Source contract: for callers that need
   * a user's groups.
   */
  async primaryGroup(userName: string): Promise<{ sid: Sid; gid?: number } | undefined> {
    const pgAttr = this.attrs.primaryGroupId;
    const sidAttr = this.attrs.objectSid;
    if (pgAttr === undefined || sidAttr === undefined || userName === '' || !isWellFormed(userName)) return undefined;
    const m = this.maps.user;
    const entries = await this.run(m, this.nameFilter(m, userName), [...m.attributes, pgAttr]);
    for (const e of entries) {
      const userSid = sidOf(e, sidAttr, this.attrs.sidSyntax);
      const rid = idOf(e, pgAttr);
      const names = this.namesOf(e, m);
      if (userSid === undefined || rid === undefined || !names.some((n) => this.sameName(n, userName))) continue;
      const sid = parseSid(`${userSid.slice(0, userSid.lastIndexOf('-'))}-${rid}`);
      if (sid === undefined) continue;
      const group = await this.lookupSid('group', sid);
      return group ? { sid, gid: group.id } : { sid };
    }
    return undefined;
  }

  // ---- filters and searches ----

  /**
   * Entries named `name`. With an NFSv4 name attribute (umich_ldap's NFSv4Name, `name@domain`),
   * an entry that has one is found by it only, and one without it by its name attribute — so
   * that name → id → name goes through the same attribute both ways.
   */
  private nameFilter(m: EntityMap, name: string, domain?: string): string {
    const v4 = this.attrs.nfsv4Name;
    const byName = eq(m.name, name);
    // With the domain known, equality on the whole `name@domain`: umich's NFSv4Name has an
    // EQUALITY rule (caseIgnoreIA5Match) and no SUBSTR rule, so a substring filter on it is
    // Undefined and matches nothing on a directory loaded with the real schema.
    const v4Match = v4 === undefined ? undefined : domain !== undefined ? eq(v4, `${name}@${domain}`) : startsWith(v4, `${name}@`);
    const match = v4 === undefined || v4Match === undefined ? byName : or(v4Match, and(not(present(v4)), byName));
    return and(eq('objectClass', m.objectClass), match);
  }

  private sameName(a: string, b: string): boolean {
    return this.attrs.caseInsensitiveNames ? a.toLowerCase() === b.toLowerCase() : a === b;
  }

  private async search(m: EntityMap, filter: string): Promise<Found[]> {
    const out: Found[] = [];
    for (const e of await this.run(m, filter, m.attributes)) {
      const id = idOf(e, m.id);
      if (id === undefined) continue; // no id here (an AD account without Unix attributes): not ours
      const sid = this.attrs.objectSid === undefined ? undefined : sidOf(e, this.attrs.objectSid, this.attrs.sidSyntax);
      out.push({ dn: e.dn, id, names: this.namesOf(e, m), sid });
    }
    return out;
  }

  /**
   * An entry's names, canonical first: its NFSv4 names' local parts when it has that attribute;
   * else its name attribute with the RDN's value first (RFC 2307 names entries `uid=…`), the rest
   * smallest first.
   */
  private namesOf(e: Entry, m: EntityMap): string[] {
    const v4 = this.attrs.nfsv4Name;
    if (v4 !== undefined) {
      const wire = stringValues(e, v4);
      if (wire.length > 0) return wire.map(localPart).filter((n): n is string => n !== undefined).sort();
    }
    const names = stringValues(e, m.name).filter((n) => n !== '').sort();
    const rdn = rdnValue(e.dn, m.name);
    const first = rdn === undefined ? undefined : names.find((n) => n === rdn) ?? names.find((n) => this.sameName(n, rdn));
    return first === undefined ? names : [first, ...names.filter((n) => n !== first)];
  }

  /** one id among entries, undefined for none, a fault when they disagree */
  private single(found: readonly Found[], what: string): Found | undefined {
    const first = found[0];
    if (!first) return undefined;
    const other = found.find((f) => f.id !== first.id);
    if (other) {
      throw new SourceFault(this.name, `${what} is ambiguous: ${first.dn} has id ${first.id}, ${other.dn} has id ${other.id}; fix the directory`);
    }
    return first;
  }

  private async run(m: EntityMap, filter: string, attributes: string[]): Promise<Entry[]> {
    const pool = this.pool;
    if (!pool) throw new SourceFault(this.name, 'not started');
    const log = this.env.log;
    if (log.on('debug')) log.debug('ldap.search', { base: m.base, filter });
    const parsed = parseFilter(filter);
    const explicitBufferAttributes = this.attrs.sidSyntax === 'binary' && this.attrs.objectSid ? [this.attrs.objectSid] : [];
    const search = (c: Client) =>
      c.search(m.base, { scope: this.scope, filter: parsed, attributes, sizeLimit: this.sizeLimit, explicitBufferAttributes, derefAliases: 'never' });
    return (await pool.run(search)).searchEntries;
  }
}

export const ldapKind: SourceKind<LdapConfig> = {
  kind: 'ldap',
  schema: ldapSchema,
  summary: 'users, groups and SIDs from an LDAP directory (RFC 2307, rfc2307bis, Active Directory), pooled, with failover',
  create: (name, config, env) => new LdapSource(name, config, env),
};
