/**
 * What every idmapctl command shares: option parsing, output (data on stdout, errors on stderr),
 * and the way to the resolver — the daemon's socket, or an in-process engine with --policy.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { NsidmapError } from '../errors.js';
import { clientSocket } from '../daemon/paths.js';
import { AdminClient, type ClientRequest } from '../responders/admin/client.js';

export interface Command {
  readonly noun: string;
  readonly verb: string;
  readonly usage: string;
  readonly summary: string;
  readonly example: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  run(args: Parsed): Promise<number>;
}

export interface Parsed {
  readonly values: Record<string, string | boolean | undefined>;
  readonly positionals: readonly string[];
}

export const GLOBAL_OPTIONS: NonNullable<ParseArgsConfig['options']> = {
  socket: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

export function parse(cmd: Command, argv: string[]): Parsed {
  try {
    const r = parseArgs({ args: argv, options: { ...GLOBAL_OPTIONS, ...cmd.options }, allowPositionals: true, strict: true });
    return { values: r.values as Parsed['values'], positionals: r.positionals };
  } catch (e) {
    throw new NsidmapError('NSIDMAP_EUSAGE', `${(e as Error).message} (see idmapctl ${cmd.noun} ${cmd.verb} --help)`);
  }
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function int(p: Parsed, name: string): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v)) throw new NsidmapError('NSIDMAP_EUSAGE', `--${name}: "${v}" is not a positive number`);
  return Number(v);
}

export function out(line = ''): void {
  process.stdout.write(line + '\n');
}

export function json(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Ask the daemon one thing; NSIDMAP_ENODAEMON with a hint when it is not there. */
export async function ask<T>(p: Parsed, req: ClientRequest): Promise<T> {
  const client = await AdminClient.connect(str(p, 'socket') ?? clientSocket());
  try {
    return await client.request<T>(req);
  } finally {
    client.close();
  }
}

/** Fixed-width columns for human output. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}
