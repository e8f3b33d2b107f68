/**
 * Requests as people type them: `idmapctl query uid alice@example.com`, policy test cases,
 * admin socket messages. The eight lookup kinds, plus the keyring description prefixes as
 * aliases (id_resolver: uid gid user group; cifs.idmap: os gs oi gi).
 */
import { NsidmapError } from '../errors.js';
import { parseSid } from '../sid.js';
import { LOOKUP_KINDS, isValidId, type LookupKind, type Request } from '../types.js';

export const KIND_ALIASES: Readonly<Record<string, LookupKind>> = {
  uid: 'name-to-uid',
  gid: 'name-to-gid',
  user: 'uid-to-name',
  group: 'gid-to-name',
  os: 'sid-to-uid',
  gs: 'sid-to-gid',
  oi: 'uid-to-sid',
  gi: 'gid-to-sid',
};

export function lookupKindOf(word: string): LookupKind | undefined {
  if ((LOOKUP_KINDS as readonly string[]).includes(word)) return word as LookupKind;
  return KIND_ALIASES[word];
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;

/** Build a Request or throw NSIDMAP_EREQUEST saying what is wrong. */
export function parseRequest(kindWord: string, value: string): Request {
  const kind = lookupKindOf(kindWord);
  if (!kind) {
    throw new NsidmapError('NSIDMAP_EREQUEST', `unknown lookup "${kindWord}": use one of ${[...LOOKUP_KINDS, ...Object.keys(KIND_ALIASES)].join(', ')}`);
  }
  switch (kind) {
    case 'name-to-uid':
    case 'name-to-gid':
      if (value.length === 0 || value.length > 1024) throw new NsidmapError('NSIDMAP_EREQUEST', `${kind}: name must be 1..1024 characters`);
      return { kind, name: value };
    case 'sid-to-uid':
    case 'sid-to-gid': {
      const sid = parseSid(value);
      if (!sid) throw new NsidmapError('NSIDMAP_EREQUEST', `${kind}: "${value}" is not a SID (S-1-5-21-…)`);
      return { kind, sid };
    }
    case 'uid-to-name':
    case 'gid-to-name':
    case 'uid-to-sid':
    case 'gid-to-sid': {
      const id = DECIMAL.test(value) ? Number(value) : NaN;
      if (!isValidId(id)) throw new NsidmapError('NSIDMAP_EREQUEST', `${kind}: "${value}" is not an id (0..4294967294)`);
      return { kind, id };
    }
  }
}

/** The request's query value as text (for output). */
export function requestValue(req: Request): string {
  return 'name' in req ? req.name : 'sid' in req ? req.sid : String(req.id);
}
