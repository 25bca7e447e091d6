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
  fails('{"interfacez":[]}', /interfacez: unknown key \(known: interfaces, /);
  fails('{"maps":{"flows":"lots"}}', /maps\.flows: must be an integer from 1024 to 16777216: got "lots"/);
  fails('{"maps":{"flows":100}}', /maps\.flows: must be an integer from 1024/);
  fails('{"maps":{"ringBufferBytes":5000}}', /maps\.ringBufferBytes: must be a power of two/);
  fails('{"interfaces":["way-too-long-interface-name"]}', /interfaces: must be an array of interface names/);
  fails('{"socketPath":"relative.sock"}', /socketPath: must be an absolute path/);
  fails('{"logLevel":"loud"}', /logLevel: must be one of the possible values/);
  fails('{"lb":{"xdpMode":"turbo"}}', /lb\.xdpMode/);
  fails('{}', /environment EBPFMON_MAPS_FLOWS \(maps\.flows: must be an integer .*got "x"\)/, { EBPFMON_MAPS_FLOWS: 'x' });
});

test('the structure is checked before any value: one line per problem, each naming the key', () => {
  const message = (content: string) => {
    try {
      loadConfig({ file: file(content), env: {} });
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.message.replace(/^.*?\.json: /gm, '');
    }
    assert.fail(`accepted ${content}`);
  };
  // A scalar where a group belongs: one line, not one per child.
  assert.equal(message('{"maps":5}'), 'maps: must be an object with the keys flows, owners, tuples, binds, ringBufferBytes: got 5');
  // JSON.parse turns 1e309 into Infinity; convict would have said "got null".
  assert.equal(message('{"flows":{"gcIntervalSec":1e309}}'), 'flows.gcIntervalSec: must be a finite number: got a number too large to represent');
  // An object where a list belongs was silently dropped.
  assert.equal(message('{"lb":{"vips":{"vip":"198.18.0.1:80/tcp"}}}'), 'lb.vips: must be an array of objects: got {"vip":"198.18.0.1:80/tcp"}');
  // Keys that would reach Object.prototype, at any depth.
  assert.match(message('{"__proto__":{"polluted":1}}'), /^__proto__: unknown key/);
  assert.match(message('{"rpc":{"constructor":{"x":1}}}'), /^rpc\.constructor: unknown key \(known in rpc: maxClients, /);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  // Several problems: every one reported.
  assert.deepEqual(message('{"maps":5,"nope":1,"rpc":{"maxClients":0}}').split('\n').map((l) => l.split(':')[0]), ['maps', 'nope']);
  // The D-Bus address is checked here, not by the bus library at start-up.
  assert.match(message('{"dbus":{"address":"garbage"}}'), /^dbus\.address: must be "" \(the system bus\) or one D-Bus address: .*got "garbage"/);
  assert.match(message('{"dbus":{"address":"unixexec:path=/bin/sh"}}'), /^dbus\.address: must be/);
  for (const ok of ['unix:path=/run/dbus/system_bus_socket', 'unix:abstract=/tmp/dbus-x', 'tcp:host=127.0.0.1,port=5555']) {
    assert.equal(loadConfig({ file: file(JSON.stringify({ dbus: { address: ok } })), env: {} }).config.dbus.address, ok);
  }
});

test('connection limits per user', () => {
  const c = loadConfig({ file: file('{"rpc":{"maxClientsPerUid":4,"reservedClients":0,"idleTimeoutSec":0}}'), env: {} }).config;
  assert.deepEqual([c.rpc.maxClientsPerUid, c.rpc.reservedClients, c.rpc.idleTimeoutSec], [4, 0, 0]);
  fails('{"rpc":{"maxClientsPerUid":0}}', /rpc\.maxClientsPerUid: must be an integer from 1/);
});
