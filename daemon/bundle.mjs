// SPDX-License-Identifier: Apache-2.0
// Bundles the daemon's own modules into build/js/daemon/src/ebpfmon.js and a few chunks
// beside it (`npm run build:daemon`, part of `npm run build`, after tsc): what the
// package's /usr/sbin/ebpfmon, `npm start` and the tests' daemons run.
//
// Why: a Node process spends most of its start in the ESM loader, once per module (resolve,
// stat, read, compile, link). The compiled tree's daemon is about 180 modules of its own;
// under the test suite's emulated second kernel each daemon start spent 4-6 s loading them
// over the guest's 9p share (about 20 ms a file), and the suites start a daemon about fifty
// times. On this machine a start loads in 0.25 s instead of 0.39.
//
// - Packages stay outside (`packages: 'external'`): loaded from node_modules as before
//   (koffi's and DuckDB's native code, pino's worker files, json-rpc-2.0...).
// - Code splitting: what main.ts and app.ts load with import() only when it is used (the
//   running daemon for --teardown/--version, D-Bus, the exports: their packages are a fifth
//   of a start) stays lazy, in chunks named ebpfmon-<name>-<hash>.js. Every output sits in
//   main.js's directory, so version.ts's paths (BUILD_DIR: package.json, build/bpf,
//   build/native, the history writer's worker) resolve the same from the bundle.
// - The history writer's thread has a bundle of its own, ebpfmon-history-worker.js, one
//   file (history.ts starts it when it runs from the bundle; the compiled tree's worker.js
//   otherwise).
//
// Plain JavaScript: it runs after tsc, on its output (build/js), so that the bundle is made
// of exactly the JavaScript the tests of the compiled tree run.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const dir = path.join(root, 'build/js/daemon/src');
const entry = path.join(dir, 'main.js');
if (!fs.existsSync(entry)) throw new Error(`${path.relative(root, entry)} is missing: run tsc (npm run build:ts) first`);

/** Outputs of an earlier bundle (hashes change with the code): removed first. */
const isOutput = (f) => f === 'ebpfmon.js' || /^ebpfmon-.+\.js$/.test(f);
for (const f of fs.readdirSync(dir)) if (isOutput(f)) fs.rmSync(path.join(dir, f));

const common = {
  outdir: dir,
  bundle: true,
  packages: 'external',
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minify: false,
  sourcemap: false,
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
};
const result = await esbuild.build({ ...common, entryPoints: { ebpfmon: entry }, chunkNames: 'ebpfmon-[name]-[hash]', splitting: true });
// The writer thread is an isolate of its own: it compiles its own copy of whatever it
// loads, so chunks shared with the daemon would save nothing but split the daemon's bundle
// into more files. One file, built apart.
const worker = await esbuild.build({ ...common, entryPoints: { 'ebpfmon-history-worker': path.join(dir, 'history/worker.js') }, splitting: false });

// Every daemon module in the bundle must be one tsc compiled: nothing from test/ or bench/.
const inputs = [...new Set([...Object.keys(result.metafile.inputs), ...Object.keys(worker.metafile.inputs)])];
const stray = inputs.filter((i) => !path.resolve(root, i).startsWith(dir + path.sep));
if (stray.length) throw new Error(`the daemon's bundle took in files outside build/js/daemon/src: ${stray.join(', ')}`);
const outputs = [...Object.keys(result.metafile.outputs), ...Object.keys(worker.metafile.outputs)].map((o) => path.basename(o));
const bad = outputs.filter((o) => !isOutput(o));
if (bad.length) throw new Error(`unexpected bundle outputs: ${bad.join(', ')}`);
const main = path.join(dir, 'ebpfmon.js');
fs.chmodSync(main, 0o755);
console.log(`bundled ${inputs.length} daemon modules into ${path.relative(root, main)}, ${outputs.length - 2} chunk(s) and the history writer's ebpfmon-history-worker.js`);
