/** JSON Schema of the policy, generated from the zod schema (schema/policy.schema.json is its output). */
import { z } from 'zod';
import { Policy } from './schema.js';

export function policyJsonSchema(): Record<string, unknown> {
  const s = z.toJSONSchema(Policy, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return { ...s, $id: 'https://nsidmap.invalid/schema/policy.schema.json', title: 'nsidmap policy' };
}
