// SPDX-License-Identifier: Apache-2.0
// The GNOME Shell extension (packaging/gnome-shell) is GJS that cannot import the contract:
// its D-Bus names are copies, checked here against daemon/src/contract/dbus.ts, and its
// metadata against what GNOME 43 (Debian 12's shell) loads. The extension in a real
// gnome-shell: test/integration/gnome-shell.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUS_NAME, MANAGER_IFACE, MANAGER_METHOD, MANAGER_PATH, MANAGER_PROPERTY, MANAGER_SIGNAL } from '../../../daemon/src/contract/dbus.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../..');
const UUID = 'ebpfmon@ebpfmon.org';
const dir = path.join(root, 'packaging/gnome-shell', UUID);
const source = fs.readFileSync(path.join(dir, 'extension.js'), 'utf8');

/** `const NAME = 'value';` or `const NAME = { Key: 'value', ... };` in the extension. */
function constant(name: string): unknown {
  const m = new RegExp(`^const ${name} = (.+);$`, 'm').exec(source);
  assert.ok(m, `extension.js declares ${name}`);
  return JSON.parse(m[1]!.replace(/'/g, '"').replace(/(\w+):/g, '"$1":'));
}

describe('GNOME Shell extension', () => {
  it('uses the contract\'s bus name, path, interface and member names', () => {
    assert.equal(constant('BUS_NAME'), BUS_NAME);
    assert.equal(constant('MANAGER_PATH'), MANAGER_PATH);
    assert.equal(constant('MANAGER_IFACE'), MANAGER_IFACE);
    const groups: Array<[string, Record<string, string>]> = [['METHOD', MANAGER_METHOD], ['SIGNAL', MANAGER_SIGNAL], ['PROPERTY', MANAGER_PROPERTY]];
    for (const [name, contract] of groups) {
      for (const [k, v] of Object.entries(constant(name) as Record<string, string>)) assert.equal(v, contract[k], `${name}.${k}`);
    }
  });

  it('declares GNOME 43 in its metadata, with the directory named after its uuid', () => {
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'metadata.json'), 'utf8')) as { uuid: string; 'shell-version': string[] };
    assert.equal(meta.uuid, UUID);
    assert.ok(meta['shell-version'].includes('43'));
  });

  it('is installed by the .deb', () => {
    const script = fs.readFileSync(path.join(root, 'packaging/build-deb.sh'), 'utf8');
    assert.match(script, /usr\/share\/gnome-shell\/extensions\/\$ext/);
    assert.match(script, new RegExp(`ext="${UUID}"`));
  });
});
