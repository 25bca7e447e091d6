// SPDX-License-Identifier: Apache-2.0
// Issue 14's figures for the L7 prototype, each with a baseline measured in the same run.
//
//   sudo node build/js/bench/l7/main.js [--reps 7] [--repeat 1000000] [--http-runs 10000] [--exchanges 200000]
//
// Kernel (BPF_PROG_TEST_RUN, kernel-measured ns per run, programs alternating in each
// repetition on the same frames):
//  - non-DNS, non-HTTP packets of an existing flow: the shipped classifier (build/bpf/
//    flows.bpf.o) with no hook bit, next to the same classifier + l7.bpf.o in the hook
//    chain with the L7 bit clear (off) and set with DNS, HTTP and TLS switched on (on).
//    Target: on - shipped <= 10 ns.
//  - an HTTP request packet and a DNS query packet on flows that are HTTP/DNS: what copying
//    costs in the kernel, per packet (the ring is drained between samples; records counted).
// User space:
//  - CPU per HTTP exchange parsed from records (request + response record, decoded from a
//    ring-like buffer, paired, reported), and the exchanges per second that is on one core.
import path from 'node:path';
import Table from 'cli-table3';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { L7Kernel, L7_HOOK_BIT } from '../../daemon/src/l7/kernel.js';
import { L7Pipeline } from '../../daemon/src/l7/pipeline.js';
import { ResolverCache } from '../../daemon/src/l7/dns/cache.js';
import { L7Store } from '../../daemon/src/l7/store.js';
import { RingBufReader } from '../../daemon/src/bpf/ringbuf.js';
import { L7_REC } from '../../daemon/src/l7/wire.js';
import { machine, median, numArg, ROOT } from '../lib/harness.js';
import { TcTestRunner } from '../classifier/testrun.js';
import { l7Frames } from './packets.js';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { SslProbes } from '../../daemon/src/l7/ssl/probes.js';
import { SSL_COMPONENT, SSL_MAP } from '../../daemon/src/l7/components.js';
import { Deployment } from '../../daemon/src/bpf/deployment.js';
import { LAYOUT_VERSION } from '../../daemon/src/monitor/monitor.js';
import pino from 'pino';
import { resolveMapped, systemOpenSsl, libraryDirs } from '../../daemon/src/l7/ssl/libs.js';
import { l7Counters } from '../../daemon/src/l7/kernel.js';
import { SSL_REC } from '../../daemon/src/l7/wire.js';

const REPS = numArg('reps', 7);
const REPEAT = numArg('repeat', 1_000_000);
const HTTP_RUNS = numArg('http-runs', 10_000);
const EXCHANGES = numArg('exchanges', 200_000);
const TLS_EXCHANGES = numArg('tls-exchanges', 20_000);
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
  if (process.argv.includes('--uprobes-only')) {
    const tls = await uprobeCost();
    const dt = tls.on.map((x, i) => x - tls.off[i]!);
    console.log(`\nbench/l7 --uprobes-only - ${machine()}`);
    console.log(JSON.stringify({ offCpu: median(tls.off), emptyCpu: median(tls.empty), onCpu: median(tls.on), uprobeCpu: median(dt), range: [Math.min(...dt), Math.max(...dt)], perCall: median(dt) / 4,
      wall: [median(tls.offWall), median(tls.onWall)], consumer: median(tls.consumer), seen: tls.seen, ringbufFull: tls.ringbufFull }));
    return;
  }
  const frames = l7Frames();
  const shipped = BpfObject.open(path.join(OBJ, 'flows.bpf.o'));
  shipped.load();
  setIface(shipped);
  const off = L7Kernel.load({ objectDir: OBJ });
  const on = L7Kernel.load({ objectDir: OBJ });
  off.setInterface(1, 14, 0);
  on.setInterface(1, 14, L7_HOOK_BIT);
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
    const ring = new RingBufReader(on.l7.map('emon_l7_events'), () => {}, { coalesceMs: 0, budgetMs: 1000 });
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
    const userStore = parseRate(EXCHANGES, true);
    const userSsl = parseRateSsl(EXCHANGES);
    // 4. The OpenSSL uprobes: the same TLS loop with and without them, alternating.
    const tls = await uprobeCost();

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
    console.log(`  the same, then kept (L7Store: http.list record + the flow's HTTP summary): ${(userStore.cpuNs / 1000).toFixed(2)} us per exchange; ${Math.round(1e9 / userStore.cpuNs).toLocaleString()} exchanges/s on one core; every exchange paired: ${userStore.ok}`);
    console.log(`user space, HTTPS through the uprobes: ${userSsl.exchanges} exchanges as SSL_write/SSL_read records (request, response) decoded and parsed`);
    console.log(`  CPU per exchange: ${(userSsl.cpuNs / 1000).toFixed(2)} us (median of ${userSsl.samples} runs); ${Math.round(1e9 / userSsl.cpuNs).toLocaleString()} exchanges/s on one core; every exchange paired: ${userSsl.ok}`);
    const t3 = new Table({ head: ['TLS loop (1 process, BIO pair)', 'no uprobes CPU ns/exch.', 'empty uprobes CPU ns/exch.', 'ebpfmon uprobes CPU ns/exch.', 'ebpfmon - none ns/exch. (min..max)', 'per SSL call ns', 'ebpfmon - empty ns/exch.', 'wall ns/exch. off / on', 'consumer CPU ns/exch.', 'exchanges seen / run', 'ring full'], style: { head: [], border: [] } });
    const dt = tls.on.map((x, i) => x - tls.off[i]!);
    t3.push([`${TLS_EXCHANGES} exchanges/run, ${REPS} runs`, median(tls.off).toFixed(0), median(tls.empty).toFixed(0), median(tls.on).toFixed(0), `${median(dt).toFixed(0)} (${Math.min(...dt).toFixed(0)}..${Math.max(...dt).toFixed(0)})`,
      (median(dt) / 4).toFixed(0), (median(tls.on) - median(tls.empty)).toFixed(0), `${median(tls.offWall).toFixed(0)} / ${median(tls.onWall).toFixed(0)}`, median(tls.consumer).toFixed(0), tls.seen.join(','), tls.ringbufFull]);
    console.log(`\nOpenSSL uprobes (SSL_write/SSL_read entry+return, 4 calls per exchange; 1 KiB response): the loop's own CPU (CLOCK_PROCESS_CPUTIME_ID) with and without; the consumer (this process: ring drain + parse, client and server side of each exchange) separately; records drained and parsed live`);
    console.log(t3.toString());
  } finally {
    on.close();
    off.close();
    shipped.close();
  }
}

