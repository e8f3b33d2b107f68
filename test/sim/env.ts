/**
 * What the responder tests and the bench share: a ResponderEnv around a Resolver built straight
 * from a policy object (as test/unit/resolver.test.ts does), a logger that keeps its lines, and a
 * source that can be held at a gate to keep an upcall in flight.
 */
import type { z } from 'zod';
import { MemoryStore } from '../../src/cache/memory.js';
import { createLogger, type Logger } from '../../src/log.js';
import type { Source, SourceEntry } from '../../src/providers/source.js';
import { compilePolicy, type CompiledPolicy } from '../../src/resolver/policy/compile.js';
import { Policy } from '../../src/resolver/policy/schema.js';
import { Resolver } from '../../src/resolver/resolver.js';
import type { ResponderEnv } from '../../src/responders/responder.js';
import type { Entity, Sid } from '../../src/types.js';

export type PolicyInput = z.input<typeof Policy>;

export function compile(input: PolicyInput, replace: Record<string, Source> = {}): CompiledPolicy {
  const compiled = compilePolicy(Policy.parse(input), { log: createLogger({ level: 'error', write: () => {} }), hostDomain: () => 'host.invalid' });
  return { ...compiled, scopes: compiled.scopes.map((s) => ({ ...s, sources: s.sources.map((src) => replace[src.name] ?? src) })) };
}

export interface TestEnv {
  readonly env: ResponderEnv;
  readonly resolver: Resolver;
  readonly lines: string[];
  readonly log: Logger;
  /** lines whose event is `event` */
  events(event: string): string[];
}

export function testEnv(input: PolicyInput, opts: { replace?: Record<string, Source>; now?: () => number; level?: 'debug' | 'info' | 'warn' | 'error' } = {}): TestEnv {
  const lines: string[] = [];
  const log = createLogger({ level: opts.level ?? 'info', journal: false, write: (l) => lines.push(l) });
  const resolver = new Resolver(compile(input, opts.replace), new MemoryStore(), { log, now: opts.now });
  const env: ResponderEnv = {
    resolver: () => resolver,
    engine: () => {
      throw new Error('no engine in responder tests');
    },
    log,
  };
  return { env, resolver, lines, log, events: (event) => lines.filter((l) => new RegExp(`(^| )${event.replace('.', '\\.')}( |$)`).test(l)) };
}

/** Wraps a source; while `hold` is set every call waits for it (an upcall kept in flight). */
export class GateSource implements Source {
  readonly kind: string;
  readonly name: string;
  hold: Promise<void> | undefined;
  calls = 0;
  constructor(private readonly inner: Source) {
    this.kind = inner.kind;
    this.name = inner.name;
  }
  private async gate(): Promise<void> {
    this.calls++;
    if (this.hold) await this.hold;
  }
  async byName(entity: Entity, name: string): Promise<SourceEntry | undefined> {
    await this.gate();
    return this.inner.byName?.(entity, name);
  }
  async byId(entity: Entity, id: number): Promise<SourceEntry | undefined> {
    await this.gate();
    return this.inner.byId?.(entity, id);
  }
  async bySid(entity: Entity, sid: Sid): Promise<SourceEntry | undefined> {
    await this.gate();
    return this.inner.bySid?.(entity, sid);
  }
  async sidOf(entity: Entity, id: number): Promise<SourceEntry | undefined> {
    await this.gate();
    return this.inner.sidOf?.(entity, id);
  }
}

export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Poll `cond` until true (fs.watch and timers are asynchronous). */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
