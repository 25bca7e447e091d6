// SPDX-License-Identifier: Apache-2.0
// The collector's inferred closes (flows.ts reconcileCloses; the daemon end to end:
// test/integration/closes.test.ts). On a table of flows of every kind, the truth written
// here: which flows are open TCP connections whose packets ended them (FIN both ways, or a
// reset), silent long enough, whose socket the kernel's table no longer has. Exactly
// those get a close record (owner, counts, "unknown" previous state) and are marked
// closed; the collector that reads only due flows infers the same as the full walk; a
// socket still there is looked at again later, not closed; without the socket table
// (every namespace tracked) only FINs both ways after 300 s of silence count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BpfMap } from '../../../../daemon/src/bpf/maps.js';
import { FlowTable } from '../../../../daemon/src/monitor/flows.js';
import { EV, EVENT_CLOSE, EVENT_HDR, FLOW, FLOW_KEY, OWNER } from '../../../../daemon/src/monitor/wire.js';
import { FakeFlowMap } from '../../../helpers/fake-flow-map.js';

const SEC = 1_000_000_000n;
const F = FLOW.fields;
const FIN = 0x01;
const RST = 0x04;
const ACK = 0x10;

interface Spec { name: string; proto?: number; sock: number; closed?: boolean; tx?: number; rx?: number; silentSec: number; socket: number | null }

function key(port: number, proto = 6): Buffer {
  const k = Buffer.alloc(FLOW_KEY.size);
  k[FLOW_KEY.fields.family.offset] = 2;
  k[FLOW_KEY.fields.proto.offset] = proto;
  k.writeUInt16LE(port, FLOW_KEY.fields.lport.offset);
  k.writeUInt16LE(443, FLOW_KEY.fields.rport.offset);
  k.writeUInt32BE(0xc6120001, FLOW_KEY.fields.laddr.offset);
  k.writeUInt32BE(0xc6120002, FLOW_KEY.fields.raddr.offset);
  return k;
}

/** The table at time `now`: flow i has port 1000 + i; its socket's state is specs[i].socket. */
function world(specs: Spec[], now: bigint): FakeFlowMap {
  const m = new FakeFlowMap();
  specs.forEach((s, i) => {
    const v = Buffer.alloc(FLOW.size);
    v.writeBigUInt64LE(now - BigInt(s.silentSec + 100) * SEC, F.first_ns.offset);
    v.writeBigUInt64LE(now - BigInt(s.silentSec) * SEC, F.last_ns.offset);
    if (s.closed) v.writeBigUInt64LE(now - BigInt(s.silentSec) * SEC, F.closed_ns.offset);
    v.writeBigUInt64LE(BigInt(1000 + i), F.tx_bytes.offset);
    v.writeBigUInt64LE(BigInt(2000 + i), F.rx_bytes.offset);
    v.writeBigUInt64LE(BigInt(10 + i), F.tx_packets.offset);
    v.writeBigUInt64LE(BigInt(20 + i), F.rx_packets.offset);
    v.writeUInt32LE(3, F.ifindex.offset);
    v[F.tcp_flags_tx.offset] = ACK | (s.tx ?? 0);
    v[F.tcp_flags_rx.offset] = ACK | (s.rx ?? 0);
    v[F.sock_state.offset] = s.sock;
    v[F.direction.offset] = 1;
    v.writeUInt32LE(500 + i, F.owner.offset + OWNER.fields.tgid.offset);
    v[F.owner.offset + OWNER.fields.how.offset] = 2;
    m.update(key(1000 + i, s.proto), v);
  });
  return m;
}

function table(m: FakeFlowMap, clock: { now: bigint }, verify: boolean, specs: Spec[], indexed: boolean) {
  const records: Buffer[] = [];
  const t = new FlowTable(m as unknown as BpfMap, () => 'veth0', { lookup: () => undefined },
    { closedRetentionMs: 60_000, idleTimeoutMs: 300_000, tcpIdleTimeoutMs: 3_600_000, closeCheckMs: 5_000, clockNs: () => clock.now }, null, indexed ? () => 0 : null);
  t.setCloseReconciler({
    verify: verify ? (k) => specs[new DataView(k.buffer, k.byteOffset).getUint16(FLOW_KEY.fields.lport.offset, true) - 1000]!.socket : null,
    emit: (r) => records.push(r),
  });
  return { t, records };
}

