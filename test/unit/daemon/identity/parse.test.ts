// SPDX-License-Identifier: Apache-2.0
// The cgroup-name parsers against paths as the tools that create them write them. Where a
// row comes from: the runtimes' and systemd's own sources and docs, and paths quoted from
// running systems in public code (each row says which). Ids are 64 hex digits as the
// runtimes make them; UIDs keep the shape Kubernetes gives them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAppUnit, parseCgroupPath, v2PathFromProcCgroup, type ParsedCgroup } from '../../../../daemon/src/identity/parse.js';
import { unescapeUnitName } from '../../../../daemon/src/identity/unitname.js';

const ID = '6dd05e91f00f99281f70b1fd90a29e5cc30b0dab243cb7cfb6153d8017872394'; // podman debug log
const ID2 = '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const POD_ID = '0a7c8532b5e0fb5064b894cc1381a62b53253dd450ad088ef0822ce37efceb04'; // podman pod inspect
const UID = '0b7632a2-a56e-4278-987a-22de18008dbe'; // kubernetes e2e test comment
const UID_ = UID.replace(/-/g, '_');

interface Row {
  path: string;
  source: string;
  want: ParsedCgroup;
}

const rows: Row[] = [
  // --- systemd -------------------------------------------------------------------------
  { path: '/init.scope', source: 'systemd: PID 1 in the root slice', want: { unit: 'init.scope', slice: '-.slice' } },
  { path: '/system.slice/nginx.service', source: 'systemd system service', want: { unit: 'nginx.service', slice: 'system.slice' } },
  { path: '/system.slice/system-getty.slice/getty@tty1.service', source: 'systemd template instance in its own slice', want: { unit: 'getty@tty1.service', slice: 'system-getty.slice' } },
  { path: '/user.slice/user-1000.slice/session-3.scope', source: 'logind session scope (quoted in a Java test)', want: { unit: 'session-3.scope', slice: 'user-1000.slice' } },
  { path: '/system.slice/docker.service', source: 'dockerd itself: a service, not a container', want: { unit: 'docker.service', slice: 'system.slice' } },
  {
    path: '/user.slice/user-1000.slice/user@1000.service/init.scope',
    source: 'the user manager',
    want: { unit: 'user@1000.service', slice: 'user-1000.slice', userUnit: { uid: 1000, unit: 'init.scope', slice: '-.slice' } },
  },
  {
    path: '/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service',
    source: 'a user service',
    want: { unit: 'user@1000.service', slice: 'user-1000.slice', userUnit: { uid: 1000, unit: 'pipewire.service', slice: 'app.slice' } },
  },
  { path: '/', source: 'the root cgroup (kernel threads)', want: { unit: null, slice: null } },

  // --- docker --------------------------------------------------------------------------
  { path: `/system.slice/docker-${ID}.scope`, source: 'moby newCgroupParent: system.slice:docker:<id> (systemd driver)', want: { unit: `docker-${ID}.scope`, slice: 'system.slice', container: { runtime: 'docker', id: ID } } },
  { path: `/docker/${ID}`, source: 'moby newCgroupParent: "docker" (cgroupfs driver)', want: { unit: null, slice: null, container: { runtime: 'docker', id: ID } } },
  { path: `/docker/${ID}/docker/${ID2}`, source: 'docker in docker: the innermost container', want: { unit: null, slice: null, container: { runtime: 'docker', id: ID2 } } },

  // --- containerd ----------------------------------------------------------------------
  {
    path: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`,
    source: 'kubelet systemd driver + containerd (UID dashes become underscores)',
    want: { unit: `cri-containerd-${ID}.scope`, slice: `kubepods-burstable-pod${UID_}.slice`, container: { runtime: 'containerd', id: ID, podUid: UID, qos: 'burstable' } },
  },
  {
    path: `/kubepods/burstable/pod${UID}/${ID}`,
    source: 'containerd cgroupsPath /kubepods/burstable/pod<uid>/<cid> (cgroupfs driver; runtime not in the name)',
    want: { unit: null, slice: null, container: { runtime: 'cri', id: ID, podUid: UID, qos: 'burstable' } },
  },
  { path: `/kubepods/pod${UID}/${ID}`, source: 'k3s notes: Guaranteed pods directly under kubepods', want: { unit: null, slice: null, container: { runtime: 'cri', id: ID, podUid: UID, qos: 'guaranteed' } } },
  { path: `/system.slice/nerdctl-${ID}.scope`, source: 'nerdctl, systemd driver', want: { unit: `nerdctl-${ID}.scope`, slice: 'system.slice', container: { runtime: 'containerd', id: ID } } },
  { path: `/default/${ID}`, source: 'ctr/nerdctl cgroupfs: /<containerd namespace>/<id>', want: { unit: null, slice: null, container: { runtime: 'containerd', id: ID }, containerdNamespace: 'default' } },
  { path: `/k8s.io/${ID}`, source: 'crictl without kubelet (runc error message quoting /k8s.io/<id>)', want: { unit: null, slice: null, container: { runtime: 'containerd', id: ID }, containerdNamespace: 'k8s.io' } },

  // --- CRI-O ---------------------------------------------------------------------------
  {
    path: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-${ID}.scope`,
    source: 'kubernetes e2e: CRI-O under a burstable pod',
    want: { unit: `crio-${ID}.scope`, slice: `kubepods-burstable-pod${UID_}.slice`, container: { runtime: 'cri-o', id: ID, podUid: UID, qos: 'burstable' } },
  },
  {
    path: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-conmon-${ID}.scope`,
    source: 'kubernetes e2e: CRI-O\'s conmon is not a container',
    want: { unit: `crio-conmon-${ID}.scope`, slice: `kubepods-burstable-pod${UID_}.slice` },
  },
  {
    path: `/kubepods.slice/kubepods-pod${UID_}.slice/crio-${ID}.scope`,
    source: 'rt-operator notes: Kubernetes 1.25 + CRI-O, Guaranteed pod',
    want: { unit: `crio-${ID}.scope`, slice: `kubepods-pod${UID_}.slice`, container: { runtime: 'cri-o', id: ID, podUid: UID, qos: 'guaranteed' } },
  },
  {
    path: `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/crio-${ID}.scope`,
    source: 'BestEffort pod',
    want: { unit: `crio-${ID}.scope`, slice: `kubepods-besteffort-pod${UID_}.slice`, container: { runtime: 'cri-o', id: ID, podUid: UID, qos: 'besteffort' } },
  },
  { path: `/kubepods/besteffort/pod${UID}/crio-${ID}`, source: 'CRI-O, cgroupfs driver', want: { unit: null, slice: null, container: { runtime: 'cri-o', id: ID, podUid: UID, qos: 'besteffort' } } },
  {
    path: `/kubepods.slice/kubepods-pod${UID_}.slice/docker-${ID}.scope`,
    source: 'rt-operator notes: Kubernetes 1.23 with the docker runtime',
    want: { unit: `docker-${ID}.scope`, slice: `kubepods-pod${UID_}.slice`, container: { runtime: 'docker', id: ID, podUid: UID, qos: 'guaranteed' } },
  },

  // --- podman --------------------------------------------------------------------------
  { path: `/machine.slice/libpod-${ID}.scope`, source: 'podman debug log: machine.slice, rootful, systemd manager', want: { unit: `libpod-${ID}.scope`, slice: 'machine.slice', container: { runtime: 'podman', id: ID } } },
  { path: `/machine.slice/libpod-${ID}.scope/container`, source: 'podman --cgroups=split / systemd in the container', want: { unit: `libpod-${ID}.scope`, slice: 'machine.slice', container: { runtime: 'podman', id: ID } } },
  { path: `/machine.slice/libpod-conmon-${ID}.scope`, source: 'podman debug log: conmon is not the container', want: { unit: `libpod-conmon-${ID}.scope`, slice: 'machine.slice' } },
  {
    path: `/machine.slice/machine-libpod_pod_${POD_ID}.slice/libpod-${ID}.scope`,
    source: 'podman pod inspect CgroupPath',
    want: { unit: `libpod-${ID}.scope`, slice: `machine-libpod_pod_${POD_ID}.slice`, container: { runtime: 'podman', id: ID, podId: POD_ID } },
  },
  {
    path: `/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope/container`,
    source: 'rootless podman (a user unit)',
    want: { unit: 'user@1000.service', slice: 'user-1000.slice', userUnit: { uid: 1000, unit: `libpod-${ID}.scope`, slice: 'user.slice' }, container: { runtime: 'podman', id: ID } },
  },
  { path: `/libpod_parent/libpod-${ID}`, source: 'podman cgroupfs manager (TestConmonCgroupfsPath: /libpod_parent)', want: { unit: null, slice: null, container: { runtime: 'podman', id: ID } } },

  // --- machines ------------------------------------------------------------------------
  {
    path: '/machine.slice/systemd-nspawn@debian.service/payload/system.slice/nginx.service',
    source: 'systemd-nspawn@.service: the container\'s own units below payload/',
    want: { unit: 'systemd-nspawn@debian.service', slice: 'machine.slice', container: { runtime: 'systemd-nspawn', id: 'debian', name: 'debian' } },
  },
  { path: '/machine.slice/machine-web\\x2d1.scope/payload', source: 'nspawn registered with machined (escaped name)', want: { unit: 'machine-web\\x2d1.scope', slice: 'machine.slice', container: { runtime: 'systemd-nspawn', id: 'web-1', name: 'web-1' } } },
  { path: '/machine.slice/machine-qemu\\x2d1\\x2dvm.scope', source: 'libvirt guest (quoted in a C++ test)', want: { unit: 'machine-qemu\\x2d1\\x2dvm.scope', slice: 'machine.slice', container: { runtime: 'libvirt', id: 'qemu-1-vm', name: 'vm' } } },
  { path: '/lxc.payload.web', source: 'LXC 4+', want: { unit: null, slice: null, container: { runtime: 'lxc', id: 'web', name: 'web' } } },
  { path: '/lxc.monitor.web', source: 'LXC monitor: not the container', want: { unit: null, slice: null } },

  // --- desktop apps --------------------------------------------------------------------
  {
    path: '/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-com.rtosta.zapzap-15710.scope',
    source: 'flatpak 1.14: app-flatpak-%s-%d.scope (systemctl --user output quoted in notes)',
    want: { unit: 'user@1000.service', slice: 'user-1000.slice', userUnit: { uid: 1000, unit: 'app-flatpak-com.rtosta.zapzap-15710.scope', slice: 'app.slice' }, app: { kind: 'flatpak', id: 'com.rtosta.zapzap', desktopId: 'com.rtosta.zapzap', launcher: 'flatpak' } },
  },
  {
    path: '/user.slice/user-1000.slice/user@1000.service/app.slice/snap.firefox.firefox-5c0f6a7e-2a3b-4c1d-9e8f-0a1b2c3d4e5f.scope',
    source: 'snapd tracking.go: <escaped security tag>-<uuid>.scope',
    want: { unit: 'user@1000.service', slice: 'user-1000.slice', userUnit: { uid: 1000, unit: 'snap.firefox.firefox-5c0f6a7e-2a3b-4c1d-9e8f-0a1b2c3d4e5f.scope', slice: 'app.slice' }, app: { kind: 'snap', id: 'firefox', desktopId: 'firefox_firefox' } },
  },
  { path: '/system.slice/snap.lxd.daemon.service', source: 'a snap daemon: system service', want: { unit: 'snap.lxd.daemon.service', slice: 'system.slice', app: { kind: 'snap', id: 'lxd', desktopId: 'lxd_daemon' } } },
  {
    path: '/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-org.gnome.Evince-12345.scope',
    source: 'systemd.io/DESKTOP_ENVIRONMENTS: app-<launcher>-<ApplicationID>-<RANDOM>',
    want: { unit: 'user@1000.service', slice: 'user-1000.slice', userUnit: { uid: 1000, unit: 'app-gnome-org.gnome.Evince-12345.scope', slice: 'app.slice' }, app: { kind: 'desktop', id: 'org.gnome.Evince', desktopId: 'org.gnome.Evince', launcher: 'gnome' } },
  },
  {
    path: '/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox\\x2desr-4321.scope',
    source: 'gnome-shell: a - inside the desktop id is escaped',
    want: { unit: 'user@1000.service', slice: 'user-1000.slice', userUnit: { uid: 1000, unit: 'app-gnome-firefox\\x2desr-4321.scope', slice: 'app.slice' }, app: { kind: 'desktop', id: 'firefox-esr', desktopId: 'firefox-esr', launcher: 'gnome' } },
  },
  {
    path: '/user.slice/user-1000.slice/user@1000.service/app.slice/app-nm\\x2dapplet@autostart.service',
    source: 'systemd-xdg-autostart-generator: app-<id>@autostart.service',
    want: { unit: 'user@1000.service', slice: 'user-1000.slice', userUnit: { uid: 1000, unit: 'app-nm\\x2dapplet@autostart.service', slice: 'app.slice' }, app: { kind: 'desktop', id: 'nm-applet', desktopId: 'nm-applet' } },
  },
];

for (const r of rows) {
  test(`${r.path} (${r.source})`, () => {
    assert.deepEqual(parseCgroupPath(r.path), r.want);
  });
}

// Unit names alone, as the desktop docs write them (.service variants included).
const units: Array<[string, ReturnType<typeof parseAppUnit>]> = [
  ['app-KDE-org.kde.okular-12345.service', { kind: 'desktop', id: 'org.kde.okular', desktopId: 'org.kde.okular', launcher: 'KDE' }],
  ['app-flatpak-org.telegram.desktop-12345.service', { kind: 'flatpak', id: 'org.telegram.desktop', desktopId: 'org.telegram.desktop', launcher: 'flatpak' }],
  ['app-org.kde.konsole-7f3a9b2c.scope', { kind: 'desktop', id: 'org.kde.konsole', desktopId: 'org.kde.konsole' }],
  ['app-gnome-org.gnome.Terminal@9c1e.service', { kind: 'desktop', id: 'org.gnome.Terminal', desktopId: 'org.gnome.Terminal', launcher: 'gnome' }],
  [`snap.test\\x2dsnapd\\x2dtracking.hook.configure-5c0f6a7e-2a3b-4c1d-9e8f-0a1b2c3d4e5f.scope`, { kind: 'snap', id: 'test-snapd-tracking', desktopId: 'test-snapd-tracking_hook.configure' }],
  ['session-2.scope', undefined],
  ['dbus.service', undefined],
  ['app.slice', undefined],
  ['app-x.scope', undefined],
];
for (const [unit, want] of units) {
  test(`app unit ${unit}`, () => assert.deepEqual(parseAppUnit(unit), want));
}

test('a relative or empty path is refused, naming what was given', () => {
  assert.throws(() => parseCgroupPath('system.slice/x.service'), /cgroup path must be absolute .* got "system\.slice\/x\.service"/);
  assert.throws(() => parseCgroupPath(''), /got ""/);
});

test('/proc/<pid>/cgroup: the v2 line, on hybrid and unified hosts', () => {
  const hybrid = '12:pids:/system.slice/a.service\n1:name=systemd:/system.slice/a.service\n0::/system.slice/a.service\n';
  assert.equal(v2PathFromProcCgroup(hybrid), '/system.slice/a.service');
  assert.equal(v2PathFromProcCgroup('0::/\n'), '/');
  assert.equal(v2PathFromProcCgroup('1:name=systemd:/x\n'), null, 'v1 only: no v2 path');
  assert.equal(v2PathFromProcCgroup('0::/gone (deleted)\n'), '/gone');
});

test('unit name unescaping', () => {
  assert.equal(unescapeUnitName('web\\x2d1'), 'web-1');
  assert.equal(unescapeUnitName('a\\x2fb\\x5cc'), 'a/b\\c');
  assert.equal(unescapeUnitName('caf\\xc3\\xa9'), 'café');
  assert.equal(unescapeUnitName('plain'), 'plain');
});
