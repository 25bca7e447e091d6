// SPDX-License-Identifier: Apache-2.0
// Flow records: whatever order snapshots and close events arrive in, the records of one
// flow add up to the flow's final counts (the test's own numbers), exactly once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlowRecordTracker, UID_UNKNOWN } from '../../../../daemon/src/export/flow-records.js';
import { COLUMNS, createStatements } from '../../../../daemon/src/export/clickhouse-schema.js';
import type { CloseEventInput, FlowInput, FlowRecord } from '../../../../daemon/src/export/api-types.js';

const host = { hostName: 'h1', machineId: '0123456789abcdef0123456789abcdef' };
const T0 = Date.parse('2026-12-01T10:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();

function flow(p: Partial<FlowInput> & { tx: number; rx: number }, first = T0): FlowInput {
  return {
    protocol: 'tcp', family: 'ipv4', localAddr: '198.18.1.1', localPort: 40000, remoteAddr: '198.18.1.2', remotePort: 80,
    direction: 'outbound', interface: 'veth0', pid: 42, comm: 'curl', uid: 1000, attributedBy: 'connect',
    txBytes: p.tx, rxBytes: p.rx, txPackets: Math.ceil(p.tx / 100), rxPackets: Math.ceil(p.rx / 100),
    firstSeenAt: iso(first), lastSeenAt: iso(first + 1000), closedAt: null, ...p,
  };
}

function close(tx: number, rx: number, p: Partial<CloseEventInput> = {}): CloseEventInput {
  return {
    at: iso(T0 + 5000), protocol: 'tcp', family: 'ipv4', localAddr: '198.18.1.1', localPort: 40000, remoteAddr: '198.18.1.2', remotePort: 80,
    pid: 42, uid: 1000, comm: 'curl', attributedBy: 'connect', flowSeen: true, interface: 'veth0',
    txBytes: tx, rxBytes: rx, txPackets: Math.ceil(tx / 100), rxPackets: Math.ceil(rx / 100), durationMs: 5000, payloadBytesSent: 777, payloadBytesReceived: 888, ...p,
  };
}

const sum = (rs: FlowRecord[], k: 'tx_bytes' | 'rx_bytes' | 'tx_packets' | 'rx_packets') => rs.reduce((a, r) => a + r[k], 0);

test('an open flow over three snapshots, then its close event: updates then one close; the sums are the final counts', () => {
  const t = new FlowRecordTracker({ host });
  const out: FlowRecord[] = [];
  out.push(...t.snapshot([flow({ tx: 1000, rx: 200 })], T0 + 1000));
  out.push(...t.snapshot([flow({ tx: 1000, rx: 200 })], T0 + 2000)); // nothing moved: no record
  out.push(...t.snapshot([flow({ tx: 5000, rx: 900 })], T0 + 3000));
  const c = t.closed(close(7000, 1000));
  assert.ok(c);
  out.push(c);
  assert.deepEqual(out.map((r) => r.kind), ['update', 'update', 'close']);
  assert.deepEqual([sum(out, 'tx_bytes'), sum(out, 'rx_bytes'), sum(out, 'tx_packets'), sum(out, 'rx_packets')], [7000, 1000, 70, 10]);
  assert.equal(c.payload_sent, 777);
  assert.equal(c.first_seen_at, T0 / 1000, 'the first-seen time of the table, not the event\'s estimate');
  // The closed entry stays in the table a while; its last ACK counted after the close event:
  const late = t.snapshot([flow({ tx: 7040, rx: 1000, closedAt: iso(T0 + 5000) })], T0 + 6000);
  assert.deepEqual(late.map((r) => [r.kind, r.tx_bytes, r.rx_bytes]), [['close', 40, 0]]);
  assert.deepEqual(t.snapshot([flow({ tx: 7040, rx: 1000, closedAt: iso(T0 + 5000) })], T0 + 7000), [], 'nothing twice');
});

test('a UDP flow closed in the table with no close event gets its close record from the snapshot, once', () => {
  const t = new FlowRecordTracker({ host });
  const u = (tx: number, closedAt: string | null) => flow({ protocol: 'udp', tx, rx: 0, remotePort: 53, closedAt });
  const a = t.snapshot([u(300, null)], T0 + 1000);
  const b = t.snapshot([u(500, iso(T0 + 1500))], T0 + 2000);
  const c = t.snapshot([u(500, iso(T0 + 1500))], T0 + 3000);
  assert.deepEqual([...a, ...b, ...c].map((r) => [r.kind, r.tx_bytes]), [['update', 300], ['close', 200]]);
});

test('a 5-tuple reused by a new connection (new first-seen time) is a new flow counted from zero', () => {
  const t = new FlowRecordTracker({ host });
  t.snapshot([flow({ tx: 1000, rx: 0 })], T0 + 1000);
  t.closed(close(1000, 0));
  const again = t.snapshot([flow({ tx: 300, rx: 0 }, T0 + 60_000)], T0 + 61_000);
  assert.deepEqual(again.map((r) => [r.kind, r.tx_bytes, r.first_seen_at]), [['update', 300, (T0 + 60_000) / 1000]]);
  const c = t.closed(close(450, 0, { at: iso(T0 + 62_000) }));
  assert.deepEqual([c!.kind, c!.tx_bytes], ['close', 150]);
});

test('a close event for a flow no snapshot saw: all its counts; loopback (no monitored interface): payload only', () => {
  const t = new FlowRecordTracker({ host, snapshots: false });
  const r = t.closed(close(900, 100))!;
  assert.deepEqual([r.tx_bytes, r.rx_bytes, r.duration_ms, r.first_seen_at], [900, 100, 5000, T0 / 1000]);
  const lo = t.closed(close(900, 100, { flowSeen: false, localPort: 40001, interface: null }))!;
  assert.deepEqual([lo.tx_bytes, lo.rx_bytes, lo.tx_packets, lo.payload_sent, lo.interface], [0, 0, 0, 777, '']);
  assert.equal(t.size, 0, 'without snapshots nothing is remembered');
  // With snapshots to come, the first one must not export the closed flow again.
  const u = new FlowRecordTracker({ host });
  u.closed(close(900, 100));
  assert.deepEqual(u.snapshot([flow({ tx: 900, rx: 100, closedAt: iso(T0 + 5000) })], T0 + 6000), []);
});

test('records carry the host identity; unknown owners get the documented sentinels', () => {
  const t = new FlowRecordTracker({ host });
  const [r] = t.snapshot([flow({ tx: 10, rx: 0, pid: null, uid: null, comm: null, attributedBy: 'none' })], T0 + 1000);
  assert.deepEqual([r!.host, r!.machine_id, r!.pid, r!.uid, r!.comm, r!.unit, r!.container], ['h1', host.machineId, 0, UID_UNKNOWN, '', '', '']);
});

test('the tracker is bounded: the oldest flows are forgotten and counted', () => {
  const t = new FlowRecordTracker({ host, maxTracked: 10 });
  t.snapshot(Array.from({ length: 25 }, (_, i) => flow({ tx: 10, rx: 0, localPort: 1000 + i })), T0);
  assert.equal(t.size, 10);
  assert.equal(t.overflow, 15);
});

test('the table has exactly one column per record field', () => {
  const t = new FlowRecordTracker({ host });
  const [r] = t.snapshot([flow({ tx: 1, rx: 1 })], T0);
  assert.deepEqual(COLUMNS.map(([c]) => c).sort(), Object.keys(r!).sort());
  const ddl = createStatements({ database: 'db', table: 't', cluster: 'c' });
  assert.equal(ddl.length, 3);
  assert.match(ddl[1]!, /CREATE TABLE IF NOT EXISTS `db`\.`t_local`/);
  assert.match(ddl[2]!, /ENGINE = Distributed\(`c`, `db`, `t_local`, cityHash64\(machine_id\)\)/);
  assert.equal(createStatements({ database: 'db', table: 't', cluster: '' }).length, 2);
});

test('a daemon restart: the tracker saved at stop and loaded at start goes on where it was (no record repeated, none lost), through a JSON round trip', () => {
  const a = new FlowRecordTracker({ host });
  const out: FlowRecord[] = [];
  const other = { localPort: 40001 };
  out.push(...a.snapshot([flow({ tx: 1000, rx: 200 }), flow({ tx: 50, rx: 60, ...other })], T0 + 1000));
  const c = a.closed(close(300, 400, other));
  assert.ok(c);
  out.push(c);
  const b = new FlowRecordTracker({ host });
  assert.equal(b.load(JSON.parse(JSON.stringify(a.save()))), 2);
  // The next run measures the clock offset again: first-seen may come out 1 ms apart.
  out.push(...b.snapshot([flow({ tx: 4000, rx: 900 }, T0 + 1), flow({ tx: 300, rx: 400, closedAt: iso(T0 + 5000), ...other })], T0 + 9000));
  const mine = out.filter((r) => r.local_port === 40000);
  assert.deepEqual([mine.map((r) => r.kind), sum(mine, 'tx_bytes'), sum(mine, 'rx_bytes')], [['update', 'update'], 4000, 900]);
  const closed = out.filter((r) => r.local_port === 40001);
  assert.deepEqual([closed.map((r) => r.kind), sum(closed, 'tx_bytes')], [['update', 'close'], 300], 'the closed flow is not closed twice');
  // Without the saved state the same snapshot repeats everything (what the spool prevents):
  const fresh = new FlowRecordTracker({ host }).snapshot([flow({ tx: 4000, rx: 900 }, T0 + 1)], T0 + 9000);
  assert.equal(sum(fresh, 'tx_bytes'), 4000);
  assert.equal(new FlowRecordTracker({ host }).load({ generation: 1, flows: [['k', 'x' as unknown as number, 1, 1, 1, 1, false, 1]] }), 0, 'malformed entries are skipped');
});
