/**
 * Default locations. As root (the service): /etc, /run, /var/cache. Otherwise (npm start as a
 * developer): the XDG base directories, so nothing needs root.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const SYSTEM_POLICY = '/etc/nsidmap/policy.yaml';
export const SYSTEM_SOCKET = '/run/nsidmap/admin.sock';
export const SYSTEM_CACHE = '/var/cache/nsidmap/cache.sqlite';

const isRoot = (): boolean => process.getuid?.() === 0;
const xdg = (name: string, fallback: string): string => process.env[name] || join(homedir(), fallback);

export interface Paths {
  readonly policy: string;
  readonly socket: string;
  readonly cache: string;
}

export function userSocket(): string {
  const runtime = process.env['XDG_RUNTIME_DIR'];
  return runtime ? join(runtime, 'nsidmap', 'admin.sock') : join('/tmp', `nsidmap-${process.getuid?.() ?? 0}`, 'admin.sock');
}

export function defaultPaths(): Paths {
  if (isRoot()) return { policy: SYSTEM_POLICY, socket: SYSTEM_SOCKET, cache: SYSTEM_CACHE };
  return {
    policy: join(xdg('XDG_CONFIG_HOME', '.config'), 'nsidmap', 'policy.yaml'),
    socket: userSocket(),
    cache: join(xdg('XDG_CACHE_HOME', '.cache'), 'nsidmap', 'cache.sqlite'),
  };
}

/** Where a client finds the daemon: $NSIDMAP_SOCKET, the system socket if present, else the user's. */
export function clientSocket(): string {
  const env = process.env['NSIDMAP_SOCKET'];
  if (env) return env;
  if (isRoot() || existsSync(SYSTEM_SOCKET)) return SYSTEM_SOCKET;
  return userSocket();
}
