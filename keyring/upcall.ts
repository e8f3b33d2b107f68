/**
 * The in-process fallback of nsidmap-upcall (keyring/nsidmap-upcall.c), compiled to
 * dist/keyring/upcall.js. The C helper execs it, still holding the authority to instantiate the
 * key, when nsidmapd cannot be asked:
 *
 *   <node> dist/keyring/upcall.js [--policy FILE] nfs|cifs <key-serial>
 *
 * It does what the daemon's `upcall` op does (src/daemon/handler.ts) with its own Engine on the
 * same policy — the same decideUpcall, so slower but never different — then the same keyctl
 * sequence as the C helper. request-key discards stderr and ignores the exit status, so it logs
 * to syslog and exits 0; whatever happens, the key leaves it instantiated, negated or rejected.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import koffi from 'koffi';
import { logAnswer, strictUtf8 } from '../src/daemon/handler.js';
import { defaultPaths } from '../src/daemon/paths.js';
import { describeError, NsidmapError } from '../src/errors.js';
import { createLogger, type Logger } from '../src/log.js';
import { buildContext } from '../src/ns/context.js';
import { Engine } from '../src/resolver/engine.js';
import { cacheKeyrings, findKeyring, readProcKeys } from '../src/responders/keyring/cache-keyrings.js';
import * as keyctl from '../src/responders/keyring/keyctl.js';
import { decideUpcall, PROTO_KEY_TYPE, rejectUpcall, type UpcallAction } from '../src/responders/keyring/upcall.js';

/** Seconds a key stays negative when this program itself failed (ERROR_TIMEOUT in nsidmap-upcall.c). */
export const ERROR_TIMEOUT = 5;

type Proto = keyof typeof PROTO_KEY_TYPE;

// ---- syslog ---------------------------------------------------------------------------------

const LOG_PID = 0x01;
const LOG_DAEMON = 3 << 3;
/** openlog keeps the pointer, not a copy: this buffer must live as long as the process. */
const IDENT = Buffer.from('nsidmap-upcall\0');

/** A Logger whose lines go to syslog(3) at their journald priority (log.ts prefixes `<N>`). */
function syslogLogger(): Logger {
  let send: (priority: number, message: string) => void = () => {};
  try {
    const libc = koffi.load(null);
    const openlog = libc.func('void openlog(void *ident, int option, int facility)');
    const syslog = libc.func('void syslog(int priority, const char *format, ...)');
    openlog(IDENT, LOG_PID, LOG_DAEMON);
    // `%s`: the message is data, never a format
    send = (priority, message) => syslog(LOG_DAEMON | priority, '%s', 'str', message);
  } catch {
    // no syslog: nothing else to tell (stderr is /dev/null under request-key)
  }
  return createLogger({
    level: 'info',
    journal: true,
    write: (line) => {
      const m = /^<(\d)>/.exec(line);
      send(m ? Number(m[1]) : 6, m ? line.slice(m[0].length) : line);
    },
  });
}

// ---- the key --------------------------------------------------------------------------------

/** The description: the bytes after the 4th `;` of KEYCTL_DESCRIBE (it may contain `;` itself). */
function keyDescription(serial: number): Buffer {
  const raw = keyctl.describeBytes(serial);
  let at = 0;
  for (let i = 0; i < 4; i++) {
    const semi = raw.indexOf(0x3b, at);
    if (semi < 0) throw new NsidmapError('NSIDMAP_EKEYRING', `describe(${serial}): fewer than 5 fields`);
    at = semi + 1;
  }
  return raw.subarray(at);
}

/**
 * The requesting pid, from the auth key's /proc/keys line. Only the line of the auth key we hold
 * counts: a user can forge a whole `.request_ key:… pid:…` line inside a key description of their
 * own (descriptions may contain newlines), but not with our auth key's serial in front.
 */
function requesterPid(serial: number): number | undefined {
  let auth: number;
  try {
    auth = keyctl.getKeyringId(keyctl.KEY_SPEC.REQKEY_AUTH);
  } catch {
    return undefined;
  }
  const head = `${auth.toString(16).padStart(8, '0')} `;
  const ours = readFileSync('/proc/keys', 'utf8').split('\n').filter((l) => l.startsWith(head));
  // a second line starting with the auth key's serial is a forgery (a description with a newline)
  return ours.length === 1 ? keyctl.findRequesterPid(ours[0]!, serial) : undefined;
}

/**
 * The protocol's cache keyring, found by name in /proc/keys as nfsidmap does. Root-owned only: any
 * user can name a session keyring of their own `.id_resolver` (join_session_keyring), not root's.
 */
function findCacheKeyring(name: string): number | undefined {
  const rootOwned = new Map([...readProcKeys()].filter(([, k]) => k.uid === 0));
  return findKeyring(rootOwned, name);
}

const CACHE_FULL = new Set(['EDQUOT', 'ENFILE', 'ENOMEM']);

