/**
 * The NFSv4 domain when the policy names none, derived as libnfsidmap does
 * (nfs-utils support/nfsidmap/libnfsidmap.c): the canonical name of the host name as the
 * resolver gives it (gethostbyname → h_name), everything after its first dot; `localdomain`
 * when that yields nothing. (libnfsidmap ≥ 2.5 also reads a `_nfsv4idmapdomain` TXT record;
 * we do not query DNS at startup — name the domain in the policy where that record is used.)
 */
import { execFileSync } from 'node:child_process';
import { hostname } from 'node:os';

export const DEFAULT_DOMAIN = 'localdomain';

/** Pure: the domain part of a canonical host name, or undefined. */
export function domainOfHostName(name: string): string | undefined {
  const i = name.indexOf('.');
  if (i < 0 || i === name.length - 1) return undefined;
  return name.slice(i + 1).toLowerCase();
}

/** Pure: canonical name from `getent hosts` output (`<addr> <canonical> [aliases…]`). */
export function canonicalFromGetent(out: string): string | undefined {
  const first = out.split('\n')[0]?.trim().split(/\s+/);
  return first && first.length >= 2 ? first[1] : undefined;
}

export function hostDomain(host: string = hostname()): string {
  const direct = domainOfHostName(host);
  if (direct) return direct;
  try {
    const out = execFileSync('getent', ['hosts', host], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
    const canon = canonicalFromGetent(out);
    return (canon && domainOfHostName(canon)) ?? DEFAULT_DOMAIN;
  } catch {
    return DEFAULT_DOMAIN;
  }
}
