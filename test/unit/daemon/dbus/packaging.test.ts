// SPDX-License-Identifier: Apache-2.0
// The files that ship with the D-Bus API agree with the code: the bus policy opens exactly
// the members schema.ts declares (and only root may own the name), the polkit action is
// the one the daemon checks, and docs/org.ebpfmon1.xml and docs/dbus.md describe every
// member. (test/integration/dbus.test.ts checks the policy and the XML against a live bus.)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BUS_NAME, CAPTURE_IFACE, FDO, LB_IFACE, MANAGER_IFACE, POLKIT_ACTION_MANAGE_LB, POLKIT_ACTION_MANAGE_MIRRORS } from '../../../../daemon/src/contract/dbus.js';
import { CAPTURE_SPEC, LB_SPEC, MANAGER_SPEC, type InterfaceSpec } from '../../../../daemon/src/contract/dbus.js';
import { ANNOTATION } from '../../../../daemon/src/contract/dbus.js';
import { parseIntrospection, REPO } from '../../../helpers/dbus.js';

const read = (p: string) => fs.readFileSync(path.join(REPO, p), 'utf8');
const attrs = (s: string) => Object.fromEntries([...s.matchAll(/([\w_]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));

function policies(xml: string): Array<{ context: Record<string, string>; rules: Array<{ allow: boolean; attrs: Record<string, string> }> }> {
  const body = xml.replace(/<!--[\s\S]*?-->/g, '');
  return [...body.matchAll(/<policy\b([^>]*)>([\s\S]*?)<\/policy>/g)].map((m) => ({
    context: attrs(m[1]!),
    rules: [...m[2]!.matchAll(/<(allow|deny)\b([^>]*?)\/>/g)].map((r) => ({ allow: r[1] === 'allow', attrs: attrs(r[2]!) })),
  }));
}

describe('packaging/dbus/org.ebpfmon1.conf', () => {
  const ps = policies(read('packaging/dbus/org.ebpfmon1.conf'));
  const def = ps.find((p) => p.context.context === 'default')!;

  test('only root may own the name', () => {
    const owners = ps.flatMap((p) => p.rules.filter((r) => r.allow && 'own' in r.attrs).map((r) => [p.context, r.attrs.own]));
    assert.deepEqual(owners, [[{ user: 'root' }, BUS_NAME]]);
  });

  test('denies by default, then allows every declared method, Get/GetAll and introspection; never Set', () => {
    assert.deepEqual(def.rules[0], { allow: false, attrs: { send_destination: BUS_NAME } }, 'the first rule denies everything');
    const allowed = new Set(def.rules.filter((r) => r.allow && r.attrs.send_destination === BUS_NAME).map((r) => `${r.attrs.send_interface}.${r.attrs.send_member ?? '*'}`));
    const expected = new Set([
      `${FDO.introspectable}.*`, `${FDO.peer}.*`, `${FDO.properties}.Get`, `${FDO.properties}.GetAll`,
      ...(Object.keys(MANAGER_SPEC.methods)).map((m) => `${MANAGER_IFACE}.${m}`),
      ...(Object.keys(LB_SPEC.methods)).map((m) => `${LB_IFACE}.${m}`),
      ...(Object.keys(CAPTURE_SPEC.methods)).map((m) => `${CAPTURE_IFACE}.${m}`),
    ]);
    assert.deepEqual([...allowed].sort(), [...expected].sort());
  });
});

describe('packaging/polkit/org.ebpfmon1.policy', () => {
  test('declares the actions the daemon checks, auth_admin_keep', () => {
    const xml = read('packaging/polkit/org.ebpfmon1.policy');
    const actions = [...xml.matchAll(/<action id="([^"]+)">([\s\S]*?)<\/action>/g)];
    assert.deepEqual(actions.map((a) => a[1]), [POLKIT_ACTION_MANAGE_LB, POLKIT_ACTION_MANAGE_MIRRORS]);
    for (const action of actions) {
      const defaults = /<defaults>([\s\S]*?)<\/defaults>/.exec(action[2]!)![1]!;
      for (const k of ['allow_any', 'allow_inactive', 'allow_active']) assert.match(defaults, new RegExp(`<${k}>auth_admin_keep</${k}>`));
      assert.match(action[2]!, /<description>[^<]+<\/description>/);
      assert.match(action[2]!, /<message>[^<]+<\/message>/);
    }
  });
});

describe('documentation', () => {
  const docs = parseIntrospection(read('docs/org.ebpfmon1.xml'));
  const specs: InterfaceSpec[] = [MANAGER_SPEC, LB_SPEC, CAPTURE_SPEC];

  test('docs/org.ebpfmon1.xml declares exactly the schema, with a doc line per member', () => {
    assert.deepEqual([...docs.keys()].sort(), specs.map((s) => s.name).sort());
    for (const spec of specs) {
      const iface = docs.get(spec.name)!;
      const want = new Map<string, string[]>();
      for (const [n, m] of Object.entries(spec.methods)) want.set(`method ${n}`, [...m.in.map((a) => `in:${a.type} ${a.name}`), ...m.out.map((a) => `out:${a.type} ${a.name}`)]);
      for (const [n, p] of Object.entries(spec.properties)) want.set(`property ${n}`, [`${p.type} read`]);
      for (const [n, s] of Object.entries(spec.signals)) want.set(`signal ${n}`, s.args.map((a) => `${a.type} ${a.name}`));
      assert.deepEqual([...iface.members.keys()].sort(), [...want.keys()].sort(), spec.name);
      for (const [k, m] of iface.members) {
        assert.deepEqual(m.args, want.get(k), `${spec.name} ${k}`);
        assert.ok((m.annotations[ANNOTATION.docString] ?? '').length > 10, `${spec.name} ${k} has a doc line`);
      }
      for (const [n, p] of Object.entries(spec.properties)) {
        assert.equal(docs.get(spec.name)!.members.get(`property ${n}`)!.annotations[ANNOTATION.emitsChangedSignal], p.emitsChanged, n);
      }
    }
  });

  test('counters do not emit PropertiesChanged', () => {
    for (const name of ['FlowCount', 'TxBytes', 'RxBytes', 'RingbufFull']) {
      assert.equal(docs.get(MANAGER_IFACE)!.members.get(`property ${name}`)!.annotations[ANNOTATION.emitsChangedSignal], 'false', name);
    }
  });

  test('docs/dbus.md names every member', () => {
    const md = read('docs/dbus.md');
    for (const spec of specs) {
      for (const n of [...Object.keys(spec.methods), ...Object.keys(spec.properties), ...Object.keys(spec.signals)]) assert.ok(md.includes(n), `docs/dbus.md mentions ${n}`);
    }
  });
});
