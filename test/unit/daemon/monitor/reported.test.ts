// SPDX-License-Identifier: Apache-2.0
// ReportedCloses (the closes history already has, by flow key, in typed arrays): every
// answer must be what a Map from the key's bytes to its sum answers, through random sets,
// gets and takes of IPv4 and IPv6 keys read from different buffers and offsets, tables that
// grow and empty again (deletions shift keys back: no tombstones), and the bound on live keys. CloseLog (the
// closes on their way into the table, flows.ts) must leave the table as the same sets made
// one by one would, whenever it is applied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseLog, hashKey, ReportedCloses } from '../../../../daemon/src/monitor/reported.js';
import { FLOW_KEY } from '../../../../daemon/src/monitor/wire.js';
import { xorshift } from '../../../helpers/rand.js';

const K = FLOW_KEY.fields;

/** A flow key's 40 bytes as the kernel lays them out (IPv4: the addresses' first 4 bytes). */
function keyOf(i: number, v6: boolean): Buffer {
  const b = Buffer.alloc(FLOW_KEY.size);
  b[K.family.offset] = v6 ? 10 : 2;
  b[K.proto.offset] = i % 5 === 0 ? 17 : 6;
  b.writeUInt16BE(1024 + (i % 28_000), K.lport.offset);
  b.writeUInt16BE(i % 3 === 0 ? 443 : 9000, K.rport.offset);
  b.writeUInt32BE(0xc6120101, K.laddr.offset); // 198.18.1.1
  b.writeUInt32BE(0xc6120102 + (Math.floor(i / 28_000) % 7), K.raddr.offset);
  if (v6) {
    b.writeUInt32BE(0xfd000198, K.laddr.offset);
    b.writeUInt32BE(1, K.laddr.offset + 12);
    b.writeUInt32BE(0xfd000198, K.raddr.offset);
    b.writeUInt32BE(2 + (Math.floor(i / 28_000) % 7), K.raddr.offset + 12);
  }
  return b;
}

/** The key placed at a random offset of a larger record, as a DataView over that record. */
function inRecord(key: Buffer, pad: number): { v: DataView; off: number } {
  const rec = Buffer.alloc(pad + key.length + 8, 0xaa);
  key.copy(rec, pad);
  return { v: new DataView(rec.buffer, rec.byteOffset, rec.byteLength), off: pad };
}

test('ReportedCloses answers what a Map of the key bytes answers, across growth, deletions, rehashes and its bound', () => {
  let seed = 0x5eed;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  const MAX = 3000;
  const t = new ReportedCloses(MAX);
  const model = new Map<string, number>();
  let refused = 0;
  let hits = 0;
  let deletes = 0;
  for (let step = 0; step < 200_000; step++) {
    // A key space larger than the bound (refusals) whose busy part comes round again (hits).
    const i = step % 7 === 0 ? rnd(60_000) : rnd(4000);
    const key = keyOf(i, i % 4 === 0);
    const hex = key.toString('hex');
    const { v, off } = inRecord(key, rnd(64));
    const op = rnd(10);
    if (op < 5) {
      const sum = rnd(1 << 30) * 1024 + rnd(1024); // sums above 2^32
      const ok = t.set(v, off, sum);
      if (model.has(hex) || model.size < MAX) {
        assert.equal(ok, true, `step ${step}: set accepted`);
        model.set(hex, sum);
      } else {
        assert.equal(ok, false, `step ${step}: a new key beyond the bound refused`);
        refused++;
      }
    } else if (op < 8) {
      const want = model.get(hex) ?? -1;
      if (want >= 0) hits++;
      assert.equal(t.get(v, off), want, `step ${step}: get`);
    } else if (op === 8) {
      const want = model.get(hex) ?? -1;
      if (model.delete(hex)) deletes++;
      assert.equal(t.take(v, off), want, `step ${step}: take`);
    } else {
      const want = model.get(hex) ?? -1;
      if (model.delete(hex)) deletes++;
      assert.equal(t.take(v, off), want, `step ${step}: take`);
    }
    assert.equal(t.size, model.size, `step ${step}: size`);
    if (step % 50_000 === 49_999) {
      // Everything the model holds, read back from fresh buffers.
      for (const [hex, sum] of model) {
        const { v, off } = inRecord(Buffer.from(hex, 'hex'), 3);
        assert.equal(t.get(v, off), sum);
      }
    }
  }
  assert.ok(refused > 1000 && hits > 10_000 && deletes > 5000, `bound reached (${refused} refused), hits (${hits}), deletes (${deletes})`);
});

