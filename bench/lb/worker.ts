// SPDX-License-Identifier: Apache-2.0
// bench/lb's helpers that must run inside a namespace (started with nsenter by main.ts;
// JSON lines on stdin/stdout like test/helpers/lb/agent.ts):
//
//   node worker.js sink IFNAME   XDP sink on IFNAME: counts and drops every frame; {count}
//   node worker.js gen IFNAME    live-frames generator on IFNAME; {send {frame, seconds, max}}
//   node worker.js cost PINPATH  per-packet cost of the pinned xdp_lb vs xdp_pass (replay + tail call);
//                                {cost {..., pin}} measures the xdp_lb pinned under another path
//
// Every loop is bounded by a packet count and by time. The programs and links live as long
// as this process (nothing is pinned): killing it detaches them.
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { BpfError } from '../../daemon/src/bpf/errors.js';
import { BPF_XDP, XDP_FLAGS_DRV_MODE } from '../../daemon/src/bpf/uapi.js';
import { listLinks } from '../../daemon/src/net/netlink.js';
import { XdpTestRunner } from '../../daemon/src/lb/testrun.js';
import { close } from '../../daemon/src/sys/libc.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bpf/fixtures');
const [role = '', arg = ''] = process.argv.slice(2);
const send = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

function ifindexOf(name: string): number {
  const l = listLinks().find((x) => x.name === name);
  if (!l) throw new Error(`no interface ${name}`);
  return l.ifindex;
}

function load(file: string): BpfObject {
  const obj = BpfObject.open(path.join(FIXTURES, file));
  obj.load();
  return obj;
}

type Handler = (p: Record<string, unknown>) => unknown;
const handlers: Record<string, Handler> = {};
const objects: BpfObject[] = [];
const fds: number[] = [];

