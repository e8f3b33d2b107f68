/**
 * /proc/<pid>/uid_map and gid_map: parse, and translate ids through them. Pure, no I/O.
 *
 * Each line is `inside outside count`: ids [inside, inside+count) of the namespace are ids
 * [outside, outside+count) of the parent namespace, which for a reader in the init user namespace
 * (the daemon) means host ids. The kernel prints each field as `%10u` (kernel/user_namespace.c,
 * uid_m_show), so fields are space-padded.
 */
import { NsidmapError } from '../errors.js';
import { isValidId, type IdMapRange } from '../types.js';

/** include/linux/user_namespace.h: UID_GID_MAP_MAX_EXTENTS. */
export const MAX_EXTENTS = 340;
/**
 * map_write checks `first + count <= first` in u32 arithmetic (kernel/user_namespace.c), so a
 * range's exclusive end is at most 0xffffffff: (u32)-1 is never mapped, on either side.
 */
const RANGE_END_MAX = 0xffffffff;
/** The initial user namespace's map: every id but (u32)-1 maps to itself. */
const IDENTITY_COUNT = 0xffffffff;

/** A uid_map/gid_map text that the kernel could not have written. `line` is 1-based. */
export class IdMapParseError extends NsidmapError {
  readonly line: number;
  constructor(line: number, reason: string) {
    super('NSIDMAP_ENS', `id map line ${line}: ${reason}`);
    this.name = 'IdMapParseError';
    this.line = line;
  }
}

const FIELDS = /^\s*(\d{1,10})\s+(\d{1,10})\s+(\d{1,10})\s*$/;

function parseLine(text: string, line: number): IdMapRange {
  const m = FIELDS.exec(text);
  if (!m) throw new IdMapParseError(line, `expected "inside outside count", got ${JSON.stringify(text)}`);
  const [inside, outside, count] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (count < 1) throw new IdMapParseError(line, 'count must be at least 1');
  if (inside + count > RANGE_END_MAX || outside + count > RANGE_END_MAX) {
    throw new IdMapParseError(line, 'range runs past 4294967294, the last valid id');
  }
  return { inside, outside, count };
}

function overlaps(a: number, b: number, count: number, countB: number): boolean {
  return a < b + countB && b < a + count;
}

/** The kernel refuses overlapping extents on either side (mappings_overlap); so do we, since an
 *  overlap would make a translation ambiguous. Pairwise is fine: at most 340 lines. */
function checkDisjoint(ranges: readonly IdMapRange[]): void {
  for (let i = 0; i < ranges.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = ranges[i]!;
      const b = ranges[j]!;
      if (overlaps(a.inside, b.inside, a.count, b.count) || overlaps(a.outside, b.outside, a.count, b.count)) {
        throw new IdMapParseError(i + 1, `overlaps line ${j + 1}`);
      }
    }
  }
}

/**
 * Parse uid_map/gid_map content. Empty text is a valid, empty map (a user namespace whose map has
 * not been written yet): nothing is mappable through it.
 */
export function parseIdMap(text: string): IdMapRange[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length > MAX_EXTENTS) {
    throw new IdMapParseError(MAX_EXTENTS + 1, `more than ${MAX_EXTENTS} lines`);
  }
  const ranges = lines.map((l, i) => parseLine(l, i + 1));
  checkDisjoint(ranges);
  return ranges;
}

/** The initial user namespace's map, `0 0 4294967295`. */
export function isIdentityMap(ranges: readonly IdMapRange[]): boolean {
  const only = ranges[0];
  return ranges.length === 1 && only !== undefined &&
    only.inside === 0 && only.outside === 0 && only.count === IDENTITY_COUNT;
}

/** Namespace id → host id; undefined when the map does not cover it (the kernel's overflow id). */
export function toHost(ranges: readonly IdMapRange[], id: number): number | undefined {
  if (!isValidId(id)) return undefined;
  for (const r of ranges) {
    if (id >= r.inside && id - r.inside < r.count) return r.outside + (id - r.inside);
  }
  return undefined;
}

/** Host id → namespace id; undefined when the namespace cannot express it. */
export function fromHost(ranges: readonly IdMapRange[], hostId: number): number | undefined {
  if (!isValidId(hostId)) return undefined;
  for (const r of ranges) {
    if (hostId >= r.outside && hostId - r.outside < r.count) return r.inside + (hostId - r.outside);
  }
  return undefined;
}
