// SPDX-License-Identifier: Apache-2.0
// The daemon's event path alone, per close record, without a kernel: ring-buffer records
// (as bpf/sockets.h writes them) go through the monitor's RecordEvent and the event bus to
// one subscriber that takes rows (as `ebpfmonctl events` subscribes), optionally with an
// object listener beside it (as the history, on by default, listens to close events). CPU
// time per record, geo off and on, for this build and, with --baseline DIR, for another
// checkout's build (DIR/build/js: e.g. main's, for a before/after in the same run), all
// interleaved: every repetition runs every case once, in an order that rotates.
//
// This build's events carry the owner's identity: the identity service is a stand-in that
// answers from a map (what the real one does for a cgroup it has cached), so the figure is
// the decoder's memo and row work, not the resolver's (bench/identity measures that).
//
// --queue: the subscriber is the socket's queue itself (rpc/events.ts EventQueue, one row
// batch subscription), taken in 64 KiB chunks every 1024 events and turned into the bytes the
// socket sends (a string chunk is UTF-8 encoded, as net.Socket#write does): the whole path
// from the record to the socket's buffer, as each build has it.
//
//   node build/js/bench/events/main.js [--reps 5] [--records 200000] [--baseline DIR] [--queue]
import path from 'node:path';
import Table from 'cli-table3';
import { GeoResolver } from '../../daemon/src/geo/resolver.js';
import { EV, EVENT_CLOSE, EVENT_HDR, FLOW_KEY, OWNER } from '../../daemon/src/monitor/wire.js';
import type { OwnerIdentity } from '../../daemon/src/contract/identity.js';
import { machine, median, numArg, ROOT } from '../lib/harness.js';
import { strArg } from '../lib/proc.js';

const REPS = numArg('reps', 5);
const RECORDS = numArg('records', 200_000);
const BASELINE = strArg('baseline');
const HERE = ROOT;
const QUEUE = process.argv.includes('--queue');

/** Close records from 8 processes in 3 cgroups to 200 remote hosts (a short-connection load). */
function records(): { buf: Buffer; offs: number[] } {
  const buf = Buffer.alloc(RECORDS * EVENT_CLOSE.size);
  const offs: number[] = [];
  const F = EVENT_CLOSE.fields;
  for (let i = 0; i < RECORDS; i++) {
    const o = i * EVENT_CLOSE.size;
    offs.push(o);
    buf.writeUInt16LE(EV.CLOSE, o + EVENT_HDR.fields.type.offset);
    buf.writeUInt16LE(EVENT_CLOSE.size, o + EVENT_HDR.fields.size.offset);
    buf.writeBigUInt64LE(5_000_000_000_000n + BigInt(i) * 100_000n, o + EVENT_HDR.fields.ts_ns.offset);
    const k = o + F.key.offset;
    buf[k + FLOW_KEY.fields.family.offset] = 2;
    buf[k + FLOW_KEY.fields.proto.offset] = 6;
    buf.writeUInt32BE(0xc6120101, k + FLOW_KEY.fields.laddr.offset);
    buf.writeUInt16LE(10_000 + (i % 50_000), k + FLOW_KEY.fields.lport.offset);
    // 200 public addresses (country lookups), 1.2.3.x .. : a few hosts talked to over and over
    buf.writeUInt32BE((((23 + (i % 200)) << 24) | 0x0a0b01) >>> 0, k + FLOW_KEY.fields.raddr.offset);
    buf.writeUInt16LE(443, k + FLOW_KEY.fields.rport.offset);
    const w = o + F.owner.offset;
    const pid = 1000 + (i % 8);
    buf.writeUInt32LE(pid, w + OWNER.fields.tgid.offset);
    buf.writeUInt32LE(pid, w + OWNER.fields.pid.offset);
    buf.writeUInt32LE(1000, w + OWNER.fields.uid.offset);
    buf.writeBigUInt64LE(4294967296n + BigInt(pid % 3), w + OWNER.fields.cgroup_id.offset);
    Buffer.from('connload').copy(buf, w + OWNER.fields.comm.offset);
    buf[w + OWNER.fields.how.offset] = 1;
    buf.writeBigUInt64LE(BigInt(i * 1000), o + F.tx_bytes.offset);
    buf.writeBigUInt64LE(30_000_000n, o + F.duration_ns.offset);
    buf.writeUInt32LE(2, o + F.ifindex.offset);
    buf[o + F.old_state.offset] = 4;
    buf[o + F.flow_seen.offset] = 1;
  }
  return { buf, offs };
}

/** Two builds' modules, loaded by path (untyped: they need not match this tree). */
interface Build { name: string; bus: any; records: any; geo: any; owners: any; rpcEvents: any; main: boolean }

async function load(name: string, root: string): Promise<Build> {
  const js = (p: string) => import(path.join(root, 'build/js', p));
  const bus = await js('daemon/src/events/bus.js');
  // A build before events carried identity has no owners.js and no setRemoteGeo.
  const main = !('setRemoteGeo' in bus.EventBus.prototype);
  return { name, bus, rpcEvents: await js('daemon/src/rpc/events.js'), records: await js('daemon/src/monitor/records.js'), geo: await js('daemon/src/api/geo.js'), owners: main ? null : await js('daemon/src/monitor/owners.js'), main };
}

interface Case { build: Build; geo: boolean; objects: boolean }

