/**
 * `sid` source: algorithmic SID ↔ id, with no state, so every host of a fleet maps a SID to the
 * same id without coordination (the invariant `idmapctl policy check` protects with
 * `sidRangeOverlaps`). It knows only SIDs: no byName/byId.
 *
 * - RID ranges: `<domain>-<rid>` with ridBase ≤ rid < ridBase+count ↔ id first + (rid − ridBase).
 *   Users and groups alike: Active Directory allocates RIDs from one pool per domain, so a RID
 *   names exactly one account or group.
 * - Unix SIDs (PROTOCOLS.md §5): `S-1-22-1-<uid>` / `S-1-22-2-<gid>` (Samba's "Unix User/Group")
 *   and `S-1-5-88-1-<uid>` / `S-1-5-88-2-<gid>` (NFS/Apple) — the kernel's cifs client decodes
 *   these itself with `idsfromsid`; we answer them the same way for consistency. A user SID
 *   asked as a group (or the reverse) is not found.
 * - Well-known SIDs: `S-1-0-0` (Nobody) and `S-1-5-7` (Anonymous) are not found here, and the
 *   resolver answers with the scope's nobody. Every other well-known SID (`S-1-5-18` SYSTEM,
 *   `S-1-5-32-544` Administrators, `S-1-1-0` Everyone, …) is mapped only if a `static` source's
 *   `sids` table names it: nothing here maps one algorithmically, and never to root — a range may
 *   not contain id 0, so no domain SID becomes root by arithmetic either. (A Unix SID carries the
 *   id itself: `S-1-22-1-0` is uid 0, and the scope's `root` rule decides about it.)
 */
import { z } from 'zod';
import { formatSid, parseSid, parseSidParts, SID_MAX_SUBAUTH, type SidParts } from '../sid.js';
import { ID_MAX, isValidId, type Entity, type Sid } from '../types.js';
import type { SourceKind } from './kind.js';
import type { Source, SourceEntry } from './source.js';

const RID_MAX = 0xffff_ffff;

/** A SID that a RID can be appended to (at most 14 sub-authorities). */
function isDomainSid(text: string): boolean {
  const parts = parseSidParts(text);
  return parts !== undefined && parts.subs.length < SID_MAX_SUBAUTH;
}

export const sidRangeSchema = z
  .strictObject({
    domain: z.string().refine(isDomainSid, { message: 'not a domain SID (S-1-5-21-…) with room for a RID' }),
    first: z.number().int().min(1, { message: 'a range may not contain id 0 (root)' }).max(ID_MAX),
    count: z.number().int().min(1).max(ID_MAX),
    ridBase: z.number().int().min(0).max(RID_MAX).optional(),
  })
  .superRefine((r, ctx) => {
    if (r.first + r.count - 1 > ID_MAX) {
      ctx.addIssue({ code: 'custom', path: ['count'], message: `ids ${r.first}+${r.count} pass ${ID_MAX}` });
    }
    if ((r.ridBase ?? 0) + r.count - 1 > RID_MAX) {
      ctx.addIssue({ code: 'custom', path: ['count'], message: `RIDs ${r.ridBase ?? 0}+${r.count} pass ${RID_MAX}` });
    }
  });

export const sidUnixSchema = z.strictObject({
  accept: z.boolean().optional(),
  produce: z.enum(['S-1-22', 'S-1-5-88', 'none']).optional(),
});

export const sidSchema = z.strictObject({
  kind: z.literal('sid'),
  ranges: z.array(sidRangeSchema).optional(),
  unix: sidUnixSchema.optional(),
});
export type SidConfig = z.infer<typeof sidSchema>;
export type SidRange = z.infer<typeof sidRangeSchema>;

/** A range with its domain canonical and its defaults applied. */
interface Range {
  readonly domain: Sid;
  readonly first: number;
  readonly count: number;
  readonly ridBase: number;
}

function normalize(r: SidRange): Range {
  return { domain: parseSid(r.domain) ?? (r.domain as Sid), first: r.first, count: r.count, ridBase: r.ridBase ?? 0 };
}

const NOT_MAPPED: ReadonlySet<string> = new Set(['S-1-0-0', 'S-1-5-7']);

type UnixFamily = 'S-1-22' | 'S-1-5-88';

/** The Unix SID families: authority and the sub-authorities before the `1` (user) / `2` (group). */
const UNIX_FAMILY: Record<UnixFamily, { authority: number; prefix: readonly number[] }> = {
  'S-1-22': { authority: 22, prefix: [] },
  'S-1-5-88': { authority: 5, prefix: [88] },
};
const ENTITY_SUB: Record<Entity, number> = { user: 1, group: 2 };

