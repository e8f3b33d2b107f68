/**
 * The text forms the kernel prints about keys: KEYCTL_DESCRIBE and /proc/keys. Pure parsers
 * (docs/PROTOCOLS.md §1); keyctl.ts does the reading.
 *
 *   KEYCTL_DESCRIBE   `type;uid;gid;perm;description`     security/keys/keyctl.c
 *                     perm is %08x; the description is last and may itself contain `;`.
 *   /proc/keys        `%08x %c%c%c%c%c%c%c %5d %4s %08x %5d %5d %-9.9s <type-specific text>`
 *                     security/keys/proc.c; the type is cut to 9 characters
 *                     (`.request_key_auth` shows as `.request_`), uid/gid print with %d.
 */

export interface KeyDescription {
  readonly type: string;
  readonly uid: number;
  readonly gid: number;
  readonly perm: number;
  readonly description: string;
}

export interface ProcKeysLine {
  readonly serial: number;
  /** 7 flag characters, `-` when unset: I R D Q U N i (instantiated … invalidated) */
  readonly flags: string;
  readonly usage: number;
  /** `perm`, `expd`, or the time left: `59s`, `9m`, `2h`, `6d`, `3w` */
  readonly expiry: string;
  readonly perm: number;
  readonly uid: number;
  readonly gid: number;
  /** the key type as shown: at most 9 characters */
  readonly type: string;
  /** what the type's describe method printed: the description and maybe `: <size>` */
  readonly summary: string;
}

const UINT = /^(0|[1-9][0-9]{0,9})$/;
const HEX8 = /^[0-9a-f]{8}$/;

function parseUint32(s: string | undefined): number | undefined {
  if (s === undefined || !UINT.test(s)) return undefined;
  const n = Number(s);
  return n <= 0xffff_ffff ? n : undefined;
}

/** Parse KEYCTL_DESCRIBE output (with or without its trailing NUL); undefined when malformed. */
export function parseDescribe(text: string): KeyDescription | undefined {
  const s = text.endsWith('\0') ? text.slice(0, -1) : text;
  const fields = s.split(';');
  if (fields.length < 5) return undefined;
  const [type, uidText, gidText, permText] = fields;
  const uid = parseUint32(uidText);
  const gid = parseUint32(gidText);
  if (!type || uid === undefined || gid === undefined || !HEX8.test(permText ?? '')) return undefined;
  // Only the first four `;` delimit: the description keeps any of its own.
  return { type, uid, gid, perm: parseInt(permText!, 16), description: fields.slice(4).join(';') };
}

/**
 * One /proc/keys line. uid and gid are printed with %d, so ids above 2^31 show negative: they
 * are turned back into u32. The type column is exactly 9 characters, padded with blanks.
 */
const PROC_KEYS_LINE =
  /^([0-9a-f]{8}) ([IRDQUNi-]{7}) +(-?\d+) +(\S+) ([0-9a-f]{8}) +(-?\d+) +(-?\d+) (.{9}) (.*)$/;

export function parseProcKeysLine(line: string): ProcKeysLine | undefined {
  const m = PROC_KEYS_LINE.exec(line);
  if (!m) return undefined;
  const [, serial, flags, usage, expiry, perm, uid, gid, type, summary] = m;
  return {
    serial: parseInt(serial!, 16),
    flags: flags!,
    usage: Number(usage),
    expiry: expiry!,
    perm: parseInt(perm!, 16),
    uid: Number(uid) >>> 0,
    gid: Number(gid) >>> 0,
    type: type!.trimEnd(),
    summary: summary!,
  };
}

/** `.request_key_auth` as /proc/keys prints it (cut to 9 characters). */
const AUTH_KEY_TYPE = '.request_';
/** The auth key's text: its description is the target serial in unpadded hex (request_key_auth.c). */
const AUTH_SUMMARY = /^key:([0-9a-f]{1,8}) pid:(\d+) ci:\d+/;

/**
 * The pid of the task whose request_key() is being served for `targetSerial`, read from the
 * authorisation key's /proc/keys line (KEYCTL_DESCRIBE does not show it). The pid is in the init
 * pid namespace and only informational: the task may be gone. Undefined when no line matches.
 */
export function findRequesterPid(procKeysText: string, targetSerial: number): number | undefined {
  for (const line of procKeysText.split('\n')) {
    if (!line.includes(AUTH_KEY_TYPE)) continue;
    const k = parseProcKeysLine(line);
    if (k?.type !== AUTH_KEY_TYPE) continue;
    const m = AUTH_SUMMARY.exec(k.summary);
    // Compare numbers: the hex is unpadded here but %08x in the serial column.
    if (m && parseInt(m[1]!, 16) === targetSerial) return Number(m[2]);
  }
  return undefined;
}
