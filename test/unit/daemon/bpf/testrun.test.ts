// SPDX-License-Identifier: Apache-2.0
// struct bpf_test_run_opts (daemon/src/bpf/testrun.ts; filled by lb/testrun.ts and
// monitor/flowread.ts) is a libbpf (user-space) struct that no BTF carries: its mirror is
// checked against the installed <bpf/bpf.h> by the C compiler (sizeof and offsetof of every
// field), the way the BTF-checked mirrors are checked against the built objects. (xdp_md,
// the other struct the LB's runner fills, is in lb/wire.ts: BTF-checked.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TEST_RUN_OPTS } from '../../../../daemon/src/bpf/testrun.js';
import { compileC } from '../../../helpers/cc.js';

test(`struct ${TEST_RUN_OPTS.name} matches <${TEST_RUN_OPTS.header}>`, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-layout-'));
  try {
    const s = `struct ${TEST_RUN_OPTS.name}`;
    const fields = Object.keys(TEST_RUN_OPTS.fields);
    const src = path.join(dir, 'layout.c');
    fs.writeFileSync(src, [
      '#include <stddef.h>', '#include <stdio.h>', `#include <${TEST_RUN_OPTS.header}>`,
      'int main(void) {',
      `  printf("{\\"size\\": %zu", sizeof(${s}));`,
      ...fields.map((n) => `  printf(", \\"${n}\\": [%zu, %zu]", offsetof(${s}, ${n}), sizeof(((${s} *)0)->${n}));`),
      '  printf("}\\n");',
      '  return 0;',
      '}',
    ].join('\n'));
    const got = JSON.parse(execFileSync(compileC(src, dir), { encoding: 'utf8' })) as Record<string, number | [number, number]>;
    assert.equal(got.size, TEST_RUN_OPTS.size, `sizeof(${s})`);
    for (const [n, want] of Object.entries(TEST_RUN_OPTS.fields)) assert.deepEqual(got[n], [want.offset, want.size], `${s}.${n}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