const portsOf = (records: Buffer[]) => records.map((r) => r.readUInt16LE(EVENT_CLOSE.fields.key.offset + FLOW_KEY.fields.lport.offset) - 1000).sort((a, b) => a - b);

const SPECS: Spec[] = [
  { name: 'FINs both ways, silent 10 s, socket gone', sock: 9, tx: FIN, rx: FIN, silentSec: 10, socket: null },
  { name: 'FINs both ways, socket still in LAST_ACK (retransmitting)', sock: 9, tx: FIN, rx: FIN, silentSec: 10, socket: 9 },
  { name: 'reset received, socket gone', sock: 1, rx: RST, silentSec: 10, socket: null },
  { name: 'reset received, socket established (ignored reset)', sock: 1, rx: RST, silentSec: 10, socket: 1 },
  { name: 'established, idle, no FIN', sock: 1, silentSec: 1000, socket: null },
  { name: 'FIN one way only (half-closed)', sock: 8, rx: FIN, silentSec: 10, socket: null },
  { name: 'FINs both ways, silent only 2 s', sock: 9, tx: FIN, rx: FIN, silentSec: 2, socket: null },
  { name: 'closed by the kernel', sock: 7, tx: FIN, rx: FIN, closed: true, silentSec: 10, socket: null },
  { name: 'UDP', proto: 17, sock: 0, silentSec: 10, socket: null },
  { name: 'FINs both ways, the socket table answers TIME_WAIT', sock: 4, tx: FIN, rx: FIN, silentSec: 10, socket: 6 },
  { name: 'FINs both ways, only a listener on the port answers', sock: 9, tx: FIN, rx: FIN, silentSec: 400, socket: 10 },
  { name: 'no local socket (forwarded traffic)', sock: 0, tx: FIN, rx: FIN, silentSec: 10, socket: null },
];

test('inferred closes: exactly the ended, silent flows whose socket is gone; records and marks as the kernel\'s close', async () => {
  const now = 1_000_000n * SEC;
  const clock = { now };
  const m = world(SPECS, now);
  const { t, records } = table(m, clock, true, SPECS, false);
  await t.gcWalk();
  assert.deepEqual(portsOf(records), [0, 2, 9, 10], records.map((r) => SPECS[r.readUInt16LE(EVENT_CLOSE.fields.key.offset + FLOW_KEY.fields.lport.offset) - 1000]!.name).join('; '));
  const E = EVENT_CLOSE.fields;
  for (const r of records) {
    const i = r.readUInt16LE(E.key.offset + FLOW_KEY.fields.lport.offset) - 1000;
    assert.equal(r.readUInt16LE(E.hdr.offset + EVENT_HDR.fields.type.offset), EV.CLOSE);
    assert.equal(r.readUInt16LE(E.hdr.offset + EVENT_HDR.fields.size.offset), EVENT_CLOSE.size);
    assert.deepEqual(r.subarray(E.key.offset, E.key.offset + FLOW_KEY.size), key(1000 + i));
    assert.equal(r.readUInt32LE(E.owner.offset + OWNER.fields.tgid.offset), 500 + i);
    assert.deepEqual([r.readBigUInt64LE(E.tx_bytes.offset), r.readBigUInt64LE(E.rx_bytes.offset), r.readBigUInt64LE(E.tx_packets.offset), r.readBigUInt64LE(E.rx_packets.offset)],
      [BigInt(1000 + i), BigInt(2000 + i), BigInt(10 + i), BigInt(20 + i)]);
    // From the first packet to the last (when the connection ended), dated at the last.
    assert.equal(r.readBigUInt64LE(E.duration_ns.offset), 100n * SEC);
    assert.equal(r.readBigUInt64LE(E.hdr.offset + EVENT_HDR.fields.ts_ns.offset), now - BigInt(SPECS[i]!.silentSec) * SEC);
    assert.equal(r[E.old_state.offset], 0xff);
    assert.equal(r[E.flow_seen.offset], 1);
    assert.equal(r.readUInt32LE(E.ifindex.offset), 3);
    const v = m.lookup(key(1000 + i))!;
    assert.equal(v.readBigUInt64LE(F.closed_ns.offset), now);
    assert.equal(v[F.sock_state.offset], 7);
  }
  assert.deepEqual(t.indexStatus().closeChecks, { checked: 6, stillOpen: 2, inferred: 4 });
  // Nothing twice; the flow whose silence was short is inferred once it is long enough.
  clock.now += 10n * SEC;
  await t.gcWalk();
  assert.deepEqual(portsOf(records), [0, 2, 6, 9, 10]);
});