/** Builds ring-like records for `n` keep-alive exchanges and times decoding + parsing them. */
function parseRate(n: number, store = false): { exchanges: number; cpuNs: number; samples: number; ok: boolean } {
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
    // With `store`: what the daemon does next (L7Store: the http.list record and the flow's HTTP summary).
    const kept = store ? new L7Store({ wallMs: (ns) => ns / 1e6, cache: new ResolverCache() }) : null;
    const p = new L7Pipeline({ cache: new ResolverCache(), sinks: { http: (e) => { kept?.addHttp(e); if (e.status === 200) got++; } }, wallMs: () => 0 });
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

/** The same exchanges as SSL_write/SSL_read records (EV_SSL), as the uprobes write them. */
function parseRateSsl(n: number): { exchanges: number; cpuNs: number; samples: number; ok: boolean } {
  const req = Buffer.from('GET /api/v1/items/12345?x=1 HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n');
  const res = Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nContent-Length: 1024\r\n\r\n'), Buffer.alloc(1024, 0x61)]);
  const F = SSL_REC.fields;
  const size = (d: Buffer) => (SSL_REC.size + (d.length <= 256 ? 256 : d.length <= 2048 ? 2048 : 4096) + 7) & ~7;
  const batch = 10_000;
  const buf = Buffer.alloc((size(req) + size(res)) * batch);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const write = (off: number, data: Buffer, dir: number, seq: number, ts: number) => {
    buf.fill(0, off, off + SSL_REC.size);
    buf.writeUInt16LE(17, off);
    buf.writeBigUInt64LE(BigInt(ts), off + 8);
    buf.writeBigUInt64LE(0x5555n, off + F.ssl.offset);
    buf.writeUInt32LE(4242, off + F.tgid.offset);
    buf.writeUInt32LE(seq >>> 0, off + F.seq.offset);
    buf.writeUInt32LE(data.length, off + F.len.offset);
    buf.writeUInt16LE(data.length, off + F.cap_len.offset);
    buf[off + F.dir.offset] = dir;
    buf.write('bench', off + F.comm.offset, 'latin1');
    data.copy(buf, off + SSL_REC.size);
    return size(data);
  };
  const samples: number[] = [];
  let ok = true;
  for (let s = 0; s < 5; s++) {
    let got = 0;
    const p = new L7Pipeline({ cache: new ResolverCache(), sinks: { http: (e) => { if (e.status === 200 && e.tls) got++; } }, wallMs: () => 0 });
    let cseq = 0, sseq = 0, ts = 1, cpu = 0;
    const sizes: number[] = [];
    for (let done = 0; done < n; done += batch) {
      let off = 0;
      sizes.length = 0;
      for (let i = 0; i < batch; i++) {
        const a = write(off, req, 0, cseq, ts++); off += a; sizes.push(a); cseq += req.length;
        const b = write(off, res, 1, sseq, ts++); off += b; sizes.push(b); sseq += res.length;
      }
      const t0 = process.cpuUsage();
      for (let o = 0, i = 0; o < off; o += sizes[i++]!) p.onRecord(view, o, sizes[i]!);
      const d = process.cpuUsage(t0);
      cpu += (d.user + d.system) * 1000;
    }
    p.flush(ts);
    if (got !== Math.ceil(n / batch) * batch) ok = false;
    samples.push(cpu / (Math.ceil(n / batch) * batch));
  }
  return { exchanges: n, cpuNs: median(samples), samples: samples.length, ok };
}

/** Runs bench/l7/ssl_loop.c against the system's libssl, uprobes detached and attached in turn. */
async function uprobeCost(): Promise<{ off: number[]; on: number[]; empty: number[]; offWall: number[]; onWall: number[]; consumer: number[]; seen: number[]; ringbufFull: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-bench-l7-'));
  // Each in a Deployment of its own (a scratch pin directory), as the daemon attaches them.
  const logger = pino({ level: 'warn' });
  const pinRoot = `/sys/fs/bpf/emon-bench-l7-${process.pid}`;
  const deploy = (name: string, file: string) => {
    const dep = Deployment.open({ pinPath: `${pinRoot}-${name}`, objectDir: OBJ, layoutVersion: LAYOUT_VERSION, daemonVersion: 'bench', logger });
    dep.deploy({ ...SSL_COMPONENT, file });
    return dep;
  };
  const probesDep = deploy('ssl', 'ssl.bpf.o');
  const emptyDep = deploy('empty', 'fixtures/ssl_empty.bpf.o');
  const probes = new SslProbes(probesDep, logger);
  const empty = new SslProbes(emptyDep, logger);
  let seen = 0;
  const pipe = new L7Pipeline({ cache: new ResolverCache(), sinks: { http: (e) => { if (e.tls && e.status === 200) seen++; } }, wallMs: () => 0 });
  const ring = new RingBufReader(probesDep.map(SSL_MAP.events), pipe.onRecord, { coalesceMs: 1 });
  try {
    const bin = path.join(dir, 'ssl_loop');
    execFileSync('gcc', ['-O2', '-Wall', '-o', bin, path.join(ROOT, 'bench/l7/ssl_loop.c'), '-lssl', '-lcrypto']);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=bench'], { stdio: 'ignore' });
    const lib = systemOpenSsl(libraryDirs()).map((p) => resolveMapped(process.pid, p)).find((f) => f !== null);
    if (!lib) throw new Error('no system libssl found');
    const run = () => new Promise<[number, number]>((resolve, reject) => execFile(bin, [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem'), String(TLS_EXCHANGES)], (err, out) => {
      if (err) return reject(err);
      const f = out.trim().split(' ').map(Number);
      resolve([f[1]!, f[2]!]);
    }));
    ring.start();
    const off: number[] = [], on: number[] = [], offWall: number[] = [], onWall: number[] = [], seenRuns: number[] = [], consumer: number[] = [];
    const emptyCpu: number[] = [];
    const orders = [['off', 'empty', 'on'], ['on', 'off', 'empty'], ['empty', 'on', 'off']] as const;
    for (let rep = -1; rep < REPS; rep++) {
      for (const which of orders[(rep + 3) % 3]!) {
        const hooked = which === 'on';
        if (which === 'empty') {
          const r = empty.hook(lib);
          if (!r.ok) throw new Error(r.reason);
          const [, ns] = await run();
          empty.unhookAll();
          if (rep >= 0) emptyCpu.push(ns);
          continue;
        }
        if (hooked) {
          const r = probes.hook(lib);
          if (!r.ok) throw new Error(r.reason);
        }
        seen = 0;
        const c0 = process.cpuUsage();
        const [wall, ns] = await run();
        if (hooked) {
          for (let i = 0; i < 50 && ring.pendingBytes() > 0; i++) await new Promise((r) => setTimeout(r, 5));
          const c = process.cpuUsage(c0);
          if (rep >= 0) consumer.push(((c.user + c.system) * 1000) / TLS_EXCHANGES);
          pipe.flush(Number.MAX_SAFE_INTEGER);
          probes.unhookAll();
          if (rep >= 0) seenRuns.push(seen);
        }
        if (rep >= 0) {
          (hooked ? on : off).push(ns);
          (hooked ? onWall : offWall).push(wall);
        }
      }
    }
    return { off, on, empty: emptyCpu, offWall, onWall, consumer, seen: seenRuns, ringbufFull: l7Counters([probesDep.map(SSL_MAP.stats)]).ringbufFull };
  } finally {
    ring.close();
    for (const [name, dep] of [['ssl', probesDep], ['empty', emptyDep]] as const) {
      dep.close();
      Deployment.teardown(`${pinRoot}-${name}`, logger);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function recSizeAt(v: DataView, o: number): number {
  const cap = v.getUint16(o + 76, true) <= 256 ? 256 : 2048;
  return (L7_REC.size + cap + 7) & ~7;
}

await main();