/** id of a Unix SID asked as `entity`; undefined when it is not one (or is the other entity). */
export function unixSidId(parts: SidParts, entity: Entity): number | undefined {
  if (parts.revision !== 1) return undefined;
  for (const fam of Object.values(UNIX_FAMILY)) {
    if (parts.authority !== fam.authority || parts.subs.length !== fam.prefix.length + 2) continue;
    if (!fam.prefix.every((v, i) => parts.subs[i] === v)) continue;
    const id = parts.subs[fam.prefix.length + 1]!;
    return parts.subs[fam.prefix.length] === ENTITY_SUB[entity] && isValidId(id) ? id : undefined;
  }
  return undefined;
}

export function unixSid(family: UnixFamily, entity: Entity, id: number): Sid {
  const fam = UNIX_FAMILY[family];
  return formatSid({ revision: 1, authority: fam.authority, subs: [...fam.prefix, ENTITY_SUB[entity], id] });
}

/** Findings for `idmapctl policy check`: overlapping id intervals, or overlapping RIDs of one domain. */
export function sidRangeOverlaps(ranges: readonly SidRange[]): string[] {
  const rs = ranges.map(normalize);
  const out: string[] = [];
  for (let i = 0; i < rs.length; i++) {
    for (let j = i + 1; j < rs.length; j++) {
      const a = rs[i]!;
      const b = rs[j]!;
      const ids = overlap(a.first, a.count, b.first, b.count);
      if (ids) out.push(`ranges[${i}] (${a.domain}) and ranges[${j}] (${b.domain}) share ids ${ids}`);
      const rids = a.domain === b.domain ? overlap(a.ridBase, a.count, b.ridBase, b.count) : undefined;
      if (rids) out.push(`ranges[${i}] and ranges[${j}] both map RIDs ${rids} of ${a.domain}`);
    }
  }
  return out;
}

/** `lo–hi` of the intersection of [a, a+n) and [b, b+m), or undefined when disjoint. */
function overlap(a: number, n: number, b: number, m: number): string | undefined {
  const lo = Math.max(a, b);
  const hi = Math.min(a + n, b + m) - 1;
  return lo <= hi ? `${lo}–${hi}` : undefined;
}

class SidSource implements Source {
  readonly kind = 'sid';
  private readonly ranges: readonly Range[];
  private readonly byDomain = new Map<string, Range[]>();
  private readonly accept: boolean;
  private readonly produce: UnixFamily | 'none';

  constructor(
    readonly name: string,
    config: SidConfig,
  ) {
    this.ranges = (config.ranges ?? []).map(normalize);
    for (const r of this.ranges) {
      const list = this.byDomain.get(r.domain);
      if (list) list.push(r);
      else this.byDomain.set(r.domain, [r]);
    }
    this.accept = config.unix?.accept ?? true;
    this.produce = config.unix?.produce ?? 'S-1-22';
  }

  bySid(entity: Entity, sid: Sid): SourceEntry | undefined {
    const parts = parseSidParts(sid);
    if (!parts) return undefined;
    const canonical = formatSid(parts);
    if (NOT_MAPPED.has(canonical)) return undefined;
    const id = (this.accept ? unixSidId(parts, entity) : undefined) ?? this.ridToId(parts);
    return id === undefined ? undefined : { id, sid: canonical };
  }

  private ridToId(parts: SidParts): number | undefined {
    if (parts.subs.length < 1) return undefined;
    const rid = parts.subs[parts.subs.length - 1]!;
    const domain = formatSid({ ...parts, subs: parts.subs.slice(0, -1) });
    for (const r of this.byDomain.get(domain) ?? []) {
      const offset = rid - r.ridBase;
      if (offset < 0 || offset >= r.count) continue;
      // the schema keeps id 0 out of ranges; this guards a range built without it (never root)
      const id = r.first + offset;
      return id === 0 ? undefined : id;
    }
    return undefined;
  }

  sidOf(entity: Entity, id: number): SourceEntry | undefined {
    if (!isValidId(id)) return undefined;
    for (const r of id === 0 ? [] : this.ranges) {
      const offset = id - r.first;
      if (offset >= 0 && offset < r.count) return { id, sid: `${r.domain}-${r.ridBase + offset}` as Sid };
    }
    return this.produce === 'none' ? undefined : { id, sid: unixSid(this.produce, entity, id) };
  }
}

export const sidKind: SourceKind<SidConfig> = {
  kind: 'sid',
  schema: sidSchema,
  summary: 'algorithmic SID ↔ id: RID ranges per domain SID, and Unix SIDs (S-1-22, S-1-5-88)',
  create: (name, config) => new SidSource(name, config),
};
