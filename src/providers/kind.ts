/**
 * A source kind: its policy block schema and a factory. The registry (registry.ts) lists the
 * kinds; the policy schema is composed from theirs, so adding a kind touches no other layer.
 */
import type { z } from 'zod';
import type { Source, SourceEnv } from './source.js';

export interface SourceKind<C extends { kind: string }> {
  readonly kind: C['kind'];
  /** zod schema of the provider's policy block, including `kind: z.literal(<kind>)` */
  readonly schema: z.ZodType<C>;
  /** one-line description for `idmapctl policy schema` and docs */
  readonly summary: string;
  create(name: string, config: C, env: SourceEnv): Source;
}
