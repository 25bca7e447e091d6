// SPDX-License-Identifier: Apache-2.0
// Issue 14's figures for the L7 prototype, each with a baseline measured in the same run.
//
//   sudo node build/js/bench/l7/main.js [--reps 7] [--repeat 1000000] [--http-runs 10000] [--exchanges 200000]
//
// Kernel (BPF_PROG_TEST_RUN, kernel-measured ns per run, programs alternating in each
// repetition on the same frames):
//  - non-DNS, non-HTTP packets of an existing flow: the shipped classifier (build/bpf/
//    flows.bpf.o) next to the L7 prototype (build/bpf/fixtures/flows_l7.bpf.o + l7.bpf.o)
//    with L7 off and with L7 on (DNS, HTTP and TLS switched on). Target: on - shipped <= 10 ns.
//  - an HTTP request packet and a DNS query packet on flows that are HTTP/DNS: what copying
//    costs in the kernel, per packet (the ring is drained between samples; records counted).
// User space:
//  - CPU per HTTP exchange parsed from records (request + response record, decoded from a
//    ring-like buffer, paired, reported), and the exchanges per second that is on one core.
import path from 'node:path';
import Table from 'cli-table3';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { L7Kernel } from '../../daemon/src/l7/kernel.js';
import { L7Pipeline } from '../../daemon/src/l7/pipeline.js';
import { ResolverCache } from '../../daemon/src/l7/dns/cache.js';
import { RingBufReader } from '../../daemon/src/bpf/ringbuf.js';
import { L7_REC } from '../../daemon/src/l7/wire.js';
import { machine, median, numArg, ROOT } from '../lib/harness.js';
import { TcTestRunner } from '../classifier/testrun.js';
import { l7Frames } from './packets.js';

const REPS = numArg('reps', 7);
const REPEAT = numArg('repeat', 1_000_000);
const HTTP_RUNS = numArg('http-runs', 10_000);
const EXCHANGES = numArg('exchanges', 200_000);
const TARGET_NS = 10;
const OBJ = path.join(ROOT, 'build/bpf');
const runner = new TcTestRunner();
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

function setIface(o: BpfObject): void {
  const v = Buffer.alloc(8);
  v.writeUInt32LE(1, 0);
  v.writeUInt16LE(14, 4);
  o.map('emon_ifaces').update(u32(1), v);
}

interface Row { name: string; dir: string; base: number[]; off: number[]; on: number[]; check: string }

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/l7 needs root (BPF_PROG_TEST_RUN)');
  const frames = l7Frames();
  const shipped = BpfObject.open(path.join(OBJ, 'flows.bpf.o'));
  shipped.load();
  setIface(shipped);
  const off = L7Kernel.load({ objectDir: OBJ, classifierFile: 'fixtures/flows_l7.bpf.o' });
  const on = L7Kernel.load({ objectDir: OBJ, classifierFile: 'fixtures/flows_l7.bpf.o' });
  setIface(off.classifier);
  setIface(on.classifier);
  off.setSwitches({ dns: false, http: false, tls: false });
  on.setSwitches({ dns: true, http: true, tls: true });
  const rows: Row[] = [];
  try {
    // 1. Non-L7 packets: the same frame on an existing flow, `REPEAT` runs per sample.
    for (const f of frames.plain) {
      for (const dir of ['tc_ingress', 'tc_egress'] as const) {
        const row: Row = { name: f.name, dir: dir.replace('tc_', ''), base: [], off: [], on: [], check: '' };
        const progs = [
          { fd: shipped.progFd(dir), out: row.base },
          { fd: off.progFd(dir), out: row.off },
          { fd: on.progFd(dir), out: row.on },
        ];
        for (let rep = -1; rep < REPS; rep++) {
          for (let j = 0; j < progs.length; j++) {
            const p = progs[(j + rep + 3) % 3]!;
            const r = runner.run(p.fd, dir, f.frame, REPEAT);
            if (rep >= 0) p.out.push(r.durationNs);
          }
        }
        rows.push(row);
      }
    }
    const s = on.stats();
    const plainCheck = `L7 on: ${s.records} records, flows decided DNS/HTTP/TLS ${s.flowsDns}/${s.flowsHttp}/${s.flowsTls}`;
    if (s.records !== 0) throw new Error(`non-L7 frames produced L7 records: ${JSON.stringify(s)}`);
    for (const r of rows) r.check = plainCheck;

    // 2. HTTP request and DNS query packets on L7 flows: copies into the ring, drained between samples.
    const ring = new RingBufReader(on.classifier.map('emon_l7_events'), () => {}, { coalesceMs: 0, budgetMs: 1000 });
    const copyRows: Array<{ name: string; base: number[]; on: number[]; records: number; bytes: number }> = [];
    try {
      for (const f of frames.l7) {
        const row = { name: f.name, base: [] as number[], on: [] as number[], records: 0, bytes: 0 };
        const before = on.stats();
        for (let rep = -1; rep < REPS; rep++) {
          for (const which of rep % 2 ? ['base', 'on'] : ['on', 'base']) {
            const fd = which === 'base' ? shipped.progFd('tc_egress') : on.progFd('tc_egress');
            const r = runner.run(fd, 'tc_egress', f.frame, HTTP_RUNS);
            while (ring.pendingBytes() > 0) ring.drain(); // a drain stops after its time budget
            if (rep >= 0) (which === 'base' ? row.base : row.on).push(r.durationNs);
          }
        }
        const after = on.stats();
        row.records = after.records - before.records;
        row.bytes = after.bytesCopied - before.bytesCopied;
        if (after.ringbufFull !== before.ringbufFull) throw new Error(`${f.name}: ${after.ringbufFull - before.ringbufFull} records lost (ring full)`);
        copyRows.push(row);
      }
    } finally {
      ring.close();
    }

    // 3. User space: exchanges parsed per CPU second, from records laid out as in the ring.
    const userRow = parseRate(EXCHANGES);

    const t = new Table({ head: ['packet (existing flow)', 'dir', 'shipped ns', 'L7 off ns', 'L7 on ns', 'on - shipped ns (min..max)', 'off - shipped ns', `<= ${TARGET_NS} ns`], style: { head: [], border: [] } });
    for (const r of rows) {
      const d = r.on.map((x, i) => x - r.base[i]!);
      const dOff = r.off.map((x, i) => x - r.base[i]!);
      t.push([r.name, r.dir, median(r.base).toFixed(1), median(r.off).toFixed(1), median(r.on).toFixed(1),
        `${median(d).toFixed(1)} (${Math.min(...d)}..${Math.max(...d)})`, median(dOff).toFixed(1), median(d) <= TARGET_NS ? 'PASS' : 'FAIL']);
    }
    console.log(`\nbench/l7 - ${machine()}`);
    console.log(`BPF_PROG_TEST_RUN, ${REPEAT / 1e6}M runs per sample, ${REPS} repetitions after a warm-up, medians; the three programs alternate.`);
    console.log(t.toString());
    console.log(rows[0]!.check);
    const t2 = new Table({ head: ['L7 packet (egress, L7 on)', 'shipped ns', 'L7 on ns', 'copy cost ns', 'records', 'bytes copied'], style: { head: [], border: [] } });
    for (const r of copyRows) t2.push([r.name, median(r.base).toFixed(1), median(r.on).toFixed(1), (median(r.on) - median(r.base)).toFixed(1), r.records, r.bytes]);
    console.log(`\nL7 flows: ${HTTP_RUNS} runs per sample, the ring drained after each sample (no record lost)`);
    console.log(t2.toString());
    console.log(`\nuser space: ${userRow.exchanges} HTTP exchanges (request + response record each, keep-alive, 1 KiB bodies) decoded and parsed`);
    console.log(`  CPU per exchange: ${(userRow.cpuNs / 1000).toFixed(2)} us (median of ${userRow.samples} runs); ${Math.round(1e9 / userRow.cpuNs).toLocaleString()} exchanges/s on one core; every exchange paired: ${userRow.ok}`);
  } finally {
    on.close();
    off.close();
    shipped.close();
  }
}

