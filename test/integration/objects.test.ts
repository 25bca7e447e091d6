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
import { progInfo } from '../../daemon/src/bpf/info.js';

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

// The kernel refuses a program whose verification walks more than 1M instructions, and how
// many it walks depends on the kernel's verifier as much as on the program: the classifier
// once took 430-500k here (every IPv6 extension header read inlined into every parse
// state), which also cost seconds of kernel time at every fresh load. The extension-header
// walk and the owner lookups are global functions now, verified once each (about 54k on
// 6.18). A quarter of the limit leaves room for a kernel whose verifier prunes less.
const VERIFIER_BUDGET = 250_000;
for (const file of ['flows.bpf.o', 'flows_walk.bpf.o']) {
  test(`${file}: the classifier verifies in under a quarter of the kernel's 1M-instruction limit`, privileged(), (t) => {
    const obj = BpfObject.open(path.join(OBJECT_DIR, file));
    try {
      const r = obj.tryLoad();
      assert.ok(r.ok, r.ok ? '' : `${r.program}: ${r.error.message}`);
      for (const name of ['tc_ingress', 'tc_egress']) {
        const n = progInfo(obj.progFd(name)).verifiedInsns;
        t.diagnostic(`${name}: ${n} instructions verified`);
        assert.ok(n > 0 && n < VERIFIER_BUDGET, `${file} ${name}: ${n} instructions verified (budget ${VERIFIER_BUDGET})`);
      }
    } finally {
      obj.close();
    }
  });
}
