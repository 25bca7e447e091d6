// SPDX-License-Identifier: Apache-2.0
// The native drain (daemon/native/capdrain.c) against the TypeScript drain on the same ring
// content: perf rings laid out in memory as the kernel writes them (samples, a record that
// wraps around a ring's end, PERF_RECORD_LOST), read by both into pcapng streams for two
// sessions at once (different snap lengths, a count, an unknown interface, owners with
// comments, a comm that changes). The two files must be the same bytes, and Wireshark must
// read from them exactly the frames the test put in the rings. Also: the fallback when the
// library is missing or is not a library. No kernel involved.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import koffi from 'koffi';
import { PerfRingReader } from '../../../../daemon/src/capture/perfbuf.js';
import { loadNativeDrain, NativeDrain, NATIVE_DRAIN_LIB, type DrainSession } from '../../../../daemon/src/capture/nativedrain.js';
import { CaptureStream, type CaptureInterface } from '../../../../daemon/src/capture/stream.js';
import { TimeBase } from '../../../../daemon/src/capture/timebase.js';
import { CAP_RECORD } from '../../../../daemon/src/capture/wire.js';
import { generateFrames } from '../../../helpers/capture-corpus.js';
import { pcapngBlocks, pcapngFrames } from '../../../helpers/capture-truth.js';
import { requireTool } from '../../../helpers/privileged.js';

const PAGE = 4096;
const RING = 1 << 19; // records start 700 bytes before the end: some wrap around it

interface Put {
  sessions: number;
  ifindex: number;
  frame: Buffer;
  capLen: number;
  tgid: number;
  tid: number;
  comm: string;
  dir: number;
  ts: bigint;
}

/** Perf rings in memory: a control page (data_head at 1024, data_tail at 1032), then data. */
class FakeRings {
  readonly mem: Buffer[];
  private readonly head: number[];
  constructor(n: number, start: number) {
    this.mem = Array.from({ length: n }, () => Buffer.from(new ArrayBuffer(PAGE + RING)));
    this.head = Array(n).fill(start);
    for (const m of this.mem) {
      m.writeBigUInt64LE(BigInt(start), 1024);
      m.writeBigUInt64LE(BigInt(start), 1032);
    }
  }
  get rings(): Array<{ base: bigint; size: number }> {
    return this.mem.map((m) => ({ base: koffi.address(m) as bigint, size: RING }));
  }
  private put(cpu: number, rec: Buffer): void {
    const m = this.mem[cpu]!;
    let at = this.head[cpu]!;
    assert.ok(at + rec.length - Number(m.readBigUInt64LE(1032)) <= RING, 'the test overfilled a ring');
    for (const byte of rec) m[PAGE + (at++ % RING)] = byte;
    this.head[cpu] = at;
    m.writeBigUInt64LE(BigInt(at), 1024);
  }
  /** A PERF_RECORD_SAMPLE as bpf_perf_event_output writes it: header, u32 raw size, raw bytes padded to 8. */
  sample(cpu: number, p: Put): void {
    const r = Buffer.alloc(CAP_RECORD.size);
    const F = CAP_RECORD.fields;
    r.writeBigUInt64LE(p.ts, F.ts_ns.offset);
    r.writeUInt32LE(p.sessions, F.sessions.offset);
    r.writeUInt32LE(p.ifindex, F.ifindex.offset);
    r.writeUInt32LE(p.frame.length, F.wire_len.offset);
    r.writeUInt32LE(p.capLen, F.cap_len.offset);
    r.writeUInt32LE(p.tgid, F.tgid.offset);
    r.writeUInt32LE(p.tid, F.tid.offset);
    r.writeUInt32LE(1000, F.uid.offset);
    r.write(p.comm, F.comm.offset, 16, 'latin1');
    r.writeUInt8(p.dir, F.direction.offset);
    r.writeUInt8(14, F.l2_len.offset);
    const raw = Buffer.concat([r, p.frame.subarray(0, p.capLen)]);
    const size = (8 + 4 + raw.length + 7) & ~7;
    const h = Buffer.alloc(size);
    h.writeUInt32LE(9, 0);
    h.writeUInt16LE(size, 6);
    h.writeUInt32LE(size - 12, 8);
    raw.copy(h, 12);
    this.put(cpu, h);
  }
  lost(cpu: number, n: number): void {
    const h = Buffer.alloc(24);
    h.writeUInt32LE(2, 0);
    h.writeUInt16LE(24, 6);
    h.writeBigUInt64LE(7n, 8);
    h.writeBigUInt64LE(BigInt(n), 16);
    this.put(cpu, h);
  }
  tails(): bigint[] {
    return this.mem.map((m) => m.readBigUInt64LE(1032));
  }
}

