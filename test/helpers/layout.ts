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

interface SideSpec {
  name: string;
  size: number;
}

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

/**
 * One test per object: every map of `object` has a row in `maps` (by map name) naming the
 * struct or scalar type its `__type(key, ...)` and `__type(value, ...)` declare, and every
 * row names a map of the object. So a codec cannot pair a map with the wrong struct, even
 * one of the same size (the LB's flow key and conn value are both 40 bytes).
 */
export function testMapTypes(object: string, maps: Record<string, { key: SideSpec; value: SideSpec }>): void {
  test(`map key and value types match ${object}`, () => {
    const btf = Btf.fromObject(path.join(OBJECT_DIR, object));
    try {
      const have = btf.mapTypes();
      assert.deepEqual([...have.keys()].sort(), Object.keys(maps).sort(), `maps of ${object}`);
      for (const [name, want] of Object.entries(maps)) {
        const h = have.get(name)!;
        assert.deepEqual(h.key, { name: want.key.name, size: want.key.size }, `${name} key`);
        assert.deepEqual(h.value, { name: want.value.name, size: want.value.size }, `${name} value`);
      }
    } finally {
      btf.close();
    }
  });
}
