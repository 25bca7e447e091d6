// SPDX-License-Identifier: Apache-2.0
// Capture sessions without the daemon's API (which issue 13's RPC wiring will provide):
// runs next to a daemon, in its network namespace, on the daemon's pinned capture maps,
// with the capture modules exactly as the daemon will use them (CaptureEngine,
// PerfRingReader, CaptureStream). The capture tests and bench/capture drive it.
//
//   node capture-agent.js '<json>'   {pinPath, objectDir, sessions: [{out, expression,
//                                    tgids?, uids?, comms?, ifnames?, direction?, snaplen?,
//                                    count?}], statsEveryMs?}
// Prints one JSON line {"ready": [slots]} once every session is live; on SIGTERM or SIGINT
// (or when every session reached its count) drains, writes the statistics blocks, and
// prints {"done": [{slot, packets, counters, ringLost, unknownInterface}]}.
import fs from 'node:fs';
import path from 'node:path';
import { BpfMap } from '../../daemon/src/bpf/maps.js';
import { CaptureEngine, type CaptureMaps, type SessionSpec } from '../../daemon/src/capture/engine.js';
import { PerfRingReader } from '../../daemon/src/capture/perfbuf.js';
import { CaptureStream } from '../../daemon/src/capture/stream.js';
import { TimeBase } from '../../daemon/src/capture/timebase.js';
import { CAP_MAPS } from '../../daemon/src/capture/wire.js';
import { procDetails } from '../../daemon/src/capture/procinfo.js';
import { writevAll } from '../../daemon/src/capture/pcapng.js';
import { listLinks } from '../../daemon/src/net/netlink.js';

interface AgentSession {
  out: string;
  expression: string;
  tgids?: number[];
  uids?: number[];
  comms?: string[];
  ifnames?: string[];
  direction?: 'in' | 'out';
  snaplen?: number;
  count?: number;
}
interface AgentConfig {
  pinPath: string;
  objectDir: string;
  sessions: AgentSession[];
  statsEveryMs?: number;
  pageCnt?: number;
  /** Longest a packet waits in a ring below the wake-up watermark (ms). */
  maxDelayMs?: number;
  /** Writes a CPU profile of the agent here on exit (bench/capture --profile). */
  cpuProfDir?: string;
}

const cfg = JSON.parse(process.argv[2]!) as AgentConfig;
let profiler: import('node:inspector').Session | null = null;
const pin = (name: string) => BpfMap.fromPin(path.join(cfg.pinPath, 'maps', name), name);
const maps: CaptureMaps = {
  meta: pin(CAP_MAPS.meta), progs: pin(CAP_MAPS.progs), conf: pin(CAP_MAPS.conf), sessions: pin(CAP_MAPS.sessions),
  stats: pin(CAP_MAPS.stats), events: pin(CAP_MAPS.events), ifaces: pin('emon_ifaces'),
};
const links = new Map(listLinks().map((l) => [l.ifindex, l.name] as const));
const byName = new Map([...links].map(([i, n]) => [n, i] as const));
const engine = CaptureEngine.open(maps, cfg.objectDir);
const timebase = new TimeBase();
const reader = new PerfRingReader(maps.events.fd, cfg.pageCnt ?? 1024);

const running = cfg.sessions.map((s) => {
  const ifindexes = (s.ifnames ?? []).map((n) => {
    const i = byName.get(n);
    if (i === undefined) throw new Error(`no interface ${n}`);
    return i;
  });
  const spec: SessionSpec = { kind: 'capture', expression: s.expression, snaplen: s.snaplen, ifindexes, direction: s.direction, tgids: s.tgids, uids: s.uids, comms: s.comms };
  const active = engine.add(spec);
  const fd = fs.openSync(s.out, 'w');
  // A file: gather writes straight from the perf rings (see PcapngWriter).
  const stream = new CaptureStream({ write: (b) => (fs.writeSync(fd, b), true), writevSync: (parts) => writevAll(fs, fd, parts) }, {
    slot: active.slot, snaplen: active.spec.snaplen!, filter: s.expression, timebase, count: s.count,
    interfaceOf: (ifindex) => {
      const l2 = engine.l2Len(ifindex);
      const name = links.get(ifindex);
      return l2 === null || name === undefined ? undefined : { ifindex, name, l2Len: l2 };
    },
    describe: procDetails,
  });
  return { slot: active.slot, fd, stream };
});

const releaseAll = (): void => {
  for (const r of running) r.stream.writer.release();
};
const counters = (slot: number) => {
  const k = engine.counters(slot);
  return { ...k, ringLost: reader.stats.lost };
};
let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  clearInterval(stats);
  while (reader.drain(onSample, 1000, releaseAll) > 0);
  for (const r of running) {
    r.stream.statistics(counters(r.slot));
    r.stream.writer.flush();
    fs.closeSync(r.fd);
  }
  const done = running.map((r) => ({ slot: r.slot, packets: r.stream.packets, counters: counters(r.slot), unknownInterface: r.stream.unknownInterface }));
  reader.close();
  engine.close();
  const finish = () => {
    process.stdout.write(`${JSON.stringify({ done })}\n`);
    process.exit(0);
  };
  if (!profiler) return finish();
  profiler.post('Profiler.stop', (err, r) => {
    if (!err) fs.writeFileSync(path.join(cfg.cpuProfDir!, `agent-${process.pid}.cpuprofile`), JSON.stringify(r.profile));
    finish();
  });
};
const onSample = (buf: Buffer, u32: Uint32Array, off: number, len: number): void => {
  let all = true;
  for (const r of running) {
    r.stream.onRecord(buf, u32, off, len);
    all &&= r.stream.done;
  }
  if (all && !stopping) setImmediate(stop);
};
const stats = setInterval(() => {
  for (const r of running) {
    r.stream.statistics(counters(r.slot));
  }
}, cfg.statsEveryMs ?? 5000);
// Profiling starts once every program is loaded: V8 samples with SIGPROF, and a signal
// that arrives while the verifier works makes the load fail with EAGAIN.
if (cfg.cpuProfDir) {
  const inspector = await import('node:inspector');
  profiler = new inspector.Session();
  profiler.connect();
  profiler.post('Profiler.enable');
  profiler.post('Profiler.start');
}
reader.start(onSample, { maxDelayMs: cfg.maxDelayMs ?? 50, beforeRelease: releaseAll });
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdout.write(`${JSON.stringify({ ready: running.map((r) => r.slot) })}\n`);