/** CPU ms to publish every record to the case's subscribers. */
function run(c: Case, resolver: GeoResolver, data: { buf: Buffer; offs: number[] }): number {
  const owners = new Map<string, OwnerIdentity>();
  const identityOf = (cg: string): OwnerIdentity => {
    let id = owners.get(cg);
    if (!id) owners.set(cg, (id = Object.freeze({ cgroupPath: `/system.slice/load${cg}.service`, unit: `load${cg}.service`, userUnit: null, slice: 'system.slice', container: null, app: null })));
    return id;
  };
  const bus = new c.build.bus.EventBus();
  const ctx: Record<string, unknown> = { toMsAt: (v: DataView, off: number) => 1_790_000_000_000 + Number(v.getBigUint64(off, true) / 1_000_000n), ifname: () => 'veth0' };
  if (c.build.main) {
    // main's app.ts sets the enricher whether geo is on or not (enrichEvent with a null resolver).
    bus.setEnricher((e: unknown) => c.build.geo.enrichEvent(c.geo ? resolver : null, e));
  } else {
    bus.setRemoteGeo(c.geo ? (a: string) => c.build.geo.remoteGeoOf(resolver, a) : null);
    const { OwnerMemo } = c.build.owners;
    ctx.remoteGeo = (a: string) => bus.remoteGeo(a);
    ctx.owners = new OwnerMemo((cg: string) => identityOf(cg));
    ctx.cgroupOfPid = () => null;
  }
  const rec = new c.build.records.RecordEvent(ctx);
  const rows: string[] = [];
  let bytes = 0;
  if (QUEUE) {
    const q = new c.build.rpcEvents.EventQueue();
    const sub = { id: '5f0c6d2e-9a51-4c1b-8d07-2b1f3a7e6c44', batch: true, encoding: 'row', lost: 0 };
    bus.subscribeEvents((e: { row(): string; type: string }) => {
      if (q.pushEvent) q.pushEvent(sub, e);
      else q.push(sub, e.row(), e.type);
      if (q.length >= 1024) {
        while (!q.empty) {
          const chunk: string | Buffer = q.take(64 * 1024);
          bytes += typeof chunk === 'string' ? Buffer.from(chunk, 'utf8').length : chunk.length;
          if (typeof chunk !== 'string' && q.recycle) q.recycle(chunk); // as the socket's write callback does
        }
      }
    }, ['close']);
  } else {
    bus.subscribeEvents((e: { row(): string }) => {
      // as the socket queues it: the row, flattened (rpc/server.ts), written every 1024
      const r = e.row();
      bytes += r.length;
      rows.push(r);
      if (rows.length >= 1024) rows.length = 0;
    }, ['close']);
  }
  let sink = 0;
  if (c.objects) bus.subscribe((e: { txBytes: number; unit?: string | null }) => (sink += e.txBytes), ['close']);
  const v = new DataView(data.buf.buffer, data.buf.byteOffset, data.buf.byteLength);
  const t0 = process.cpuUsage();
  for (const off of data.offs) bus.publishEvent(rec.set(v, off, EVENT_CLOSE.size, EV.CLOSE, 'close'));
  const t = process.cpuUsage(t0);
  if (bytes === 0 || (c.objects && sink === 0)) throw new Error('nothing delivered');
  return (t.user + t.system) / 1000;
}

async function main(): Promise<void> {
  const builds = [await load('this build', HERE)];
  if (BASELINE) builds.push(await load(`baseline ${path.basename(path.resolve(BASELINE))}`, path.resolve(BASELINE)));
  const resolver = await GeoResolver.open({});
  const data = records();
  const cases: Case[] = builds.flatMap((build) => [false, true].flatMap((objects) => [false, true].map((geo) => ({ build, geo, objects }))));
  const times = new Map<Case, number[]>(cases.map((c) => [c, []]));
  for (const c of cases) run(c, resolver, data); // warm up every path once
  for (let rep = 0; rep < REPS; rep++) {
    for (let i = 0; i < cases.length; i++) {
      const c = cases[(i + rep) % cases.length]!;
      times.get(c)!.push(run(c, resolver, data));
    }
  }
  const table = new Table({ head: ['build', 'subscribers', 'geo', 'CPU ns per close record, median (min..max)', 'vs geo off'], style: { head: [], border: [] } });
  const ns = (c: Case) => times.get(c)!.map((ms) => (ms * 1e6) / RECORDS);
  for (const c of cases) {
    const off = cases.find((x) => x.build === c.build && x.objects === c.objects && !x.geo)!;
    const xs = ns(c);
    table.push([c.build.name, c.objects ? '1 row subscriber + an object listener (history)' : '1 row subscriber', c.geo ? 'on' : 'off',
      `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}..${Math.max(...xs).toFixed(0)})`, c.geo ? (median(xs) / median(ns(off))).toFixed(2) : '']);
  }
  console.log(`bench/events - ${machine()}`);
  console.log(`${RECORDS} close records (8 pids, 3 cgroups, 200 remote addresses) through RecordEvent and the EventBus${QUEUE ? ' into the socket\'s queue, taken as the socket\'s bytes' : ''}; ${REPS} repetitions, cases interleaved; process CPU time.`);
  console.log(table.toString());
  if (BASELINE) {
    for (const objects of [false, true]) for (const geo of [false, true]) {
      const a = cases.find((c) => c.build === builds[0] && c.objects === objects && c.geo === geo)!;
      const b = cases.find((c) => c.build === builds[1] && c.objects === objects && c.geo === geo)!;
      console.log(`${objects ? 'row + object' : 'row only'}, geo ${geo ? 'on' : 'off'}: this build / baseline = ${(median(ns(a)) / median(ns(b))).toFixed(2)}`);
    }
  }
  resolver.close();
}

await main();
