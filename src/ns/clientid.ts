/**
 * NFSv4 client identifiers (PROTOCOLS.md §6): what each network namespace's
 * /sys/fs/nfs/net/nfs_client/identifier should hold, and where that value comes from. Pure, no
 * I/O: the writer (clientid-writer.ts) puts it into the kernel, the store keeps it.
 *
 * The identifier becomes the uniquifier of the EXCHANGE_ID/SETCLIENTID client owner
 * (`Linux NFSv4.x <uniquifier>/<nodename>`). A server that sees it change sees a new client and
 * drops the old one's opens and locks; two namespaces that share it steal each other's lease. So:
 * once chosen it is kept (persisted, carried along when a container moves), and no two namespaces
 * may hold the same one.
 */
import { createHash, randomBytes } from 'node:crypto';

/**
 * Longest identifier that reaches the wire whole: the store accepts 64 bytes (fs/nfs/sysfs.c,
 * CONTAINER_ID_MAXLEN), but nfs4_get_uniquifier() copies it into a char[NFS4_CLIENT_ID_UNIQ_LEN]
 * (64) with strscpy, which keeps 63 bytes and the NUL.
 */
export const CLIENT_ID_MAX = 63;

/** What the kernel shows when none is set (`%s` of NULL). Never a value of ours. */
export const UNSET = '(null)';

/**
 * Printable ASCII without spaces: the kernel takes any bytes up to a newline, but the value is
 * shown in logs, carried in JSON and typed on command lines; hex digests and UUIDs fit.
 */
const PRINTABLE = /^[\x21-\x7e]+$/;

/** undefined when `v` is a usable identifier, else why not. */
export function checkIdentifier(v: string): string | undefined {
  if (v.length === 0) return 'is empty (the kernel ignores an empty write)';
  if (!PRINTABLE.test(v)) return 'must be printable ASCII without spaces';
  if (v.length > CLIENT_ID_MAX) return `is ${v.length} characters long; the kernel keeps ${CLIENT_ID_MAX}`;
  if (v === UNSET) return `"${UNSET}" is what the kernel shows when no identifier is set`;
  return undefined;
}

/** machine-id(5): 32 lower-case hex digits and a newline; `uninitialized` or empty on first boot. */
const MACHINE_ID = /^[0-9a-f]{32}$/;

/**
 * The kernel documentation's recipe (Documentation/filesystems/nfs/client-identifier.rst):
 * `sha256sum /etc/machine-id` — the digest of the file's bytes, newline included — in hex. The
 * 64 digits are cut to the 63 that reach the wire, so a container that ran the recipe itself
 * before keeps the same client owner. undefined when the file holds no machine id.
 */
export function identifierFromMachineId(file: Buffer): string | undefined {
  if (!MACHINE_ID.test(file.toString('latin1').trim())) return undefined;
  return createHash('sha256').update(file).digest('hex').slice(0, CLIENT_ID_MAX);
}

/** 128 random bits in hex, for a namespace with no machine id of its own. */
export function randomIdentifier(): string {
  return randomBytes(16).toString('hex');
}

/** How a namespace seen for the first time gets its identifier; `off`: nsidmap leaves it alone. */
export const CLIENTID_FROM = ['machine-id', 'random', 'off'] as const;
export type ClientIdFrom = (typeof CLIENTID_FROM)[number];

export type ClientIdRule = { readonly from: ClientIdFrom } | { readonly from: 'fixed'; readonly value: string };

/** The policy's `clientid` block (docs/policy.md). */
export interface ClientIdPolicy {
  readonly from?: ClientIdFrom;
  readonly namespaces?: Readonly<Record<string, ClientIdRule>>;
}

export const DEFAULT_CLIENTID_FROM: ClientIdFrom = 'machine-id';

/** The rule for one namespace key: its own entry, else the policy's default. */
export function ruleFor(policy: ClientIdPolicy | undefined, key: string): ClientIdRule {
  const own = policy?.namespaces && Object.hasOwn(policy.namespaces, key) ? policy.namespaces[key] : undefined;
  return own ?? { from: policy?.from ?? DEFAULT_CLIENTID_FROM };
}

/** Where a stored identifier came from. */
export const CLIENTID_SOURCES = ['machine-id', 'random', 'fixed', 'set', 'import'] as const;
export type ClientIdSource = (typeof CLIENTID_SOURCES)[number];

export interface Derivation {
  /** identifierFromMachineId of the namespace's own /etc/machine-id, when it has one */
  readonly machineId?: string;
  /** the namespace sees the host's machine-id (no root of its own): not its identity */
  readonly sharesHostMachineId?: boolean;
}

export type Decision =
  | { readonly action: 'off' }
  /** the stored identifier stands */
  | { readonly action: 'keep'; readonly identifier: string }
  /** store this one (new, or the policy's fixed value replaces what was stored) */
  | { readonly action: 'store'; readonly identifier: string; readonly source: ClientIdSource; readonly note?: string }
  /** the policy's fixed value is already another namespace's */
  | { readonly action: 'conflict'; readonly identifier: string; readonly holder: string };

/**
 * The identifier a namespace should hold. A stored one is kept whatever the default says — that
 * is what makes a restarted or migrated container the same client — except that a `fixed` value
 * in the policy is authoritative for its key. `holderOf` says which other key already holds an
 * identifier, so that a machine id shared by two containers (one image, cloned) or with the
 * host never gives two namespaces one identity: the later one gets a random identifier instead.
 */
export function decideIdentifier(
  rule: ClientIdRule,
  stored: string | undefined,
  derived: Derivation,
  holderOf: (identifier: string) => string | undefined,
): Decision {
  switch (rule.from) {
    case 'off':
      return { action: 'off' };
    case 'fixed': {
      if (stored === rule.value) return { action: 'keep', identifier: stored };
      const holder = holderOf(rule.value);
      return holder === undefined ? { action: 'store', identifier: rule.value, source: 'fixed' } : { action: 'conflict', identifier: rule.value, holder };
    }
    case 'machine-id':
    case 'random':
      if (stored !== undefined) return { action: 'keep', identifier: stored };
      return derive(rule.from, derived, holderOf);
  }
}

function derive(from: 'machine-id' | 'random', derived: Derivation, holderOf: (identifier: string) => string | undefined): Decision {
  if (from === 'random') return { action: 'store', identifier: randomIdentifier(), source: 'random' };
  if (derived.machineId === undefined) return { action: 'store', identifier: randomIdentifier(), source: 'random', note: 'no machine-id of its own' };
  if (derived.sharesHostMachineId) return { action: 'store', identifier: randomIdentifier(), source: 'random', note: 'it sees the host\'s machine-id' };
  const holder = holderOf(derived.machineId);
  if (holder !== undefined) return { action: 'store', identifier: randomIdentifier(), source: 'random', note: `its machine-id gives the identifier of ${holder}` };
  return { action: 'store', identifier: derived.machineId, source: 'machine-id' };
}
