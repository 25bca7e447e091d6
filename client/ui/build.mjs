// SPDX-License-Identifier: Apache-2.0
// Builds the page of `ebpfmonctl ui` into build/ui (`npm run build:ui`, part of `npm run
// build`): type-checks client/ui (tsc, DOM types), bundles main.ts and its libraries
// (d3-geo) into one app.js with
// esbuild, and style.css into index.html's one inline style. Nothing is fetched at run time.
//
// Projects the world once, here, into build/ui/world.svg (the map's base layer: sea,
// graticule, one path per country with its name, borders), in the page's frame (960x480
// map units, Natural Earth fitted with a 4-unit margin: client/ui/map.ts projects the live
// lines the same way), so the page neither carries the TopoJSON nor projects it at load.
//
// Also computes, from world-atlas's 1:50m countries, one anchor point per country (the
// centroid of its largest polygon, so that France is placed in France and not in the
// Atlantic between it and French Guiana): where the map puts addresses that a database
// knows only by country (the bundled default database is country-level). And writes
// THIRD-PARTY.json, the bundled packages with their licences, from esbuild's metafile, for
// packaging/copyright.mjs.
//
// Plain JavaScript: it runs before, and independently of, the project's tsc build.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import * as esbuild from 'esbuild';
import { geoArea, geoCentroid, geoGraticule10, geoNaturalEarth1, geoPath } from 'd3-geo';
import { feature, mesh } from 'topojson-client';
import iso from 'iso-3166-1';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const out = path.join(root, 'build/ui');
const require = createRequire(import.meta.url);

// 1. Type-check the page (esbuild only strips types).
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(here, 'tsconfig.json')], { stdio: 'inherit' });

// 2. Country anchors: ISO 3166-1 alpha-2 -> [lon, lat, name].
const world50 = JSON.parse(fs.readFileSync(require.resolve('world-atlas/countries-50m.json'), 'utf8'));
const anchors = {};
for (const f of feature(world50, world50.objects.countries).features) {
  const c = f.id !== undefined ? iso.whereNumeric(f.id) : undefined;
  if (!c) continue; // N. Cyprus, Somaliland, Kosovo have no ISO numeric code in the atlas
  const polys = f.geometry.type === 'MultiPolygon' ? f.geometry.coordinates.map((coordinates) => ({ type: 'Polygon', coordinates })) : [f.geometry];
  const largest = polys.reduce((a, b) => (geoArea(b) > geoArea(a) ? b : a));
  const [lon, lat] = geoCentroid(largest);
  anchors[c.alpha2] = [Math.round(lon * 100) / 100, Math.round(lat * 100) / 100, f.properties.name];
}
if (Object.keys(anchors).length < 200) throw new Error(`only ${Object.keys(anchors).length} country anchors: world-atlas or iso-3166-1 changed?`);

const anchorsPlugin = {
  name: 'ebpfmon-anchors',
  setup(build) {
    build.onResolve({ filter: /^ebpfmon:country-anchors$/ }, (a) => ({ path: a.path, namespace: 'ebpfmon' }));
    build.onLoad({ filter: /.*/, namespace: 'ebpfmon' }, () => ({ contents: JSON.stringify(anchors), loader: 'json' }));
  },
};

// 3. Bundle.
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });
const result = await esbuild.build({
  entryPoints: { app: path.join(here, 'main.ts') },
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome100', 'firefox100'],
  // EBPFMON_UI_NO_MINIFY=1 keeps names readable in a profile (bench/ui --profile).
  minify: process.env.EBPFMON_UI_NO_MINIFY !== '1',
  sourcemap: false,
  legalComments: 'none',
  outdir: out,
  metafile: true,
  logLevel: 'warning',
  plugins: [anchorsPlugin],
});
// The style goes into index.html: a stylesheet blocks the first paint until it arrives, and
// under load the server's answer for a second file took 100-200 ms (bench/ui --profile).
// The server allows this one inline style by its hash (server.ts).
const css = await esbuild.build({ entryPoints: [path.join(here, 'style.css')], bundle: true, minify: true, write: false, logLevel: 'warning' });
const LINK = '<link rel="stylesheet" href="app.css?token=__EBPFMON_TOKEN__">';
const html = fs.readFileSync(path.join(here, 'index.html'), 'utf8');
if (!html.includes(LINK)) throw new Error(`client/ui/index.html lost its stylesheet link: ${LINK}`);
fs.writeFileSync(path.join(out, 'index.html'), html.replace(LINK, () => `<style>${css.outputFiles[0].text.trim()}</style>`));

// 3b. The world, projected (colours as style.css's --sea, --graticule, --land, --border, --line).
const world110 = JSON.parse(fs.readFileSync(require.resolve('world-atlas/countries-110m.json'), 'utf8'));
const sphere = { type: 'Sphere' };
const projection = geoNaturalEarth1().fitExtent([[4, 4], [956, 476]], sphere);
const d = geoPath(projection).digits(1);
const xml = (t) => t.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
const countries = feature(world110, world110.objects.countries).features
  .map((f) => `<path data-name="${xml(f.properties.name)}" d="${d(f)}"/>`).join('\n');
fs.writeFileSync(path.join(out, 'world.svg'), `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 960 480" preserveAspectRatio="none">
<path fill="#0b1017" d="${d(sphere)}"/>
<path fill="none" stroke="#1a2330" stroke-width="0.5" d="${d(geoGraticule10())}"/>
<g fill="#223042">
${countries}
</g>
<path fill="none" stroke="#31425a" stroke-width="0.5" d="${d(mesh(world110, world110.objects.countries, (a, b) => a !== b))}"/>
<path fill="none" stroke="#263140" d="${d(sphere)}"/>
</svg>
`);

// 4. What was bundled, for the copyright file.
const packages = new Map(); // name -> package directory
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /^(.*?node_modules\/((?:@[^/]+\/)?[^/]+))\//.exec(input);
  if (m) packages.set(m[2], path.resolve(root, m[1]));
}
// The anchors and world.svg come from these two, not through an import.
packages.set('world-atlas', path.dirname(require.resolve('world-atlas/countries-50m.json')));
packages.set('iso-3166-1', path.resolve(path.dirname(require.resolve('iso-3166-1')), '..'));
const NOTES = { 'world-atlas': 'TopoJSON made from Natural Earth data (public domain)', 'iso-3166-1': 'country codes' };
const list = [...packages].sort(([a], [b]) => a.localeCompare(b)).map(([name, dir]) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const lic = fs.readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
  const lines = lic ? fs.readFileSync(path.join(dir, lic), 'utf8').split('\n').map((l) => /^\s*copyright\s*(?:\(c\)|©)?\s*(.*\d{4}.*)$/i.exec(l)?.[1]?.trim()).filter(Boolean) : [];
  const author = typeof pkg.author === 'string' ? pkg.author : pkg.author?.name;
  return { name, version: pkg.version, license: pkg.license, copyright: lines.length ? lines : [author ? `${author} and the ${name} contributors` : `the ${name} authors`], ...(NOTES[name] ? { note: NOTES[name] } : {}) };
});
fs.writeFileSync(path.join(out, 'THIRD-PARTY.json'), `${JSON.stringify(list, null, 2)}\n`);
const size = (f) => fs.statSync(path.join(out, f)).size;
console.log(`build/ui: app.js ${(size('app.js') / 1024).toFixed(0)} KiB, world.svg ${(size('world.svg') / 1024).toFixed(0)} KiB, index.html ${(size('index.html') / 1024).toFixed(1)} KiB, ${list.length} bundled packages, ${Object.keys(anchors).length} country anchors`);
