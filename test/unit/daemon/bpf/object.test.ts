// SPDX-License-Identifier: Apache-2.0
// The open options ebpfmon hands libbpf: the struct koffi marshals is the one libbpf 1.1's
// header declares (checked against a C compile of <bpf/libbpf.h>), and the kernel
// configuration values given to `__kconfig` externs are the kernel's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import koffi from 'koffi';
import '../../../../daemon/src/bpf/libbpf.js';
import { OPEN_OPTS_SIZE } from '../../../../daemon/src/bpf/libbpf.js';
import { kernelConfig } from '../../../../daemon/src/bpf/object.js';

test('struct bpf_object_open_opts: koffi and the C header agree on size and the kconfig offset', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-oo-'));
  try {
    const src = path.join(dir, 'oo.c');
    fs.writeFileSync(src, '#include <bpf/libbpf.h>\n#include <stdio.h>\n#include <stddef.h>\nint main(void){printf("%zu %zu\\n", sizeof(struct bpf_object_open_opts), offsetof(struct bpf_object_open_opts, kconfig));return 0;}\n');
    execFileSync('gcc', ['-o', path.join(dir, 'oo'), src]);
    const [size, off] = execFileSync(path.join(dir, 'oo'), { encoding: 'utf8' }).trim().split(' ').map(Number);
    assert.equal(koffi.sizeof('bpf_object_open_opts'), size);
    assert.equal(OPEN_OPTS_SIZE, size);
    assert.equal(koffi.offsetof('bpf_object_open_opts', 'kconfig'), off);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('kconfig: CONFIG_HZ as the kernel\'s own configuration says, or 0 without one', () => {
  let text = '';
  if (fs.existsSync('/proc/config.gz')) text = zlib.gunzipSync(fs.readFileSync('/proc/config.gz')).toString();
  else if (fs.existsSync(`/boot/config-${os.release()}`)) text = fs.readFileSync(`/boot/config-${os.release()}`, 'utf8');
  const hz = /^CONFIG_HZ=(\d+)$/m.exec(text)?.[1] ?? '0';
  assert.equal(kernelConfig(), `CONFIG_HZ=${hz}\n`);
});