test('inferred closes: the collector that reads only due flows infers what the full walk infers', async () => {
  const t0 = 1_000_000n * SEC;
  // Not yet silent long enough at t0: the walk that fills the index infers nothing, and
  // the flows become due by themselves.
  const specs = SPECS.map((s) => ({ ...s, silentSec: Math.min(s.silentSec, 1) }));
  const a = world(specs, t0);
  const b = a.clone();
  const clock = { now: t0 };
  const due = table(a, clock, true, specs, true);
  const walk = table(b, clock, true, specs, false);
  await due.t.gc(); // untrusted: walks, fills the index
  await walk.t.gcWalk();
  assert.equal(due.records.length + walk.records.length, 0);
  for (const step of [3n, 3n, 30n, 61n]) {
    clock.now += step * SEC;
    await due.t.gc();
    await walk.t.gcWalk();
    assert.deepEqual(portsOf(due.records), portsOf(walk.records), `at +${(clock.now - t0) / SEC} s`);
    assert.deepEqual([...a.entries.keys()].sort(), [...b.entries.keys()].sort());
  }
  assert.deepEqual(portsOf(due.records), [0, 2, 6, 9, 10]);
  assert.ok(due.t.index.trusted(0), 'the due-only collector ran');
});

test('inferred closes without the socket table: FINs both ways only, after 300 s of silence', async () => {
  const now = 1_000_000n * SEC;
  const specs: Spec[] = [
    { name: 'FINs both ways, 10 s', sock: 9, tx: FIN, rx: FIN, silentSec: 10, socket: null },
    { name: 'FINs both ways, 400 s', sock: 9, tx: FIN, rx: FIN, silentSec: 400, socket: null },
    { name: 'reset, 400 s', sock: 1, rx: RST, silentSec: 400, socket: null },
  ];
  const m = world(specs, now);
  const { t, records } = table(m, { now }, false, specs, false);
  await t.gcWalk();
  assert.deepEqual(portsOf(records), [1]);
  assert.deepEqual(t.indexStatus().closeChecks, { checked: 2, stillOpen: 1, inferred: 1 });
});

test('inferred closes: at most 512 socket-table questions per collection, the rest at the next; a failed question is asked again later', async () => {
  const now = 1_000_000n * SEC;
  const clock = { now };
  const specs: Spec[] = Array.from({ length: 600 }, () => ({ name: 'FINs both ways, gone', sock: 9, tx: FIN, rx: FIN, silentSec: 10, socket: null }));
  const m = world(specs, now);
  const { t, records } = table(m, clock, true, specs, true);
  await t.gc(); // the first collection walks (the index is not trusted yet)
  assert.equal(records.length, 512);
  clock.now += 1n * SEC;
  await t.gc(); // due-only: the 88 left were made due at once
  assert.equal(records.length, 600);
  assert.equal(new Set(portsOf(records)).size, 600);

  // A socket table that fails: nothing inferred, asked again a minute later (by the due-only
  // collector; a walk, which runs until the index is trusted, asks every time it passes).
  const one: Spec[] = [{ name: 'FINs both ways', sock: 9, tx: FIN, rx: FIN, silentSec: 10, socket: -1 }];
  const m2 = world(one, now);
  const c2 = { now };
  const t2 = table(m2, c2, true, one, true);
  await t2.t.gc();
  c2.now += 1n * SEC;
  await t2.t.gc(); // the second walk, with the counters still, fills the index
  assert.ok(t2.t.index.trusted(0));
  assert.equal(t2.records.length, 0);
  assert.deepEqual(t2.t.indexStatus().closeChecks, { checked: 2, stillOpen: 2, inferred: 0 });
  c2.now += 30n * SEC;
  await t2.t.gc();
  assert.equal(t2.t.indexStatus().closeChecks.checked, 2, 'not before a minute');
  c2.now += 31n * SEC;
  await t2.t.gc();
  assert.equal(t2.t.indexStatus().closeChecks.checked, 3);
  assert.equal(t2.records.length, 0);
});
