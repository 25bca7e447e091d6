// SPDX-License-Identifier: Apache-2.0
// RingBufReader against a real BPF producer (test/fixtures/bpf/ringbuf_producer.bpf.c):
// the producer numbers every event it attempts and counts every reserve that fails, so
// the test knows exactly what should arrive without trusting the reader. Rings are
// small (one page holds 73 events) to force many wrap-arounds, including records that
// straddle the end of the ring.
//
// No network resources: the maps and program live as long as their fds, which the
// after() hooks close; nothing is pinned.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import type { BpfMap } from '../../daemon/src/bpf/maps.js';
import { RingBufReader, type RecordHandler } from '../../daemon/src/bpf/ringbuf.js';
import { privileged } from '../helpers/privileged.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const FIXTURE = path.join(ROOT, 'build/bpf/fixtures/ringbuf_producer.bpf.o');

// Mirrors test/fixtures/bpf/ringbuf_producer.h.
const EVENT_SIZE = 48;
const RECORD_SIZE = 56; // 8-byte ring header + event, already a multiple of 8
const RBP_EVENT_TYPE = 0x7262;
const MAGIC_LO = 0xcafef00d;
const MAGIC_HI = 0x5eedface;
const STAT_ATTEMPTED = 0;
const STAT_FAILED = 1;
const PAGE = 4096;

/** One loaded producer with its own ring of `ringBytes`. */
class Producer {
  readonly obj: BpfObject;
  readonly ring: BpfMap;
  private readonly stats: BpfMap;
  private readonly progFd: number;
  // koffi writes the context's address into the opts struct: an explicit ArrayBuffer is
  // never moved by V8 (DEVELOPERS.md), a small Buffer might be.
  private readonly args = Buffer.from(new ArrayBuffer(64));
  private readonly opts = Buffer.alloc(80); // struct bpf_test_run_opts (libbpf 1.1)

  constructor(ringBytes: number) {
    this.obj = BpfObject.open(FIXTURE);
    try {
      this.obj.setMaxEntries('emon_rbp_ring', ringBytes);
      this.obj.load();
      this.progFd = this.obj.progFd('produce');
      this.ring = this.obj.map('emon_rbp_ring');
      this.stats = this.obj.map('emon_rbp_stats');
    } catch (err) {
      this.obj.close();
      throw err;
    }
    this.opts.writeBigUInt64LE(80n, 0); // sz
    this.opts.writeBigUInt64LE(BigInt(koffi.address(this.args)), 32); // ctx_in
    this.opts.writeUInt32LE(24, 48); // ctx_size_in = sizeof(struct rbp_args)
  }

  /** Runs the program once: `count` events. Returns the first sequence number and the failed reserves. */
  produce(count: number): { firstSeq: number; failed: number } {
    this.args.fill(0, 0, 24);
    this.args.writeUInt32LE(count, 0);
    const ret = L.bpf_prog_test_run_opts(this.progFd, this.opts);
    assert.equal(ret, 0, `BPF_PROG_TEST_RUN: ${ret}`);
    return { firstSeq: Number(this.args.readBigUInt64LE(8)), failed: Number(this.args.readBigUInt64LE(16)) };
  }

  stat(i: number): number {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(i);
    return Number(this.stats.lookup(key)!.readBigUInt64LE(0));
  }

  close(): void {
    this.obj.close();
  }
}

/** Sequence numbers as they arrive, with every event's own consistency checked. */
function collector(): { seqs: number[]; views: Set<ArrayBufferLike>; handler: RecordHandler } {
  const seqs: number[] = [];
  /** The buffers the records were read from: the ring's, and the reader's scratch buffer for
   * records that run past the ring's end (it maps the data once). */
  const views = new Set<ArrayBufferLike>();
  return {
    seqs,
    views,
    handler: (v, off, len) => {
      views.add(v.buffer);
      assert.equal(len, EVENT_SIZE);
      assert.equal(v.getUint16(off, true), RBP_EVENT_TYPE);
      assert.equal(v.getUint16(off + 2, true), EVENT_SIZE);
      const lo = v.getUint32(off + 16, true);
      const hi = v.getUint32(off + 20, true);
      // A torn or misplaced read (a wrap-around handled wrong) breaks this relation.
      assert.equal(v.getUint32(off + 32, true), (lo ^ MAGIC_LO) >>> 0);
      assert.equal(v.getUint32(off + 36, true), (hi ^ MAGIC_HI) >>> 0);
      seqs.push(hi * 2 ** 32 + lo);
    },
  };
}