/** Builds ring-like records for `n` keep-alive exchanges and times decoding + parsing them. */
function parseRate(n: number): { exchanges: number; cpuNs: number; samples: number; ok: boolean } {
  const req = Buffer.from('GET /api/v1/items/12345?x=1 HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n');
  const res = Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nContent-Length: 1024\r\n\r\n'), Buffer.alloc(1024, 0x61)]);
  const recSize = (cap: number) => (L7_REC.size + cap + 7) & ~7;
  const cap = (b: Buffer) => (b.length <= 256 ? 256 : 2048);
  const per = recSize(cap(req)) + recSize(cap(res));
  const batch = 10_000;
  const buf = Buffer.alloc(per * batch);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const write = (off: number, data: Buffer, dir: number, seq: number, ack: number, ts: number) => {
    buf.fill(0, off, off + L7_REC.size);
    buf.writeUInt16LE(16, 0 + off);
    buf.writeBigUInt64LE(BigInt(ts), off + 8);
    buf[off + 16] = 2; buf[off + 17] = 6;
    buf.writeUInt16LE(40000, off + 18); buf.writeUInt16LE(80, off + 20);
    buf.set([198, 18, 0, 1], off + 24); buf.set([198, 18, 0, 2], off + 40);
    buf.writeUInt32LE(4242, off + 56);
    buf.writeUInt32LE(seq >>> 0, off + 64); buf.writeUInt32LE(ack >>> 0, off + 68);
    buf.writeUInt32LE(data.length, off + 72); buf.writeUInt16LE(Math.min(data.length, 2048), off + 76);
    buf[off + 78] = 3; buf[off + 79] = dir;
    data.copy(buf, off + L7_REC.size, 0, Math.min(data.length, 2048));
    return recSize(cap(data));
  };
  const samples: number[] = [];
  let ok = true;
  for (let s = 0; s < 5; s++) {
    let got = 0;
    const p = new L7Pipeline({ cache: new ResolverCache(), sinks: { http: (e) => { if (e.status === 200) got++; } }, wallMs: () => 0 });
    let cseq = 1, sseq = 1, ts = 1;
    let cpu = 0;
    for (let done = 0; done < n; done += batch) {
      let off = 0;
      for (let i = 0; i < batch; i++) {
        off += write(off, req, 0, cseq, sseq, ts++); cseq += req.length;
        off += write(off, res, 1, sseq, cseq, ts++); sseq += res.length;
      }
      const t0 = process.cpuUsage();
      for (let o = 0; o < off;) {
        const size = recSizeAt(view, o);
        p.onRecord(view, o, size);
        o += size;
      }
      const d = process.cpuUsage(t0);
      cpu += (d.user + d.system) * 1000;
    }
    if (got !== Math.ceil(n / batch) * batch) ok = false;
    samples.push(cpu / (Math.ceil(n / batch) * batch));
  }
  return { exchanges: n, cpuNs: median(samples), samples: samples.length, ok };
}

function recSizeAt(v: DataView, o: number): number {
  const cap = v.getUint16(o + 76, true) <= 256 ? 256 : 2048;
  return (L7_REC.size + cap + 7) & ~7;
}

await main();
