// SPDX-License-Identifier: Apache-2.0
// Observations cross to the writer thread packed: every field comes back as it went in,
// nulls included, across batches and across a reset of the string table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ObservationPacker, ObservationReader, OP } from '../../../../daemon/src/history/pack.js';
import type { FlowObservation } from '../../../../daemon/src/history/types.js';

function obs(i: number, nulls = false): FlowObservation {
  return {
    proto: i % 2 ? 'udp' : 'tcp', family: i % 3 ? 'ipv4' : 'ipv6',
    localAddr: i % 3 ? '198.18.0.1' : 'fd00:198::1', localPort: nulls ? null : 1024 + i,
    remoteAddr: i % 3 ? `198.18.${i % 256}.2` : `fd00:198::${i.toString(16)}`, remotePort: nulls ? null : 443,
    interface: nulls ? null : `veth${i % 4}`, direction: nulls ? null : 'outbound', attributedBy: nulls ? null : 'connect',
    pid: nulls ? null : 4_000_000_000 + i, comm: nulls ? null : `p${i % 7}`, uid: nulls ? null : 4_294_967_294, exe: nulls ? null : `/usr/bin/p${i % 7}`,
    cgroupId: nulls ? null : '18446744073709551615', unit: nulls ? null : `app-p${i % 7}.scope`, firstMs: 1_700_000_000_123 + i, lastMs: 1_700_000_000_999 + i, closedMs: nulls ? null : 1_700_000_001_000 + i,
    txBytes: 2 ** 40 + i, rxBytes: 2 ** 52 + i, txPackets: i, rxPackets: 2 * i, remoteName: nulls ? null : `h${i}.example.com`, attrs: nulls ? null : `{"dns":{"qname":"h${i}.example.com"}}`,
  };
}

test('every field round-trips, nulls included, and the string table carries across batches', () => {
  const p = new ObservationPacker();
  const r = new ObservationReader();
  const sent: Array<{ op: number; now: number; obs: FlowObservation }> = [];
  const got: typeof sent = [];
  for (let batch = 0; batch < 4; batch++) {
    for (let i = 0; i < 700; i++) { // more than the initial buffer: it grows
      const o = obs(batch * 1000 + i, i % 5 === 0);
      const op = i % 2 ? OP.close : OP.listed;
      p.add(op, o, 5000 + i);
      sent.push({ op, now: 5000 + i, obs: o });
    }
    const b = p.take()!;
    r.load(b);
    for (const u of r.rows(b)) got.push(u);
  }
  assert.equal(got.length, sent.length);
  // remoteName/attrs absent vs null both come back as null
  assert.deepEqual(got, sent.map((s) => ({ ...s, obs: { ...s.obs, remoteName: s.obs.remoteName ?? null, attrs: s.obs.attrs ?? null } })));
  assert.equal(p.take(), null, 'nothing pending');
});

test('a listing end carries its start; the string table starts over when it grows too large', () => {
  const p = new ObservationPacker(50);
  const r = new ObservationReader();
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 40; i++) p.add(OP.listed, obs(round * 100 + i), 77);
    p.endListing(1234, 5678);
    // The end marker is a row, not a record of a flow (status's records.pending counts these).
    assert.deepEqual([p.pending, p.observations], [41, 40]);
    const b = p.take()!;
    assert.deepEqual([p.pending, p.observations], [0, 0]);
    assert.equal(b.reset, round > 0, `round ${round}`);
    r.load(b);
    const rows = [...r.rows(b)];
    assert.deepEqual(rows.slice(0, 40).map((x) => x.obs.remoteAddr), Array.from({ length: 40 }, (_, i) => obs(round * 100 + i).remoteAddr));
    assert.deepEqual([rows[40]!.op, rows[40]!.obs.firstMs, rows[40]!.now], [OP.listingEnd, 1234, 5678]);
  }
});

test('a batch read out of step with the string table is refused, not misread', () => {
  const p = new ObservationPacker();
  p.add(OP.close, obs(1), 1);
  p.take();
  p.add(OP.close, obs(2), 2);
  const second = p.take()!;
  assert.throws(() => new ObservationReader().load(second), /string table out of step/);
});

test('after a large batch, the next buffer made afresh is small (no listing-sized allocation at each hand-over)', async () => {
  const { ROW } = await import('../../../../daemon/src/history/pack.js');
  const p = new ObservationPacker();
  for (let i = 0; i < 20_000; i++) p.add(OP.listed, obs(i), 1);
  const big = p.take()!;
  assert.ok(big.rows.byteLength >= 20_000 * ROW);
  p.add(OP.close, obs(1), 2);
  const next = p.take()!;
  assert.ok(next.rows.byteLength <= 4096 * ROW, `${next.rows.byteLength} bytes`);
  // A buffer the writer sends back is packed into next, as it is, whatever its size.
  p.recycle(big.rows);
  p.add(OP.close, obs(2), 3);
  assert.ok(p.take()!.rows !== big.rows, 'the buffer being packed goes first');
  p.add(OP.close, obs(3), 4);
  assert.ok(p.take()!.rows === big.rows, 'then the one sent back');
});
