// SPDX-License-Identifier: Apache-2.0
// One test per TypeScript struct mirror: its size and every field's offset and size must
// be what the compiler laid out, read from the built object's BTF (Cilium's alignchecker
// does the same for Go).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Btf } from '../../daemon/src/bpf/btf.js';
import type { StructSpec } from '../../daemon/src/bpf/layout.js';

const OBJECT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bpf');

export function testStructLayouts(specs: readonly StructSpec[]): void {
  for (const spec of specs) {
    test(`struct ${spec.name} matches ${spec.object}`, () => {
      const btf = Btf.fromObject(path.join(OBJECT_DIR, spec.object));
      try {
        const s = btf.struct(spec.name);
        assert.ok(s, `struct ${spec.name} is not in the BTF of ${spec.object}`);
        assert.equal(s.size, spec.size, `sizeof(struct ${spec.name})`);
        assert.deepEqual([...s.members.keys()].sort(), Object.keys(spec.fields).sort(), `fields of ${spec.name}`);
        for (const [name, want] of Object.entries(spec.fields)) {
          const have = s.members.get(name);
          assert.ok(have, `${spec.name}.${name} missing`);
          assert.deepEqual({ offset: have.offset, size: have.size }, want, `${spec.name}.${name}`);
        }
      } finally {
        btf.close();
      }
    });
  }
}
