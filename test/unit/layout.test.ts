// SPDX-License-Identifier: Apache-2.0
// The TypeScript mirrors of the BPF wire format must match the structs the compiler laid
// out (test/helpers/layout.ts). Also checks the UAPI offsets info.ts decodes against the
// running kernel's BTF.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Btf } from '../../daemon/src/bpf/btf.js';
import { ALL_STRUCTS } from '../../daemon/src/monitor/wire.js';
import { LINK_INFO, MAP_INFO, PROG_INFO } from '../../daemon/src/bpf/info.js';
import { testStructLayouts } from '../helpers/layout.js';

const objDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bpf');

testStructLayouts(ALL_STRUCTS);

test('the layout version is the same in bpf/lib/common.h and the daemon', async () => {
  const fs = await import('node:fs');
  const header = fs.readFileSync(path.resolve(objDir, '../../bpf/lib/common.h'), 'utf8');
  const { LAYOUT_VERSION } = await import('../../daemon/src/monitor/monitor.js');
  assert.equal(Number(/#define EMON_LAYOUT_VERSION (\d+)/.exec(header)?.[1]), LAYOUT_VERSION);
});

test('bpf_prog_info / bpf_map_info / bpf_link_info offsets match the kernel', () => {
  const btf = Btf.vmlinux();
  try {
    const check = (struct: string, offsets: Record<string, number>) => {
      const s = btf.struct(struct);
      assert.ok(s, struct);
      for (const [name, off] of Object.entries(offsets)) {
        if (name === 'union') continue;
        assert.equal(s.members.get(name)?.offset, off, `${struct}.${name}`);
      }
    };
    check('bpf_prog_info', PROG_INFO);
    check('bpf_map_info', MAP_INFO);
    check('bpf_link_info', LINK_INFO);
  } finally {
    btf.close();
  }
});
