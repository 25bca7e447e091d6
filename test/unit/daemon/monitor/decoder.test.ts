// SPDX-License-Identifier: Apache-2.0
// The two forms of a ring-buffer record: the row a batch subscriber gets (encodeRow, written
// from the bytes) must be the event object (decodeEvent) field for field, and both must say
// what the test wrote into the record: random records of every type, with the awkward
// values (comm with quotes, backslashes, control characters and UTF-8, IPv6, no owner, the
// kernel as owner, unknown TCP states, counters above 2^53, timestamps in and across seconds),
// with and without the owner's identity (memoised per cgroup) and remoteGeo. A close's facts
// for history (decodeCloseFacts, read without the object) must be the object's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EVENT_FIELDS, type CloseEvent, type MonitorEvent } from '../../../../daemon/src/contract/events.js';
import { decodable, decodeCloseFacts, decodeEvent, emptyCloseFacts, encodeRow, encodeRowInto, type DecodeContext } from '../../../../daemon/src/monitor/decoder.js';
import { RecordEvent } from '../../../../daemon/src/monitor/records.js';
import { closeFactsOf } from '../../../../daemon/src/events/bus.js';
import { emptyObservation, observationFromClose, observationFromFacts } from '../../../../daemon/src/history/feed.js';
import { EV, EVENT_CLOSE, EVENT_CONN, EVENT_EXEC, EVENT_EXIT, EVENT_HDR, FLOW_KEY, OWNER } from '../../../../daemon/src/monitor/wire.js';
import { rowEvent } from '../../../../client/src/events.js';
import { OwnerMemo } from '../../../../daemon/src/monitor/owners.js';
import type { OwnerIdentity } from '../../../../daemon/src/contract/identity.js';
import type { RemoteGeo } from '../../../../daemon/src/contract/geo.js';
import { xorshift as rng } from '../../../helpers/rand.js';

const COMMS = ['curl', 'a"b', 'back\\slash', 'tab\there', 'ctl\u0001x', 'naïve', '日本', '', 'fifteen-chars-x'];
const BASE_NS = 5_000_000_000_000n; // boot time of the records
const ctx: DecodeContext = {
  toMsAt: (v, off) => 1_790_000_000_000 + Number(v.getBigUint64(off, true) / 1_000_000n),
  ifname: (i) => (i === 3 ? 'veth"odd' : i === 0 ? null : `if${i}`),
};

/** The identity service as the test made it: an identity per cgroup id (awkward strings
 * included), and the times it was asked. */
const asked = new Map<string, number>();
const identityOf = (cg: string): OwnerIdentity => ({
  cgroupPath: `/system.slice/u${cg}.service`, unit: Number(cg) % 3 === 0 ? 'a"b\\c.service' : `u${cg}.service`, userUnit: null, slice: 'system.slice',
  container: Number(cg) % 2 === 0 ? { runtime: 'docker', id: cg.padStart(64, '0'), name: 'wéb' } : null,
  app: Number(cg) % 5 === 0 ? { kind: 'flatpak', id: 'org.example.App' } : null,
});
const identities = new Map<string, OwnerIdentity>();
/** Where addresses are, as the test decided: IPv4 addresses ending in an even byte have a place. */
const places = new Map<string, RemoteGeo>();
const placeOf = (addr: string): RemoteGeo | null => {
  if (!/\.\d*[02468]$/.test(addr)) return null;
  let g = places.get(addr);
  if (!g) places.set(addr, (g = Object.freeze({ country: 'DE', city: 'K"öln', lat: 50.9, lon: 6.9, asn: 3320, org: 'x', label: null })));
  return g;
};
/** Exits: the process table knows the cgroup of odd pids (their exec was seen). */
const execCgroup = (pid: number): string | null => (pid % 2 ? String(pid * 7) : null);
const full: DecodeContext = {
  ...ctx,
  remoteGeo: placeOf,
  owners: new OwnerMemo((cg) => {
    asked.set(cg, (asked.get(cg) ?? 0) + 1);
    let id = identities.get(cg);
    if (!id) identities.set(cg, (id = Object.freeze(identityOf(cg))));
    return id;
  }, { now: () => 0 }),
  cgroupOfPid: execCgroup,
};

