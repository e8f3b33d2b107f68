/**
 * Every failure a user can see, one registry. Codes are stable: scripts and docs depend on them.
 * docs/errors.md lists the same codes; test/unit/errors.test.ts keeps the two in sync.
 */

export const ERRORS = {
  NSIDMAP_EUSAGE: { exit: 2, summary: 'command line is wrong', hint: 'see --help' },
  NSIDMAP_EPOLICY_READ: { exit: 3, summary: 'policy file cannot be read', hint: 'check the path and its permissions' },
  NSIDMAP_EPOLICY_SYNTAX: { exit: 3, summary: 'policy file is not valid YAML', hint: 'fix the YAML at the position given' },
  NSIDMAP_EPOLICY_SCHEMA: { exit: 3, summary: 'policy does not fit the schema', hint: 'see docs/policy.md or `idmapctl policy schema`' },
  NSIDMAP_EPOLICY_CHECK: { exit: 3, summary: 'policy fails a consistency check', hint: 'run `idmapctl policy check FILE` for every finding' },
  NSIDMAP_EPOLICY_TEST: { exit: 4, summary: 'a policy test case failed', hint: 'compare expected and actual in the output' },
  NSIDMAP_EREQUEST: { exit: 2, summary: 'malformed request', hint: 'the request was answered negatively; see the logged input' },
  NSIDMAP_ENOSCOPE: { exit: 5, summary: 'no scope of the policy matches the request', hint: 'add a scope without `match` at the end of the policy' },
  NSIDMAP_ESOURCE: { exit: 5, summary: 'a source failed and nothing usable was cached', hint: 'see `idmapctl status` for source health' },
  NSIDMAP_ECACHE: { exit: 6, summary: 'the cache database cannot be opened or written', hint: 'check cache.path, its directory and free space' },
  NSIDMAP_ENS: { exit: 5, summary: 'the namespaces of a process cannot be read', hint: 'the process may be gone, or nsidmap lacks permission to read /proc/PID' },
  NSIDMAP_ENODAEMON: { exit: 7, summary: 'the daemon is not reachable', hint: 'start nsidmapd, or pass --policy FILE to resolve in-process' },
  NSIDMAP_EADMIN: { exit: 7, summary: 'the admin socket refused the request', hint: 'run as root or as a member of the admin group' },
  NSIDMAP_EDAEMON: { exit: 8, summary: 'the daemon cannot start', hint: 'see the logged reason' },
  NSIDMAP_EKEYRING: { exit: 9, summary: 'a keyring operation failed', hint: 'check that keyutils is installed and the kernel has keyrings' },
  NSIDMAP_ENOKEY: { exit: 1, summary: 'no such key in the kernel\'s cache keyring', hint: 'see `idmapctl keys list` for the keys cached' },
  NSIDMAP_ECLIENTID: { exit: 10, summary: 'an NFSv4 client identifier cannot be stored or set', hint: 'each namespace needs its own identifier of 1 to 63 printable characters; see `idmapctl clientid list`' },
  NSIDMAP_ENOCLIENTID: { exit: 1, summary: 'no NFSv4 client identifier is stored for that namespace key', hint: 'see `idmapctl clientid list` for the keys' },
  NSIDMAP_EINTERNAL: { exit: 70, summary: 'internal error (a bug)', hint: 'report it with the logged stack' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

/** A user-facing failure: one line, a stable code, a hint. No stack is printed for these. */
export class NsidmapError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NsidmapError';
    this.code = code;
  }
  get exitCode(): number {
    // a code received from a newer daemon may be unknown here
    return (ERRORS as Record<string, { exit: number } | undefined>)[this.code]?.exit ?? 1;
  }
  /**
   * `NSIDMAP_EXXX: message` — the line a user sees. A policy error lists one finding per line;
   * each carries the code so that every line stands on its own in a log.
   */
  oneLine(): string {
    return this.message.split('\n').map((l) => `${this.code}: ${l}`).join('\n');
  }
}

export function isNsidmapError(e: unknown): e is NsidmapError {
  return e instanceof NsidmapError;
}

/** Turn anything thrown into a one-line message with a code. */
export function describeError(e: unknown): { code: ErrorCode; message: string } {
  if (e instanceof NsidmapError) return { code: e.code, message: e.message };
  const message = e instanceof Error ? e.message : String(e);
  return { code: 'NSIDMAP_EINTERNAL', message };
}
