// SPDX-License-Identifier: Apache-2.0
// The test runner behind `npm test`: runs every *.test.js under build/js/test with
// node:test, prints the spec report, and fails the run when a test fails or when any
// test skipped while running as root (privileged tests must run in CI, not skip), or when
// the run left something on the machine (helpers/leftovers.ts).
//
//   node build/js/test/run.js [filter...]   (filters: substrings of test file paths)
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { leftovers, snapshot } from './helpers/leftovers.js';
import { keepTestOutput } from './helpers/keep.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);

function collect(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'helpers' || e.name === 'fixtures' ? [] : collect(p);
    return e.name.endsWith('.test.js') ? [p] : [];
  });
}

// build/js/test/x.test.js of a test/x.test.ts that no longer exists is a leftover of an
// earlier build (tsc -b never deletes outputs): not a test.
const sourceRoot = path.resolve(here, '../../../test');
const hasSource = (f: string) => fs.existsSync(path.join(sourceRoot, path.relative(here, f)).replace(/\.js$/, '.ts'));
const files = collect(here)
  .filter(hasSource)
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}

const isRoot = process.getuid?.() === 0;
const skippedAsRoot: string[] = [];
let failed = 0;

// Files run one at a time: integration tests load BPF programs, build namespaces and
// measure traffic; running them side by side on a 2-core machine only adds noise.
// A file's limit is the longest any file needs on a loaded machine: test/e2e/kernel-6.1
// boots a second kernel under emulation and runs eight suites in it (its own budget is 28
// minutes); with other work on the two cores it ran past 15 minutes, the limit this had.
// Each test inside keeps its own, shorter timeout.
// One directory for the whole run, shared by the test files (test files are processes of
// their own and inherit it): what several files need built once (helpers/deb.ts). Removed
// at the end, whatever happened.
const before = snapshot();
const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-test-run-'));
process.env.EBPFMON_TEST_RUN_DIR = runDir;
const removeRunDir = () => fs.rmSync(runDir, { recursive: true, force: true });
process.once('exit', removeRunDir);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
const stream = run({ files, concurrency: 1, timeout: 30 * 60_000 });
// A suite fails when a test in it failed (counted already), or on its own: a before/after
// hook that threw (destroyMonitorLab's check of a clean stop runs in after()), which has
// no failing test to count.
stream.on('test:fail', (d) => {
  const cause = (d.details?.error as { failureType?: string } | undefined)?.failureType;
  if (d.details?.type !== 'suite' || cause !== 'subtestsFailed') failed++;
});
// A skipped test reports as passed, with `skip` set.
stream.on('test:pass', (d) => {
  if (isRoot && d.skip !== undefined && d.skip !== false) skippedAsRoot.push(`${d.name} (${d.file ?? '?'}): ${d.skip}`);
});
stream.compose(new spec()).pipe(process.stdout);

await new Promise<void>((resolve) => stream.once('end', () => resolve()));
// give the reporter a tick to flush
await new Promise((r) => setImmediate(r));
if (skippedAsRoot.length) {
  console.error(`\nFAIL: ${skippedAsRoot.length} test(s) skipped while running as root:`);
  for (const s of skippedAsRoot) console.error(`  - ${s}`);
}
const left = leftovers(before, snapshot(), new Set([path.basename(runDir)]));
// EBPFMON_TEST_KEEP=1 keeps what the tests made on purpose, so what is left is reported, not failed.
const keeping = keepTestOutput();
if (left.length) {
  console.error(keeping
    ? `\nNOTE: the run left ${left.length} thing(s) on the machine; EBPFMON_TEST_KEEP is set, so they are not a failure (remove them yourself):`
    : `\nFAIL: the run left ${left.length} thing(s) on the machine (every test removes what it creates, also when it fails):`);
  for (const l of left) console.error(`  - ${l}`);
}
process.exitCode = failed > 0 || skippedAsRoot.length > 0 || (left.length > 0 && !keeping) ? 1 : 0;