interface Truth { type: number; pid: number | null; uid: number | null; comm: string | null; localPort?: number; txBytes?: number; ts: bigint; cgroupId?: string | null; remoteAddr?: string }

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
  // A few cgroups, as a burst of events from a few services; sometimes none.
  const cg = r.int(8) === 0 ? 0 : 4294967296 + r.int(12);
  b.writeBigUInt64LE(BigInt(cg), o + OWNER.fields.cgroup_id.offset);
  const owned = how !== 0 && how !== 7;
  t.cgroupId = owned && cg !== 0 ? String(cg) : null;
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
    const cg = BigInt(r.int(16) + 1) << 20n;
    b.writeBigUInt64LE(cg, F.cgroup_id.offset);
    t.cgroupId = String(cg);
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
    t.cgroupId = execCgroup(t.pid);
    b.writeUInt32LE(r.int(65536), F.exit_code.offset);
    b.writeBigUInt64LE(r.int(2) ? ts - BigInt(r.u32()) : 0n, F.start_ns.offset);
    Buffer.from(t.comm, 'utf8').copy(b, F.comm.offset, 0, 15);
  }
  return { buf: b, t };
}

for (const [what, c] of [['without identity or geo', ctx], ['with the owner\'s identity and remoteGeo', full]] as const) test(`a record's row is its event object, field for field, and both say what the record holds (${what})`, () => {
  const r = rng(20261203);
  for (let i = 0; i < 5000; i++) {
    const { buf, t } = record(r, i);
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const len = buf.length - 8;
    assert.ok(decodable(v, 0, len));
    const e = decodeEvent(v, 0, len, c)!;
    const row = encodeRow(v, 0, len, c)!;
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
    if (e.type === 'lb' || e.type === 'dns' || e.type === 'http') assert.fail(e.type);
    // The owner: the cgroup the record names (exit: the one its exec had), and what the
    // identity service says of it; geo: the lookup's answer for the remote address.
    assert.equal(e.cgroupId, e.type === 'exit' && c !== full ? null : (t.cgroupId ?? null), `record ${i}`);
    const want = c === full && e.cgroupId !== null ? identityOf(e.cgroupId) : { cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null };
    assert.deepEqual({ cgroupPath: e.cgroupPath, unit: e.unit, userUnit: e.userUnit, slice: e.slice, container: e.container, app: e.app }, want, `record ${i}`);
    if (e.type !== 'exec' && e.type !== 'exit') assert.deepEqual(e.remoteGeo, c === full ? placeOf(e.remoteAddr) : null);
  }
  if (c === full) assert.ok([...asked.values()].every((n) => n === 1), 'the identity service was asked once per cgroup');
});

for (const [what, c] of [['without identity or geo', ctx], ['with the owner\'s identity and remoteGeo', full]] as const) test(`encodeRowInto writes, byte for byte, JSON.stringify of the event's row (${what})`, () => {
  // The truth is JSON.stringify of the decoded object's values in EVENT_FIELDS order, as
  // UTF-8 (the comms include quotes, control characters and non-ASCII).
  const r = rng(20261204);
  const d = Buffer.alloc(16 * 1024);
  let written = 0;
  let nonAscii = 0;
  for (let i = 0; i < 5000; i++) {
    const { buf } = record(r, i);
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const len = buf.length - 8;
    const e = decodeEvent(v, 0, len, c)!;
    const truth = Buffer.from(JSON.stringify((EVENT_FIELDS[e.type] as readonly string[]).map((f) => (e as unknown as Record<string, unknown>)[f])));
    const at = 7 + r.int(100);
    d.fill(0xee);
    const end = encodeRowInto(v, 0, len, c, d, at);
    if (e.type === 'exec' || e.type === 'exit') {
      assert.equal(end, -1, 'exec and exit rows are not written as bytes');
      assert.equal(Buffer.compare(d, Buffer.alloc(d.length, 0xee)), 0, 'nothing written');
      continue;
    }
    assert.deepEqual(d.subarray(at, end), truth, `record ${i}: ${truth.toString()}`);
    assert.equal(d[at - 1], 0xee);
    assert.equal(d[end], 0xee, 'nothing written past the row');
    assert.deepEqual(Buffer.from(encodeRow(v, 0, len, c)!), truth, 'the string form agrees');
    // Too little room: nothing written, -1 (the queue then keeps the row as text).
    const small = Buffer.alloc(truth.length + 8, 0xee);
    assert.equal(encodeRowInto(v, 0, len, c, small, 8), -1);
    assert.equal(Buffer.compare(small, Buffer.alloc(small.length, 0xee)), 0);
    written++;
    if (truth.some((x) => x >= 0x80)) nonAscii++;
  }
  assert.ok(written > 2000 && nonAscii > 100, `connection and close records written (${written}, ${nonAscii} with non-ASCII bytes)`);
});

