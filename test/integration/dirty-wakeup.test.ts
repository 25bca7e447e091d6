// SPDX-License-Identifier: Apache-2.0
// When the dirty-flow ring is drained (issue 17, the idle daemon): the kernel pushes without
// waking the reader until the ring holds a quarter of its size (EMON_DIRTY_WAKE_BYTES in
// bpf/monitor/maps.bpf.h), then wakes it on every push; daemon/src/monitor/dirty.ts polls the
// ring and drains when woken. An idle daemon is then not woken per new flow, and a busy one
// still empties the ring long before it overflows. The real classifier
// (build/bpf/flows.bpf.o) creates flows from packets run through BPF_PROG_TEST_RUN; the
// reader's backstop timer is stretched past the test so only the kernel's wakeups and
// take() drain it. Truth: the flows this test created (each pushes its key once).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { privileged } from '../helpers/privileged.js';
import { ROOT } from '../helpers/cc.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { writeUint } from '../../daemon/src/bpf/layout.js';
import { DirtyRing } from '../../daemon/src/monitor/dirty.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { MONITOR_COUNTERS } from '../../daemon/src/contract/status.js';
import { DIRTY_REC, IFACE } from '../../daemon/src/monitor/wire.js';
import { TcTestRunner } from '../../bench/classifier/testrun.js';

const RING_BYTES = 1 << 20;
/** A record in the ring: its 8-byte header and the record, rounded up to 8 bytes. */
const REC_BYTES = (8 + DIRTY_REC.size + 7) & ~7;
/** Records the ring holds when the kernel starts waking the reader. */
const WAKE_RECORDS = Math.ceil(RING_BYTES / 4 / REC_BYTES);

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

function csum16(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** An Ethernet frame of UDP flow i leaving 198.18.x.y:(10000 + i % 50000) for 198.19.0.1:53. */
function frame(i: number): Buffer {
  const udp = Buffer.alloc(8 + 16);
  udp.writeUInt16BE(10000 + (i % 50000), 0);
  udp.writeUInt16BE(53, 2);
  udp.writeUInt16BE(udp.length, 4);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + udp.length, 2);
  ip[8] = 64;
  ip[9] = 17;
  Buffer.from([198, 18, (i >> 8) & 255, i & 255]).copy(ip, 12);
  Buffer.from([198, 19, 0, 1]).copy(ip, 16);
  ip.writeUInt16BE(csum16(ip), 10);
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, ip, udp]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The real classifier, loaded with room for the flows a test creates. */
function loadClassifier(): BpfObject {
  const obj = BpfObject.open(path.join(ROOT, 'build/bpf/flows.bpf.o'));
  obj.setMaxEntries(MAP.flows, 4 * WAKE_RECORDS);
  obj.load();
  const v = Buffer.alloc(IFACE.size);
  writeUint(v, IFACE.fields.ifindex, 1); // BPF_PROG_TEST_RUN runs on loopback, Ethernet-framed
  writeUint(v, IFACE.fields.l2_len, 14);
  obj.map(MAP.ifaces).update(u32(1), v);
  return obj;
}

describe('dirty-flow ring: drained when the kernel wakes the reader, not per flow (real classifier)', privileged({ timeout: 60_000 }), () => {
  let obj: BpfObject;
  let ring: DirtyRing;
  const runner = new TcTestRunner();

  before(() => {
    obj = loadClassifier();
    // No backstop within the test: what drains the ring is the kernel's wakeup or take().
    ring = new DirtyRing(obj.map(MAP.dirty), obj.map(MAP.epoch), { drainMs: 3_600_000 });
  });
  after(() => {
    ring?.close();
    obj?.close();
  });

  test('below a quarter of the ring nothing wakes the reader; past it the reader drains by itself; take() hands over every key once', async () => {
    // The reader's poll is registered with epoll in the loop's next poll phase; a ring that
    // already holds records then reads as ready at once (level-triggered). Let it register
    // while the ring is empty, as in the daemon, where the reader starts before any epoch.
    await sleep(50);
    await ring.advance(); // an epoch: the classifier pushes from now on
    const egress = obj.progFd('tc_egress');
    let created = 0;
    const create = (n: number) => {
      for (let j = 0; j < n; j++, created++) assert.equal(runner.run(egress, 'tc', frame(created), 1).retval, -1);
    };
    const below = WAKE_RECORDS - 200;
    create(below);
    // The event loop turns for a while: the reader must not have been woken (an idle daemon
    // is not woken per new flow). Level-triggered epoll would report a readable ring here.
    for (let i = 0; i < 20; i++) await sleep(10);
    assert.equal(ring.stats.records, 0, `no wakeup below ${WAKE_RECORDS} records (${below} pushed)`);
    // Past the quarter: the kernel wakes the reader, which drains without being asked.
    create(400);
    const until = Date.now() + 10_000; // a bound for a broken build, not a timing claim
    while (ring.stats.records < WAKE_RECORDS && Date.now() < until) await sleep(5);
    assert.ok(ring.stats.records >= WAKE_RECORDS, `the reader drained ${ring.stats.records} records by itself after ${created} pushes`);
    // take() drains the rest: every created flow's key, once.
    const keys = await ring.take();
    assert.equal(keys.size, created);
    assert.equal(ring.stats.records, created);
    const stats = obj.map(MAP.stats);
    assert.equal(Number(stats.sumPerCpuU64(stats.lookup(u32(MONITOR_COUNTERS.indexOf('dirtyRingFull')))!)), 0);
  });
});

describe('dirty-flow ring: take() drains in pieces, the event loop turning between two (real classifier)', privileged({ timeout: 60_000 }), () => {
  let obj: BpfObject;
  let ring: DirtyRing;
  const runner = new TcTestRunner();

  before(() => {
    obj = loadClassifier();
    // A budget far below the daemon's, so that this box's speed does not decide whether the
    // keys fit in one piece.
    ring = new DirtyRing(obj.map(MAP.dirty), obj.map(MAP.epoch), { drainMs: 3_600_000, budgetMs: 0.05 });
  });
  after(() => {
    ring?.close();
    obj?.close();
  });

  test('a refresh\'s take() of three quarters of the ring: every key once, and the event loop turned meanwhile', async () => {
    await sleep(50);
    await ring.advance();
    const egress = obj.progFd('tc_egress');
    // Pushed while this test holds the event loop: nothing drains them before take().
    const created = 3 * WAKE_RECORDS;
    for (let i = 0; i < created; i++) assert.equal(runner.run(egress, 'tc', frame(i), 1).retval, -1);
    assert.equal(ring.stats.records, 0);
    let turns = 0;
    let taking = true;
    const turn = () => {
      if (!taking) return;
      turns++;
      setImmediate(turn);
    };
    setImmediate(turn);
    const keys = await ring.take();
    taking = false;
    assert.equal(keys.size, created, 'every created flow\'s key');
    assert.equal(ring.stats.records, created, 'each read once');
    // One drain of the whole ring (as take() did until December 2026) gives the loop no turn.
    assert.ok(turns >= 2, `the event loop turned ${turns} times while take() read ${created} records`);
    const stats = obj.map(MAP.stats);
    assert.equal(Number(stats.sumPerCpuU64(stats.lookup(u32(MONITOR_COUNTERS.indexOf('dirtyRingFull')))!)), 0);
  });
});
