/**
 * Which task asked for a key: its pid is printed only in /proc/keys, on the authorisation key's
 * line (`<auth serial> … .request_ key:<hex target> pid:<N> ci:<len>`, request_key_auth.c;
 * docs/PROTOCOLS.md §1). nsidmap-upcall passes the auth key's serial and the target's instead of
 * reading that line itself, and the daemon reads it only when something needs the requester: a log
 * line or audit event about the answer (buildLazyContext in src/ns/context.ts). Reading /proc/keys
 * is not cheap — the kernel formats every key the reader may view up to the line, checking
 * possession of each: ~50 µs with a handful of keys and ~2.7 µs more per key on the machine this was
 * measured on, and a busy NFS client holds hundreds to thousands of id_resolver keys.
 *
 * Only the line whose serial column is the auth key counts, as in the helper: any local user can
 * put a newline and a fake line into a key description of their own, but cannot know the serial
 * of an auth key made for someone else's request in advance (a requester of their own key can:
 * two lines with the serial name nobody). The daemon sees the line when it may
 * view the auth key, which its owner may: root, for every id_resolver and cifs.idmap upcall (the
 * kernel asks with its own root credentials). The pid is informational; undefined when not found.
 */
import { closeSync, openSync, readSync } from 'node:fs';

/** Shared read buffer (reads are synchronous); grows for a very long line. */
let buf = Buffer.allocUnsafe(16384);

const MAX_PID = 0x7fffffff;

/** The requester's pid from /proc/keys (`path` for tests); undefined when no line names it. */
export function requesterPidFromProcKeys(authKey: number, keySerial: number, path = '/proc/keys'): number | undefined {
  const want = `${(authKey >>> 0).toString(16).padStart(8, '0')} `;
  const key = ` key:${(keySerial >>> 0).toString(16)} pid:`;
  const fd = openSync(path, 'r');
  let seen = false;
  let found: number | undefined;
  try {
    let have = 0;
    for (;;) {
      if (have === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, have);
        buf = bigger;
      }
      const n = readSync(fd, buf, have, buf.length - have, null);
      have += n;
      let start = 0;
      for (;;) {
        let nl = buf.subarray(0, have).indexOf(10, start);
        if (nl < 0) {
          if (n > 0 || start === have) break;
          nl = have; // the last line, without a newline
        }
        // Compare the serial column before decoding the line: most lines are someone else's.
        if (nl - start > want.length && buf.toString('latin1', start, start + want.length) === want) {
          // a second line with the auth key's serial is someone's forgery: then nobody is named
          if (seen) return undefined;
          seen = true;
          found = pidOf(buf.toString('latin1', start, nl), key);
        }
        start = nl + 1;
        if (start >= have) break;
      }
      if (n === 0) return found;
      buf.copy(buf, 0, start, have);
      have -= Math.min(start, have);
    }
  } finally {
    closeSync(fd);
  }
}

/** The pid on the auth key's line. */
function pidOf(line: string, key: string): number | undefined {
  const at = line.indexOf(key);
  if (at < 0) return undefined;
  const m = /^([1-9][0-9]{0,9}) /.exec(line.slice(at + key.length));
  const pid = m ? Number(m[1]) : 0;
  return pid > 0 && pid <= MAX_PID ? pid : undefined;
}
