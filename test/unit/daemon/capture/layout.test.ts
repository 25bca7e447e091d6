// SPDX-License-Identifier: Apache-2.0
// The capture path's TypeScript mirrors against the compiler's layout (BTF of
// build/bpf/capture.bpf.o), and the __sk_buff offsets the generated programs load from
// against the running kernel's BTF.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Btf } from '../../../../daemon/src/bpf/btf.js';
import { CAP_META, CAP_META_OWNER, CAP_STRUCTS } from '../../../../daemon/src/capture/wire.js';
import { OWNER } from '../../../../daemon/src/monitor/wire.js';
import { SKB } from '../../../../daemon/src/capture/ebpf.js';
import { testStructLayouts } from '../../../helpers/layout.js';

testStructLayouts(CAP_STRUCTS);

test('owner fields inside emon_cap_meta are emon_owner\'s, shifted by the owner member', () => {
  const base = CAP_META.fields.owner.offset;
  for (const [name, off] of Object.entries(CAP_META_OWNER)) {
    assert.equal(off, base + OWNER.fields[name as keyof typeof OWNER.fields].offset, name);
  }
});

test('struct __sk_buff offsets the generated programs use match the kernel', () => {
  const btf = Btf.vmlinux();
  try {
    const s = btf.struct('__sk_buff');
    assert.ok(s);
    for (const [name, off] of Object.entries(SKB)) assert.equal(s.members.get(name)?.offset, off, `__sk_buff.${name}`);
  } finally {
    btf.close();
  }
});
