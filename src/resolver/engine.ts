/**
 * The engine: a validated, checked, compiled policy + its sources + the cache + the resolver.
 * The daemon holds one; `idmapctl --policy FILE` builds one in-process; the upcall helper falls
 * back to one when the daemon is down. Lifecycle: constructor assigns, start() acquires,
 * stop() releases in reverse order.
 */
import type { Audit } from '../audit.js';
import { openCache } from '../cache/tiered.js';
import type { CacheStore } from '../cache/store.js';
import { NsidmapError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics/registry.js';
import { checkPolicy } from './policy/check.js';
import { compilePolicy, type CompiledPolicy } from './policy/compile.js';
import { formatFinding, loadPolicyFile, validatePolicyText, type Finding, type LoadedPolicy } from './policy/load.js';
import { Resolver } from './resolver.js';

export interface EngineOptions {
  readonly log?: Logger;
  /** overrides the policy's cache.path (`:memory:` for in-process tools) */
  readonly cachePath?: string;
  /** the cache path when neither the policy nor cachePath names one */
  readonly defaultCachePath: string;
  readonly hostDomain?: () => string;
  /** the daemon's metrics registry and audit trail (they outlive reloads); none: the resolver's own registry, no audit */
  readonly metrics?: Metrics;
  readonly audit?: Audit;
}

export interface PreparedPolicy {
  readonly loaded: LoadedPolicy;
  readonly compiled: CompiledPolicy;
  readonly warnings: readonly Finding[];
}

/** Load + check + compile, or throw one NsidmapError listing every error with file:line:column. */
export function preparePolicy(file: string | undefined, opts: { log: Logger; hostDomain?: () => string; text?: string }): PreparedPolicy {
  const loaded = file === undefined || opts.text !== undefined ? fromText(opts.text ?? '', file ?? '<embedded>') : loadPolicyFile(file);
  const findings = checkPolicy(loaded);
  const errors = findings.filter((f) => f.severity === 'error');
  if (errors.length > 0) throw new NsidmapError('NSIDMAP_EPOLICY_CHECK', errors.map(formatFinding).join('\n'));
  const compiled = compilePolicy(loaded.config, { file, log: opts.log, hostDomain: opts.hostDomain });
  return { loaded, compiled, warnings: findings.filter((f) => f.severity === 'warning') };
}

function fromText(text: string, file: string): LoadedPolicy {
  const res = validatePolicyText(text, file);
  if (res.ok) return res.policy;
  throw new NsidmapError(res.stage === 'syntax' ? 'NSIDMAP_EPOLICY_SYNTAX' : 'NSIDMAP_EPOLICY_SCHEMA', res.findings.map(formatFinding).join('\n'));
}

export class Engine {
  readonly file: string | undefined;
  private readonly opts: EngineOptions;
  private readonly log: Logger;
  private prepared: PreparedPolicy;
  private storeRef: CacheStore | undefined;
  private resolverRef: Resolver | undefined;
  private openedCachePath: string | undefined;
  /** wall-clock ms of the last successful (re)load */
  loadedAt = 0;

  constructor(file: string | undefined, prepared: PreparedPolicy, opts: EngineOptions) {
    this.file = file;
    this.prepared = prepared;
    this.opts = opts;
    this.log = opts.log ?? silentLogger;
  }

  static create(file: string | undefined, opts: EngineOptions & { text?: string }): Engine {
    const log = opts.log ?? silentLogger;
    return new Engine(file, preparePolicy(file, { log, hostDomain: opts.hostDomain, text: opts.text }), opts);
  }

  get policy(): CompiledPolicy {
    return this.prepared.compiled;
  }
  get warnings(): readonly Finding[] {
    return this.prepared.warnings;
  }
  get resolver(): Resolver {
    if (!this.resolverRef) throw new Error('engine not started');
    return this.resolverRef;
  }
  get store(): CacheStore {
    if (!this.storeRef) throw new Error('engine not started');
    return this.storeRef;
  }
  /** the cache file in use: fixed at start(), since a reload does not reopen the cache */
  get cachePath(): string {
    return this.openedCachePath ?? this.opts.cachePath ?? this.policy.cache.path ?? this.opts.defaultCachePath;
  }

  async start(): Promise<void> {
    const path = this.cachePath;
    this.storeRef = openCache({ path, memoryEntries: this.policy.cache.memoryEntries, onWriteError: cacheWriteReporter(this.log, path) });
    this.openedCachePath = path;
    await startSources(this.policy);
    this.resolverRef = new Resolver(this.policy, this.storeRef, { log: this.log, metrics: this.opts.metrics, audit: this.opts.audit });
    this.loadedAt = Date.now();
  }

  /**
   * Load the policy file again. A policy that fails to load or check is refused and the old one
   * stays in force (the error is thrown for the caller to log). Sources of the old policy are
   * stopped after the new ones started.
   */
  async reload(): Promise<PreparedPolicy> {
    const next = preparePolicy(this.file, { log: this.log, hostDomain: this.opts.hostDomain });
    await startSources(next.compiled);
    const old = this.prepared.compiled;
    this.prepared = next;
    this.resolver.setPolicy(next.compiled);
    this.loadedAt = Date.now();
    await stopSources(old);
    return next;
  }

  async stop(): Promise<void> {
    if (this.resolverRef) await stopSources(this.policy);
    this.storeRef?.close();
    this.storeRef = undefined;
    this.openedCachePath = undefined;
    this.resolverRef = undefined;
  }
}

async function startSources(p: CompiledPolicy): Promise<void> {
  for (const s of p.sources.values()) await s.start?.();
}

async function stopSources(p: CompiledPolicy): Promise<void> {
  for (const s of [...p.sources.values()].reverse()) await s.stop?.().catch(() => undefined);
}

/**
 * Logs a failed cache write (the answers were served; the file lacks them): the first at once,
 * then at most one line a minute saying how many entries were not written since.
 */
function cacheWriteReporter(log: Logger, path: string): (e: unknown, lost: number) => void {
  let last = -Infinity;
  let unreported = 0;
  return (e, lost) => {
    unreported += lost;
    const now = Date.now();
    if (now - last < 60_000) return;
    last = now;
    log.warn('cache.write_failed', { path, entries: unreported, error: e instanceof Error ? e.message : String(e) });
    unreported = 0;
  };
}
