import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { containerFromCgroup, parseCgroupFile, unescapeUnitName } from '../../src/ns/cgroup.js';
import type { ContainerInfo } from '../../src/types.js';

const ID = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';
const ID2 = '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const POD = 'pod8d1e5e2c-4f4a-4b8e-9d55-2f1e3a7c9b10';

describe('parseCgroupFile', () => {
  const cases: [string, string, string | undefined][] = [
    ['a cgroup v2 host', '0::/system.slice/docker-x.scope\n', '/system.slice/docker-x.scope'],
    ['the root cgroup', '0::/\n', '/'],
    [
      'a hybrid host where the unified path is set',
      '12:memory:/system.slice/a.service\n1:name=systemd:/system.slice/a.service\n0::/system.slice/a.service\n',
      '/system.slice/a.service',
    ],
    [
      'a hybrid host with the task left at the unified root: name=systemd',
      `4:memory:/docker/${ID}\n1:name=systemd:/docker/${ID}\n0::/\n`,
      `/docker/${ID}`,
    ],
    ['a v1-only host: name=systemd', `3:cpu,cpuacct:/x\n1:name=systemd:/user.slice/u.scope\n`, '/user.slice/u.scope'],
    ['a path holding colons', '0::/a:b/c::d\n', '/a:b/c::d'],
    ['a removed cgroup', '0::/system.slice/gone.scope (deleted)\n', '/system.slice/gone.scope'],
    ['v1 controllers only', '4:memory:/x\n3:cpu:/x\n', undefined],
    ['empty', '', undefined],
    ['garbage', 'hello\nworld\n', undefined],
    ['a relative path is not a path', '0::x\n', undefined],
  ];
  for (const [name, text, want] of cases) it(name, () => assert.equal(parseCgroupFile(text), want));
});

describe('containerFromCgroup recognises', () => {
  const cases: [string, string, ContainerInfo][] = [
    ['docker, systemd driver', `/system.slice/docker-${ID}.scope`, { id: ID, runtime: 'docker' }],
    ['docker, cgroupfs driver', `/docker/${ID}`, { id: ID, runtime: 'docker' }],
    [
      'docker rootless',
      `/user.slice/user-1000.slice/user@1000.service/user.slice/docker-${ID}.scope`,
      { id: ID, runtime: 'docker' },
    ],
    ['containerd (CRI), systemd driver', `/system.slice/cri-containerd-${ID}.scope`, { id: ID, runtime: 'containerd' }],
    [
      'a kubepods pod, systemd driver',
      `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-${POD.replaceAll('-', '_')}.slice/cri-containerd-${ID}.scope`,
      { id: ID, runtime: 'containerd' },
    ],
    ['a kubepods pod, cgroupfs driver', `/kubepods/burstable/${POD}/${ID}`, { id: ID, runtime: 'containerd' }],
    ['a guaranteed kubepods pod, cgroupfs driver', `/kubepods/${POD}/${ID}`, { id: ID, runtime: 'containerd' }],
    [
      'cri-o, systemd driver',
      `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crio-${ID}.scope`,
      { id: ID, runtime: 'cri-o' },
    ],
    ['cri-o, the container leaf below its scope', `/kubepods.slice/crio-${ID}.scope/container`, { id: ID, runtime: 'cri-o' }],
    ['cri-o, cgroupfs driver', `/kubepods/burstable/${POD}/crio-${ID}`, { id: ID, runtime: 'cri-o' }],
    ['podman rootful', `/machine.slice/libpod-${ID}.scope`, { id: ID, runtime: 'podman' }],
    [
      'podman rootless',
      `/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope`,
      { id: ID, runtime: 'podman' },
    ],
    ['podman with crun\'s container leaf', `/machine.slice/libpod-${ID}.scope/container`, { id: ID, runtime: 'podman' }],
    ['podman, cgroupfs driver', `/libpod_parent/libpod-${ID}`, { id: ID, runtime: 'podman' }],
    ['systemd-nspawn', '/machine.slice/machine-web.scope', { id: 'web', runtime: 'systemd-nspawn' }],
    [
      'systemd-nspawn with an escaped name',
      '/machine.slice/machine-my\\x2dweb\\x2d01.scope/payload/system.slice/nginx.service',
      { id: 'my-web-01', runtime: 'systemd-nspawn' },
    ],
    ['lxc 4 / LXD', '/lxc.payload.c1', { id: 'c1', runtime: 'lxc' }],
    ['lxc 4 with systemd inside', '/lxc.payload.c1/system.slice/cron.service', { id: 'c1', runtime: 'lxc' }],
    ['lxc 3', '/lxc/c1', { id: 'c1', runtime: 'lxc' }],
    ['lxc 3, a task below the container', '/lxc/c1/init.scope', { id: 'c1', runtime: 'lxc' }],
    [
      'the innermost of nested containers',
      `/machine.slice/machine-outer.scope/payload/system.slice/docker-${ID2}.scope`,
      { id: ID2, runtime: 'docker' },
    ],
    ['docker in lxc', `/lxc.payload.c1/docker/${ID}`, { id: ID, runtime: 'docker' }],
  ];
  for (const [name, path, want] of cases) it(name, () => assert.deepEqual(containerFromCgroup(path), want));
});

describe('containerFromCgroup finds no container in', () => {
  const cases: [string, string][] = [
    ['a login session', '/user.slice/user-1000.slice/session-2.scope'],
    ['the user manager', '/user.slice/user-1000.slice/user@1000.service/init.scope'],
    ['init', '/init.scope'],
    ['the root', '/'],
    ['a service', '/system.slice/docker.service'],
    ['the cri-o monitor', `/machine.slice/crio-conmon-${ID}.scope`],
    ['the podman monitor', `/machine.slice/libpod-conmon-${ID}.scope`],
    ['the lxc monitor', '/lxc.monitor.c1'],
    ['a short id', '/system.slice/docker-abc123.scope'],
    ['an upper-case id', `/system.slice/docker-${ID.toUpperCase()}.scope`],
    ['a 64-hex directory not under docker or a pod', `/system.slice/${ID}`],
    ['a pod directory outside kubepods', `/elsewhere/${POD}/${ID}`],
    ['a machine scope outside machine.slice', '/system.slice/machine-x.scope'],
    ['an empty lxc payload name', '/lxc.payload.'],
  ];
  for (const [name, path] of cases) it(name, () => assert.equal(containerFromCgroup(path), undefined));
});

describe('unescapeUnitName', () => {
  const cases: [string, string][] = [
    ['plain', 'plain'],
    ['a\\x2db', 'a-b'],
    ['caf\\xc3\\xa9', 'café'],
    ['back\\slash', 'back\\slash'],
    ['\\x2d\\x2d', '--'],
  ];
  for (const [escaped, want] of cases) it(`${escaped} → ${want}`, () => assert.equal(unescapeUnitName(escaped), want));
});