/** Equal bytes, or the first offset where they differ (the files are too long to print). */
function sameBytes(a: Buffer, b: Buffer, what: string): void {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  if (i === a.length && i === b.length) return;
  assert.fail(`${what}: ${a.length} and ${b.length} bytes, first difference at byte ${i}: ${a.subarray(i, i + 16).toString('hex')} vs ${b.subarray(i, i + 16).toString('hex')}`);
}

const IFACES: Record<number, CaptureInterface> = { 3: { ifindex: 3, name: 'veth-a', l2Len: 14 }, 4: { ifindex: 4, name: 'veth-b', l2Len: 14 } };

/** One clock offset for every run: the two drains' timestamps are then comparable. */
const timebase = new TimeBase();

interface Run {
  files: Buffer[];
  lost: number;
  samples: number;
  streams: CaptureStream[];
  read: number[];
  tails: bigint[];
}

/** Puts the same records in fresh rings, reads them with one drain, returns the two sessions' files. */
function runOnce(kind: 'typescript' | 'native', fill: (r: FakeRings) => void, opts: { backlog?: boolean[]; budgetMs?: number } = {}): Run {
  const rings = new FakeRings(2, RING * 3 - 700);
  fill(rings);
  const reader = PerfRingReader.overMemory(rings.rings);
  const out: Buffer[][] = [[], []];
  let comm = 0;
  const describe = (pid: number) => ({ pid, cmd: `/usr/bin/prog-${pid}`, args: ['prog', `--n=${pid}`, `call${comm++}`], ppid: 1, parentCmd: '/sbin/init' });
  const specs = [{ slot: 0, snaplen: 262144, count: undefined }, { slot: 5, snaplen: 60, count: 150 }];
  const streams = specs.map((s, i) => new CaptureStream({ write: (b) => (out[i]!.push(Buffer.from(b)), true) }, {
    slot: s.slot, snaplen: s.snaplen, filter: 'udp or tcp', interfaceOf: (x) => IFACES[x], describe, timebase, ...(s.count ? { count: s.count } : {}),
  }));
  const read = [0, 0];
  const sessions: DrainSession[] = streams.map((stream, i) => ({
    slot: specs[i]!.slot, stream,
    overBacklog: () => opts.backlog?.[i] ?? false,
    addRead: (n: number) => (read[i]! += n),
    afterDrain: () => undefined,
  }));
  // The manager's per-record path (manager.ts onSample + CaptureSession.onRecord), without a sink.
  const onSample = (buf: Buffer, u32: Uint32Array, off: number, len: number): void => {
    if (len < 20) return;
    const bits = u32[(off >> 2) + 4]!;
    sessions.forEach((s, i) => {
      if (!(bits & (1 << s.slot)) || s.stream.done) return;
      read[i]!++;
      if (s.overBacklog()) return;
      s.stream.onRecord(buf, u32, off, len);
    });
  };
  if (kind === 'native') {
    const lib = loadNativeDrain();
    assert.ok(lib.ok, lib.ok ? '' : lib.reason);
    reader.setDrain(new NativeDrain(lib.lib, reader, () => sessions, () => timebase.offsetNs()).drain);
  }
  let samples = 0;
  for (let i = 0; i < 1000; i++) {
    const n = reader.drain(onSample, opts.budgetMs ?? 1000, () => streams.forEach((s) => s.writer.release()));
    samples += n;
    if (n === 0) break;
  }
  for (const s of streams) s.writer.flush();
  return { files: out.map((b) => Buffer.concat(b)), lost: reader.stats.lost, samples, streams, read, tails: rings.tails() };
}

