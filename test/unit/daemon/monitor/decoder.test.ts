// SPDX-License-Identifier: Apache-2.0
// The two forms of a ring-buffer record: the row a batch subscriber gets (encodeRow, written
// from the bytes) must be the event object (decodeEvent) field for field, and both must say
// what the test wrote into the record: random records of every type, with the awkward
// values (comm with quotes, backslashes, control characters and UTF-8, IPv6, no owner, the
// kernel as owner, unknown TCP states, counters above 2^53, timestamps in and across seconds).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EVENT_FIELDS, type MonitorEvent } from '../../../../daemon/src/contract/events.js';
import { decodable, decodeEvent, encodeRow, type DecodeContext } from '../../../../daemon/src/monitor/decoder.js';
import { EV, EVENT_CLOSE, EVENT_CONN, EVENT_EXEC, EVENT_EXIT, EVENT_HDR, FLOW_KEY, OWNER } from '../../../../daemon/src/monitor/wire.js';
import { rowEvent } from '../../../../client/src/events.js';

/** A small deterministic PRNG (xorshift32): failures reproduce. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return { u32: next, int: (n: number) => next() % n, pick: <T>(a: readonly T[]) => a[next() % a.length]! };
}

const COMMS = ['curl', 'a"b', 'back\\slash', 'tab\there', 'ctl\u0001x', 'naïve', '日本', '', 'fifteen-chars-x'];
const BASE_NS = 5_000_000_000_000n; // boot time of the records
const ctx: DecodeContext = {
  toMsAt: (v, off) => 1_790_000_000_000 + Number(v.getBigUint64(off, true) / 1_000_000n),
  ifname: (i) => (i === 3 ? 'veth"odd' : i === 0 ? null : `if${i}`),
};

interface Truth { type: number; pid: number | null; uid: number | null; comm: string | null; localPort?: number; txBytes?: number; ts: bigint }

function writeOwner(b: Buffer, o: number, r: ReturnType<typeof rng>, t: Truth): void {
  const how = r.pick([0, 1, 2, 3, 4, 5, 6, 7]);
  const tgid = r.u32() & 0x3fffffff;
  const uid = r.int(70000);
  const comm = r.pick(COMMS);
  b.writeUInt32LE(tgid, o + OWNER.fields.tgid.offset);
  b.writeUInt32LE(tgid + 1, o + OWNER.fields.pid.offset);
  b.writeUInt32LE(uid, o + OWNER.fields.uid.offset);
  Buffer.from(comm, 'utf8').copy(b, o + OWNER.fields.comm.offset, 0, 15);
  b[o + OWNER.fields.how.offset] = how;
  const owned = how !== 0 && how !== 7;
  t.pid = owned ? tgid : null;
  t.uid = owned ? uid : null;
  t.comm = owned ? comm : how === 7 ? '[kernel]' : null;
}

function writeKey(b: Buffer, o: number, r: ReturnType<typeof rng>, t: Truth): void {
  const v6 = r.int(3) === 0;
  b[o + FLOW_KEY.fields.family.offset] = v6 ? 10 : 2;
  b[o + FLOW_KEY.fields.proto.offset] = r.pick([6, 17, 1, 58, 47]);
  t.localPort = r.int(65536);
  b.writeUInt16LE(t.localPort, o + FLOW_KEY.fields.lport.offset);
  b.writeUInt16LE(r.int(65536), o + FLOW_KEY.fields.rport.offset);
  for (let i = 0; i < (v6 ? 16 : 4); i++) {
    b[o + FLOW_KEY.fields.laddr.offset + i] = r.int(3) === 0 ? 0 : r.int(256);
    b[o + FLOW_KEY.fields.raddr.offset + i] = r.int(256);
  }
}

function record(r: ReturnType<typeof rng>, i: number): { buf: Buffer; t: Truth } {
  const type = r.pick([EV.CONNECT, EV.ACCEPT, EV.CLOSE, EV.EXEC, EV.EXIT]);
  const size = { [EV.CONNECT]: EVENT_CONN.size, [EV.ACCEPT]: EVENT_CONN.size, [EV.CLOSE]: EVENT_CLOSE.size, [EV.EXEC]: EVENT_EXEC.size, [EV.EXIT]: EVENT_EXIT.size }[type]!;
  const b = Buffer.alloc(size + 8);
  // Timestamps mostly within the same second, sometimes a jump: the time cache's two paths.
  const ts = BASE_NS + BigInt(i) * (r.int(4) === 0 ? 1_234_567_891n : 173_003n);
  const t: Truth = { type, pid: null, uid: null, comm: null, ts };
  b.writeUInt16LE(type, EVENT_HDR.fields.type.offset);
  b.writeUInt16LE(size, EVENT_HDR.fields.size.offset);
  b.writeBigUInt64LE(ts, EVENT_HDR.fields.ts_ns.offset);
  if (type === EV.CLOSE || type === EV.CONNECT || type === EV.ACCEPT) {
    const L = type === EV.CLOSE ? EVENT_CLOSE.fields : EVENT_CONN.fields;
    writeOwner(b, L.owner.offset, r, t);
    writeKey(b, L.key.offset, r, t);
    if (type === EV.CLOSE) {
      const F = EVENT_CLOSE.fields;
      const big = r.int(4) === 0;
      t.txBytes = big ? 2 ** 53 + 2 : r.u32();
      b.writeBigUInt64LE(BigInt(t.txBytes), F.tx_bytes.offset);
      if (big) b.writeBigUInt64LE(2n ** 60n + 12345n, F.rx_bytes.offset); // rounds like Number(bigint)
      for (const f of [F.tx_packets, F.rx_packets, F.duration_ns, F.payload_sent, F.payload_received]) b.writeBigUInt64LE(BigInt(r.u32()) * BigInt(r.int(1000)), f.offset);
      b.writeUInt32LE(r.int(5), F.ifindex.offset);
      b[F.old_state.offset] = r.int(16);
      b[F.flow_seen.offset] = r.int(2);
    }
  } else if (type === EV.EXEC) {
    const F = EVENT_EXEC.fields;
    t.pid = r.u32() & 0x3fffffff;
    t.uid = r.int(70000);
    t.comm = r.pick(COMMS);
    b.writeUInt32LE(t.pid, F.tgid.offset);
    b.writeUInt32LE(t.uid, F.uid.offset);
    b.writeBigUInt64LE(BigInt(r.u32()) << 20n, F.cgroup_id.offset);
    Buffer.from(t.comm, 'utf8').copy(b, F.comm.offset, 0, 15);
    const file = `/usr/bin/${r.pick(COMMS)}`;
    b.writeUInt16LE(Buffer.from(file).copy(b, F.filename.offset), F.filename_len.offset);
    const args = Buffer.from(['x', 'a"b', 'c\\d', ''].slice(0, r.int(4) + 1).join('\0'));
    b.writeUInt16LE(args.copy(b, F.args.offset), F.args_len.offset);
    b[F.args_truncated.offset] = r.int(2);
  } else {
    const F = EVENT_EXIT.fields;
    t.pid = r.u32() & 0x3fffffff;
    t.uid = r.int(70000);
    t.comm = r.pick(COMMS);
    b.writeUInt32LE(t.pid, F.tgid.offset);
    b.writeUInt32LE(t.uid, F.uid.offset);
    b.writeUInt32LE(r.int(65536), F.exit_code.offset);
    b.writeBigUInt64LE(r.int(2) ? ts - BigInt(r.u32()) : 0n, F.start_ns.offset);
    Buffer.from(t.comm, 'utf8').copy(b, F.comm.offset, 0, 15);
  }
  return { buf: b, t };
}

test('a record\'s row is its event object, field for field, and both say what the record holds', () => {
  const r = rng(20261203);
  for (let i = 0; i < 5000; i++) {
    const { buf, t } = record(r, i);
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const len = buf.length - 8;
    assert.ok(decodable(v, 0, len));
    const e = decodeEvent(v, 0, len, ctx)!;
    const row = encodeRow(v, 0, len, ctx)!;
    const parsed = JSON.parse(row) as unknown[];
    const fields = EVENT_FIELDS[e.type] as readonly string[];
    assert.equal(parsed.length, fields.length, `record ${i}: ${row}`);
    // What a client rebuilds from the row is the object, as JSON carries it.
    assert.deepEqual(rowEvent(parsed, { [e.type]: fields }), JSON.parse(JSON.stringify(e)), `record ${i}: ${row}`);
    // ...and both hold what the test wrote.
    assert.equal(e.pid, t.pid);
    assert.equal(e.uid, t.uid);
    assert.equal(e.comm, t.comm);
    assert.equal(e.at, new Date(Number(1_790_000_000_000n + t.ts / 1_000_000n)).toISOString(), `record ${i}`);
    if (e.type === 'close' || e.type === 'connect' || e.type === 'accept') assert.equal(e.localPort, t.localPort);
    if (e.type === 'close') assert.equal(e.txBytes, t.txBytes);
  }
});

test('records too short for their type, or of an unknown type, decode to nothing', () => {
  const b = Buffer.alloc(EVENT_CLOSE.size);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  b.writeUInt16LE(EV.CLOSE, 0);
  assert.equal(decodable(v, 0, EVENT_CLOSE.size - 1), false);
  assert.equal(decodeEvent(v, 0, EVENT_CLOSE.size - 1, ctx), null);
  assert.equal(encodeRow(v, 0, EVENT_CLOSE.size - 1, ctx), null);
  b.writeUInt16LE(99, 0);
  assert.equal(decodable(v, 0, EVENT_CLOSE.size), false);
  assert.equal(decodable(v, 0, 4), false);
  assert.equal(decodeEvent(v, 0, EVENT_CLOSE.size, ctx) as MonitorEvent | null, null);
});
