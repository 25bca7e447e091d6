// SPDX-License-Identifier: Apache-2.0
// Every shipped BPF object loads on this kernel (also run on Debian 12's 6.1 under qemu:
// test/e2e/kernel-6.1.test.ts). The monitor's objects are loaded by every daemon test;
// the load balancer's only where a suite configures it, so it is loaded here on its own,
// with the kernel configuration ebpfmon passes (kernelConfig(): a kernel without
// /boot/config-* or /proc/config.gz must load it too).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { privileged } from '../helpers/privileged.js';
import { OBJECT_DIR } from '../helpers/daemon.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';

test('lb.bpf.o: the XDP load balancer passes this kernel\'s verifier', privileged(), () => {
  const obj = BpfObject.open(path.join(OBJECT_DIR, 'lb.bpf.o'));
  try {
    const r = obj.tryLoad();
    assert.ok(r.ok, r.ok ? '' : `${r.program}: ${r.error.message}`);
    assert.deepEqual(obj.programs().map((p) => p.name), ['xdp_lb']);
  } finally {
    obj.close();
  }
});
