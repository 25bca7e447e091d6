// SPDX-License-Identifier: Apache-2.0
// Container names from the runtimes' state files, in the formats the runtimes write them
// (docker config.v2.json, containers/storage lists, OCI bundle annotations of containerd
// and CRI-O), and the .desktop Name lookup. The files are written here in those formats;
// test/integration/identity.test.ts runs the same readers behind real cgroups.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContainerNames } from '../../../../daemon/src/identity/names.js';
import { DesktopEntries, desktopEntryName } from '../../../../daemon/src/identity/desktop.js';
import { Passwd } from '../../../../daemon/src/identity/passwd.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-names-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const w = (rel: string, data: unknown) => {
  fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
  fs.writeFileSync(path.join(dir, rel), typeof data === 'string' ? data : JSON.stringify(data));
};
const id = (c: string) => c.repeat(64);
w('passwd', 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home-alice:/bin/sh\n');
const passwd = new Passwd(path.join(dir, 'passwd'));
const names = new ContainerNames({ docker: `${dir}/docker`, podman: `${dir}/storage`, containerdState: `${dir}/containerd`, crioStorage: `${dir}/storage`, crioRun: `${dir}/run-storage` }, passwd);

test('docker: the name, or the Kubernetes container name and pod from its labels', () => {
  w(`docker/containers/${id('a')}/config.v2.json`, { Name: '/web-1', Config: { Labels: { 'com.docker.compose.project': 'x' } } });
  w(`docker/containers/${id('b')}/config.v2.json`, { Name: '/k8s_app_shop-1_prod_uid_0', Config: { Labels: { 'io.kubernetes.container.name': 'app', 'io.kubernetes.pod.name': 'shop-1', 'io.kubernetes.pod.namespace': 'prod' } } });
  assert.deepEqual(names.enrich({ runtime: 'docker', id: id('a') }), { runtime: 'docker', id: id('a'), name: 'web-1' });
  assert.deepEqual(names.enrich({ runtime: 'docker', id: id('b') }), { runtime: 'docker', id: id('b'), name: 'app', podName: 'shop-1', namespace: 'prod' });
  assert.deepEqual(names.enrich({ runtime: 'docker', id: id('c') }), { runtime: 'docker', id: id('c') }, 'unknown: no name, no error');
});

test('podman: rootful list, --rm containers in the volatile list, rootless under the user\'s home', () => {
  w('storage/overlay-containers/containers.json', [{ id: id('d'), names: ['db'] }]);
  w('storage/overlay-containers/volatile-containers.json', [{ id: id('e'), names: ['tmp-run'] }]);
  fs.mkdirSync(path.join(dir, 'home-alice'), { recursive: true });
  const rootless = new ContainerNames({ podman: `${dir}/storage` }, new Passwd(path.join(dir, 'passwd2')));
  w('passwd2', `alice:x:1000:1000::${dir}/home-alice:/bin/sh\n`);
  w('home-alice/.local/share/containers/storage/overlay-containers/containers.json', [{ id: id('f'), names: ['mine'] }]);
  assert.equal(names.enrich({ runtime: 'podman', id: id('d') }).name, 'db');
  assert.equal(names.enrich({ runtime: 'podman', id: id('e') }).name, 'tmp-run');
  assert.equal(rootless.enrich({ runtime: 'podman', id: id('f') }, { uid: 1000 }).name, 'mine');
  assert.equal(rootless.enrich({ runtime: 'podman', id: id('f') }).name, undefined, 'not without the user');
  // the list is re-read when it changes (a container renamed)
  w('storage/overlay-containers/containers.json', [{ id: id('d'), names: ['db-renamed'] }]);
  const t = new Date(Date.now() + 5000);
  fs.utimesSync(path.join(dir, 'storage/overlay-containers/containers.json'), t, t);
  assert.equal(names.enrich({ runtime: 'podman', id: id('d') }).name, 'db-renamed');
});

test('containerd and CRI-O: Kubernetes names from the OCI bundle annotations; a `cri` container gets its runtime', () => {
  w(`containerd/io.containerd.runtime.v2.task/k8s.io/${id('1')}/config.json`, { annotations: { 'io.kubernetes.cri.container-type': 'sandbox', 'io.kubernetes.cri.sandbox-name': 'shop-1', 'io.kubernetes.cri.sandbox-namespace': 'prod', 'io.kubernetes.cri.sandbox-uid': 'u-1' } });
  w(`storage/overlay-containers/${id('2')}/userdata/config.json`, { annotations: { 'io.kubernetes.container.name': 'cache', 'io.kubernetes.pod.name': 'redis-0', 'io.kubernetes.pod.namespace': 'data', 'io.kubernetes.pod.uid': 'u-2' } });
  assert.deepEqual(names.enrich({ runtime: 'containerd', id: id('1'), podUid: 'from-cgroup' }), { runtime: 'containerd', id: id('1'), name: 'POD', podName: 'shop-1', namespace: 'prod', podUid: 'from-cgroup' });
  assert.deepEqual(names.enrich({ runtime: 'cri', id: id('2') }), { runtime: 'cri-o', id: id('2'), name: 'cache', podName: 'redis-0', namespace: 'data', podUid: 'u-2' });
  assert.deepEqual(names.enrich({ runtime: 'cri', id: id('9') }), { runtime: 'cri', id: id('9') }, 'no runtime knows it: stays cri');
  w(`containerd/io.containerd.runtime.v2.task/k8s.io/${id('3')}/config.json`, '{ truncated');
  assert.deepEqual(names.enrich({ runtime: 'containerd', id: id('3') }), { runtime: 'containerd', id: id('3') }, 'a file being written is no error');
});

test('.desktop: Name of [Desktop Entry] only, unlocalized; user dirs first; subdirectory ids', () => {
  assert.equal(desktopEntryName('[Desktop Entry]\nName[de]=Rechner\nName=Calculator\n'), 'Calculator');
  assert.equal(desktopEntryName('[Desktop Action x]\nName=Not this\n[Desktop Entry]\nName=This\n'), 'This');
  assert.equal(desktopEntryName('[Desktop Entry]\nExec=x\n[Desktop Action y]\nName=Action\n'), undefined);
  w('sys/applications/org.example.Calc.desktop', '[Desktop Entry]\nName=System Calc\n');
  w('sys/applications/kde4/okular.desktop', '[Desktop Entry]\nName=Okular\n');
  w('home-alice/.local/share/applications/org.example.Calc.desktop', '[Desktop Entry]\nName=My Calc\n');
  const d = new DesktopEntries({ systemDataDirs: [`${dir}/sys`], passwd: new Passwd(path.join(dir, 'passwd2')) });
  assert.equal(d.find('org.example.Calc')?.name, 'System Calc');
  assert.equal(d.find('org.example.Calc', 1000)?.name, 'My Calc');
  assert.equal(d.find('kde4-okular')?.name, 'Okular');
  assert.equal(d.find('../../etc/passwd'), undefined, 'ids never leave the data dirs');
  assert.equal(d.find('missing'), undefined);
});
