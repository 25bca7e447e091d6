// SPDX-License-Identifier: Apache-2.0
// ReportedCloses (the closes history already has, by flow key, in typed arrays): every
// answer must be what a Map from the key's bytes to its sum answers, through random sets,
// gets and takes of IPv4 and IPv6 keys read from different buffers and offsets, tables that
// grow, fill with deleted slots and are rehashed, and the bound on live keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hashKey, ReportedCloses } from '../../../../daemon/src/monitor/reported.js';
import { FLOW_KEY } from '../../../../daemon/src/monitor/wire.js';

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
