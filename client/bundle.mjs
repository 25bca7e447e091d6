// SPDX-License-Identifier: Apache-2.0
// Bundles ebpfmonctl into one file, build/js/client/src/ebpfmonctl.js (`npm run build:cli`,
// part of `npm run build`, after tsc): what the package's /usr/bin/ebpfmonctl and
// package.json's bin run.
//
// Why: a Node process spends most of a short command's start in its ESM loader, once per
// module (resolve, stat, read, compile, link): `ebpfmonctl --version` took 145 ms against 50
// for a bare `node -e ''` on this VM with the compiled tree's 40-odd modules (bench/query,
// docs/benchmarks.md "The CLI's start"). One file loads in one step.
//
// The file sits next to the compiled main.js, at the same depth under build/, so the
// modules that find files relative to their own URL (version.ts: package.json) find them
// from the bundle too. Left out of it, and loaded from the compiled tree when used:
// - `ebpfmonctl ui`'s server (ui/run.js and fastify, 2.5 MB): a long-running command; its
//   path is rewritten to the compiled tree's, relative to the bundle, and ui/server.ts
//   finds build/ui from its own URL, as before;
// - json-rpc-2.0: rpc.ts loads it with require() (see there), resolved from the bundle's
//   directory up to node_modules, as from the compiled rpc.js.
// The build fails if the bundle takes in koffi or any daemon module beyond its contract
// and version.js: the client needs no native code and no privileges (the same rule as
// test/unit/client/modules.test.ts, which reads build/js/client/src/ebpfmonctl.meta.json).
//
// Plain JavaScript: it runs after tsc, on its output (build/js), so that the bundle is made
// of exactly the JavaScript the tests of the compiled tree run.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const dir = path.join(root, 'build/js/client/src');
const outfile = path.join(dir, 'ebpfmonctl.js');
const entry = path.join(dir, 'main.js');
if (!fs.existsSync(entry)) throw new Error(`${path.relative(root, entry)} is missing: run tsc (npm run build:ts) first`);

/** `ebpfmonctl ui`'s dynamic import of ../ui/run.js: kept out, pointing at the compiled tree. */
const uiServerOutside = {
  name: 'ebpfmon-ui-outside',
  setup(build) {
    build.onResolve({ filter: /\/ui\/run\.js$/ }, (a) => {
      if (a.kind !== 'dynamic-import') return undefined;
      const target = path.resolve(a.resolveDir, a.path);
      return { path: `./${path.relative(dir, target).split(path.sep).join('/')}`, external: true };
    });
  },
};

const result = await esbuild.build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Packages that use require() for Node's built-ins (commander) need a require in an ES module.
  banner: { js: "import { createRequire as __ebpfmonRequire } from 'node:module'; const require = __ebpfmonRequire(import.meta.url);" },
  minify: false,
  sourcemap: false,
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
  plugins: [uiServerOutside],
});

const inputs = Object.keys(result.metafile.inputs);
const forbidden = inputs.filter((i) => /koffi/.test(i) || (/build\/js\/daemon\/src\//.test(i) && !/daemon\/src\/(contract\/|version\.js$)/.test(i)));
if (forbidden.length > 0) {
  fs.rmSync(outfile, { force: true });
  throw new Error(`the client bundle would take in ${forbidden.join(', ')}: ebpfmonctl loads no native code and none of the daemon beyond its contract`);
}
if (inputs.some((i) => /\/ui\/run\.js$/.test(i))) throw new Error('the ui server was bundled: the plugin that keeps it out no longer matches');
fs.chmodSync(outfile, 0o755);
fs.writeFileSync(path.join(dir, 'ebpfmonctl.meta.json'), JSON.stringify({ inputs, bytes: fs.statSync(outfile).size }, null, 1) + '\n');
