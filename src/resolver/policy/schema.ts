/**
 * The policy language (docs/policy.md). One zod schema is the source of truth: the loader
 * validates with it and `schema/policy.schema.json` is generated from it (scripts/gen-schema.ts;
 * a test fails when the file is stale).
 */
import { z } from 'zod';
import { INTERFACES } from '../../types.js';
import { parseSid } from '../../sid.js';
import { SOURCE_KINDS } from '../../providers/registry.js';
import { sidRangeSchema, sidUnixSchema } from '../../providers/sid.js';
import { CLIENT_ID_MAX, CLIENTID_FROM, UNSET } from '../../ns/clientid.js';
import { parseListen } from '../../metrics/listen.js';

const ID_MAX = 0xfffffffe;

/** `600`, `"600"`, `"10m"`, `"2h"`, `"7d"` → seconds */
export const Duration = z
  .union([z.number().int().nonnegative(), z.string().regex(/^[0-9]+[smhd]?$/, 'a duration: 600, "90s", "10m", "2h" or "7d"')])
  .transform((v) => {
    if (typeof v === 'number') return v;
    const n = parseInt(v, 10);
    const unit = v.at(-1);
    const mult = unit === 'm' ? 60 : unit === 'h' ? 3600 : unit === 'd' ? 86400 : 1;
    return n * mult;
  });

/** A TTL: a duration of at least one second. */
const Ttl = Duration.refine((s) => s >= 1, 'a TTL must be at least 1 second (a key timeout of 0 never expires)');

export const Id = z.number().int().min(0).max(ID_MAX);
const IdOrName = z.union([Id, z.string().min(1)]);

const SidText = z.string().refine((s) => parseSid(s) !== undefined, 'not a SID (S-1-5-21-…)');

/** A DNS-ish domain as NFSv4 carries it: no `@`, no spaces. */
const DomainName = z.string().regex(/^[A-Za-z0-9_.-]+$/, 'a domain name like example.com');
/** glob: `*` any run, `?` one character */
const Glob = z.string().min(1);

const oneOrMany = <T extends z.ZodType>(t: T) => z.union([t, z.array(t).min(1)]);

export const IdRange = z
  .strictObject({ first: Id, count: z.number().int().min(1) })
  .refine((r) => r.first + r.count - 1 <= ID_MAX, 'range runs past 4294967294');

/** `[inside, outside, count]`, as a line of /proc/PID/uid_map */
const MapLine = z
  .tuple([Id, Id, z.number().int().min(1)])
  .refine(([i, o, c]) => i + c - 1 <= ID_MAX && o + c - 1 <= ID_MAX, 'map line runs past 4294967294');

export const Match = z.strictObject({
  /** which kernel interface asks */
  interface: oneOrMany(z.enum(INTERFACES)).optional(),
  /** request property: the (host) id of an id → name/SID request falls in one of these */
  idRange: oneOrMany(IdRange).optional(),
  /** request property: the domain part of a name → id request (glob, case-insensitive) */
  domain: oneOrMany(Glob).optional(),
  /** request property: the SID of a SID → id request lies under this domain SID */
  sidDomain: oneOrMany(SidText).optional(),
  /** requester: container id or name (glob) */
  container: oneOrMany(Glob).optional(),
  /** requester: container runtime (docker, containerd, cri-o, podman, systemd-nspawn, lxc) */
  runtime: oneOrMany(z.string()).optional(),
  /** requester: cgroup v2 path (glob) */
  cgroup: oneOrMany(Glob).optional(),
  /** requester: network namespace — `init`, `container` (any other), or an inode number */
  netns: z.union([z.enum(['init', 'container']), z.number().int().positive()]).optional(),
  /** requester: user namespace — `init`, `container`, or by owner / host range of its uid_map */
  userns: z
    .union([
      z.enum(['init', 'container']),
      z.strictObject({ owner: Id.optional(), hostRange: IdRange.optional() }),
    ])
    .optional(),
  /** nfsd: the client's auth domain (glob) */
  authDomain: oneOrMany(Glob).optional(),
});
export type MatchConfig = z.infer<typeof Match>;

const Unmapped = z.enum(['nobody', 'negative']);

export const Scope = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  description: z.string().optional(),
  match: Match.optional(),
  /** NFSv4 domain this scope writes names in (default: the policy's domain) */
  domain: DomainName.optional(),
  /** further domains accepted on names coming in */
  domains: z.array(DomainName).optional(),
  /** Kerberos realms accepted on names coming in (compared case-insensitively) */
  realms: z.array(DomainName).optional(),
  /** ordered source chain (names from `providers`) */
  providers: z.array(z.string()).min(1).optional(),
  /** which id space answers are in: `host` ids, or the reading namespace's (`container`) */
  ids: z.enum(['host', 'container']).optional(),
  /** the sources' ids are a container's: translate them to host ids with these uid_map-style lines */
  map: z.strictObject({ uid: z.array(MapLine).min(1), gid: z.array(MapLine).min(1).optional() }).optional(),
  /** `squash`: uid/gid 0 and root@… ↔ nobody */
  root: z.enum(['squash', 'allow']).optional(),
  nobody: z.strictObject({ user: IdOrName.optional(), group: IdOrName.optional() }).optional(),
  /** ≥ 1 s: these become kernel key timeouts, where 0 would mean "never expires" */
  ttl: z.strictObject({ positive: Ttl.optional(), negative: Ttl.optional() }).optional(),
  /** what a lookup that nothing maps answers (default: as the replaced tool did, per interface) */
  unmapped: z.strictObject({ toId: Unmapped.optional(), toName: Unmapped.optional(), toSid: Unmapped.optional() }).optional(),
  /** algorithmic SID ranges for this scope (an implicit `sid` source at the end of the chain) */
  sid: z.strictObject({ ranges: z.array(sidRangeSchema).optional(), unix: sidUnixSchema.optional() }).optional(),
});
export type ScopeConfig = z.infer<typeof Scope>;