function assertConsecutive(seqs: number[], first: number, count: number): void {
  assert.equal(seqs.length, count, `received ${seqs.length} of ${count}`);
  for (let i = 0; i < count; i++) {
    if (seqs[i] !== first + i) assert.fail(`event ${i}: sequence ${seqs[i]}, expected ${first + i}`);
  }
}

/** Waits (yielding to the event loop) until `cond` holds; bounded. */
async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Mappings of BPF maps in this process (a ring reader adds two). */
function bpfMappings(): number {
  return fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('bpf-map')).length;
}

describe('RingBufReader with a real BPF producer', privileged({ timeout: 120_000 }), () => {
  const open: Array<{ close(): void }> = [];
  const producer = (ringBytes: number): Producer => {
    const p = new Producer(ringBytes);
    open.push(p);
    return p;
  };
  const reader = (map: BpfMap, handler: RecordHandler, opts?: ConstructorParameters<typeof RingBufReader>[2]): RingBufReader => {
    const r = new RingBufReader(map, handler, opts);
    open.unshift(r); // readers close before their producer's object
    return r;
  };

  before(() => {
    assert.ok(fs.existsSync(FIXTURE), `${FIXTURE} is missing: run make -C bpf`);
  });
  after(() => {
    for (const o of open.splice(0)) o.close();
  });

  test('every event arrives exactly once and in order across many wrap-arounds (manual drains)', () => {
    const p = producer(PAGE);
    const c = collector();
    // Each drain must take the whole batch: no time budget to run out on a loaded machine
    // (a drain cut short is tested below, with the event loop).
    const r = reader(p.ring, c.handler, { budgetMs: 60_000 });
    const capacity = Math.floor(PAGE / RECORD_SIZE); // 73: a page is not a multiple of 56, so records straddle the end
    // Batch sizes cycle through 1..capacity so that records start at every offset.
    let total = 0;
    let first = -1;
    for (let i = 0; total < 120_000; i++) {
      const n = 1 + (i * 37) % capacity;
      const { firstSeq, failed } = p.produce(n);
      assert.equal(failed, 0);
      if (first < 0) first = firstSeq;
      total += n;
      assert.equal(r.drain(), n);
      assert.equal(r.pendingBytes(), 0);
    }
    assertConsecutive(c.seqs, first, total);
    assert.ok((total * RECORD_SIZE) / PAGE > 1000, 'the ring wrapped more than 1000 times');
    assert.ok(c.views.size >= 2, 'records that straddle the end were read (put together outside the ring)');
    assert.equal(r.stats.records, total);
    assert.equal(r.stats.bytes, total * EVENT_SIZE);
    assert.equal(r.stats.handlerErrors, 0);
  });

  test('every event arrives exactly once and in order when the event loop drives the reader', async () => {
    const p = producer(PAGE);
    const c = collector();
    const r = reader(p.ring, c.handler);
    r.start();
    let total = 0;
    let first = -1;
    // Each batch fits the ring; the next is produced once the reader has taken it, woken
    // by the kernel (poll) or by its own coalescing timer.
    for (let i = 0; i < 600; i++) {
      const n = 1 + (i * 29) % 70;
      const { firstSeq, failed } = p.produce(n);
      assert.equal(failed, 0);
      if (first < 0) first = firstSeq;
      total += n;
      await until(() => c.seqs.length === total, `batch ${i}`);
    }
    assertConsecutive(c.seqs, first, total);
    assert.equal(p.stat(STAT_FAILED), 0);
  });

  test('positions past 2^32: the high word of the u64 positions changes and nothing is lost', () => {
    // The reader keeps positions as doubles and reads/writes them as two u32 halves; this
    // pushes 4 GiB through a 1 MiB ring so that both positions carry into the high word.
    const p = producer(1 << 20);
    let next = -1;
    let events = 0;
    let wrong = 0;
    const r = reader(p.ring, (v, off, len) => {
      const seq = v.getUint32(off + 20, true) * 2 ** 32 + v.getUint32(off + 16, true);
      if (len !== EVENT_SIZE || (next >= 0 && seq !== next) || v.getUint32(off + 32, true) !== (v.getUint32(off + 16, true) ^ MAGIC_LO) >>> 0) wrong++;
      next = seq + 1;
      events++;
    });
    const batch = 16_384; // 896 KiB of records: fits the ring
    const total = Math.ceil((2 ** 32 + (8 << 20)) / RECORD_SIZE / batch) * batch;
    let failed = 0;
    let failedAt = -1;
    for (let done = 0; done < total; done += batch) {
      const f = p.produce(batch).failed;
      failed += f;
      if (f) {
        failedAt = done;
        break;
      }
      // Budgeted: an early (not yet optimized) drain may return before the ring is empty.
      for (let i = 0; i < 1000 && r.pendingBytes() > 0; i++) r.drain();
    }
    assert.equal(failedAt, -1, `reserves failed from event ${failedAt} (positions ${failedAt * RECORD_SIZE})`);
    assert.equal(failed, 0);
    assert.equal(wrong, 0, 'events out of sequence or torn');
    assert.equal(events, total);
    assert.equal(r.pendingBytes(), 0);
    assert.ok(total * RECORD_SIZE > 2 ** 32, 'the positions passed 2^32');
  });

  test('a handler that throws loses only that record, and the reader goes on', () => {
    const p = producer(PAGE);
    const c = collector();
    const errors: unknown[] = [];
    const r = reader(
      p.ring,
      (v, off, len) => {
        const seq = v.getUint32(off + 16, true);
        if (seq % 7 === 3) throw new Error(`bad record ${seq}`);
        c.handler(v, off, len);
      },
      { onError: (err) => errors.push(err) },
    );
    let first = -1;
    let total = 0;
    for (let i = 0; i < 50; i++) {
      const { firstSeq } = p.produce(60);
      if (first < 0) first = firstSeq;
      total += 60;
      r.drain();
    }
    const expected: number[] = [];
    for (let s = first; s < first + total; s++) if (s % 7 !== 3) expected.push(s);
    assert.deepEqual(c.seqs, expected);
    assert.equal(r.stats.handlerErrors, total - expected.length);
    assert.equal(errors.length, total - expected.length);
    assert.match(String((errors[0] as Error).message), /^bad record \d+$/);
    // Every record, thrown or not, was consumed.
    assert.equal(r.stats.records, total);
    assert.equal(r.pendingBytes(), 0);
  });

  test('when the consumer is stopped and the ring fills, every lost event is counted by the producer', () => {
    const p = producer(PAGE);
    const c = collector();
    const r = reader(p.ring, c.handler); // not started, not drained: a stopped consumer
    const failed0 = p.stat(STAT_FAILED);
    const attempted0 = p.stat(STAT_ATTEMPTED);
    let reported = 0;
    let first = -1;
    for (let i = 0; i < 20; i++) {
      const { firstSeq, failed } = p.produce(50);
      if (first < 0) first = firstSeq;
      reported += failed;
    }
    const produced = p.stat(STAT_ATTEMPTED) - attempted0;
    assert.equal(produced, 1000);
    assert.ok(r.pendingBytes() > PAGE - RECORD_SIZE, 'the ring is full');
    r.drain();
    const received = c.seqs.length;
    const failed = p.stat(STAT_FAILED) - failed0;
    assert.ok(failed > 0);
    assert.equal(failed, produced - received, 'failed reserves = produced - received');
    assert.equal(reported, failed);
    // What arrived is the oldest events, in order; the rest is a counted gap.
    assertConsecutive(c.seqs, first, received);
    // And the ring works again afterwards.
    const { firstSeq } = p.produce(10);
    r.drain();
    assert.deepEqual(c.seqs.slice(received), Array.from({ length: 10 }, (_, i) => firstSeq + i));
  });

  test('close() unmaps the ring and stops reading', async () => {
    const before = bpfMappings();
    const p = producer(PAGE);
    const c = collector();
    const r = reader(p.ring, c.handler);
    assert.equal(bpfMappings(), before + 2, 'consumer page and producer pages');
    r.start();
    p.produce(5);
    await until(() => c.seqs.length === 5, 'the first events');
    r.close();
    assert.equal(bpfMappings(), before, 'both mappings are gone');
    r.close(); // idempotent
    assert.equal(r.drain(), 0);
    assert.equal(r.pendingBytes(), 0);
    // Nothing reads the ring any more: what is produced now stays there.
    p.produce(5);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(c.seqs.length, 5);

    // A handler may close its own reader mid-drain without the reader touching the unmapped ring.
    let calls = 0;
    const r2: RingBufReader = reader(p.ring, () => {
      if (++calls === 3) r2.close();
    });
    assert.equal(r2.drain(), 3);
    assert.equal(bpfMappings(), before);
  });

  test('drain() keeps to its time budget: it returns with records pending and finishes later', async () => {
    const p = producer(64 * 1024);
    const c = collector();
    // A handler costing about 0.2 ms per record: 400 records are about 80 ms of work
    // against a 2 ms budget.
    const slow: RecordHandler = (v, off, len) => {
      const t = performance.now();
      while (performance.now() - t < 0.2) { /* spin */ }
      c.handler(v, off, len);
    };
    const r = reader(p.ring, slow, { budgetMs: 2 });
    const { firstSeq } = p.produce(400);
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    try {
      const n = r.drain();
      assert.ok(n > 0 && n < 400, `the first drain returned early (${n} of 400)`);
      assert.ok(r.pendingBytes() > 0, 'records are left pending');
      // The reader was never start()ed: what drains the rest is the reader's own
      // rescheduling (setImmediate), between which timers and I/O get their turn.
      await until(() => c.seqs.length === 400, 'the rest of the records');
      assert.ok(turns > 0, 'the event loop ran other callbacks in between');
      assert.ok(r.stats.drains > 1);
      assertConsecutive(c.seqs, firstSeq, 400);
      assert.equal(r.pendingBytes(), 0);
    } finally {
      clearInterval(ticker);
    }
  });
  test('maxCoalesceMs: a steady trickle is drained in fewer, larger batches, and nothing is lost', async () => {
    // The same trickle (5 records every 1 ms for 300 ms) through two readers: one draining
    // every 1 ms while records come, one whose interval may grow to 8 ms. The trickle is
    // far below 1/64 of the ring per drain, so the second one's interval grows.
    const trickle = async (maxCoalesceMs: number | undefined) => {
      const p = producer(256 * 1024);
      const c = collector();
      const r = reader(p.ring, c.handler, maxCoalesceMs === undefined ? {} : { maxCoalesceMs });
      r.start();
      let first = -1;
      let total = 0;
      const end = performance.now() + 300;
      while (performance.now() < end) {
        const { firstSeq, failed } = p.produce(5);
        assert.equal(failed, 0);
        if (first < 0) first = firstSeq;
        total += 5;
        await new Promise((res) => setTimeout(res, 1));
      }
      await until(() => c.seqs.length === total, 'the trickle');
      assertConsecutive(c.seqs, first, total);
      r.close();
      return { drains: r.stats.drains, records: total };
    };
    const fixed = await trickle(undefined);
    const grown = await trickle(8);
    assert.ok(grown.drains * 2 < fixed.drains, `drains: ${grown.drains} for ${grown.records} records with maxCoalesceMs 8, ${fixed.drains} for ${fixed.records} without`);
  });

});