/** 600 frames from the capture corpus in two rings: both sessions, one, an unknown interface, owners. */
function corpus(): Put[] {
  const frames = generateFrames(11, 600);
  return frames.map((f, i) => ({
    sessions: i % 7 === 0 ? 1 << 5 : i % 5 === 0 ? 1 : (1 | (1 << 5)),
    ifindex: i % 23 === 0 ? 99 : i % 2 ? 3 : 4,
    frame: f.frame,
    capLen: i % 11 === 0 ? Math.min(f.frame.length, 50) : f.frame.length,
    tgid: i % 3 === 0 ? 0 : 4000 + (i % 4),
    tid: 4100 + (i % 2),
    comm: i > 400 && i % 4 === 1 ? 'renamed' : `prog-${i % 4}`,
    dir: i % 9 === 0 ? 0 : i % 2 ? 1 : 2,
    ts: 5_000_000_000n + BigInt(i) * 1000n,
  }));
}

const cpuOf = (i: number): number => (i % 3 === 0 ? 1 : 0);

function fill(puts: Put[]): (r: FakeRings) => void {
  return (r) => puts.forEach((p, i) => {
    if (i === 300) r.lost(1, 17);
    r.sample(cpuOf(i), p);
  });
}

/** The order a drain reads them in: ring by ring. */
const drained = (puts: Put[]): Put[] => [0, 1].flatMap((cpu) => puts.filter((_, i) => cpuOf(i) === cpu));