test('ReportedCloses tells apart keys that differ in any one byte', () => {
  const t = new ReportedCloses(100);
  const base = keyOf(7, true);
  const { v, off } = inRecord(base, 0);
  assert.equal(t.set(v, off, 42), true);
  for (let byte = 0; byte < FLOW_KEY.size; byte++) {
    const other = Buffer.from(base);
    other[byte] = other[byte]! ^ 1;
    const o = inRecord(other, 5);
    assert.equal(t.get(o.v, o.off), -1, `byte ${byte} differs`);
  }
  assert.equal(t.get(inRecord(base, 9).v, 9), 42);
});

test('ReportedCloses keeps apart many keys that differ only in one word (the last, the first)', () => {
  for (const at of [FLOW_KEY.size - 4, 0]) {
    const t = new ReportedCloses(1000);
    const keys = Array.from({ length: 500 }, (_, i) => {
      const b = keyOf(1, true);
      b.writeUInt32LE(((at === 0 ? b.readUInt32LE(0) & 0xffff : 0) | ((i + 1) << 16)) >>> 0, at);
      return b;
    });
    keys.forEach((b, i) => assert.equal(t.set(inRecord(b, i % 8).v, i % 8, 1000 + i), true));
    assert.equal(t.size, keys.length, `every key its own entry (word at byte ${at})`);
    keys.forEach((b, i) => assert.equal(t.get(inRecord(b, 2).v, 2), 1000 + i));
  }
});

test('ReportedCloses keeps apart two keys whose hashes are the same', () => {
  // Birthday search among random IPv6 keys for two with one 32-bit hash.
  let seed = 0xc0111de;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  const seen = new Map<number, Buffer>();
  let pair: [Buffer, Buffer] | null = null;
  for (let n = 0; n < 400_000 && !pair; n++) {
    const b = keyOf(n, true);
    b.writeUInt32LE(rnd(), K.raddr.offset + 4);
    b.writeUInt32LE(rnd(), K.laddr.offset + 4);
    const h = hashKey(new DataView(b.buffer, b.byteOffset, b.length), 0);
    const other = seen.get(h);
    if (other && !other.equals(b)) pair = [other, b];
    else seen.set(h, b);
  }
  assert.ok(pair, 'a collision found');
  const t = new ReportedCloses(10);
  assert.equal(t.set(inRecord(pair[0], 1).v, 1, 11), true);
  assert.equal(t.get(inRecord(pair[1], 2).v, 2), -1, 'the other key is not the first');
  assert.equal(t.set(inRecord(pair[1], 3).v, 3, 22), true);
  assert.equal(t.size, 2);
  assert.equal(t.get(inRecord(pair[0], 0).v, 0), 11);
  assert.equal(t.take(inRecord(pair[1], 0).v, 0), 22);
  assert.equal(t.get(inRecord(pair[0], 0).v, 0), 11);
});

