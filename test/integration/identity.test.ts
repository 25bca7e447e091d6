// SPDX-License-Identifier: Apache-2.0
// The identity resolver against real cgroups: for each kind, the test creates a cgroup
// named the way that runtime or launcher names its own (below a directory of its own under
// the cgroup2 mount), moves a process it started there, and takes that process's cgroup id
// from the kernel (bpf_get_current_cgroup_id at its exec, test/fixtures/bpf/cgroup_id.bpf.c,
// the helper the socket probes fill flows' cgroupId with). The resolver, given only that id
// (through open_by_handle_at, and again through a walk), or only the pid, must name the
// cgroup the test created and what its name says: runtime, id, pod UID, app id; and the
// process chain the test started. Names that live in runtime files come from files the test
// writes in each runtime's documented format (no runtime runs here).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { privileged } from '../helpers/privileged.js';
import { OBJECT_DIR } from '../helpers/daemon.js';
import { TestCgroups } from '../helpers/cgroups.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { IdentityResolver } from '../../daemon/src/identity/resolver.js';
import { ContainerNames } from '../../daemon/src/identity/names.js';
import { DesktopEntries } from '../../daemon/src/identity/desktop.js';
import type { Identity } from '../../daemon/src/identity/types.js';

const hex = (seed: string) => Buffer.from(seed.repeat(32)).toString('hex').slice(0, 64);
const DOCKER = hex('d0');
const CONTAINERD = hex('c1');
const CGROUPFS_K8S = hex('c2');
const PODMAN = hex('p0');
const UID = '0b7632a2-a56e-4278-987a-22de18008dbe';
const UID2 = '6e7520b1-f6e3-45bd-8673-1d64d102fedf';
const SNAP_UUID = '5c0f6a7e-2a3b-4c1d-9e8f-0a1b2c3d4e5f';

interface Kind {
  name: string;
  /** Below the test's top directory. */
  rel: string;
  want: (top: string) => Omit<Identity, 'tree' | 'cgroupId' | 'cgroup'>;
}

const user = { uid: 1000 };
const KINDS: Kind[] = [
  { name: 'a system service', rel: 'system.slice/nginx.service', want: () => ({ unit: 'nginx.service', slice: 'system.slice' }) },
  { name: 'docker (systemd driver)', rel: `system.slice/docker-${DOCKER}.scope`, want: () => ({ unit: `docker-${DOCKER}.scope`, slice: 'system.slice', container: { runtime: 'docker', id: DOCKER, name: 'db' } }) },
  {
    name: 'containerd under Kubernetes (systemd driver)',
    rel: `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replace(/-/g, '_')}.slice/cri-containerd-${CONTAINERD}.scope`,
    want: () => ({
      unit: `cri-containerd-${CONTAINERD}.scope`,
      slice: `kubepods-burstable-pod${UID.replace(/-/g, '_')}.slice`,
      container: { runtime: 'containerd', id: CONTAINERD, name: 'app', podUid: UID, podName: 'shop-7d9f', namespace: 'prod', qos: 'burstable' },
    }),
  },
  {
    name: 'a Kubernetes container under the cgroupfs driver (runtime from its state)',
    rel: `kubepods/besteffort/pod${UID2}/${CGROUPFS_K8S}`,
    want: () => ({ unit: null, slice: null, container: { runtime: 'containerd', id: CGROUPFS_K8S, name: 'worker', podUid: UID2, podName: 'batch-1', namespace: 'jobs', qos: 'besteffort' } }),
  },
  { name: 'podman', rel: `machine.slice/libpod-${PODMAN}.scope/container`, want: () => ({ unit: `libpod-${PODMAN}.scope`, slice: 'machine.slice', container: { runtime: 'podman', id: PODMAN, name: 'web' } }) },
  { name: 'systemd-nspawn', rel: 'machine.slice/systemd-nspawn@web\\x2d1.service/payload', want: () => ({ unit: 'systemd-nspawn@web\\x2d1.service', slice: 'machine.slice', container: { runtime: 'systemd-nspawn', id: 'web-1', name: 'web-1' } }) },
  {
    name: 'a Flatpak app',
    rel: 'user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.example.App-4242.scope',
    want: () => ({ unit: 'user@1000.service', slice: 'user-1000.slice', userUnit: { ...user, unit: 'app-flatpak-org.example.App-4242.scope', slice: 'app.slice' }, app: { kind: 'flatpak', id: 'org.example.App', desktopId: 'org.example.App', launcher: 'flatpak', name: 'Example App' } }),
  },
  {
    name: 'a desktop app (app-<launcher>-<id>-<random>.scope)',
    rel: 'user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-org.example.Editor-777.scope',
    want: () => ({ unit: 'user@1000.service', slice: 'user-1000.slice', userUnit: { ...user, unit: 'app-gnome-org.example.Editor-777.scope', slice: 'app.slice' }, app: { kind: 'desktop', id: 'org.example.Editor', desktopId: 'org.example.Editor', launcher: 'gnome', name: 'Example Editor' } }),
  },
  {
    name: 'a snap',
    rel: `user.slice/user-1000.slice/user@1000.service/app.slice/snap.hello.world-${SNAP_UUID}.scope`,
    want: () => ({ unit: 'user@1000.service', slice: 'user-1000.slice', userUnit: { ...user, unit: `snap.hello.world-${SNAP_UUID}.scope`, slice: 'app.slice' }, app: { kind: 'snap', id: 'hello', desktopId: 'hello_world', name: 'Hello World' } }),
  },
];

