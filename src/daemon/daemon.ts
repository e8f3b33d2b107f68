/**
 * nsidmapd lifecycle:
 *
 *   start(): policy (load+check+compile) → cache → sources → admin socket → responders
 *            (+ the metrics endpoint, when the policy has one) → audit sweep → READY=1
 *   SIGHUP : RELOADING=1 → reload (a broken policy is refused, the old one stays)
 *            → flush kernel caches (nfsd) → READY=1
 *   SIGTERM: STOPPING=1 → responders → admin socket → sources → cache (reverse order)
 *            → audit (what it still counts is logged) → exit 0
 *
 * The metrics registry and the audit trail belong to the daemon, not to a policy: counters keep
 * counting across reloads.
 */
import { existsSync, readFileSync } from 'node:fs';
import { Audit } from '../audit.js';
import { describeError, NsidmapError } from '../errors.js';
import type { Logger } from '../log.js';
import { formatListen, type ListenAddress } from '../metrics/listen.js';
import { Metrics } from '../metrics/registry.js';
import { Engine } from '../resolver/engine.js';
import { formatFinding } from '../resolver/policy/load.js';
import { AdminServer } from '../responders/admin/server.js';
import type { Responder } from '../responders/responder.js';
import type { ResponderSet } from './responders.js';
import { VERSION } from '../version.js';
import { makeHandler, snapshotOf } from './handler.js';
import { createNotifier, startWatchdog, type Notifier } from './notify.js';

export interface DaemonOptions {
  /** policy file; when it does not exist and `policyRequired` is false, the embedded defaults */
  readonly policy: string;
  readonly policyRequired: boolean;
  /** admin socket from the command line; else the policy's daemon.socket; else `defaultSocket` */
  readonly socket?: string;
  readonly defaultSocket: string;
  /** --log-level was given: the policy's daemon.logLevel does not override it */
  readonly logLevelExplicit?: boolean;
  /** kernel responders, built once the engine (and so the cache path) is known; started after
   * the admin socket and stopped before it */
  readonly responders?: (engine: Engine) => ResponderSet;
  readonly cache: string;
  /** `cache` came from the command line: it overrides the policy's cache.path (else it is the fallback) */
  readonly cacheOverride?: boolean;
  readonly log: Logger;
}

/** A scrape counts the cache's entries at most this often (see snapshotOf). */
const SCRAPE_CACHE_COUNT_MS = 30_000;

export class Daemon {
  private engine: Engine | undefined;
  private admin: AdminServer | undefined;
  private notifier: Notifier | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private reloading: Promise<unknown> | undefined;
  private readonly metrics: Metrics;
  private readonly audit: Audit;
  /** the Prometheus endpoint, when the policy has `metrics` */
  private endpoint: (Responder & { readonly url: string | undefined }) | undefined;
  private endpointListen: ListenAddress | undefined;

  constructor(private readonly opts: DaemonOptions) {
    this.metrics = new Metrics();
    this.audit = new Audit(opts.log);
  }

  async start(): Promise<void> {
    const t0 = performance.now();
    const { log } = this.opts;
    const file = this.opts.policyRequired || existsSync(this.opts.policy) ? this.opts.policy : undefined;
    if (!file) log.info('policy.embedded', { reason: `${this.opts.policy} does not exist: using the embedded defaults` });
    const engine = Engine.create(file, { log, defaultCachePath: this.opts.cache, cachePath: this.opts.cacheOverride ? this.opts.cache : undefined, metrics: this.metrics, audit: this.audit });
    this.audit.configure(engine.policy.audit);
    const daemonCfg = engine.policy.daemon;
    if (!this.opts.logLevelExplicit && daemonCfg.logLevel) log.setLevel(daemonCfg.logLevel);
    for (const w of engine.warnings) log.warn('policy.warning', { finding: formatFinding(w) });
    const socket = this.opts.socket ?? daemonCfg.socket ?? this.opts.defaultSocket;
    const gid = daemonCfg.adminGroup === undefined ? undefined : resolveGroup(daemonCfg.adminGroup);
    await engine.start();
    this.engine = engine;
    const info = { version: VERSION, startedAt: Date.now(), socket };
    this.set = this.opts.responders?.(engine);
    this.admin = new AdminServer(
      { path: socket, gid, log },
      makeHandler(() => this.current(), info, log, () => this.reload(), () => this.responderStatus(), () => this.flushKernelCaches(), () => this.set?.clientIds),
    );
    try {
      await this.admin.start();
      await this.startResponders();
    } catch (e) {
      // release what start() acquired: a source's open connections would keep the process alive
      await this.stopResponders();
      await this.admin.stop().catch(() => undefined);
      this.admin = undefined;
      await engine.stop();
      throw e;
    }
    this.audit.start();
    this.notifier = await createNotifier(log);
    this.notifier.send(`READY=1\nSTATUS=serving (policy ${file ?? 'embedded defaults'})\nMAINPID=${process.pid}`);
    this.watchdog = startWatchdog(this.notifier);
    log.info('daemon.ready', { version: VERSION, policy: file ?? 'embedded', domain: engine.policy.domain, socket, cache: engine.cachePath, responders: this.started.map((r) => r.name).join(',') || undefined, metrics: this.endpoint?.url, ms: Math.round(performance.now() - t0) });
  }

