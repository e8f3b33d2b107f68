/**
 * `metrics.listen`: where the Prometheus endpoint listens. Loopback unless a host is named —
 * lookup counts, scope and source names are nobody else's business by default.
 *
 *   9851, "9851", ":9851"   → 127.0.0.1:9851
 *   "0.0.0.0:9851"          → every IPv4 address
 *   "[::1]:9851"            → IPv6 (brackets, as in a URL)
 *   "localhost:0"           → an ephemeral port (tests; the bound port is logged and in `status`)
 */
import { isIP } from 'node:net';

export const DEFAULT_METRICS_HOST = '127.0.0.1';
export const DEFAULT_METRICS_PORT = 9851;

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** The address, or a message saying what is wrong with it. */
export function parseListen(v: string | number): ListenAddress | string {
  const text = String(v).trim();
  const m = /^(?:(\[[^\]]*\]|[^:[\]]*):)?([0-9]{1,5})$/.exec(text);
  if (!m) return `"${text}" is not [HOST:]PORT (e.g. 127.0.0.1:${DEFAULT_METRICS_PORT}, [::1]:${DEFAULT_METRICS_PORT}, :${DEFAULT_METRICS_PORT})`;
  const port = Number(m[2]);
  if (port > 65535) return `port ${port} is out of range (0-65535)`;
  let host = m[1] ?? '';
  if (host.startsWith('[')) {
    host = host.slice(1, -1);
    if (isIP(host) !== 6) return `"[${host}]" is not an IPv6 address`;
  } else if (host !== '' && isIP(host) === 0 && !HOSTNAME.test(host)) {
    return `"${host}" is not a host name or address`;
  }
  return { host: host === '' ? DEFAULT_METRICS_HOST : host, port };
}

/** Loopback addresses and `localhost`: reachable from this host only. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || /^127\./.test(host) || host === '::1';
}

export function formatListen(a: ListenAddress): string {
  return isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
