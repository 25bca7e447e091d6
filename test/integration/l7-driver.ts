// SPDX-License-Identifier: Apache-2.0
// Runs inside a lab namespace (nsenter --net): what the daemon will do for the application
// layer, minus the daemon. Loads the L7 classifier prototype and the L7 object
// (daemon/src/l7/kernel.ts), the socket-owner hooks, the exec tracepoint and the OpenSSL
// uprobes (daemon/src/l7/ssl/), attaches the classifier to one interface (and the DNS tap
// to lo), and feeds the rings to an L7Service. Prints one JSON line per event in the
// contract's shapes (`dns`, `http`; `tls` hellos), never payload. Commands on stdin, one
// JSON line each: {"cmd":"status"} -> {"type":"status","l7":L7Status};
// {"cmd":"flows"} -> {"type":"flows","flows":[{...key, pid, remoteName, serverName}]}.
// With --api PATH it serves dns.list/http.list (api/l7.ts) on a Unix socket, one JSON
// request {"method","params"} per connection, the caller known by SO_PEERCRED as the
// daemon's JSON-RPC server knows it. SIGTERM: flush, print counters, detach, exit.
//   node l7-driver.js <ifname> [--keep-query] [--api PATH] [--no-tls]
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { L7Kernel, l7Counters } from '../../daemon/src/l7/kernel.js';
import { L7Service } from '../../daemon/src/l7/service.js';
import { SslProbes, SSL_MAP } from '../../daemon/src/l7/ssl/probes.js';
import { TlsHooks } from '../../daemon/src/l7/ssl/hooks.js';
import { decodeKey } from '../../daemon/src/l7/wire.js';
import { l7Methods } from '../../daemon/src/api/l7.js';
import { toApiError } from '../../daemon/src/api/errors.js';
import { peerCaller } from '../../daemon/src/rpc/server.js';
import { RingBufReader } from '../../daemon/src/bpf/ringbuf.js';
import { attachTc, detachTc, ensureClsact, destroyClsact } from '../../daemon/src/bpf/tc.js';
import { listLinks } from '../../daemon/src/net/netlink.js';
import { clockNs, CLOCK_BOOTTIME } from '../../daemon/src/sys/libc.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { cgroup2Root } from '../../daemon/src/sys/mounts.js';
import { EV, EVENT_EXEC, FLOW, OWNER } from '../../daemon/src/monitor/wire.js';
import { ROOT } from '../helpers/cc.js';

const args = process.argv.slice(2);
const ifname = args[0]!;
const keepQuery = args.includes('--keep-query');
const withTls = !args.includes('--no-tls');
const apiPath = args.includes('--api') ? args[args.indexOf('--api') + 1]! : null;
const links = listLinks();
const link = links.find((l) => l.name === ifname);
const lo = links.find((l) => l.name === 'lo');
if (!link || !lo) throw new Error(`no interface ${ifname}`);
const id = { handle: 0xeb17, priority: 1 };
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

const k = L7Kernel.load({ objectDir: path.join(ROOT, 'build/bpf'), classifierFile: 'fixtures/flows_l7.bpf.o' });
const ifv = Buffer.alloc(8);
ifv.writeUInt32LE(link.ifindex, 0);
ifv.writeUInt16LE(14, 4);
const slot = Buffer.alloc(4);
slot.writeUInt32LE(link.ifindex & 1023);
k.classifier.map('emon_ifaces').update(slot, ifv);
k.setSwitches({ dns: true, http: true, tls: true });

// Socket owners (bpf/sockets.bpf.o's cgroup hooks) and exec events (bpf/procs.bpf.o),
// sharing the classifier's maps.
const share = (o: BpfObject) => {
  for (const m of o.mapNames()) if (k.classifier.mapNames().includes(m)) o.reuseMap(m, k.classifier.map(m).fd);
};
const sockets = BpfObject.open(path.join(ROOT, 'build/bpf/sockets.bpf.o'));
share(sockets);
const ownerProgs = ['handle_sock_create', 'handle_connect4', 'handle_connect6', 'handle_sendmsg4', 'handle_sendmsg6', 'handle_post_bind4', 'handle_post_bind6'];
for (const p of sockets.programs()) sockets.setAutoload(p.name, ownerProgs.includes(p.name));
sockets.load();
const cgfd = fs.openSync(cgroup2Root()!, 'r');
const attached: L.Ptr[] = ownerProgs.map((p) => {
  const l = L.bpf_program__attach_cgroup(sockets.program(p), cgfd);
  if (l === null) throw new Error(`attaching ${p} failed`);
  return l;
});
fs.closeSync(cgfd);
const procs = BpfObject.open(path.join(ROOT, 'build/bpf/procs.bpf.o'));
share(procs);
for (const p of procs.programs()) procs.setAutoload(p.name, p.name === 'handle_exec');
procs.load();
const execLink = L.bpf_program__attach_tracepoint(procs.program('handle_exec'), 'sched', 'sched_process_exec');
if (execLink === null) throw new Error('attaching handle_exec failed');
attached.push(execLink);

