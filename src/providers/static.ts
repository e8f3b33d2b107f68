/**
 * `static` source: tables written in the policy, answered both ways (name ↔ id, SID ↔ id), like
 * libnfsidmap's `static` method but with SIDs too. The tables should be injective; when they are
 * not, the first entry in the object's order wins for the reverse direction (id → name, id → SID)
 * and `idmapctl policy check` reports it through `staticConflicts`. (JavaScript orders integer-like
 * keys first, so "first" is only well defined for a table with no duplicate — hence the check.)
 */
import { z } from 'zod';
import { parseSid } from '../sid.js';
import { ID_MAX, isValidId, type Entity, type Sid } from '../types.js';
import type { SourceKind } from './kind.js';
import type { Source, SourceEntry } from './source.js';

const idSchema = z.number().int().min(0).max(ID_MAX);
const nameTable = z.record(z.string().min(1), idSchema);
const sidKey = z.string().refine((k) => parseSid(k) !== undefined, { message: 'not a SID (S-1-<authority>-<sub>…)' });
const sidTable = z.record(sidKey, idSchema);

export const staticSchema = z.strictObject({
  kind: z.literal('static'),
  users: nameTable.optional(),
  groups: nameTable.optional(),
  sids: z.strictObject({ users: sidTable.optional(), groups: sidTable.optional() }).optional(),
});
export type StaticConfig = z.infer<typeof staticSchema>;

/** One direction-pair table: key → entry and id → first entry. */
interface Tables {
  readonly byKey: ReadonlyMap<string, SourceEntry>;
  readonly byId: ReadonlyMap<number, SourceEntry>;
}

function nameTables(table: Record<string, number> | undefined): Tables {
  const byKey = new Map<string, SourceEntry>();
  const byId = new Map<number, SourceEntry>();
  for (const [name, id] of Object.entries(table ?? {})) {
    const e: SourceEntry = Object.freeze({ id, name });
    byKey.set(name, e);
    if (!byId.has(id)) byId.set(id, e);
  }
  return { byKey, byId };
}

/** SID keys are stored canonical (`s-1-…`, hex authorities) so lookups by canonical Sid match. */
function sidTables(table: Record<string, number> | undefined): Tables {
  const byKey = new Map<string, SourceEntry>();
  const byId = new Map<number, SourceEntry>();
  for (const [text, id] of Object.entries(table ?? {})) {
    const sid = parseSid(text);
    if (sid === undefined || byKey.has(sid)) continue; // schema rejected it / duplicate: first wins
    const e: SourceEntry = Object.freeze({ id, sid });
    byKey.set(sid, e);
    if (!byId.has(id)) byId.set(id, e);
  }
  return { byKey, byId };
}

/** Describe entries that make a table non-injective (for `idmapctl policy check`). */
export function staticConflicts(config: StaticConfig): string[] {
  const out: string[] = [];
  for (const entity of ['users', 'groups'] as const) {
    out.push(...sameId(config[entity], `${entity}: names`));
    out.push(...sameId(config.sids?.[entity], `sids.${entity}: SIDs`));
    out.push(...sameSid(config.sids?.[entity], `sids.${entity}`));
  }
  return out;
}

function sameId(table: Record<string, number> | undefined, what: string): string[] {
  const keysById = new Map<number, string[]>();
  for (const [key, id] of Object.entries(table ?? {})) {
    const keys = keysById.get(id);
    if (keys) keys.push(key);
    else keysById.set(id, [key]);
  }
  const out: string[] = [];
  for (const [id, keys] of keysById) {
    if (keys.length > 1) out.push(`${what} ${keys.join(', ')} all map to id ${id}; id ${id} maps back to ${keys[0]} only`);
  }
  return out;
}

/** Two spellings of one SID (`s-1-…` and `S-1-…`, hex and decimal authority). */
function sameSid(table: Record<string, number> | undefined, what: string): string[] {
  const seen = new Map<string, string>();
  const out: string[] = [];
  for (const text of Object.keys(table ?? {})) {
    const sid = parseSid(text);
    if (sid === undefined) continue;
    const first = seen.get(sid);
    if (first === undefined) seen.set(sid, text);
    else out.push(`${what}: ${first} and ${text} are the same SID ${sid}; only the first is used`);
  }
  return out;
}

class StaticSource implements Source {
  readonly kind = 'static';
  private readonly names: Record<Entity, Tables>;
  private readonly sids: Record<Entity, Tables>;

  constructor(
    readonly name: string,
    config: StaticConfig,
  ) {
    this.names = { user: nameTables(config.users), group: nameTables(config.groups) };
    this.sids = { user: sidTables(config.sids?.users), group: sidTables(config.sids?.groups) };
  }

  byName(entity: Entity, name: string): SourceEntry | undefined {
    return this.names[entity].byKey.get(name);
  }

  byId(entity: Entity, id: number): SourceEntry | undefined {
    return isValidId(id) ? this.names[entity].byId.get(id) : undefined;
  }

  bySid(entity: Entity, sid: Sid): SourceEntry | undefined {
    return this.sids[entity].byKey.get(sid);
  }

  sidOf(entity: Entity, id: number): SourceEntry | undefined {
    return isValidId(id) ? this.sids[entity].byId.get(id) : undefined;
  }
}

export const staticKind: SourceKind<StaticConfig> = {
  kind: 'static',
  schema: staticSchema,
  summary: 'name ↔ id and SID ↔ id tables written in the policy',
  create: (name, config) => new StaticSource(name, config),
};