test('a CloseLog applied at any point leaves the table that the same sets made one by one leave; forEach lists exactly what it holds', () => {
  const rnd = xorshift(0x10c).int;
  const MAX = 2000;
  const direct = new ReportedCloses(MAX);
  const logged = new ReportedCloses(MAX);
  const log = new CloseLog(16);
  let applies = 0;
  let fulls = 0;
  let refusedDirect = 0;
  let refusedLogged = 0;
  for (let step = 0; step < 60_000; step++) {
    const i = step % 5 === 0 ? rnd(40_000) : rnd(3000);
    const key = keyOf(i, i % 3 === 0);
    const { v, off } = inRecord(key, rnd(48));
    // Runs of closes (about 20 between two reads: the log fills now and then).
    if (rnd(100) < 95) {
      // A close: at once into one table, through the log into the other (applied when full,
      // as flows.ts does).
      const sum = rnd(1 << 30) * 4096 + rnd(4096);
      if (!direct.set(v, off, sum)) refusedDirect++;
      if (log.full) {
        fulls++;
        refusedLogged += log.applyTo(logged);
        assert.equal(log.length, 0);
      }
      assert.equal(log.append(v, off, sum), true);
    } else {
      // A refresh's read: the log goes in first, then both tables must answer alike.
      if (log.length) applies++;
      refusedLogged += log.applyTo(logged);
      assert.equal(logged.take(v, off), direct.take(v, off), `step ${step}: take`);
      assert.equal(logged.size, direct.size, `step ${step}: size`);
    }
  }
  refusedLogged += log.applyTo(logged);
  assert.equal(refusedLogged, refusedDirect, 'the bound refused the same sets');
  assert.ok(refusedDirect > 100 && fulls > 100 && applies > 1000, `bound reached (${refusedDirect}), log filled (${fulls}) and applied early (${applies})`);
  const contents = (t: ReportedCloses) => {
    const m = new Map<string, number>();
    t.forEach((b, at, sum) => {
      const hex = Buffer.from(b.buffer, b.byteOffset + at, FLOW_KEY.size).toString('hex');
      assert.equal(m.has(hex), false, 'forEach lists a key once');
      m.set(hex, sum);
    });
    return m;
  };
  const a = contents(direct);
  assert.equal(a.size, direct.size);
  assert.deepEqual(contents(logged), a);
  // And each key forEach gave is one get() finds, with that sum.
  for (const [hex, sum] of a) assert.equal(direct.get(inRecord(Buffer.from(hex, 'hex'), 1).v, 1), sum);
});

test('a full CloseLog refuses the next close and keeps what it holds; clear() forgets it', () => {
  const log = new CloseLog(3);
  for (let i = 0; i < 3; i++) assert.equal(log.append(inRecord(keyOf(i, false), i).v, i, i + 1), true);
  assert.equal(log.full, true);
  assert.equal(log.append(inRecord(keyOf(9, false), 0).v, 0, 99), false);
  const t = new ReportedCloses(10);
  assert.equal(log.applyTo(t), 0);
  assert.equal(t.size, 3);
  for (let i = 0; i < 3; i++) assert.equal(t.get(inRecord(keyOf(i, false), 0).v, 0), i + 1);
  assert.equal(t.get(inRecord(keyOf(9, false), 0).v, 0), -1);
  log.append(inRecord(keyOf(5, true), 0).v, 0, 5);
  log.clear();
  assert.equal(log.applyTo(t), 0);
  assert.equal(t.size, 3);
});

test('forEach lists keys in the table\'s first and last slots', () => {
  // Keys whose hashes put them in slot 0 and in the last slot of a new table (1,024 slots).
  const want = new Map<number, Buffer>();
  for (let i = 0; want.size < 2 && i < 1_000_000; i++) {
    const b = keyOf(i, i % 2 === 0);
    const slot = hashKey(new DataView(b.buffer, b.byteOffset, b.length), 0) & 1023;
    if ((slot === 0 || slot === 1023) && !want.has(slot)) want.set(slot, b);
  }
  assert.equal(want.size, 2, 'keys for both slots found');
  const t = new ReportedCloses(10);
  for (const [slot, b] of want) t.set(inRecord(b, 0).v, 0, slot + 1);
  const seen = new Map<string, number>();
  t.forEach((b, at, sum) => seen.set(Buffer.from(b.buffer, b.byteOffset + at, FLOW_KEY.size).toString('hex'), sum));
  assert.deepEqual(seen, new Map([...want].map(([slot, b]) => [b.toString('hex'), slot + 1])));
});