if (role === 'sink') {
  const obj = load('lb_sink.bpf.o');
  objects.push(obj);
  const opts = Buffer.alloc(32);
  opts.writeBigUInt64LE(32n, 0);
  opts.writeUInt32LE(XDP_FLAGS_DRV_MODE, 8);
  const lfd = L.bpf_link_create(obj.progFd('xdp_sink'), ifindexOf(arg), BPF_XDP, opts);
  if (lfd < 0) throw new BpfError('attaching', 'xdp_sink', -lfd, { target: arg });
  fds.push(lfd);
  const counts = obj.map('sink_count');
  const key = Buffer.alloc(4);
  handlers.count = () => ({ count: Number(counts.sumPerCpuU64(counts.lookup(key)!)) });
} else if (role === 'gen') {
  const obj = load('lb_gen.bpf.o');
  objects.push(obj);
  const runner = new XdpTestRunner(obj.progFd('xdp_gen'), 'xdp_gen');
  const ifindex = ifindexOf(arg);
  const frameMap = obj.map('gen_frame');
  handlers.send = (p) => {
    const frame = Buffer.from(String(p.frame), 'hex');
    if (frame.length !== 64) throw new Error('the generator sends 64-byte frames');
    frameMap.update(Buffer.alloc(4), frame);
    const seconds = Math.min(Number(p.seconds ?? 2), 30);
    const max = Math.min(Number(p.max ?? 50_000_000), 500_000_000);
    const batch = 65_536;
    const t0 = process.hrtime.bigint();
    const deadline = t0 + BigInt(Math.round(seconds * 1e9));
    let sent = 0;
    while (sent < max && process.hrtime.bigint() < deadline) {
      runner.run(frame, { repeat: batch, ingressIfindex: ifindex, live: true, batchSize: 64 });
      sent += batch;
    }
    return { sent, ns: Number(process.hrtime.bigint() - t0) };
  };
} else if (role === 'cost') {
  const replay = load('lb_replay.bpf.o');
  const pass = load('xdp_pass.bpf.o');
  const minDnat = load('lb_min_dnat.bpf.o');
  objects.push(replay, pass, minDnat);
  /** xdp_lb pinned under a pin path (one fd per path, kept until exit). */
  const lbFds = new Map<string, number>();
  const lbFdOf = (pin: string): number => {
    let fd = lbFds.get(pin);
    if (fd === undefined) {
      fd = L.bpf_obj_get(path.join(pin, 'progs', 'xdp_lb'));
      if (fd < 0) throw new BpfError('reopening', 'xdp_lb', -fd, { target: pin });
      lbFds.set(pin, fd);
      fds.push(fd);
    }
    return fd;
  };
  lbFdOf(arg);
  const jmp = replay.map('replay_jmp');
  // xdp_replay's `counter` (its only global): the next source port is 1024 + counter % 60000.
  const bss = replay.map('.bss'); // libbpf finds an internal map by its section name
  const frameMap = replay.map('replay_frame');
  const key0 = Buffer.alloc(4);
  const passRunner = new XdpTestRunner(pass.progFd('xdp_pass'), 'xdp_pass');
  const replayRunner = new XdpTestRunner(replay.progFd('xdp_replay'), 'xdp_replay');
  /** ns per run, median of `rounds` test runs of `repeat` each. */
  const measure = (runner: XdpTestRunner, frame: Buffer, repeat: number, rounds: number, ingressIfindex?: number) => {
    const ns: number[] = [];
    let action = '';
    for (let r = 0; r < rounds; r++) {
      const res = runner.run(frame, { repeat, ...(ingressIfindex ? { ingressIfindex } : {}) });
      ns.push(res.durationNs);
      action = res.action;
    }
    ns.sort((a, b) => a - b);
    return { ns: ns[Math.floor(ns.length / 2)]!, action };
  };
  handlers.cost = (p) => {
    const frame = Buffer.from(String(p.frame), 'hex');
    const ifindex = ifindexOf(String(p.ifname));
    const repeat = Math.min(Number(p.repeat ?? 1_000_000), 10_000_000);
    const rounds = Math.min(Number(p.rounds ?? 5), 50);
    if (frame.length !== 64) throw new Error('the replay fixture takes 64-byte frames');
    const value = Buffer.alloc(8 + 64);
    value.writeUInt32LE(64, 0);
    value.writeUInt32LE(Number(p.sportOffset ?? 0), 4);
    frame.copy(value, 8);
    frameMap.update(key0, value);
    // New flows: start the source ports where the caller says, so that repeated
    // measurements (and builds compared in turn) each meet flows their tables lack.
    if (p.sportBase !== undefined) bss.update(key0, Buffer.from(new Uint32Array([Number(p.sportBase)]).buffer));
    const fdBuf = Buffer.alloc(4);
    const run = (target: number) => {
      fdBuf.writeUInt32LE(target, 0);
      jmp.update(key0, fdBuf);
      return measure(replayRunner, frame, repeat, rounds, ifindex);
    };
    const floor = measure(passRunner, frame, repeat, rounds, ifindex);
    const replayPass = run(pass.progFd('xdp_pass'));
    const replayLb = run(p.target === 'min_dnat' ? minDnat.progFd('xdp_min_dnat') : lbFdOf(String(p.pin ?? arg)));
    return {
      passNs: floor.ns,
      replayPassNs: replayPass.ns,
      replayLbNs: replayLb.ns,
      lbNs: replayLb.ns - replayPass.ns + floor.ns,
      action: replayLb.action,
    };
  };
  /** Points the minimal DNAT fixture at a backend: { vip, port, proto, backend } (IPv4, host order ports). */
  handlers.minDnat = (p) => {
    const ip4 = (a: string) => Buffer.from(a.split('.').map(Number));
    const k = Buffer.alloc(8);
    ip4(String(p.vip)).copy(k, 0);
    k.writeUInt16BE(Number(p.port), 4);
    k[6] = Number(p.proto);
    const v = Buffer.alloc(8);
    ip4(String(p.backend)).copy(v, 0);
    v.writeUInt16BE(Number(p.port), 4);
    minDnat.map('min_dnat').update(k, v);
    return true;
  };
} else {
  throw new Error(`unknown role ${role}`);
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let req: { id: number; method: string; params?: Record<string, unknown> };
  try {
    req = JSON.parse(line);
  } catch {
    return;
  }
  try {
    if (req.method === 'exit') {
      for (const fd of fds) close(fd);
      for (const o of objects) o.close();
      send({ id: req.id, result: true });
      process.exit(0);
    }
    const h = handlers[req.method];
    if (!h) throw new Error(`no method ${req.method}`);
    send({ id: req.id, result: h(req.params ?? {}) });
  } catch (err) {
    send({ id: req.id, error: { kind: (err as Error).name, message: (err as Error).message } });
  }
});
send({ ready: true, pid: process.pid });
