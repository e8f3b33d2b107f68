/**
 * A responder serves one kernel interface (DESIGN.md "The flow"): it turns bytes into typed
 * requests with a pure codec, asks the resolver, and writes the exact reply bytes. The daemon
 * starts every responder after the engine and the admin socket, and stops them first.
 *
 * Responders never import the CLI or each other; they get what they need in ResponderEnv.
 */
import type { Logger } from '../log.js';
import type { Resolver } from '../resolver/resolver.js';
import type { Engine } from '../resolver/engine.js';

export interface ResponderEnv {
  /** the resolver of the policy in force (it changes on reload: call this per request) */
  readonly resolver: () => Resolver;
  readonly engine: () => Engine;
  readonly log: Logger;
}

export interface ResponderStatus {
  readonly name: string;
  /** e.g. one line per served namespace / pipe / channel */
  readonly detail: readonly Record<string, unknown>[];
}

export interface Responder {
  readonly name: string;
  start(env: ResponderEnv): Promise<void>;
  stop(): Promise<void>;
  status(): ResponderStatus;
  /** after a policy reload or a cache flush: drop kernel-side caches that hold old answers */
  flushKernelCaches?(): Promise<void>;
}
