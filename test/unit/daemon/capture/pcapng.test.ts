// SPDX-License-Identifier: Apache-2.0
// The pcapng writer, read back by Wireshark (tshark, capinfos, editcap): every block the
// writer made is found with the values given to it. No kernel involved.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LINKTYPE, PcapngWriter, processOptions } from '../../../../daemon/src/capture/pcapng.js';
import { ptcpdumpComments } from '../../../../daemon/src/capture/comments.js';
import { requireTool } from '../../../helpers/privileged.js';
import { pcapngBlocks, pcapngFrames } from '../../../helpers/capture-truth.js';
import { generateFrames } from '../../../helpers/capture-corpus.js';

const T0 = 1_767_225_600_000_000_000n; // 2026-01-01T00:00:00Z in ns

interface Sent {
  iface: number;
  frame: Buffer;
  capLen: number;
  wireLen: number;
  ts: bigint;
  dir: 'in' | 'out' | null;
  pid: number | null;
  tid: number;
}

/** Writes a file from seeded frames; returns what went in. */
function writeSample(sink: (b: Buffer) => void): Sent[] {
  const w = new PcapngWriter({ write: (b) => (sink(Buffer.from(b)), true) });
  const eth = w.addInterface({ name: 'veth-x', linkType: LINKTYPE.ETHERNET, snaplen: 262144, filter: 'tcp port 9000 or udp' });
  const raw = w.addInterface({ name: 'tun-x', linkType: LINKTYPE.RAW, snaplen: 96, filter: 'ip' });
  const sent: Sent[] = [];
  const frames = generateFrames(7, 400).filter((p) => p.ip);
  frames.forEach((p, i) => {
    const onRaw = i % 3 === 0;
    const data = onRaw ? p.frame.subarray(14) : p.frame;
    const capLen = onRaw ? Math.min(96, data.length) : data.length;
    const pid = i % 4 === 0 ? null : 1000 + (i % 5);
    const ts = T0 + BigInt(i) * 1_234_567n;
    const dir = i % 5 === 0 ? null : i % 2 ? 'in' : 'out';
    const opts = pid === null ? undefined : processOptions(pid, pid + 7, ptcpdumpComments({ pid, tid: pid + 7, threadName: `t${pid}`, cmd: '/usr/bin/x', args: ['x', `--n=${pid}`], uid: 1000, unit: 'x.service' }));
    w.packet(onRaw ? raw : eth, Number(ts >> 32n), Number(ts & 0xffffffffn), Buffer.from(data), 0, capLen, data.length + (onRaw ? 0 : 4), dir, opts);
    sent.push({ iface: onRaw ? raw : eth, frame: Buffer.from(data.subarray(0, capLen)), capLen, wireLen: data.length + (onRaw ? 0 : 4), ts, dir, pid, tid: pid === null ? 0 : pid + 7 });
  });
  w.statistics(eth, { tsNs: T0 + 10n ** 9n, startNs: T0, endNs: T0 + 10n ** 9n, ifrecv: 1234, filteraccept: 1200, osdrop: 5, comment: 'session totals' });
  w.statistics(raw, { tsNs: T0 + 10n ** 9n });
  w.flush();
  return sent;
}

