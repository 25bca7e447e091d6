// SPDX-License-Identifier: Apache-2.0
// Runs inside a lab namespace (nsenter --net): loads the L7 classifier prototype and the L7
// object (daemon/src/l7/kernel.ts), attaches the classifier to one interface (and the DNS
// tap to lo), reads the L7 ring through the pipeline and prints one JSON line per DNS query,
// HTTP exchange and TLS hello (metadata only: paths and names, never bodies). SIGTERM:
// flush, print counters, detach, exit. What the daemon will do, minus the daemon.
//   node l7-driver.js <ifname> [keepQuery]
import path from 'node:path';
import { L7Kernel } from '../../daemon/src/l7/kernel.js';
import { L7Pipeline } from '../../daemon/src/l7/pipeline.js';
import { ResolverCache } from '../../daemon/src/l7/dns/cache.js';
import { RingBufReader } from '../../daemon/src/bpf/ringbuf.js';
import { attachTc, detachTc, ensureClsact, destroyClsact } from '../../daemon/src/bpf/tc.js';
import { listLinks } from '../../daemon/src/net/netlink.js';
import { clockNs, CLOCK_BOOTTIME } from '../../daemon/src/sys/libc.js';
import { ROOT } from '../helpers/cc.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { cgroup2Root } from '../../daemon/src/sys/mounts.js';
import fs from 'node:fs';

const [ifname, keepQuery] = process.argv.slice(2);
const links = listLinks();
const link = links.find((l) => l.name === ifname);
const lo = links.find((l) => l.name === 'lo');
if (!link || !lo) throw new Error(`no interface ${ifname}`);
const id = { handle: 0xeb17, priority: 1 };
const k = L7Kernel.load({ objectDir: path.join(ROOT, 'build/bpf'), classifierFile: 'fixtures/flows_l7.bpf.o' });
const v = Buffer.alloc(8);
v.writeUInt32LE(link.ifindex, 0);
v.writeUInt16LE(14, 4);
const slot = Buffer.alloc(4);
slot.writeUInt32LE(link.ifindex & 1023);
k.classifier.map('emon_ifaces').update(slot, v);
k.setSwitches({ dns: true, http: true, tls: true });
// Socket owners (bpf/sockets.bpf.o's cgroup hooks, sharing the classifier's maps), so that
// records carry the process: creator, connector, sender.
const sockets = BpfObject.open(path.join(ROOT, 'build/bpf/sockets.bpf.o'));
for (const m of sockets.mapNames()) if (k.classifier.mapNames().includes(m)) sockets.reuseMap(m, k.classifier.map(m).fd);
const ownerProgs = ['handle_sock_create', 'handle_connect4', 'handle_connect6', 'handle_sendmsg4', 'handle_sendmsg6', 'handle_post_bind4', 'handle_post_bind6'];
for (const p of sockets.programs()) sockets.setAutoload(p.name, ownerProgs.includes(p.name));
sockets.load();
const cgfd = fs.openSync(cgroup2Root()!, 'r');
const cgLinks = ownerProgs.map((p) => {
  const l = L.bpf_program__attach_cgroup(sockets.program(p), cgfd);
  if (l === null) throw new Error(`attaching ${p} failed`);
  return l;
});
fs.closeSync(cgfd);
const bootOffMs = Date.now() - Number(clockNs(CLOCK_BOOTTIME) / 1_000_000n);
const cache = new ResolverCache();
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const pipe = new L7Pipeline({
  cache, keepQuery: keepQuery === 'keepQuery', wallMs: (ts) => bootOffMs + ts / 1e6,
  sinks: { dns: (r) => out({ event: 'dns', ...r }), http: (e) => out({ event: 'http', ...e }), tls: (e) => out({ event: 'tls', ...e }) },
});
const ring = new RingBufReader(k.classifier.map('emon_l7_events'), pipe.onRecord, { coalesceMs: 1 });
ensureClsact(link.ifindex, link.name);
ensureClsact(lo.ifindex, 'lo');
attachTc(link.ifindex, link.name, 'ingress', 'tc_ingress', k.progFd('tc_ingress'), id);
attachTc(link.ifindex, link.name, 'egress', 'tc_egress', k.progFd('tc_egress'), id);
attachTc(lo.ifindex, 'lo', 'egress', 'tc_l7_tap', k.progFd('tc_l7_tap'), id);
ring.start();
const timer = setInterval(() => pipe.sweep(Number(clockNs(CLOCK_BOOTTIME))), 1000);
out({ event: 'ready' });
process.on('SIGTERM', () => {
  clearInterval(timer);
  while (ring.pendingBytes() > 0) ring.drain();
  pipe.flush(Number(clockNs(CLOCK_BOOTTIME)));
  out({ event: 'stats', kernel: k.stats(), counters: pipe.counters, cache: cache.stats() });
  for (const d of ['ingress', 'egress'] as const) detachTc(link.ifindex, d, id);
  detachTc(lo.ifindex, 'egress', id);
  destroyClsact(lo.ifindex);
  destroyClsact(link.ifindex);
  ring.close();
  for (const l of cgLinks) L.bpf_link__destroy(l);
  sockets.close();
  k.close();
  process.exit(0);
});
