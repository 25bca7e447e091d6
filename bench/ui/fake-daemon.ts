// SPDX-License-Identifier: Apache-2.0
// A stand-in for the daemon's socket that serves synthetic live flows, so that bench/ui can
// load `ebpfmonctl ui` (the real client, over a real Unix socket) with 1,000 or 10,000
// flows that change every second, without a kernel producing them. Same JSON-RPC methods
// and shapes as the daemon (daemon/src/contract): status (version and geo only), flows.list with `remoteGeo`,
// processes.list with `places`, events.subscribe / events.unsubscribe with events.event
// notifications. Flows are spread over 2,000 places.
//
//   node build/js/bench/ui/fake-daemon.js SOCKET FLOWS [--events-per-sec N]
//
// Prints "ready" once listening.
import fs from 'node:fs';
import net from 'node:net';
import { JSONRPCServer } from 'json-rpc-2.0';
import type { Flow, ProcessTotals } from '../../daemon/src/contract/flows.js';
import type { ProcessPlace } from '../../daemon/src/contract/geo.js';
import { METHODS, NOTIFICATIONS } from '../../daemon/src/contract/methods.js';

const [socketPath, flowsArg] = process.argv.slice(2);
const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
if (!socketPath || !flowsArg) {
  console.error('usage: fake-daemon.js SOCKET FLOWS [--events-per-sec N]');
  process.exit(2);
}
const N = Number(flowsArg);
const eventsPerSec = Number(arg('events-per-sec') ?? 20);

// Deterministic pseudo-random numbers (xorshift32): every run serves the same flows.
let seed = 0x12345678;
const rnd = () => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x100000000;
};

const PROCS = 60;
const COMMS = ['firefox', 'chromium', 'curl', 'apt', 'ssh', 'node', 'python3', 'git', 'thunderbird', 'signal-desktop', 'spotify', 'steam'];
const COUNTRIES = ['US', 'DE', 'FR', 'GB', 'NL', 'JP', 'BR', 'IN', 'AU', 'CA', 'SE', 'SG', 'ZA', 'IE', 'FI', 'KR', 'ES', 'IT', 'PL', 'CH'];
const PLACES = Array.from({ length: 2000 }, (_, i) => ({ lat: Math.round((rnd() * 140 - 60) * 1e4) / 1e4, lon: Math.round((rnd() * 360 - 180) * 1e4) / 1e4, city: `City ${i}`, country: COUNTRIES[i % COUNTRIES.length]! }));

const start = Date.now();
const iso = (ms: number) => new Date(ms).toISOString();
const flows: Flow[] = [];
for (let i = 0; i < N; i++) {
  const p = Math.floor(rnd() * rnd() * PROCS); // a few processes have most flows, as on a desktop
  const place = PLACES[Math.floor(rnd() * rnd() * PLACES.length)]!;
  const remote = `${1 + Math.floor(rnd() * 222)}.${Math.floor(rnd() * 256)}.${Math.floor(rnd() * 256)}.${1 + Math.floor(rnd() * 254)}`;
  flows.push({
    protocol: rnd() < 0.85 ? 'tcp' : 'udp', family: 'ipv4', localAddr: '192.0.2.10', localPort: 32768 + (i % 28000), remoteAddr: remote, remotePort: [443, 80, 22, 53, 993][i % 5]!,
    direction: 'outbound', interface: 'eth0', pid: 1000 + p, tid: 1000 + p, comm: COMMS[p % COMMS.length]!, uid: 1000, gid: 1000, cgroupId: null, attributedBy: 'connect', cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null,
    ppid: 1, exe: null, state: 'established', tcpFlags: { tx: ['SYN', 'ACK'], rx: ['SYN', 'ACK'] }, txBytes: Math.floor(rnd() * 1e6), rxBytes: Math.floor(rnd() * 1e7),
    txPackets: 10, rxPackets: 10, fragments: 0, ipOptions: false, ipv6ExtHeaders: false, firstSeenAt: iso(start - Math.floor(rnd() * 3.6e6)), lastSeenAt: iso(start), closedAt: null, remoteName: null, serverName: null, tlsVersion: null, http: null,
    remoteGeo: { country: place.country, city: place.city, lat: place.lat, lon: place.lon, asn: 64496 + (i % 100), org: `Example AS ${i % 100}`, label: null },
  });
}

// Every second about a third of the flows carry more traffic.
setInterval(() => {
  const now = iso(Date.now());
  for (let i = 0; i < N; i++) {
    if (rnd() < 0.33) {
      const f = flows[i]!;
      f.txBytes += Math.floor(rnd() * 20_000);
      f.rxBytes += Math.floor(rnd() * 200_000);
      f.txPackets += 5;
      f.rxPackets += 20;
      f.lastSeenAt = now;
    }
  }
}, 1000).unref();

