/**
 * The Prometheus endpoint: `GET /metrics` on `metrics.listen`, the text exposition of one
 * snapshot per scrape. A responder like the kernel ones, so the daemon starts it after the admin
 * socket and stops it first; loaded (with node:http) only when the policy has a `metrics` block.
 *
 * It must never get in the way of identity mapping: a listen failure (port taken, address not
 * here) is logged and shown in `idmapctl status`, and the daemon serves on without it; connections
 * are few and short (a scraper every few seconds), so their number and lifetime are bounded.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { CONTENT_TYPE, exposition } from '../../metrics/exposition.js';
import { formatListen, type ListenAddress } from '../../metrics/listen.js';
import type { StatsSnapshot } from '../../metrics/snapshot.js';
import type { Responder, ResponderEnv, ResponderStatus } from '../responder.js';

/** Scrapers are one or two Prometheus servers; more connections than this are refused. */
export const MAX_CONNECTIONS = 16;
/** A request must arrive whole within this (a slow client must not hold a connection). */
export const REQUEST_TIMEOUT_MS = 5_000;

export interface MetricsEndpointOptions {
  readonly listen: ListenAddress;
  /** one reading of everything measured (the daemon's `stats`) */
  readonly snapshot: () => StatsSnapshot;
}

export class MetricsEndpoint implements Responder {
  readonly name = 'metrics';
  private readonly opts: MetricsEndpointOptions;
  private server: Server | undefined;
  private log: Logger | undefined;
  private bound: ListenAddress | undefined;
  private failure: string | undefined;
  private scrapes = 0;

  constructor(opts: MetricsEndpointOptions) {
    this.opts = opts;
  }

  /** `http://HOST:PORT/metrics` once listening (the real port when 0 was asked for). */
  get url(): string | undefined {
    return this.bound ? `http://${formatListen(this.bound)}/metrics` : undefined;
  }

  async start(env: ResponderEnv): Promise<void> {
    this.log = env.log;
    const server = createServer((req, res) => this.handle(req, res));
    server.maxConnections = MAX_CONNECTIONS;
    server.requestTimeout = REQUEST_TIMEOUT_MS;
    server.headersTimeout = REQUEST_TIMEOUT_MS;
    server.keepAliveTimeout = REQUEST_TIMEOUT_MS;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: this.opts.listen.host, port: this.opts.listen.port, exclusive: true }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      this.failure = `cannot listen on ${formatListen(this.opts.listen)}: ${describeError(e).message}`;
      env.log.error('metrics.listen_failed', { listen: formatListen(this.opts.listen), error: describeError(e).message, note: 'serving without the metrics endpoint' });
      return;
    }
    server.on('error', (e) => env.log.warn('metrics.error', { error: describeError(e).message }));
    const a = server.address() as AddressInfo;
    this.bound = { host: this.opts.listen.host, port: a.port };
    this.server = server;
    env.log.info('metrics.listening', { url: this.url });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.bound = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  status(): ResponderStatus {
    const state = this.server ? 'listening' : this.failure ?? 'stopped';
    return { name: this.name, detail: [{ url: this.url ?? `http://${formatListen(this.opts.listen)}/metrics`, state, scrapes: this.scrapes }] };
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') return reply(res, 404, 'not found: the metrics are at /metrics\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return reply(res, 405, 'method not allowed\n');
    }
    let body: string;
    try {
      body = exposition(this.opts.snapshot());
    } catch (e) {
      this.log?.error('metrics.scrape_failed', { error: describeError(e).message });
      return reply(res, 500, 'the metrics could not be read; see the daemon log\n');
    }
    this.scrapes++;
    res.writeHead(200, { 'Content-Type': CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

function reply(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