describe('pcapng writer, read by Wireshark', () => {
  let dir: string;
  let file: string;
  let sent: Sent[];
  before(() => {
    requireTool('tshark', 'capinfos', 'editcap');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-pcapng-'));
    file = path.join(dir, 'sample.pcapng');
    const fd = fs.openSync(file, 'w');
    sent = writeSample((b) => fs.writeSync(fd, b));
    fs.closeSync(fd);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('every packet: interface, lengths, time to the nanosecond, direction, comments', () => {
    const rows = execFileSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.interface_name', '-e', 'frame.len', '-e', 'frame.cap_len', '-e', 'frame.time_epoch', '-e', 'frame.packet_flags_direction', '-e', 'frame.comment'], { encoding: 'utf8' }).trim().split('\n');
    assert.equal(rows.length, sent.length);
    rows.forEach((row, i) => {
      const s = sent[i]!;
      const [name, len, cap, t, d, comment] = row.split('|');
      assert.equal(name, s.iface === 0 ? 'veth-x' : 'tun-x');
      assert.equal(Number(len), s.wireLen);
      assert.equal(Number(cap), s.capLen);
      assert.equal(t, `${s.ts / 10n ** 9n}.${String(s.ts % 10n ** 9n).padStart(9, '0')}`);
      assert.equal(d === '' ? null : Number(d), s.dir === null ? null : s.dir === 'in' ? 1 : 2, row);
      if (s.pid === null) assert.equal(comment, '');
      else assert.equal(comment, `PID: ${s.pid}\\nCmd: /usr/bin/x\\nArgs: x --n=${s.pid},ThreadId: ${s.tid}\\nThreadName: t${s.pid},UserId: 1000,Unit: x.service`);
    });
  });

  test('packet bytes survive byte for byte (editcap reads a one-interface file per link type)', () => {
    // editcap converts only files whose packets share one link type.
    for (const [lt, name] of [[LINKTYPE.ETHERNET, 'eth'], [LINKTYPE.RAW, 'raw']] as const) {
      const one = path.join(dir, `${name}.pcapng`);
      const fd = fs.openSync(one, 'w');
      const w = new PcapngWriter({ write: (b) => (fs.writeSync(fd, b), true) });
      w.addInterface({ name, linkType: lt, snaplen: 262144 });
      const frames = sent.filter((s) => s.iface === (lt === LINKTYPE.ETHERNET ? 0 : 1));
      for (const s of frames) w.packet(0, 0, 0, s.frame, 0, s.frame.length, s.wireLen, s.dir, undefined);
      w.flush();
      fs.closeSync(fd);
      const got = pcapngFrames(one);
      assert.deepEqual(got.map((r) => r.data.toString('hex')), frames.map((s) => s.frame.toString('hex')));
      assert.deepEqual(got.map((r) => r.wireLen), frames.map((s) => s.wireLen));
    }
  });

  test('IDBs (link type, snaplen, ns resolution, if_filter), option 8, and ISB counters', () => {
    const info = execFileSync('capinfos', [file], { encoding: 'utf8' });
    assert.match(info, /Interface #0 info:\s+Name = veth-x\s+Encapsulation = Ethernet/);
    assert.match(info, /Interface #1 info:\s+Name = tun-x\s+Encapsulation = Raw IP/);
    assert.match(info, /Capture length = 96/);
    assert.match(info, /Time precision = nanoseconds \(9\)/);
    assert.match(info, /Filter string = tcp port 9000 or udp/);
    const blocks = pcapngBlocks(file);
    const epbs = blocks.filter((b) => b.type === 6);
    assert.equal(epbs.length, sent.length);
    epbs.forEach((b, i) => {
      const o8 = b.options.filter((o) => o.code === 8);
      if (sent[i]!.pid === null) return assert.equal(o8.length, 0);
      const v = Buffer.from(o8[0]!.hex, 'hex');
      assert.deepEqual([v.readUInt32LE(0), v.readUInt32LE(4)], [sent[i]!.pid, sent[i]!.tid]);
    });
    const isbs = blocks.filter((b) => b.type === 5);
    assert.equal(isbs.length, 2);
    const u64 = (b: (typeof isbs)[number], code: number) => {
      const o = b.options.find((x) => x.code === code);
      return o ? Number(Buffer.from(o.hex, 'hex').readBigUInt64LE()) : undefined;
    };
    assert.deepEqual([u64(isbs[0]!, 4), u64(isbs[0]!, 6), u64(isbs[0]!, 7), u64(isbs[0]!, 8)], [1234, 1200, 5, sent.filter((s) => s.iface === 0).length]);
    assert.equal(u64(isbs[1]!, 8), sent.filter((s) => s.iface === 1).length);
  });

  test('vectored mode (packets written by reference with writev) makes the same bytes as copying', () => {
    const copied: Buffer[] = [];
    writeSample((b) => copied.push(b));
    // The same packets through a writer with a gather sink: long frames are then referenced
    // (here the test's buffers, in the capture path the perf ring's memory), not copied.
    const vec: Buffer[] = [];
    const sampleVectored = (sink: { write: (b: Buffer) => boolean; writevSync: (p: Uint8Array[]) => void }) => {
      const wv = new PcapngWriter(sink);
      const eth = wv.addInterface({ name: 'veth-x', linkType: LINKTYPE.ETHERNET, snaplen: 262144, filter: 'tcp port 9000 or udp' });
      const raw = wv.addInterface({ name: 'tun-x', linkType: LINKTYPE.RAW, snaplen: 96, filter: 'ip' });
      for (const s of sent) {
        const opts = s.pid === null ? undefined : processOptions(s.pid, s.tid, ptcpdumpComments({ pid: s.pid, tid: s.tid, threadName: `t${s.pid}`, cmd: '/usr/bin/x', args: ['x', `--n=${s.pid}`], uid: 1000, unit: 'x.service' }));
        wv.packet(s.iface === 0 ? eth : raw, Number(s.ts >> 32n), Number(s.ts & 0xffffffffn), s.frame, 0, s.capLen, s.wireLen, s.dir, opts);
        if (s.capLen > 300) wv.release(); // as the reader does before giving ring space back
      }
      wv.statistics(eth, { tsNs: T0 + 10n ** 9n, startNs: T0, endNs: T0 + 10n ** 9n, ifrecv: 1234, filteraccept: 1200, osdrop: 5, comment: 'session totals' });
      wv.statistics(raw, { tsNs: T0 + 10n ** 9n });
      wv.flush();
    };
    sampleVectored({ write: (b) => (vec.push(Buffer.from(b)), true), writevSync: (ps) => { for (const p of ps) vec.push(Buffer.from(p)); } });
    const a = Buffer.concat(copied);
    const b = Buffer.concat(vec);
    assert.equal(b.length, a.length);
    assert.ok(a.equals(b), 'identical files');
  });

  test('short packets copied a word at a time (srcU32, as from the perf ring) make the same bytes as byte copies', () => {
    const copied: Buffer[] = [];
    writeSample((b) => copied.push(b));
    // The same packets laid out in one 4-aligned buffer at word offsets, as records lie in the
    // ring, each handed over with that buffer's word view; lengths not a multiple of 4 and a
    // snap length of 96 included (the sample's raw-IP interface).
    const ring = Buffer.from(new ArrayBuffer(1 << 20));
    const words = new Uint32Array(ring.buffer);
    ring.fill(0xee); // bytes after a packet are not zero in a ring: padding must still be
    const at: number[] = [];
    let o = 0;
    for (const s of sent) {
      at.push(o);
      s.frame.copy(ring, o);
      o = (o + s.frame.length + 4 + 3) & ~3;
    }
    const out: Buffer[] = [];
    const w = new PcapngWriter({ write: (b) => (out.push(Buffer.from(b)), true) });
    const eth = w.addInterface({ name: 'veth-x', linkType: LINKTYPE.ETHERNET, snaplen: 262144, filter: 'tcp port 9000 or udp' });
    const raw = w.addInterface({ name: 'tun-x', linkType: LINKTYPE.RAW, snaplen: 96, filter: 'ip' });
    sent.forEach((s, i) => {
      const opts = s.pid === null ? undefined : processOptions(s.pid, s.tid, ptcpdumpComments({ pid: s.pid, tid: s.tid, threadName: `t${s.pid}`, cmd: '/usr/bin/x', args: ['x', `--n=${s.pid}`], uid: 1000, unit: 'x.service' }));
      w.packet(s.iface === 0 ? eth : raw, Number(s.ts >> 32n), Number(s.ts & 0xffffffffn), ring, at[i]!, s.capLen, s.wireLen, s.dir, opts, words);
    });
    w.statistics(eth, { tsNs: T0 + 10n ** 9n, startNs: T0, endNs: T0 + 10n ** 9n, ifrecv: 1234, filteraccept: 1200, osdrop: 5, comment: 'session totals' });
    w.statistics(raw, { tsNs: T0 + 10n ** 9n });
    w.flush();
    assert.ok(sent.some((s) => s.capLen <= 128 && s.capLen % 4 !== 0), 'the sample has short packets of odd lengths');
    assert.ok(Buffer.concat(out).equals(Buffer.concat(copied)), 'identical files');
  });

  test('streams: the same bytes piped into `tshark -r -` read as they arrive', async () => {
    const chunks: Buffer[] = [];
    const expected = writeSample((b) => chunks.push(b));
    // Through `cat`, so that tshark's stdin is a pipe as in a shell (Node's stdio 'pipe' is a
    // socket pair, which tshark -r - refuses).
    const child = spawn('sh', ['-c', 'cat | tshark -r - -T fields -e frame.len'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let outText = '';
    let errText = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (outText += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (errText += d));
    for (const c of chunks) {
      if (!child.stdin.write(c)) await new Promise((r) => child.stdin.once('drain', r));
    }
    child.stdin.end();
    const code = await new Promise((r) => child.once('close', r));
    assert.equal(code, 0, errText);
    assert.deepEqual(outText.trim().split('\n').map(Number), expected.map((s) => s.wireLen));
  });
});