/** Per-process totals with their busiest places, grouped by coordinates as the daemon
 * does (daemon/src/api/geo.ts placesOf). */
function processes(nPlaces: number): ProcessTotals[] {
  const m = new Map<number, ProcessTotals & { byPlace: Map<string, ProcessPlace> }>();
  for (const f of flows) {
    let p = m.get(f.pid!);
    if (!p) m.set(f.pid!, (p = { pid: f.pid, comm: f.comm, uid: f.uid, exe: null, cgroupId: null, cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null, flows: 0, openFlows: 0, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, lastSeenAt: f.lastSeenAt, places: [], http: null, byPlace: new Map() }));
    p.flows++;
    p.openFlows++;
    p.txBytes += f.txBytes;
    p.rxBytes += f.rxBytes;
    p.txPackets += f.txPackets;
    p.rxPackets += f.rxPackets;
    const g = f.remoteGeo!;
    const k = `${g.lat},${g.lon}`;
    let pl = p.byPlace.get(k);
    if (!pl) p.byPlace.set(k, (pl = { country: g.country, city: g.city, lat: g.lat, lon: g.lon, label: null, asn: g.asn, org: g.org, remoteAddr: f.remoteAddr, flows: 0, txBytes: 0, rxBytes: 0 }));
    pl.flows++;
    pl.txBytes += f.txBytes;
    pl.rxBytes += f.rxBytes;
  }
  const size = (x: { txBytes: number; rxBytes: number }) => x.txBytes + x.rxBytes;
  return [...m.values()]
    .map(({ byPlace, ...p }) => ({ ...p, places: [...byPlace.values()].sort((a, b) => size(b) - size(a)).slice(0, nPlaces) }))
    .sort((a, b) => size(b) - size(a));
}

const server = net.createServer((sock) => {
  const rpc = new JSONRPCServer();
  const subs = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  const notify = (method: string, params: object) => sock.writable && sock.write(`${JSON.stringify({ jsonrpc: '2.0', method, params })}\n`);
  rpc.addMethod(METHODS.flowsList, (p: { limit?: number }) => {
    const limit = Math.min(p?.limit ?? 1000, 100_000);
    return { flows: flows.slice(0, limit), total: N, matched: N };
  });
  // What `ebpfmonctl ui` reads at start: the version and the geo section (databases for the
  // page's footer, home). Only those fields; the bench never reads the rest.
  rpc.addMethod(METHODS.status, () => ({
    version: 'bench', geo: { enabled: true, databases: [{ path: 'fake', source: 'user', databaseType: 'bench-city', buildEpoch: iso(start), ipVersion: 6, nodeCount: 0, sizeBytes: 0, loadedAt: iso(start) }], cache: { lookups: 0, cacheMisses: 0, cached: 0, cacheMax: 0 }, reloads: 0, reloadErrors: 0, error: null, home: null },
  }));
  rpc.addMethod(METHODS.processesList, (p: { places?: number }) => ({ processes: processes(p?.places ?? 5) }));
  rpc.addMethod(METHODS.eventsSubscribe, () => {
    const id = `s${subs.size + 1}`;
    subs.add(id);
    let k = 0;
    if (N === 0) return { subscription: id };
    timer ??= setInterval(() => {
      const f = flows[k++ % N]!;
      const base = { at: iso(Date.now()), pid: f.pid, uid: f.uid, comm: f.comm, protocol: f.protocol, family: f.family, localAddr: f.localAddr, localPort: f.localPort!, remoteAddr: f.remoteAddr, remotePort: f.remotePort!, attributedBy: f.attributedBy, remoteGeo: f.remoteGeo };
      for (const s of subs) notify(NOTIFICATIONS.event, { subscription: s, event: { ...base, type: 'connect', tid: f.tid } });
    }, Math.max(1, Math.round(1000 / eventsPerSec)));
    return { subscription: id };
  });
  rpc.addMethod(METHODS.eventsUnsubscribe, (p: { subscription: string }) => {
    subs.delete(p.subscription);
    return {};
  });
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      void rpc.receiveJSON(line).then((resp) => {
        if (resp && sock.writable) sock.write(`${JSON.stringify(resp)}\n`);
      });
    }
  });
  const end = () => {
    if (timer) clearInterval(timer);
  };
  sock.on('close', end);
  sock.on('error', end);
});
fs.rmSync(socketPath, { force: true });
server.listen(socketPath, () => console.log('ready'));
process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