for (const [what, c] of [['without identity or geo', ctx], ['with the owner\'s identity and remoteGeo', full]] as const) test(`a close's facts for history, read from the bytes, are those of its event object (${what})`, () => {
  // History takes closes through BusEvent.closeFacts() (no event object built): the facts
  // and the observation history makes of them must be the object's, field for field.
  const r = rng(20261206);
  const rec = new RecordEvent(c);
  // The daemon reads every close into one facts object and one observation (app.ts): filled
  // again each time, they must equal fresh ones for every record, whatever came before.
  const into = emptyCloseFacts();
  const obsInto = emptyObservation();
  let closes = 0;
  let seen = 0;
  for (let i = 0; i < 5000; i++) {
    const { buf, t } = record(r, i);
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const len = buf.length - 8;
    const e = decodeEvent(v, 0, len, c)!;
    const facts = decodeCloseFacts(v, 0, len, c);
    const type = buf.readUInt16LE(EVENT_HDR.fields.type.offset);
    rec.set(v, 0, len, type, e.type);
    if (e.type !== 'close') {
      assert.equal(facts, null, `record ${i} (${e.type})`);
      assert.equal(rec.closeFacts(), null);
      assert.equal(rec.closeFacts(into), null);
      continue;
    }
    assert.deepEqual(rec.closeFacts(into), facts, `record ${i}: read into the reused object`);
    closes++;
    assert.deepEqual(facts, closeFactsOf(e as CloseEvent), `record ${i}`);
    assert.equal(facts!.txBytes, t.txBytes);
    assert.equal(facts!.atMs, Date.parse(e.at));
    assert.deepEqual(rec.closeFacts(), facts, 'RecordEvent.closeFacts() reads the same');
    rec.event(); // once the object exists, the facts come from it: the same
    assert.deepEqual(rec.closeFacts(), facts);
    const o = observationFromFacts(facts!);
    assert.deepEqual(o, observationFromClose(e as CloseEvent), `record ${i}: history's observation`);
    const reused = observationFromFacts(into, undefined, obsInto);
    assert.deepEqual(reused, o, `record ${i}: the observation filled into the reused object`);
    if (o) assert.equal(reused, obsInto);
    if (o) seen++;
  }
  assert.ok(closes > 800 && seen > 300, `${closes} closes, ${seen} with an observation`);
});

test('owners: memoised per cgroup id, asked again after recheckMs (a new answer makes a new row), a throwing service gives null fields', () => {
  let now = 0;
  let answer: OwnerIdentity = Object.freeze(identityOf('7'));
  let calls = 0;
  const m = new OwnerMemo((cg, pid) => {
    calls++;
    assert.equal(cg, '4294967305');
    assert.equal(pid, 42);
    return answer;
  }, { now: () => now, recheckMs: 1000 });
  const a = m.of(4294967305, 42);
  assert.equal(a.owner.unit, 'u7.service');
  assert.deepEqual(JSON.parse(`[0${a.row}]`).slice(1), [a.owner.cgroupId, a.owner.cgroupPath, a.owner.unit, a.owner.userUnit, a.owner.slice, a.owner.container, a.owner.app]);
  now = 999;
  assert.equal(m.of(4294967305, 42), a);
  assert.equal(calls, 1);
  now = 1000;
  assert.equal(m.of(4294967305, 42), a, 'the same answer: the same entry');
  assert.equal(calls, 2);
  answer = Object.freeze({ ...answer, unit: 'renamed.service' });
  now = 2500;
  const b = m.of(4294967305, 42);
  assert.equal(b.owner.unit, 'renamed.service');
  assert.match(b.row, /renamed\.service/);
  assert.equal(m.of(0, 42).owner.cgroupId, null, 'no cgroup: no owner');
  const broken = new OwnerMemo(() => {
    throw new Error('EIO');
  });
  assert.deepEqual(broken.of(5, 1).owner, { cgroupId: '5', cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null });
});

test('records too short for their type, or of an unknown type, decode to nothing', () => {
  const b = Buffer.alloc(EVENT_CLOSE.size);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  b.writeUInt16LE(EV.CLOSE, 0);
  assert.equal(decodable(v, 0, EVENT_CLOSE.size - 1), false);
  assert.equal(decodeEvent(v, 0, EVENT_CLOSE.size - 1, ctx), null);
  assert.equal(encodeRow(v, 0, EVENT_CLOSE.size - 1, ctx), null);
  assert.equal(encodeRowInto(v, 0, EVENT_CLOSE.size - 1, ctx, Buffer.alloc(4096), 0), -1);
  b.writeUInt16LE(99, 0);
  assert.equal(decodable(v, 0, EVENT_CLOSE.size), false);
  assert.equal(decodable(v, 0, 4), false);
  assert.equal(decodeEvent(v, 0, EVENT_CLOSE.size, ctx) as MonitorEvent | null, null);
});
