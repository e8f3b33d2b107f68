/**
 * One line per event, logfmt fields, journald priorities. Levels below the threshold cost one
 * integer comparison: callers pass fields as an object built only when enabled (`log.on('debug')`).
 * Under systemd (JOURNAL_STREAM set) each line starts with `<N>` so journald records its priority.
 * Never pass secrets: there is no redaction layer by design, sources must not hand them out.
 */

export const LEVELS = { error: 3, warn: 4, info: 6, debug: 7 } as const;
export type Level = keyof typeof LEVELS;
export type Fields = Record<string, string | number | boolean | undefined | null>;

export interface Logger {
  on(level: Level): boolean;
  /** change the threshold (the daemon applies the policy's daemon.logLevel after loading it) */
  setLevel(level: Level): void;
  error(event: string, fields?: Fields): void;
  warn(event: string, fields?: Fields): void;
  info(event: string, fields?: Fields): void;
  debug(event: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

export interface LoggerOptions {
  level?: Level;
  /** prefix lines with `<priority>` for journald; default: when JOURNAL_STREAM is set */
  journal?: boolean;
  /** where lines go; default stderr */
  write?: (line: string) => void;
}

const SAFE = /^[A-Za-z0-9_.:@/+,=-]+$/;

export function formatValue(v: string | number | boolean): string {
  const s = String(v);
  return s !== '' && SAFE.test(s) ? s : JSON.stringify(s);
}

export function formatFields(fields: Fields | undefined): string {
  if (!fields) return '';
  let out = '';
  for (const k in fields) {
    const v = fields[k];
    if (v === undefined || v === null) continue;
    out += ` ${k}=${formatValue(v)}`;
  }
  return out;
}

export function createLogger(opts: LoggerOptions = {}, bound: Fields = {}, shared = { threshold: LEVELS[opts.level ?? 'info'] as number }): Logger {
  const journal = opts.journal ?? process.env['JOURNAL_STREAM'] !== undefined;
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const boundText = formatFields(bound);
  const emit = (level: Level, event: string, fields?: Fields): void => {
    const prio = LEVELS[level];
    if (prio > shared.threshold) return;
    const head = journal ? `<${prio}>` : `${new Date().toISOString()} ${level.toUpperCase()} `;
    write(`${head}${event}${boundText}${formatFields(fields)}`);
  };
  return {
    on: (level) => LEVELS[level] <= shared.threshold,
    setLevel: (level) => { shared.threshold = LEVELS[level]; },
    error: (e, f) => emit('error', e, f),
    warn: (e, f) => emit('warn', e, f),
    info: (e, f) => emit('info', e, f),
    debug: (e, f) => emit('debug', e, f),
    child: (fields) => createLogger(opts, { ...bound, ...fields }, shared),
  };
}

/** A logger that drops everything (tests, the in-process CLI path). */
export const silentLogger: Logger = {
  on: () => false,
  setLevel: () => {},
  error: () => {},
  warn: () => {},
  info: () => {},
  debug: () => {},
  child: () => silentLogger,
};