test('ReportedCloses under steady churn (as many takes as sets) keeps its size and never rebuilds; what a Map holds is what it holds', () => {
  // The daemon's pattern at 10,000 connections/s: each close set, taken by a refresh a few
  // seconds later. Deletions leave no tombstones, so the table does not fill up with them.
  const LIVE = 2000;
  const t = new ReportedCloses(100_000);
  const model = new Map<string, number>();
  const key = (i: number) => keyOf(i, i % 3 === 0);
  for (let i = 0; i < LIVE; i++) {
    const { v, off } = inRecord(key(i), i % 7);
    assert.equal(t.set(v, off, i), true);
    model.set(key(i).toString('hex'), i);
  }
  const cap = t.capacity;
  const rehashes = t.rehashes;
  for (let i = LIVE; i < 100 * LIVE; i++) {
    const { v, off } = inRecord(key(i), i % 5);
    assert.equal(t.set(v, off, i), true);
    model.set(key(i).toString('hex'), i);
    const old = key(i - LIVE);
    assert.equal(t.take(inRecord(old, 1).v, 1), i - LIVE, `take ${i - LIVE}`);
    model.delete(old.toString('hex'));
  }
  assert.equal(t.size, LIVE);
  assert.deepEqual([t.capacity, t.rehashes], [cap, rehashes], 'the same table throughout');
  const listed = new Map<string, number>();
  t.forEach((b, at, sum) => listed.set(Buffer.from(b.subarray(at, at + FLOW_KEY.size)).toString('hex'), sum));
  assert.deepEqual(listed, model);
});

test('ReportedCloses: taking keys from the middle of runs that wrap past the table\'s end leaves every other key findable', () => {
  // Keys chosen so that their home slots crowd the last slots of a 1024-slot table: their
  // runs wrap to slot 0, and the backward shift must move keys across the end.
  const t = new ReportedCloses(10_000);
  const cap = t.capacity;
  const near: Buffer[] = [];
  for (let i = 0; near.length < 200 && i < 2_000_000; i++) {
    const k = keyOf(i, true);
    if ((hashKey(new DataView(k.buffer, k.byteOffset, k.length), 0) & (cap - 1)) >= cap - 8) near.push(k);
  }
  assert.equal(near.length, 200);
  for (const [n, k] of near.entries()) assert.equal(t.set(inRecord(k, 0).v, 0, n), true);
  assert.equal(t.capacity, cap, 'no growth: the runs are what is tested');
  const kept = new Map<number, Buffer>(near.map((k, n) => [n, k]));
  let seed = 7;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  while (kept.size > 0) {
    const ns = [...kept.keys()];
    const n = ns[rnd(ns.length)]!;
    assert.equal(t.take(inRecord(kept.get(n)!, 2).v, 2), n, `take ${n}`);
    kept.delete(n);
    for (const [m, k] of kept) assert.equal(t.get(inRecord(k, 3).v, 3), m, `after taking ${n}, key ${m} still found`);
    assert.equal(t.get(inRecord(near[n]!, 3).v, 3), -1);
  }
  assert.equal(t.size, 0);
});