/** What the runtimes and launchers would have on disk for these, in their documented formats. */
function writeRuntimeState(dir: string): { names: ContainerNames; desktop: DesktopEntries } {
  const w = (rel: string, data: unknown) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), typeof data === 'string' ? data : JSON.stringify(data));
  };
  w(`docker/containers/${DOCKER}/config.v2.json`, { ID: DOCKER, Name: '/db', Config: { Labels: {} } });
  w(`containerd/io.containerd.runtime.v2.task/k8s.io/${CONTAINERD}/config.json`, {
    ociVersion: '1.0.2',
    annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.container-name': 'app', 'io.kubernetes.cri.sandbox-name': 'shop-7d9f', 'io.kubernetes.cri.sandbox-namespace': 'prod', 'io.kubernetes.cri.sandbox-uid': UID },
  });
  w(`containerd/io.containerd.runtime.v2.task/k8s.io/${CGROUPFS_K8S}/config.json`, {
    annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.container-name': 'worker', 'io.kubernetes.cri.sandbox-name': 'batch-1', 'io.kubernetes.cri.sandbox-namespace': 'jobs', 'io.kubernetes.cri.sandbox-uid': UID2 },
  });
  w('containers/storage/overlay-containers/containers.json', [{ id: PODMAN, names: ['web'], image: hex('i0'), layer: hex('l0') }]);
  w('share/applications/org.example.App.desktop', '[Desktop Entry]\nType=Application\nName=Example App\nName[de]=Beispiel\nExec=app\n');
  w('share/applications/org.example.Editor.desktop', '# comment\n[Desktop Entry]\nName=Example Editor\n[Desktop Action new]\nName=New Window\n');
  w('share/applications/hello_world.desktop', '[Desktop Entry]\nName=Hello World\n');
  return {
    names: new ContainerNames({ docker: path.join(dir, 'docker'), podman: path.join(dir, 'containers/storage'), containerdState: path.join(dir, 'containerd'), crioStorage: path.join(dir, 'none'), crioRun: path.join(dir, 'none') }),
    desktop: new DesktopEntries({ systemDataDirs: [path.join(dir, 'share')] }),
  };
}

