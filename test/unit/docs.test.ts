// SPDX-License-Identifier: Apache-2.0
// Documentation that lists things the code declares must list exactly those things.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERRORS } from '../../daemon/src/contract/errors.js';
import { schema } from '../../daemon/src/config/schema.js';
import { METHODS } from '../../daemon/src/contract/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const read = (f: string) => fs.readFileSync(path.join(root, f), 'utf8');

test('docs/errors.md lists every error with its code and D-Bus name, and nothing else', () => {
  const doc = read('docs/errors.md');
  const rows = [...doc.matchAll(/^\| (\w+) \| (-?\d+) \| ([\w.]+) \|/gm)].map((m) => [m[1], Number(m[2]), m[3]]);
  assert.deepEqual(
    rows.sort(),
    Object.entries(ERRORS).map(([name, e]) => [name, e.code, e.dbus]).sort(),
  );
  const codes = Object.values(ERRORS).map((e) => e.code);
  assert.equal(new Set(codes).size, codes.length, 'codes are unique');
  for (const [name, e] of Object.entries(ERRORS)) {
    if (!['ParseError', 'InvalidRequest', 'MethodNotFound', 'InvalidParams'].includes(name)) {
      assert.ok(e.code < -32768 || e.code > -32000, `${name}: application codes stay outside the reserved range`);
    }
  }
});

interface Leaf { env?: string; default: unknown }
function leaves(node: Record<string, unknown>, prefix = ''): Array<[string, Leaf]> {
  return Object.entries(node).flatMap(([k, v]) => {
    const key = prefix ? `${prefix}.${k}` : k;
    const o = v as Record<string, unknown>;
    return 'default' in o ? [[key, o as unknown as Leaf]] : leaves(o, key);
  });
}

test('docs/configuration.md documents every configuration key with its environment variable and default', () => {
  const doc = read('docs/configuration.md');
  const rows = new Map([...doc.matchAll(/^\| `([\w.]+)` \| ([^|]*) \| `?([^|`]*)`? \|/gm)].map((m) => [m[1], { env: m[2]!.trim().replace(/`/g, ''), def: m[3]!.trim() }]));
  const keys = leaves(schema as unknown as Record<string, unknown>);
  assert.deepEqual([...rows.keys()].sort(), keys.map(([k]) => k).sort());
  for (const [k, leaf] of keys) {
    const row = rows.get(k)!;
    assert.equal(row.env, leaf.env ?? '-', `${k}: environment variable`);
    assert.equal(row.def, JSON.stringify(leaf.default), `${k}: default`);
  }
});

test('docs/api.md documents every JSON-RPC method', () => {
  const doc = read('docs/api.md');
  for (const m of Object.values(METHODS)) assert.match(doc, new RegExp(`^### \`${m.replace('.', '\\.')}\``, 'm'), m);
});
