// SPDX-License-Identifier: Apache-2.0
// The capture path's TypeScript mirrors against the compiler's layout (BTF of
// build/bpf/capture.bpf.o), and the __sk_buff offsets the generated programs load from
// against the running kernel's BTF.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Btf } from '../../../../daemon/src/bpf/btf.js';
import { CAP_STRUCTS } from '../../../../daemon/src/capture/wire.js';
import { OWNER, PKT_META } from '../../../../daemon/src/monitor/wire.js';
import { pktMetaLayout } from '../../../../daemon/src/app.js';
import { SKB } from '../../../../daemon/src/capture/ebpf.js';
import { testStructLayouts } from '../../../helpers/layout.js';

testStructLayouts(CAP_STRUCTS);

test('the engine reads the owner inside emon_pkt_meta at emon_owner\'s offsets, shifted by the owner member', () => {
  const base = PKT_META.fields.owner.offset;
  const l = pktMetaLayout();
  assert.equal(l.ownerTgid, base + OWNER.fields.tgid.offset);
  assert.equal(l.ownerUid, base + OWNER.fields.uid.offset);
  assert.equal(l.ownerCgroupId, base + OWNER.fields.cgroup_id.offset);
  assert.equal(l.ownerComm, base + OWNER.fields.comm.offset);
  assert.equal(l.ownerHow, base + OWNER.fields.how.offset);
  assert.equal(l.ifindex, PKT_META.fields.ifindex.offset);
  assert.equal(l.ingress, PKT_META.fields.ingress.offset);
  assert.equal(l.l2Len, PKT_META.fields.l2_len.offset);
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
