// SPDX-License-Identifier: Apache-2.0
// The history writer's thread, as the bundled daemon starts it (daemon/bundle.mjs,
// history.ts): one file next to the daemon's bundle that imports only packages and node:
// built-ins, never a module of the compiled tree (which the thread loaded before: 17 files).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BUILD } from '../../../helpers/daemon.js';

const DIR = path.join(BUILD, 'daemon/src');
const ENTRY = 'ebpfmon-history-worker.js';

/** The specifiers of a module's static imports (esbuild's ESM output: `import ... from "x"` and `import "x"`). */
function importsOf(file: string): string[] {
  const src = fs.readFileSync(file, 'utf8');
  return [...src.matchAll(/^import\s+(?:[^'"]*?\s+from\s+)?["']([^"']+)["'];?$/gms)].map((m) => m[1]!);
}

test('the bundled writer thread is one file: it imports packages and built-ins only', () => {
  assert.ok(fs.existsSync(path.join(DIR, ENTRY)), `${ENTRY} is built next to ebpfmon.js (npm run build:daemon)`);
  const specs = importsOf(path.join(DIR, ENTRY));
  assert.ok(specs.includes('@duckdb/node-api'), `the writer's own imports are read (${specs.join(', ')})`);
  assert.deepEqual(specs.filter((s) => s.startsWith('.') || s.startsWith('/')), [], 'no module of the compiled tree or chunk');
  // What it replaced: the compiled tree's worker, which imports the tree (the check above
  // tells the two apart).
  assert.ok(importsOf(path.join(DIR, 'history/worker.js')).includes('./writer.js'));
});