const ssl = withTls ? SslProbes.load({ objectFile: path.join(ROOT, 'build/bpf/ssl.bpf.o'), shareFrom: k.classifier }) : null;
const hooks = ssl ? new TlsHooks({ probes: ssl }) : null;
const bootOffMs = Date.now() - Number(clockNs(CLOCK_BOOTTIME) / 1_000_000n);
const service = new L7Service({
  switches: { dns: true, http: true, tls: withTls, keepQuery },
  wallMs: (ns) => bootOffMs + ns / 1e6,
  kernelCounters: () => l7Counters([k.classifier.map('emon_l7_stats'), ...(ssl ? [ssl.obj.map(SSL_MAP.stats)] : [])]),
  hooks,
  // The daemon's process table names processes; here /proc does (a process already gone has none).
  comm: (pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      return undefined;
    }
  },
  tlsSocketsUnavailable: ssl?.socketsUnavailable ?? null,
  publish: (e) => out(e),
  onTls: (e) => out({ type: 'tls', ...e }),
});

const rings = [
  new RingBufReader(k.classifier.map('emon_l7_events'), service.onRecord, { coalesceMs: 1 }),
  ...(ssl ? [new RingBufReader(ssl.obj.map(SSL_MAP.events), service.onRecord, { coalesceMs: 1 })] : []),
  new RingBufReader(k.classifier.map('emon_events'), (v, off, len) => {
    if (len >= 24 && v.getUint16(off, true) === EV.EXEC) hooks?.onExec(v.getUint32(off + EVENT_EXEC.fields.tgid.offset, true));
  }, { coalesceMs: 1 }),
];
hooks?.start();
ensureClsact(link.ifindex, link.name);
ensureClsact(lo.ifindex, 'lo');
attachTc(link.ifindex, link.name, 'ingress', 'tc_ingress', k.progFd('tc_ingress'), id);
attachTc(link.ifindex, link.name, 'egress', 'tc_egress', k.progFd('tc_egress'), id);
attachTc(lo.ifindex, 'lo', 'egress', 'tc_l7_tap', k.progFd('tc_l7_tap'), id);
for (const r of rings) r.start();
const timer = setInterval(() => service.tick(Number(clockNs(CLOCK_BOOTTIME))), 1000);

function flows(): unknown[] {
  const res: unknown[] = [];
  const nowMs = Date.now();
  k.classifier.map('emon_flows').forEachChunk((c) => {
    for (let i = 0; i < c.count; i++) {
      const kb = c.keys.subarray(i * 40, i * 40 + 40);
      const key = decodeKey(new DataView(kb.buffer, kb.byteOffset, 40), 0);
      const vo = i * FLOW.size + FLOW.fields.owner.offset;
      const pid = c.values.readUInt32LE(vo + OWNER.fields.tgid.offset) || null;
      res.push({ ...key, pid, ...service.store.flowFields({ ...key, pid }, nowMs) });
    }
  });
  return res;
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = (JSON.parse(line) as { cmd: string }).cmd;
  if (cmd === 'status') out({ type: 'status', l7: service.status() });
  else if (cmd === 'flows') out({ type: 'flows', flows: flows() });
});

let apiServer: net.Server | null = null;
if (apiPath) {
  const methods = l7Methods(service);
  apiServer = net.createServer((s) => {
    const caller = peerCaller(s, { seeAll: null, admin: null });
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', async (d: string) => {
      buf += d;
      if (!buf.includes('\n')) return;
      const req = JSON.parse(buf.slice(0, buf.indexOf('\n'))) as { method: keyof typeof methods; params?: unknown };
      try {
        if (!caller) throw new Error('no peer credentials');
        const m = methods[req.method];
        const result = await m.run(m.validate(req.params, caller) as never, caller);
        s.end(`${JSON.stringify({ result })}\n`);
      } catch (err) {
        const { error } = toApiError(err);
        s.end(`${JSON.stringify({ error: { name: error.kind, code: error.code, message: error.message, data: error.data } })}\n`);
      }
    });
    s.on('error', () => undefined);
  });
  apiServer.listen(apiPath, () => fs.chmodSync(apiPath, 0o666));
}
out({ type: 'ready', tlsLibraries: hooks?.status().tlsLibraries.length ?? 0 });

process.on('SIGTERM', () => {
  clearInterval(timer);
  for (const r of rings) while (r.pendingBytes() > 0) r.drain();
  service.flush(Number(clockNs(CLOCK_BOOTTIME)));
  out({ type: 'stats', l7: service.status(), counters: service.pipeline.counters, cache: service.cache.stats() });
  apiServer?.close();
  for (const d of ['ingress', 'egress'] as const) detachTc(link.ifindex, d, id);
  detachTc(lo.ifindex, 'egress', id);
  destroyClsact(lo.ifindex);
  destroyClsact(link.ifindex);
  for (const r of rings) r.close();
  hooks?.stop();
  ssl?.close();
  for (const l of attached) L.bpf_link__destroy(l);
  procs.close();
  sockets.close();
  k.close();
  process.exit(0);
});