  /**
   * The metrics endpoint: a policy setting, not a kernel interface (so `--serve` leaves it be).
   * Loaded — node:http and all — only when the policy has a `metrics` block.
   */
  private async metricsEndpoint(): Promise<Responder[]> {
    const listen = this.current().policy.metrics;
    if (!listen) return [];
    const { MetricsEndpoint } = await import('../responders/metrics/endpoint.js');
    this.endpoint = new MetricsEndpoint({ listen, snapshot: () => snapshotOf(this.current(), VERSION, SCRAPE_CACHE_COUNT_MS) });
    this.endpointListen = listen;
    return [this.endpoint];
  }

  private set: ResponderSet | undefined;
  private started: Responder[] = [];

  private async startResponders(): Promise<void> {
    const env = { resolver: () => this.current().resolver, engine: () => this.current(), log: this.opts.log };
    for (const r of [...(this.set?.responders ?? []), ...(await this.metricsEndpoint())]) {
      await r.start(env);
      this.started.push(r);
    }
  }

  private async stopResponders(): Promise<void> {
    for (const r of this.started.reverse()) await r.stop().catch((e) => this.opts.log.warn('responder.stop_failed', { responder: r.name, error: describeError(e).message }));
    this.started = [];
    this.endpoint = undefined;
    this.endpointListen = undefined;
    this.set?.close();
    this.set = undefined;
  }

  private responderStatus(): unknown[] {
    return this.started.map((r) => r.status());
  }

  /** After a reload or flush: kernel caches (nfsd) must not keep answers of the old policy. */
  async flushKernelCaches(): Promise<void> {
    for (const r of this.started) {
      if (!r.flushKernelCaches) continue;
      await r.flushKernelCaches().then(
        () => this.metrics.kernelFlush(r.name, true),
        (e) => {
          this.metrics.kernelFlush(r.name, false);
          this.opts.log.warn('responder.flush_failed', { responder: r.name, error: describeError(e).message });
        },
      );
    }
  }

  private current(): Engine {
    if (!this.engine) throw new Error('daemon not started');
    return this.engine;
  }

  /** Reload the policy; concurrent calls share one reload. Throws (and keeps the old policy) on error. */
  reload(): Promise<unknown> {
    if (!this.reloading) {
      this.reloading = this.doReload().finally(() => { this.reloading = undefined; });
    }
    return this.reloading;
  }

  private async doReload(): Promise<unknown> {
    const { log } = this.opts;
    const engine = this.current();
    if (!engine.file) return { reloaded: false, reason: 'running on the embedded defaults: nothing to reload' };
    this.notifier?.send(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec()}`);
    try {
      const next = await engine.reload();
      for (const w of next.warnings) log.warn('policy.warning', { finding: formatFinding(w) });
      if (!this.opts.logLevelExplicit && next.compiled.daemon.logLevel) log.setLevel(next.compiled.daemon.logLevel);
      if ((next.compiled.cache.path ?? engine.cachePath) !== engine.cachePath) {
        log.warn('policy.restart_needed', { key: 'cache.path', using: engine.cachePath, reason: 'the cache file changes at the next start' });
      }
      const [listen, listening] = [next.compiled.metrics, this.endpointListen].map((a) => (a ? formatListen(a) : 'off'));
      if (listen !== listening) log.warn('policy.restart_needed', { key: 'metrics.listen', using: listening, reason: 'the metrics endpoint changes at the next start' });
      this.audit.configure(next.compiled.audit);
      this.metrics.reload(true);
      await this.flushKernelCaches();
      log.info('policy.reloaded', { file: engine.file, scopes: next.compiled.scopes.length });
      return { reloaded: true, warnings: next.warnings.map(formatFinding) };
    } catch (e) {
      this.metrics.reload(false);
      const { code, message } = describeError(e);
      log.error('policy.refused', { file: engine.file, code, error: message.split('\n').join(' | '), kept: 'previous policy' });
      throw e;
    } finally {
      this.notifier?.send('READY=1');
    }
  }

  async stop(): Promise<void> {
    this.notifier?.send('STOPPING=1');
    if (this.watchdog) clearInterval(this.watchdog);
    await this.stopResponders();
    await this.admin?.stop();
    await this.engine?.stop();
    this.audit.stop();
    this.notifier?.close();
    this.opts.log.info('daemon.stopped');
  }
}

/** daemon.adminGroup: a gid, or a group name looked up in /etc/group (the admin socket's group). */
export function resolveGroup(group: string | number): number {
  if (typeof group === 'number') return group;
  let text = '';
  try {
    text = readFileSync('/etc/group', 'utf8');
  } catch {
    /* fall through to the error below */
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^[0-9]+$/.test(gid)) return Number(gid);
  }
  throw new NsidmapError('NSIDMAP_EDAEMON', `daemon.adminGroup: no group "${group}" in /etc/group (give a gid, or create the group)`);
}

function monotonicUsec(): string {
  return String(process.hrtime.bigint() / 1000n);
}