/**
 * Timeout first: it can be set only while the authority is held (security/keys/keyctl.c,
 * keyctl_set_timeout). A full keyring or quota: clear the protocol's cache keyring and try once
 * more, as nfsidmap does.
 */
function instantiate(serial: number, proto: Proto, payload: Buffer, timeout: number, log: Logger): void {
  keyctl.setTimeout(serial, timeout);
  try {
    keyctl.instantiate(serial, payload);
  } catch (e) {
    if (!(e instanceof keyctl.KeyctlError) || !CACHE_FULL.has(e.errnoName)) throw e;
    const name = cacheKeyrings()[proto].name;
    const ring = findCacheKeyring(name);
    log.warn('upcall.cache_full', { serial, error: e.errnoName, keyring: name, cleared: ring !== undefined });
    if (ring === undefined) throw e;
    keyctl.clear(ring);
    keyctl.instantiate(serial, payload);
  }
}

function apply(serial: number, proto: Proto, action: UpcallAction, log: Logger): void {
  switch (action.action) {
    case 'instantiate':
      return instantiate(serial, proto, action.payload, action.timeout, log);
    case 'negate':
      return keyctl.negate(serial, action.timeout);
    case 'reject':
      return keyctl.reject(serial, action.timeout, 'EKEYREJECTED');
  }
}

// ---- the decision ---------------------------------------------------------------------------

/** The policy: --policy (must exist), else the default file when present, else the embedded defaults. */
function policyFile(given: string | undefined): string | undefined {
  if (given !== undefined) return given;
  const file = defaultPaths().policy;
  return existsSync(file) ? file : undefined;
}

/** An engine on the policy's cache; in memory when that cannot be opened (an answer beats none). */
async function startEngine(file: string | undefined, log: Logger): Promise<Engine> {
  const opts = { log, defaultCachePath: defaultPaths().cache };
  const engine = Engine.create(file, opts);
  try {
    await engine.start();
    return engine;
  } catch (e) {
    await engine.stop().catch(() => undefined);
    log.warn('upcall.cache_unavailable', { cache: engine.cachePath, error: describeError(e).message, using: ':memory:' });
    const mem = Engine.create(file, { ...opts, cachePath: ':memory:' });
    await mem.start();
    return mem;
  }
}

/** As the daemon's upcall op (src/daemon/handler.ts), with a local engine. */
async function decide(serial: number, proto: Proto, policy: string | undefined, log: Logger): Promise<UpcallAction> {
  const keyType = PROTO_KEY_TYPE[proto];
  const bytes = keyDescription(serial);
  const iface = proto === 'nfs' ? 'keyring-nfs' : 'keyring-cifs';
  const ctx = buildContext(iface, requesterPid(serial), { fs: proto });
  const description = strictUtf8(bytes);
  if (description === undefined) return rejectUpcall(keyType, 'description is not valid UTF-8', ctx, log);
  const engine = await startEngine(policyFile(policy), log);
  try {
    const action = await decideUpcall(engine.resolver, keyType, description, ctx, log);
    if (action.action !== 'reject' && action.answer) logAnswer(log, action.answer, ctx);
    return action;
  } finally {
    await engine.stop().catch(() => undefined);
  }
}

// ---- command line ---------------------------------------------------------------------------

const SERIAL = /^[1-9][0-9]{0,9}$/;

function parseSerial(text: string | undefined): number | undefined {
  return text !== undefined && SERIAL.test(text) && Number(text) <= 0x7fff_ffff ? Number(text) : undefined;
}

async function main(argv: string[]): Promise<void> {
  const log = syslogLogger().child({ fallback: true });
  // the serial is the last argument of every rule: known even when the rest is wrong
  let serial = parseSerial(argv[argv.length - 1]);
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { policy: { type: 'string' } }, allowPositionals: true, strict: true });
    const [proto, serialText] = positionals;
    if (positionals.length !== 2 || (proto !== 'nfs' && proto !== 'cifs')) {
      throw new NsidmapError('NSIDMAP_EUSAGE', 'usage: upcall.js [--policy FILE] nfs|cifs <key-serial>');
    }
    serial = parseSerial(serialText);
    if (serial === undefined) throw new NsidmapError('NSIDMAP_EUSAGE', `not a key serial: "${serialText}"`);
    const action = await decide(serial, proto, values.policy, log);
    apply(serial, proto, action, log);
  } catch (e) {
    const { code, message } = describeError(e);
    log.error('upcall.failed', { serial, code, error: message.split('\n').join(' | ') });
    if (serial === undefined) return;
    try {
      keyctl.negate(serial, ERROR_TIMEOUT);
    } catch (e2) {
      log.error('upcall.failed', { serial, step: 'negate', error: describeError(e2).message });
    }
  }
}

// Exit 0 whatever happened (the kernel ignores the status), and at once: nothing may keep the
// upcall waiting once the key is decided.
main(process.argv.slice(2)).finally(() => process.exit(0));
