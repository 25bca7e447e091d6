// SPDX-License-Identifier: Apache-2.0
// Configuration: defaults, file, environment; every invalid input is refused with a line
// naming the key (or variable), the value and what was expected.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../../../daemon/src/config/load.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-cfg-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const file = (content: string) => {
  const f = path.join(dir, `${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(f, content);
  return f;
};
const fails = (content: string, re: RegExp, env: Record<string, string> = {}) =>
  assert.throws(() => loadConfig({ file: file(content), env }), (e: unknown) => e instanceof ConfigError && re.test(e.message));

test('defaults without a file; the default file may be absent, a named one may not', () => {
  assert.throws(() => loadConfig({ file: path.join(dir, 'none.json'), env: {} }), /none\.json: no such configuration file/);
  const d = loadConfig({ file: file('{}'), env: {} }).config;
  assert.deepEqual(d.interfaces, ['*']);
  assert.equal(d.socketPath, '/run/ebpfmon/ebpfmon.sock');
  assert.equal(d.pinPath, '/sys/fs/bpf/ebpfmon');
  assert.equal(d.maps.flows, 65536);
});

test('file values and environment overrides (the environment wins)', () => {
  const c = loadConfig({ file: file('{"interfaces":["eth0"],"maps":{"flows":131072},"flows":{"closedRetentionSec":5}}'), env: { EBPFMON_MAPS_FLOWS: '4096', EBPFMON_INTERFACES: 'wg0, veth*' } }).config;
  assert.deepEqual(c.interfaces, ['wg0', 'veth*']);
  assert.equal(c.maps.flows, 4096);
  assert.equal(c.flows.closedRetentionSec, 5);
});

test('invalid input names key, value and expectation', () => {
  fails('{"interfaces":', /not valid JSON/);
  fails('[1]', /must contain a JSON object/);
  fails('{"interfacez":[]}', /configuration param 'interfacez' not declared in the schema/);
  fails('{"maps":{"flows":"lots"}}', /maps\.flows: must be an integer from 1024 to 16777216: got "lots"/);
  fails('{"maps":{"flows":100}}', /maps\.flows: must be an integer from 1024/);
  fails('{"maps":{"ringBufferBytes":5000}}', /maps\.ringBufferBytes: must be a power of two/);
  fails('{"interfaces":["way-too-long-interface-name"]}', /interfaces: must be an array of interface names/);
  fails('{"socketPath":"relative.sock"}', /socketPath: must be an absolute path/);
  fails('{"logLevel":"loud"}', /logLevel: must be one of the possible values/);
  fails('{"lb":{"xdpMode":"turbo"}}', /lb\.xdpMode/);
  fails('{}', /environment EBPFMON_MAPS_FLOWS \(maps\.flows: must be an integer .*got "x"\)/, { EBPFMON_MAPS_FLOWS: 'x' });
});
