// SPDX-License-Identifier: Apache-2.0
// The TypeScript mirrors of the BPF wire format must match the structs the compiler laid
// out (test/helpers/layout.ts): the monitor's (monitor/wire.ts) and the load balancer's
// (lb/wire.ts: every struct, and which struct or scalar each LB map's key and value is).
// Also checks the UAPI offsets info.ts decodes against the running kernel's BTF.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Btf } from '../../daemon/src/bpf/btf.js';
import type { StructSpec } from '../../daemon/src/bpf/layout.js';
import { ALL_STRUCTS, STAT_CLOSES_INFERRED, STAT_FLOWS_DELETED, STAT_MAX } from '../../daemon/src/monitor/wire.js';
import { DAEMON_COUNTERS, MONITOR_COUNTERS } from '../../daemon/src/contract/status.js';
import { ATTRIBUTIONS } from '../../daemon/src/contract/common.js';
import { LINK_INFO, MAP_INFO, PROG_INFO } from '../../daemon/src/bpf/info.js';
import { ALL_LB_STRUCTS, LB_MAP_TYPES } from '../../daemon/src/lb/wire.js';
import { LB_MAP } from '../../daemon/src/lb/components.js';
import { testMapTypes, testStructLayouts } from '../helpers/layout.js';
import { HANDOFF } from '../../daemon/src/monitor/handoff.js';
import { HANDOFF_COUNTERS } from '../../daemon/src/contract/identity.js';

const objDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bpf');

testStructLayouts(ALL_STRUCTS);
testStructLayouts(ALL_LB_STRUCTS);
testStructLayouts([HANDOFF]);
testMapTypes('lb.bpf.o', Object.fromEntries(Object.entries(LB_MAP_TYPES).map(([k, t]) => [LB_MAP[k as keyof typeof LB_MAP], t])));

test('every StructSpec lb/wire.ts exports is in ALL_LB_STRUCTS (so the BTF check sees it)', async () => {
  const wire: Record<string, unknown> = await import('../../daemon/src/lb/wire.js');
  const specs = Object.values(wire).filter((v): v is StructSpec => typeof v === 'object' && v !== null && 'fields' in v && 'object' in v);
  assert.deepEqual(specs.filter((s) => !ALL_LB_STRUCTS.includes(s)).map((s) => s.name), []);
  assert.ok(specs.length >= 17, `${specs.length} specs found`);
});

test('emon_owner_ports holds the kernel\'s and the daemon\'s halves of 64-bit words the daemon writes (OWNER_PORT_WORDS each)', async () => {
  const { BpfObject } = await import('../../daemon/src/bpf/object.js');
  const { OWNER_PORT_WORDS } = await import('../../daemon/src/monitor/wire.js');
  const { MAP } = await import('../../daemon/src/monitor/components.js');
  for (const file of ['flows.bpf.o', 'sockets.bpf.o', 'scan.bpf.o']) {
    const obj = BpfObject.open(path.join(objDir, file));
    try {
      const m = obj.mapSpec(MAP.ownerPorts);
      assert.deepEqual({ keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries }, { keySize: 4, valueSize: 8, maxEntries: 2 * OWNER_PORT_WORDS }, file);
      assert.equal(OWNER_PORT_WORDS * 64, 65536, 'a bit per port');
    } finally {
      obj.close();
    }
  }
});

test('the layout version is the same in bpf/monitor/common.h and the daemon', async () => {
  const fs = await import('node:fs');
  const header = fs.readFileSync(path.resolve(objDir, '../../bpf/monitor/common.h'), 'utf8');
  const { LAYOUT_VERSION } = await import('../../daemon/src/monitor/monitor.js');
  assert.equal(Number(/#define EMON_LAYOUT_VERSION (\d+)/.exec(header)?.[1]), LAYOUT_VERSION);
});

/** EMON_STAT_FLOWS_CREATED -> flowsCreated */
const camel = (enumerator: string, prefix: string) => enumerator.slice(prefix.length).toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

test('every kernel counter has the name user space gives it, C to D-Bus (enum emon_stat in camelCase)', () => {
  const btf = Btf.fromObject(path.join(objDir, 'flows.bpf.o'));
  try {
    const stats = btf.enum('emon_stat');
    assert.ok(stats, 'enum emon_stat is in flows.bpf.o BTF');
    const named = stats.filter((e) => e.name !== 'EMON_STAT_MAX');
    for (const e of named) {
      const want = e.value === STAT_FLOWS_DELETED ? 'flowsDeleted' : e.value === STAT_CLOSES_INFERRED ? 'closesInferred' : MONITOR_COUNTERS[e.value];
      assert.equal(camel(e.name, 'EMON_STAT_'), want, `${e.name} = ${e.value}`);
    }
    assert.equal(named.length, MONITOR_COUNTERS.length + DAEMON_COUNTERS.length, 'no counter without a name, no name without a counter');
    assert.equal(stats.find((e) => e.name === 'EMON_STAT_MAX')?.value, STAT_MAX);
    const how = btf.enum('emon_how')!;
    assert.deepEqual(how.map((e) => [camel(e.name, 'EMON_HOW_'), e.value]), ATTRIBUTIONS.map((a, i) => [a, i]), 'attributedBy names are enum emon_how');
  } finally {
    btf.close();
  }
});

test('the handoff counters have the names user space gives them (enum emon_ho_stat in camelCase)', () => {
  const btf = Btf.fromObject(path.join(objDir, 'handoff.bpf.o'));
  try {
    const stats = btf.enum('emon_ho_stat');
    assert.ok(stats, 'enum emon_ho_stat is in handoff.bpf.o BTF');
    assert.deepEqual(stats.filter((e) => e.name !== 'EMON_HO_STAT_MAX').map((e) => [camel(e.name, 'EMON_HO_STAT_'), e.value]), HANDOFF_COUNTERS.map((n, i) => [n, i]));
    assert.deepEqual(btf.enum('emon_how')!.map((e) => [camel(e.name, 'EMON_HOW_'), e.value]), ATTRIBUTIONS.map((a, i) => [a, i]), 'the same enum emon_how as the monitor\'s objects');
  } finally {
    btf.close();
  }
});

test('bpf_prog_info / bpf_map_info / bpf_link_info offsets match the kernel', () => {
  const btf = Btf.vmlinux();
  try {
    const check = (struct: string, offsets: Record<string, number>) => {
      const s = btf.struct(struct);
      assert.ok(s, struct);
      for (const [name, off] of Object.entries(offsets)) {
        if (name === 'union') continue;
        assert.equal(s.members.get(name)?.offset, off, `${struct}.${name}`);
      }
    };
    check('bpf_prog_info', PROG_INFO);
    check('bpf_map_info', MAP_INFO);
    check('bpf_link_info', LINK_INFO);
  } finally {
    btf.close();
  }
});
