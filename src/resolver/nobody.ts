/**
 * The nobody user and group of a scope: configured by name or id, completed through the scope's
 * own sources (as nfsidmap looks up Nobody-User), else the conventional 65534 / `nobody`.
 */
import type { Source } from '../providers/source.js';
import type { Entity, Sid } from '../types.js';
import type { CompiledScope } from './policy/compile.js';

export const OVERFLOW_ID = 65534;
/** S-1-0-0, the Null SID ("Nobody"), MS-DTYP 2.4.2.4 */
export const NOBODY_SID = 'S-1-0-0' as Sid;

export interface NobodyValues {
  readonly uid: number;
  readonly gid: number;
  /** qualified wire names */
  readonly userName: string;
  readonly groupName: string;
  readonly sid: Sid;
}

async function firstId(sources: readonly Source[], entity: Entity, name: string): Promise<number | undefined> {
  for (const s of sources) {
    try {
      const e = await s.byName?.(entity, name);
      if (e) return e.id;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

async function firstName(sources: readonly Source[], entity: Entity, id: number): Promise<string | undefined> {
  for (const s of sources) {
    try {
      const e = await s.byId?.(entity, id);
      if (e?.name) return e.name;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

async function complete(sources: readonly Source[], entity: Entity, v: number | string, fallbackName: string): Promise<{ id: number; name: string }> {
  if (typeof v === 'number') return { id: v, name: (await firstName(sources, entity, v)) ?? fallbackName };
  return { id: (await firstId(sources, entity, v)) ?? OVERFLOW_ID, name: v };
}

export async function nobodyOf(scope: CompiledScope): Promise<NobodyValues> {
  const u = await complete(scope.sources, 'user', scope.nobodyUser, 'nobody');
  const g = await complete(scope.sources, 'group', scope.nobodyGroup, 'nogroup');
  return { uid: u.id, gid: g.id, userName: `${u.name}@${scope.domain}`, groupName: `${g.name}@${scope.domain}`, sid: NOBODY_SID };
}