describe('identity resolver on real cgroups', privileged({ timeout: 120_000 }), () => {
  let cgs: TestCgroups | undefined;
  let obj: BpfObject | undefined;
  let link: L.Ptr | null = null;
  let tmp: string;
  const procs: ChildProcess[] = [];
  const placed = new Map<string, { path: string; shPid: number; sleepPid: number; kernelId: bigint }>();

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-identity-'));
    cgs = await TestCgroups.create();
    obj = BpfObject.open(path.join(OBJECT_DIR, 'fixtures/cgroup_id.bpf.o'));
    obj.load();
    link = L.bpf_program__attach(obj.program('on_exec'));
    assert.ok(link, 'attaching the exec probe');
    const ids = obj.map('cgid_by_tgid');
    for (const k of KINDS) {
      const cgPath = cgs.mkdir(k.rel);
      // A shell waits to be moved, then execs a shell that starts `sleep` (so both run in
      // the cgroup and the exec probe sees them there) and reports its pid.
      const sh = spawn('sh', ['-c', 'read go; exec sh -c \'sleep 300 & echo $!; wait\''], { stdio: ['pipe', 'pipe', 'inherit'] });
      procs.push(sh);
      cgs.move(sh.pid!, cgPath);
      const line = new Promise<string>((resolve, reject) => {
        let out = '';
        sh.stdout!.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('\n')) resolve(out.trim());
        });
        sh.once('exit', (c) => reject(new Error(`shell for ${k.name} exited (${c})`)));
      });
      sh.stdin!.write('go\n');
      const sleepPid = Number(await line);
      const key = Buffer.alloc(4);
      key.writeUInt32LE(sh.pid!);
      const v = ids.lookup(key);
      assert.ok(v, `the kernel saw ${k.name}'s shell exec`);
      // `echo $!` may run before the forked child has exec'd sleep
      const sleepKey = Buffer.alloc(4);
      sleepKey.writeUInt32LE(sleepPid);
      let vs = ids.lookup(sleepKey);
      for (let i = 0; !vs && i < 200; i++) {
        await new Promise((r) => setTimeout(r, 10));
        vs = ids.lookup(sleepKey);
      }
      assert.ok(vs && vs.readBigUInt64LE(0) === v.readBigUInt64LE(0), 'sleep runs in the same cgroup');
      placed.set(k.name, { path: cgPath, shPid: sh.pid!, sleepPid, kernelId: v.readBigUInt64LE(0) });
    }
  });

  after(async () => {
    for (const p of procs) if (p.pid && p.exitCode === null) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
    if (link) L.bpf_link__destroy(link);
    obj?.close();
    await cgs?.destroy();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  for (const useHandles of [true, false]) {
    test(`from the kernel's cgroup id alone (${useHandles ? 'open_by_handle_at' : 'walk of the hierarchy'}): runtime, id, pod UID, app id`, async () => {
      const r = new IdentityResolver({ useHandles, ...writeRuntimeState(tmp) });
      try {
        for (const k of KINDS) {
          const p = placed.get(k.name)!;
          const got = await r.resolveAsync({ cgroupId: p.kernelId.toString() });
          assert.deepEqual(got, { cgroupId: p.kernelId.toString(), cgroup: p.path, ...k.want(cgs!.top), tree: [] }, k.name);
        }
        const s = r.stats();
        if (useHandles) assert.equal(s.byHandle, KINDS.length, JSON.stringify(s));
        else assert.deepEqual([s.byWalk, s.walks], [KINDS.length, 1], `one walk found them all: ${JSON.stringify(s)}`);
      } finally {
        r.close();
      }
    });
  }

  test('from the pid: the same identity, and the process chain up to the unit\'s main process', () => {
    const r = new IdentityResolver({ useHandles: false, ...writeRuntimeState(tmp) });
    try {
      for (const k of KINDS) {
        const p = placed.get(k.name)!;
        const got = r.resolve({ pid: p.sleepPid });
        assert.equal(got.cgroupId, p.kernelId.toString(), k.name);
        assert.equal(got.cgroup, p.path);
        // sleep, then the shell that started it; the shell's parent (this test) is in another cgroup
        assert.deepEqual(got.tree, [{ pid: p.sleepPid, comm: 'sleep' }, { pid: p.shPid, comm: 'sh' }], k.name);
      }
      assert.equal(r.stats().walks, 0, 'pids need no walk');
    } finally {
      r.close();
    }
  });

  test('a cgroup that is gone: its id still resolves if it was seen, and an unknown id is a miss', async () => {
    const r = new IdentityResolver({ useHandles: false, minRewalkMs: 0 });
    try {
      const gonePath = cgs!.mkdir('system.slice/gone.service');
      const goneId = fs.statSync(path.join(cgs!.root, gonePath), { bigint: true }).ino;
      assert.equal((await r.resolveAsync({ cgroupId: goneId })).unit, 'gone.service');
      fs.rmdirSync(path.join(cgs!.root, gonePath));
      const again = new IdentityResolver({ useHandles: false, minRewalkMs: 0, maxEntries: 0 }); // no identity cache: the walk index alone
      try {
        assert.equal((await again.resolveAsync({ cgroupId: goneId })).cgroup, null, 'a fresh resolver never saw it');
      } finally {
        again.close();
      }
      assert.equal(r.resolve({ cgroupId: goneId }).unit, 'gone.service', 'what was seen stays');
      assert.throws(() => r.resolve({ cgroupId: 'abc' }), /cgroupId must be a decimal string/);
      assert.throws(() => r.resolve({ pid: -1 }), /pid must be a positive integer/);
      assert.throws(() => r.resolve({}), /needs a cgroupId or a pid/);
    } finally {
      r.close();
    }
  });
});
