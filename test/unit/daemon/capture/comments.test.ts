// SPDX-License-Identifier: Apache-2.0
// Comments in ptcpdump's form, checked against ptcpdump's own reading rule (every
// `Key: value` line of every comment, split at the first ':'), re-implemented here from
// its source (internal/types/context.go FromPacketComments).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ptcpdumpComments } from '../../../../daemon/src/capture/comments.js';
import { unitOfCgroup } from '../../../../daemon/src/capture/procinfo.js';

function ptcpdumpRead(comments: string[]): Record<string, string> {
  const kv: Record<string, string> = {};
  for (const c of comments) for (const line of c.trim().split('\n')) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    kv[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return kv;
}

test('ptcpdump reads back pid, command, arguments, thread, user, parent, container', () => {
  const c = ptcpdumpComments({
    pid: 42, tid: 43, threadName: 'worker', cmd: '/usr/bin/curl', args: ['curl', '-s', 'http://a\nb'], uid: 1000,
    ppid: 1, parentCmd: '/sbin/init', parentArgs: ['/sbin/init', 'splash'], unit: 'web.service', cgroup: '/system.slice/web.service',
    container: { id: 'abc123', name: 'web', image: 'nginx:1', labels: { a: 'b' } },
  });
  assert.equal(c[0], 'PID: 42\nCmd: /usr/bin/curl\nArgs: curl -s http://a b');
  assert.deepEqual(ptcpdumpRead(c), {
    PID: '42', Cmd: '/usr/bin/curl', Args: 'curl -s http://a b', ThreadId: '43', ThreadName: 'worker', UserId: '1000',
    ParentPID: '1', ParentCmd: '/sbin/init', ParentArgs: '/sbin/init splash', ContainerName: 'web', ContainerId: 'abc123',
    ContainerImage: 'nginx:1', ContainerLabels: 'a=b', Unit: 'web.service', Cgroup: '/system.slice/web.service',
  });
});

test('a pod, and the app: ptcpdump\'s pod keys, and an App line its reader skips as it does Unit', () => {
  const c = ptcpdumpComments({ pid: 9, container: { id: 'abc' }, pod: { name: 'shop-7d9f', namespace: 'prod', uid: 'u-1' }, unit: 'cri-containerd-abc.scope', app: 'org.example.App' });
  assert.deepEqual(ptcpdumpRead(c), {
    PID: '9', Cmd: '', Args: '', ContainerName: '', ContainerId: 'abc', ContainerImage: '', ContainerLabels: '',
    PodName: 'shop-7d9f', PodNamespace: 'prod', PodUID: 'u-1', PodLabels: '', PodAnnotations: '', Unit: 'cri-containerd-abc.scope', App: 'org.example.App',
  });
  assert.deepEqual(ptcpdumpComments({ pid: 9, pod: {} }), ['PID: 9\nCmd: \nArgs: '], 'a pod with neither name nor uid is no comment');
});

test('what is not known is left out', () => {
  assert.deepEqual(ptcpdumpComments({ pid: 7 }), ['PID: 7\nCmd: \nArgs: ']);
});

test('the unit of a cgroup path is its last service or scope', () => {
  assert.equal(unitOfCgroup('/system.slice/nginx.service'), 'nginx.service');
  assert.equal(unitOfCgroup('/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-1234.scope'), 'app-gnome-firefox-1234.scope');
  assert.equal(unitOfCgroup('/'), null);
});