describe('native capture drain', () => {
  test('the library is built and its layout matches', () => {
    const lib = loadNativeDrain();
    assert.ok(lib.ok, lib.ok ? '' : lib.reason);
    assert.equal(lib.file, NATIVE_DRAIN_LIB);
  });

  test('both drains write the same pcapng for the same rings, and it holds the frames put in', () => {
    const puts = corpus();
    const ts = runOnce('typescript', fill(puts));
    const nat = runOnce('native', fill(puts));
    assert.equal(nat.samples, puts.length);
    assert.equal(ts.samples, puts.length);
    assert.equal(nat.lost, 17);
    assert.equal(ts.lost, 17);
    assert.deepEqual(nat.tails, ts.tails, 'both gave every byte back to the kernel');
    for (let i = 0; i < 2; i++) {
      assert.ok(nat.files[i]!.length > 10_000);
      // The SHB carries the writer's options only; everything else must match byte for byte.
      sameBytes(nat.files[i]!, ts.files[i]!, `session ${i}`);
      assert.equal(nat.streams[i]!.packets, ts.streams[i]!.packets);
      assert.equal(nat.streams[i]!.truncated, ts.streams[i]!.truncated);
      assert.equal(nat.streams[i]!.unknownInterface, ts.streams[i]!.unknownInterface);
      assert.deepEqual(nat.streams[i]!.writer.written, ts.streams[i]!.writer.written);
      assert.equal(nat.read[i], ts.read[i]);
    }
    assert.equal(nat.streams[1]!.packets, 150, 'the count stops session 2');
    assert.ok(nat.streams[0]!.unknownInterface > 0);
  });

  test('Wireshark reads from the native drain\'s file exactly the frames put in the rings', () => {
    requireTool('tshark', 'editcap');
    const puts = corpus();
    const nat = runOnce('native', fill(puts));
    const order = drained(puts);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-cd-'));
    try {
      const f0 = path.join(dir, 's0.pcapng');
      const f1 = path.join(dir, 's1.pcapng');
      fs.writeFileSync(f0, nat.files[0]!);
      fs.writeFileSync(f1, nat.files[1]!);
      // Session 0 (slot 0, whole frames): every record with bit 0 on a known interface.
      const want0 = order.filter((p) => p.sessions & 1 && p.ifindex !== 99);
      const got0 = pcapngFrames(f0);
      assert.equal(got0.length, want0.length);
      got0.forEach((r, i) => {
        assert.equal(r.data.toString('hex'), want0[i]!.frame.subarray(0, want0[i]!.capLen).toString('hex'), `frame ${i}`);
        assert.equal(r.wireLen, want0[i]!.frame.length);
      });
      // Session 1 (slot 5, snaplen 60, count 150).
      const want1 = order.filter((p) => p.sessions & (1 << 5) && p.ifindex !== 99).slice(0, 150);
      const got1 = pcapngFrames(f1);
      assert.equal(got1.length, 150);
      got1.forEach((r, i) => assert.equal(r.data.toString('hex'), want1[i]!.frame.subarray(0, Math.min(60, want1[i]!.capLen)).toString('hex'), `frame ${i}`));
      // Options: direction flags, option 8 with the record's pid and tid, the ptcpdump comment.
      const epbs = pcapngBlocks(f0).filter((b) => b.type === 6);
      assert.equal(epbs.length, want0.length);
      epbs.forEach((b, i) => {
        const p = want0[i]!;
        const flags = b.options.find((o) => o.code === 2);
        if (p.dir === 0) assert.equal(flags, undefined);
        else assert.equal(flags?.hex.slice(0, 2), p.dir === 2 ? '01' : '02', `frame ${i} flags (direction bits: 01 inbound, 10 outbound)`);
        const o8 = b.options.find((o) => o.code === 8);
        if (p.tgid === 0) assert.equal(o8, undefined, `frame ${i}: no owner`);
        else {
          const v = Buffer.from(o8!.hex, 'hex');
          assert.deepEqual([v.readUInt32LE(0), v.readUInt32LE(4)], [p.tgid, p.tid], `frame ${i} option 8`);
          const comments = b.options.filter((o) => o.code === 1).map((o) => Buffer.from(o.hex, 'hex').toString('utf8'));
          assert.ok(comments.some((c) => c.startsWith(`PID: ${p.tgid}\nCmd: /usr/bin/prog-${p.tgid}`)), `frame ${i} comment`);
          assert.ok(comments.some((c) => c === `ThreadId: ${p.tid}\nThreadName: ${p.comm}`), `frame ${i} thread comment: ${comments.join(' | ')}`);
        }
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a client over its backlog: records counted as read and dropped, no block, no IDB', () => {
    const puts = corpus();
    const ts = runOnce('typescript', fill(puts), { backlog: [false, true] });
    const nat = runOnce('native', fill(puts), { backlog: [false, true] });
    sameBytes(nat.files[1]!, ts.files[1]!, 'session 1');
    assert.equal(nat.streams[1]!.packets, 0);
    assert.equal(nat.read[1], puts.filter((p) => p.sessions & (1 << 5)).length);
    assert.equal(nat.read[1], ts.read[1]);
  });

  test('a budget too short to finish: the drain says it is behind and the next drains go on where it stopped', () => {
    const puts = corpus();
    const ts = runOnce('typescript', fill(puts));
    const nat = runOnce('native', fill(puts), { budgetMs: 0.001 });
    sameBytes(nat.files[0]!, ts.files[0]!, 'session 0');
    assert.equal(nat.samples, puts.length);
  });

  test('fallback: a missing library or a file that is not one is reported, not thrown', () => {
    const missing = loadNativeDrain('/nonexistent/libemoncapdrain.so');
    assert.equal(missing.ok, false);
    assert.match(missing.ok ? '' : missing.reason, /is missing/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-cd-'));
    try {
      const bogus = path.join(dir, 'libemoncapdrain.so');
      fs.writeFileSync(bogus, 'not an ELF file\n');
      const bad = loadNativeDrain(bogus);
      assert.equal(bad.ok, false);
      assert.match(bad.ok ? '' : bad.reason, /did not load/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
