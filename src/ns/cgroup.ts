/**
 * /proc/<pid>/cgroup → cgroup path → container. Pure, no I/O.
 *
 * Container runtimes leave no label on a task except where they put it in the cgroup tree, and
 * each runtime (and each cgroup driver of it) names that place its own way. The recognisers below
 * are tried on the path's components from the deepest up, so a container nested in another
 * (docker in an nspawn machine, a podman `…/libpod-<id>.scope/container` leaf) resolves to the
 * innermost one, and whatever the runtime adds below its own cgroup is ignored.
 */
import type { ContainerInfo } from '../types.js';

/** kernel/cgroup/cgroup.c (proc_cgroup_show) appends this to a removed v2 cgroup's path. */
const DELETED = ' (deleted)';

interface CgroupLine {
  readonly hierarchy: string;
  readonly controllers: string;
  readonly path: string;
}

/** `hierarchy-id:controllers:path`; the path may itself hold colons, so split twice only. */
function splitLine(line: string): CgroupLine | undefined {
  const a = line.indexOf(':');
  const b = a < 0 ? -1 : line.indexOf(':', a + 1);
  if (b < 0) return undefined;
  let path = line.slice(b + 1);
  if (path.endsWith(DELETED)) path = path.slice(0, -DELETED.length);
  if (!path.startsWith('/')) return undefined;
  return { hierarchy: line.slice(0, a), controllers: line.slice(a + 1, b), path };
}

/**
 * The task's cgroup path: the v2 line (`0::/…`). On a hybrid host (v1 controllers plus a unified
 * tree) a runtime driving v1 may never move the task in the unified tree, leaving it at `/`; then
 * systemd's named v1 hierarchy (`N:name=systemd:/…`) is where the runtime's placement shows, and
 * on a v1-only host it is the only one. undefined when neither line is present.
 */
export function parseCgroupFile(text: string): string | undefined {
  let unified: string | undefined;
  let systemd: string | undefined;
  for (const raw of text.split('\n')) {
    const line = splitLine(raw);
    if (!line) continue;
    if (line.hierarchy === '0' && line.controllers === '') unified = line.path;
    else if (line.controllers === 'name=systemd') systemd = line.path;
  }
  if (unified !== undefined && (unified !== '/' || systemd === undefined)) return unified;
  return systemd ?? unified;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * `<prefix>-<64hex>[.scope]`: the systemd driver makes a `.scope`, the cgroupfs driver of cri-o
 * and podman the bare name. `crio-conmon-<id>` and `libpod-conmon-<id>` (the monitor beside the
 * container) do not match: after the prefix comes `conmon-`, not hex.
 */
const SCOPE = /^(docker|cri-containerd|crio|libpod)-([0-9a-f]{64})(?:\.scope)?$/;
const SCOPE_RUNTIME: Readonly<Record<string, string>> = {
  docker: 'docker',
  'cri-containerd': 'containerd',
  crio: 'cri-o',
  libpod: 'podman',
};

function fromScope(name: string): ContainerInfo | undefined {
  const m = SCOPE.exec(name);
  const runtime = m ? SCOPE_RUNTIME[m[1]!] : undefined;
  return m && runtime ? { id: m[2]!, runtime } : undefined;
}

/** docker's cgroupfs driver: `/docker/<64hex>`. */
function fromDockerDir(name: string, parent: string | undefined): ContainerInfo | undefined {
  return parent === 'docker' && HEX64.test(name) ? { id: name, runtime: 'docker' } : undefined;
}

const POD = /^pod[0-9a-f][0-9a-f_-]*$/;

/**
 * The kubelet's cgroupfs driver: `/kubepods[/<qos>]/pod<uid>/<64hex>`. The path does not say which
 * CRI runtime made it; containerd is by far the common one (and dockershim, the other that used
 * this shape, left Kubernetes in 1.24).
 */
function fromKubepodsDir(name: string, parent: string | undefined, parts: readonly string[]): ContainerInfo | undefined {
  if (parent === undefined || !POD.test(parent) || !HEX64.test(name)) return undefined;
  return parts.includes('kubepods') ? { id: name, runtime: 'containerd' } : undefined;
}

/**
 * systemd unit names escape every byte outside [A-Za-z0-9:_.] as `\xNN` (`-` is `\x2d`);
 * multi-byte characters are escaped byte by byte, so decode to bytes, then UTF-8.
 */
export function unescapeUnitName(escaped: string): string {
  if (!escaped.includes('\\x')) return escaped;
  const bytes: number[] = [];
  const re = /\\x([0-9a-fA-F]{2})|([^\\]+|\\)/g;
  for (let m = re.exec(escaped); m; m = re.exec(escaped)) {
    if (m[1] !== undefined) bytes.push(parseInt(m[1], 16));
    else bytes.push(...Buffer.from(m[2]!, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

const MACHINE = /^machine-(.+)\.scope$/;

/** systemd-machined machines (systemd-nspawn): `/machine.slice/machine-<escaped name>.scope`. */
function fromMachine(name: string, parent: string | undefined): ContainerInfo | undefined {
  const m = parent === 'machine.slice' ? MACHINE.exec(name) : null;
  return m ? { id: unescapeUnitName(m[1]!), runtime: 'systemd-nspawn' } : undefined;
}

const LXC_PAYLOAD = 'lxc.payload.';

/** LXC ≥ 4 and LXD: `lxc.payload.<name>` (not `lxc.monitor.<name>`); LXC 3: `/lxc/<name>`. */
function fromLxc(name: string, parent: string | undefined): ContainerInfo | undefined {
  if (name.startsWith(LXC_PAYLOAD) && name.length > LXC_PAYLOAD.length) {
    return { id: name.slice(LXC_PAYLOAD.length), runtime: 'lxc' };
  }
  return parent === 'lxc' ? { id: name, runtime: 'lxc' } : undefined;
}

/** The container whose cgroup holds `path` (the innermost, if nested); undefined for none. */
export function containerFromCgroup(path: string): ContainerInfo | undefined {
  const parts = path.split('/').filter((p) => p !== '');
  for (let i = parts.length - 1; i >= 0; i--) {
    const name = parts[i]!;
    const parent = parts[i - 1];
    const found = fromScope(name) ?? fromDockerDir(name, parent) ??
      fromKubepodsDir(name, parent, parts) ?? fromMachine(name, parent) ?? fromLxc(name, parent);
    if (found) return found;
  }
  return undefined;
}