test('ReportedCloses.clear(): nothing left, the table kept at the size the period needed, smaller after a quieter one', () => {
  const t = new ReportedCloses(100_000);
  const key = (i: number) => keyOf(i, i % 2 === 0);
  for (let i = 0; i < 20_000; i++) assert.equal(t.set(inRecord(key(i), 0).v, 0, i + 1), true);
  const big = t.capacity;
  t.clear();
  assert.equal(t.size, 0);
  for (let i = 0; i < 20_000; i += 97) assert.equal(t.get(inRecord(key(i), 1).v, 1), -1, `key ${i} forgotten`);
  let listed = 0;
  t.forEach(() => listed++);
  assert.equal(listed, 0);
  assert.equal(t.capacity, big, 'kept: the last period needed it');
  // A quiet period (nothing set) after a busy one: the next clear() gives the memory back.
  for (let i = 0; i < 100; i++) assert.equal(t.set(inRecord(key(i), 2).v, 2, 7), true);
  assert.equal(t.get(inRecord(key(50), 0).v, 0), 7);
  t.clear();
  assert.ok(t.capacity < big / 8, `smaller after a quiet period (${t.capacity} slots, ${big} before)`);
  assert.equal(t.get(inRecord(key(50), 0).v, 0), -1);
  for (let i = 0; i < 3000; i++) assert.equal(t.set(inRecord(key(i), 0).v, 0, i), true);
  for (let i = 0; i < 3000; i++) assert.equal(t.get(inRecord(key(i), 5).v, 5), i);
});

test('ReportedCloses grows into a buffer made ahead, its pages touched over turns of the event loop; every key still there', async () => {
  const t = new ReportedCloses(100_000);
  const key = (i: number) => keyOf(i, i % 2 === 1);
  let i = 0;
  const fillTo = (n: number) => {
    for (; t.size < n; i++) assert.equal(t.set(inRecord(key(i), i % 9).v, i % 9, i), true);
  };
  // Grown to 8,192 slots, then to just over 3/8 of them: the doubled buffer is made.
  fillTo(3000);
  const cap = t.capacity;
  assert.equal(cap, 8192);
  fillTo(Math.floor((cap * 3) / 8) + 1);
  const before = t.grownIntoPrepared;
  // Its pages are touched a piece a turn (2 pieces for 1 MiB); let the loop turn.
  for (let k = 0; k < 4; k++) await new Promise((r) => setImmediate(r));
  fillTo(cap / 2 + 1);
  assert.equal(t.capacity, 2 * cap, 'grown');
  assert.equal(t.grownIntoPrepared, before + 1, 'into the buffer made ahead');
  for (let j = 0; j < i; j++) assert.equal(t.get(inRecord(key(j), 4).v, 4), j, `key ${j}`);
  // A table that will not grow (its `max` keys fit in under half of it) makes none, though
  // past 3/8 full: 400 keys in 1,024 slots.
  const small = new ReportedCloses(400);
  for (let j = 0; j < 400; j++) assert.equal(small.set(inRecord(key(j), 0).v, 0, j), true);
  for (let k = 0; k < 4; k++) await new Promise((r) => setImmediate(r));
  assert.deepEqual([small.capacity, small.rehashes, small.grownIntoPrepared], [1024, 0, 0]);
  assert.equal((small as unknown as { next: ArrayBuffer | null }).next, null, 'no buffer made');
});

test('ReportedCloses grown into a buffer made ahead before any turn zeroed it: exactly the keys set, nothing else', () => {
  // The buffer comes from malloc unzeroed; a growth before the turns reached it must not see
  // what was there (a stale LIVE word would be a key never set).
  for (let round = 0; round < 3; round++) {
    const t = new ReportedCloses(100_000);
    const model = new Map<string, number>();
    const key = (i: number) => keyOf(i + 7919 * round, i % 2 === 0);
    for (let i = 0; i < 5000; i++) {
      const k = key(i);
      assert.equal(t.set(inRecord(k, 1).v, 1, i), true);
      model.set(k.toString('hex'), i);
    }
    assert.ok(t.grownIntoPrepared >= 1, `grown into a buffer made ahead (round ${round})`);
    const listed = new Map<string, number>();
    t.forEach((b, at, sum) => listed.set(Buffer.from(b.subarray(at, at + FLOW_KEY.size)).toString('hex'), sum));
    assert.deepEqual(listed, model);
    assert.equal(t.get(inRecord(keyOf(999_999, true), 0).v, 0), -1);
  }
});
