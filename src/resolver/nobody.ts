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
  /** false when a source faulted and a fallback was used: not to be kept, ask again next time */
  readonly settled: boolean;
}

/** What firstId/firstName return when a source faulted (the chain stops there, as in the resolver). */
const FAULT = Symbol('fault');

async function firstId(sources: readonly Source[], entity: Entity, name: string): Promise<number | typeof FAULT | undefined> {
  for (const s of sources) {
    try {
      const e = await s.byName?.(entity, name);
      if (e) return e.id;
    } catch {
      return FAULT;
    }
  }
  return undefined;
}

async function firstName(sources: readonly Source[], entity: Entity, id: number): Promise<string | typeof FAULT | undefined> {
  for (const s of sources) {
    try {
      const e = await s.byId?.(entity, id);
      if (e?.name) return e.name;
    } catch {
      return FAULT;
    }
  }
  return undefined;
}

async function complete(sources: readonly Source[], entity: Entity, v: number | string, fallbackName: string): Promise<{ id: number; name: string; settled: boolean }> {
  if (typeof v === 'number') {
    const name = await firstName(sources, entity, v);
    return { id: v, name: name === FAULT ? fallbackName : name ?? fallbackName, settled: name !== FAULT };
  }
  const id = await firstId(sources, entity, v);
  return { id: id === FAULT ? OVERFLOW_ID : id ?? OVERFLOW_ID, name: v, settled: id !== FAULT };
}

export async function nobodyOf(scope: CompiledScope): Promise<NobodyValues> {
  const u = await complete(scope.sources, 'user', scope.nobodyUser, 'nobody');
  const g = await complete(scope.sources, 'group', scope.nobodyGroup, 'nogroup');
  return { uid: u.id, gid: g.id, userName: `${u.name}@${scope.domain}`, groupName: `${g.name}@${scope.domain}`, sid: NOBODY_SID, settled: u.settled && g.settled };
}