/** every provider block has a `kind`; the rest is the kind's own schema */
export type ProviderConfig = { kind: string } & Record<string, unknown>;
const providerSchemas = SOURCE_KINDS.map((k) => k.schema) as unknown as [z.ZodType<ProviderConfig>, ...z.ZodType<ProviderConfig>[]];
export const Provider = z.union(providerSchemas);

/** An NFSv4 client identifier: printable ASCII, at most the 63 bytes the kernel puts on the wire. */
const ClientIdValue = z
  .string()
  .regex(new RegExp(`^[\\x21-\\x7e]{1,${CLIENT_ID_MAX}}$`), `1 to ${CLIENT_ID_MAX} printable ASCII characters, no spaces`)
  .refine((v) => v !== UNSET, `"${UNSET}" is what the kernel shows when no identifier is set`);

const ClientIdFrom = z.enum(CLIENTID_FROM, {
  error: 'machine-id, random or off (a fixed value belongs under `namespaces`: one value for every namespace would make them all one NFS client)',
});

/** How one namespace key gets its identifier. */
export const ClientIdRule = z.discriminatedUnion('from', [
  z.strictObject({ from: z.literal('fixed'), value: ClientIdValue }),
  z.strictObject({ from: ClientIdFrom }),
]);

export const ClientId = z
  .strictObject({
    /** how a namespace without an entry below gets its identifier the first time it is seen */
    from: ClientIdFrom.optional(),
    /** per namespace key (`host`, a container id, `ipnetns:NAME`), as `idmapctl clientid list` shows them */
    namespaces: z.record(z.string().min(1), ClientIdRule).optional(),
  })
  .superRefine((c, ctx) => {
    const seen = new Map<string, string>();
    for (const [key, rule] of Object.entries(c.namespaces ?? {})) {
      if (rule.from !== 'fixed') continue;
      const other = seen.get(rule.value);
      if (other !== undefined) ctx.addIssue({ code: 'custom', path: ['namespaces', key, 'value'], message: `the same value as ${other}: two namespaces must not present one NFSv4 client` });
      else seen.set(rule.value, key);
    }
  });

/** `[HOST:]PORT`; loopback when no host is given (src/metrics/listen.ts) */
const Listen = z.union([z.number().int().min(0).max(65535), z.string().regex(/^(?:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):)?[0-9]{1,5}$/, '[HOST:]PORT, e.g. 127.0.0.1:9851, [::1]:9851 or :9851')]).superRefine((v, ctx) => {
  const r = parseListen(v);
  if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
});

export const Metrics = z.strictObject({
  /** where the Prometheus endpoint listens (default 127.0.0.1:9851) */
  listen: Listen.optional(),
});

export const AuditConfig = z.strictObject({
  /** each key (kind, interface, scope, query) is logged at most once per interval */
  interval: Duration.refine((s) => s >= 1, 'at least 1 second').optional(),
  /** distinct keys remembered; past it, new keys are counted, not logged one by one */
  maxKeys: z.number().int().min(1).max(1_000_000).optional(),
});

export const Policy = z.strictObject({
  /** schema version of this file */
  version: z.literal(1).optional(),
  /** default NFSv4 domain (default: the host's DNS domain, else `localdomain`) */
  domain: DomainName.optional(),
  providers: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/), Provider).optional(),
  /** settings every scope inherits unless it sets its own */
  defaults: Scope.omit({ name: true, match: true, description: true, sid: true }).partial().optional(),
  scopes: z.array(Scope).optional(),
  cache: z
    .strictObject({
      /** SQLite file, or `:memory:` */
      path: z.string().optional(),
      memoryEntries: z.number().int().min(0).optional(),
      /** how long past expiry an entry may still be served while every source fails */
      maxStale: Duration.optional(),
    })
    .optional(),
  daemon: z
    .strictObject({
      socket: z.string().optional(),
      adminGroup: z.union([z.string(), Id]).optional(),
      logLevel: z.enum(['error', 'warn', 'info', 'debug']).optional(),
    })
    .optional(),
  /** NFSv4 client identifiers per network namespace (PROTOCOLS.md §6) */
  clientid: ClientId.optional(),
  /** the Prometheus endpoint (docs/metrics.md): off unless this block is given */
  metrics: Metrics.optional(),
  /** the audit trail's rate limit (nobody, squashed, unmappable, refused: one line per key and interval) */
  audit: AuditConfig.optional(),
  /** `idmapctl policy test` cases may live beside the policy too */
});
export type PolicyConfig = z.infer<typeof Policy>;
