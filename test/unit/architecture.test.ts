// SPDX-License-Identifier: Apache-2.0
// The import graph of the sources (read from the .ts files, so it checks what the code
// says, not what a bundler makes of it): no cycles, dependencies pointing down the layers,
// features and adapters independent of one another, and a client that reaches the daemon
// only through the contract (so `ebpfmonctl` loads no koffi, no libc, no libbpf: the
// process-level check is test/e2e/cli.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers/cc.js';

/** Every .ts file under `dir` (relative to the repository), with its relative imports resolved. */
function graph(dirs: string[]): Map<string, string[]> {
  const g = new Map<string, string[]>();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) g.set(r, importsOf(r));
    }
  };
  for (const d of dirs) walk(d);
  return g;
}

function importsOf(file: string): string[] {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  const out: string[] = [];
  // static imports and re-exports (type-only ones too: a type cycle is still a design cycle)
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s+'([^']+)'|^\s*import\s+'([^']+)'|\bimport\('([^']+)'\)/gm)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    if (!spec.startsWith('.')) continue;
    out.push(path.normalize(path.join(path.dirname(file), spec)).replace(/\.js$/, '.ts'));
  }
  return out;
}

const SOURCES = graph(['daemon/src', 'client/src']);

/** The daemon's layers, lowest first: a module imports only from its own layer or below. */
const LAYERS: Array<{ name: string; match: RegExp }> = [
  { name: 'contract', match: /^daemon\/src\/contract\// },
  { name: 'base', match: /^daemon\/src\/(util\/|errors\.ts|version\.ts)/ },
  { name: 'system', match: /^daemon\/src\/(sys|net|systemd)\// },
  { name: 'kernel', match: /^daemon\/src\/bpf\// },
  // identity/: who owns a cgroup (unit, container, app), a service every feature may ask.
  { name: 'services', match: /^daemon\/src\/(config|events|identity)\// },
  { name: 'domain', match: /^daemon\/src\/(monitor|lb|history|l7|capture|export|geo)\// },
  { name: 'api', match: /^daemon\/src\/api\// },
  { name: 'adapters', match: /^daemon\/src\/(rpc|dbus)\// },
  { name: 'wiring', match: /^daemon\/src\/(app|main)\.ts$/ },
];
/** Adapters serve the API: the domain and the kernel bindings are below their reach. */
const ADAPTER_MAY_NOT = new Set(['domain', 'kernel']);
/** Within a layer, these directories are features or transports that must not know each other. */
const INDEPENDENT = ['daemon/src/monitor/', 'daemon/src/lb/', 'daemon/src/history/', 'daemon/src/l7/', 'daemon/src/capture/', 'daemon/src/export/', 'daemon/src/geo/', 'daemon/src/rpc/', 'daemon/src/dbus/'];

const layerOf = (f: string): number => LAYERS.findIndex((l) => l.match.test(f));

test('every daemon source file belongs to a layer', () => {
  const unplaced = [...SOURCES.keys()].filter((f) => f.startsWith('daemon/') && layerOf(f) < 0);
  assert.deepEqual(unplaced, [], 'add new directories to LAYERS in this test');
});

function findCycles(g: Map<string, string[]>): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, stack: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      cycles.push([...stack.slice(stack.indexOf(f)), f].join(' -> '));
      return;
    }
    state.set(f, 'open');
    for (const d of g.get(f) ?? []) if (g.has(d)) visit(d, [...stack, f]);
    state.set(f, 'done');
  };
  for (const f of g.keys()) visit(f, []);
  return cycles;
}

function layerViolations(g: Map<string, string[]>): string[] {
  const wrong: string[] = [];
  for (const [f, deps] of g) {
    if (!f.startsWith('daemon/')) continue;
    for (const d of deps) {
      if (layerOf(d) > layerOf(f)) wrong.push(`${f} (${LAYERS[layerOf(f)]!.name}) imports ${d} (${LAYERS[layerOf(d)]!.name})`);
      if (LAYERS[layerOf(f)]!.name === 'adapters' && ADAPTER_MAY_NOT.has(LAYERS[layerOf(d)]!.name)) wrong.push(`${f} (an adapter) imports ${d}: adapters use the API`);
      const fi = INDEPENDENT.find((p) => f.startsWith(p));
      const di = INDEPENDENT.find((p) => d.startsWith(p));
      if (fi && di && fi !== di) wrong.push(`${f} imports ${d}: ${fi} and ${di} are independent`);
    }
  }
  return wrong;
}

test('no import cycles', () => {
  assert.deepEqual(findCycles(SOURCES), []);
});

test('daemon dependencies point down the layers; adapters use only the API; features and adapters do not import each other', () => {
  assert.deepEqual(layerViolations(SOURCES), []);
});

test('the contract imports nothing outside itself', () => {
  for (const [f, deps] of SOURCES) {
    if (!f.startsWith('daemon/src/contract/')) continue;
    assert.deepEqual(deps.filter((d) => !d.startsWith('daemon/src/contract/')), [], f);
    assert.doesNotMatch(fs.readFileSync(path.join(ROOT, f), 'utf8'), /^\s*import\s+(?!type\b)[^'"]*from\s+'(?!\.)/m, `${f} imports a package`);
  }
});

test('the client reaches the daemon only through the contract (and the version)', () => {
  const wrong: string[] = [];
  for (const [f, deps] of SOURCES) {
    if (!f.startsWith('client/')) continue;
    for (const d of deps) if (d.startsWith('daemon/') && !d.startsWith('daemon/src/contract/') && d !== 'daemon/src/version.ts') wrong.push(`${f} imports ${d}`);
  }
  assert.deepEqual(wrong, []);
});

test('the checks find what they look for: a made-up cycle, an upward import, an adapter reaching a feature', () => {
  // Guards against checks that silently pass (a parser that finds no imports, a rule never applied).
  const app = SOURCES.get('daemon/src/app.ts')!;
  assert.ok(app.includes('daemon/src/api/index.ts') && app.includes('daemon/src/rpc/server.ts'), JSON.stringify(app));
  assert.ok(SOURCES.get('client/src/rpc.ts')!.includes('daemon/src/contract/methods.ts'));
  const g = new Map<string, string[]>([
    ['daemon/src/monitor/a.ts', ['daemon/src/monitor/b.ts']],
    ['daemon/src/monitor/b.ts', ['daemon/src/monitor/a.ts', 'daemon/src/rpc/server.ts']],
    ['daemon/src/rpc/server.ts', ['daemon/src/lb/manager.ts']],
    ['daemon/src/lb/manager.ts', ['daemon/src/monitor/a.ts']],
  ]);
  assert.ok(findCycles(g).some((c) => c.includes('daemon/src/monitor/a.ts -> daemon/src/monitor/b.ts -> daemon/src/monitor/a.ts')));
  const v = layerViolations(g);
  assert.ok(v.some((x) => x.startsWith('daemon/src/monitor/b.ts (domain) imports daemon/src/rpc/server.ts (adapters)')), v.join('\n'));
  assert.ok(v.some((x) => x.includes('(an adapter) imports daemon/src/lb/manager.ts')), v.join('\n'));
  assert.ok(v.some((x) => x.includes('daemon/src/lb/ and daemon/src/monitor/ are independent')), v.join('\n'));
});
