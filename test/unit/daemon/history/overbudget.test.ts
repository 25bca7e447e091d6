// SPDX-License-Identifier: Apache-2.0
// History (event loop and the real writer thread) fed far more closes than its detail
// budget: beyond it closes are summed on the event loop (overbudget.ts) and reach the writer
// as one row per process, protocol, family, minute and remote endpoint (the first 32
// endpoints of a process per hand-over; the rest in one row without). Checked against the sums this test
// computes from the flows it fed: totals, connections (each flow once), and the flows the
// writer tracks, whose closes must add only what they gained since their open records:
// flows listed while open, a flow a listing showed closed before its close event, and,
// after a restart, flows the writer restored from its file (first seen before the event
// loop's horizon; summing their whole counts again would count them twice).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { History } from '../../../../daemon/src/history/history.js';
import { CloseRollups, endpointsPerHandover, REMOTES_PER_PROCESS } from '../../../../daemon/src/history/overbudget.js';
import { emptyObservation } from '../../../../daemon/src/history/feed.js';
import { ObservationPacker, OP, ROW } from '../../../../daemon/src/history/pack.js';
import { parseHistoryQuery } from '../../../../daemon/src/history/query.js';
import type { FlowObservation } from '../../../../daemon/src/history/types.js';

interface Sums { txBytes: number; rxBytes: number; txPackets: number; rxPackets: number; connections: number }
const zero = (): Sums => ({ txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, connections: 0 });
function add(s: Sums, f: Pick<FlowObservation, 'txBytes' | 'rxBytes' | 'txPackets' | 'rxPackets'>, conns = 1): void {
  s.txBytes += f.txBytes;
  s.rxBytes += f.rxBytes;
  s.txPackets += f.txPackets;
  s.rxPackets += f.rxPackets;
  s.connections += conns;
}

const PROCS = [
  { pid: 200, comm: 'nginx', uid: 33 },
  { pid: 300, comm: 'curl', uid: 1000 },
  { pid: null, comm: null, uid: null },
];

function flow(i: number, at: number, over: Partial<FlowObservation> = {}): FlowObservation {
  const p = PROCS[i % PROCS.length]!;
  const v6 = i % 4 === 0;
  return {
    proto: i % 5 === 0 ? 'udp' : 'tcp', family: v6 ? 'ipv6' : 'ipv4', localAddr: v6 ? 'fd00:198::1' : '198.18.0.1', localPort: 20_000 + (i % 30_000),
    remoteAddr: v6 ? 'fd00:198::2' : '198.18.0.2', remotePort: 443, interface: 'veth0', direction: i % 2 ? 'outbound' : 'inbound', attributedBy: 'connect',
    ...p, exe: null, cgroupId: null, firstMs: at - 5, lastMs: at, closedMs: at, txBytes: 100 + i, rxBytes: 1000 + 3 * i, txPackets: 2 + (i % 7), rxPackets: 3 + (i % 11),
    ...over,
  };
}

async function ready(h: History): Promise<void> {
  for (let i = 0; i < 500 && h.status().state !== 'ok'; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(h.status().state, 'ok');
}

test('event loop: a close goes to the writer until it is ready, within the budget, while a listing is read, or when its flow may be tracked', () => {
  // Horizon at 1000: flows first seen before it may have been restored by the writer.
  const r = new CloseRollups(0, 2, 1000);
  assert.equal(r.close(flow(1, 9000), 9000), false, 'not ready');
  r.writerReady();
  assert.equal(r.close(flow(2, 9000), 9000), false, 'burst');
  assert.equal(r.close(flow(3, 9000), 9000), false, 'burst');
  assert.equal(r.close(flow(4, 9000, { firstMs: 900 }), 9000), false, 'first seen before the start: may be restored');
  assert.equal(r.close(flow(5, 9000, { firstMs: 2500 }), 9000), false, 'within the clocks\' slack of the horizon');
  assert.equal(r.close(flow(6, 9000), 9000), true, 'beyond the budget, first seen after the horizon');
  r.beginListing();
  assert.equal(r.close(flow(7, 12_000), 12_000), false, 'a listing is being read: it may show any flow');
  r.endListing(20_000);
  assert.equal(r.close(flow(8, 21_000, { firstMs: 19_000 }), 21_000), false, 'first seen before the listing ended: may be listed');
  assert.equal(r.close(flow(10, 30_000), 30_000), true);
  assert.equal(r.pendingRows, 2, 'one row per process, family and endpoint');
  r.writerGone();
  assert.equal(r.close(flow(11, 40_000), 40_000), false, 'a new writer thread');
});

test('event loop: endpoints kept are bounded per process and in all, a quarter of the detail budget\'s rows; none at a budget of 0', () => {
  const feed = (r: CloseRollups) => {
    r.writerReady();
    for (let p = 0; p < 3; p++) for (let j = 0; j < 20; j++) r.close(flow(p, 9000, { remoteAddr: `198.18.9.${j}`, proto: 'tcp', family: 'ipv4', direction: 'outbound' }), 9000);
    return r.pendingRows;
  };
  assert.equal(feed(new CloseRollups(0, 0, 0)), 3, 'budget 0: one row per process, no endpoints');
  assert.equal(endpointsPerHandover(100, 500), REMOTES_PER_PROCESS, 'at least one process\'s worth');
  assert.equal(endpointsPerHandover(1000, 500), 125, 'the default budget: 125 a hand-over, 250 rows a second');
  // 32 endpoints in all: the first process's 20, the second's first 12 and a row for its
  // rest, a row for the third's.
  assert.equal(feed(new CloseRollups(100, 0, 0, endpointsPerHandover(100, 500))), 32 + 2);
  assert.equal(feed(new CloseRollups(1e6, 0, 0, endpointsPerHandover(1e6, 500))), 60, 'room for all: 20 endpoints for each process');
  const r = new CloseRollups(1e6, 0, 0, 1e6);
  r.writerReady();
  for (let j = 0; j < 100; j++) r.close(flow(0, 9000, { remoteAddr: `198.18.9.${j}`, proto: 'tcp', family: 'ipv4', direction: 'outbound' }), 9000);
  assert.equal(r.pendingRows, REMOTES_PER_PROCESS + 1, 'one process: its first endpoints, then one row for the rest');
});

test('far beyond the budget through History: totals and connections exact, tracked flows counted once, also after a restart', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-overbudget-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const opts = { dir, maxBytes: 1 << 30, retentionDays: 30, detailFlowsPerSec: 20, accountant: { detailBurst: 50 } };
  // The closes below span 4 s across a minute's start (the per-minute totals are checked).
  const t0 = Math.floor(Date.now() / 60_000) * 60_000 - 2000;
  const total = zero();
  const byMinute = new Map<number, Sums>();
  const inMinute = (at: number) => {
    const m = Math.floor(at / 60_000);
    if (!byMinute.has(m)) byMinute.set(m, zero());
    return byMinute.get(m)!;
  };
  let h = History.start(opts);
  after(() => h.stop()); // a failed assertion must not leave the writer thread running
  await ready(h);

  // 20 long flows, listed while open with some counts (recorded as open records).
  const long = Array.from({ length: 20 }, (_, i) => flow(50_000 + i, t0, { localPort: 60_000 + i, closedMs: null, txBytes: 1000 + i, rxBytes: 2000 + i, txPackets: 3, rxPackets: 4 }));
  h.recordListing(long, t0, t0 + 1);
  for (const f of long) {
    add(total, f);
    add(inMinute(t0), f);
  }

  const N = 4000;
  let shownClosed = 0;
  for (let i = 0; i < N; i++) {
    const at = t0 + 10 + i;
    const f = flow(i, at);
    if (i % 1000 === 500) {
      // A listing (the long flows still open, unchanged) shows this flow closed before its
      // close event: counted once.
      h.recordListing([...long.slice(i > 2000 ? 10 : 0), f], at, at);
      shownClosed++;
    }
    h.recordClose(f, at);
    add(total, f);
    add(inMinute(at), f);
    // A hand-over shortly before the minute's end: what is summed after it must still be
    // counted in its own minute, though rows of the next minute follow before the next one.
    if (i === 1900) await h.flush();
    if (i === 2000) {
      // Ten long flows close with more than they had when listed: only that is new.
      for (const l of long.slice(0, 10)) {
        h.recordClose({ ...l, closedMs: at, lastMs: at, txBytes: l.txBytes + 500, rxBytes: l.rxBytes + 700, txPackets: l.txPackets + 1, rxPackets: l.rxPackets + 1 }, at);
        add(total, { txBytes: 500, rxBytes: 700, txPackets: 1, rxPackets: 1 }, 0);
        add(inMinute(at), { txBytes: 500, rxBytes: 700, txPackets: 1, rxPackets: 1 }, 0);
      }
    }
  }
  await h.flush();
  const st = h.status();
  assert.equal(st.records.dropped, 0);
  assert.ok(st.records.rolledUp > N / 2, `most closes rolled up (${st.records.rolledUp})`);
  assert.ok(st.records.written < N / 4, `rows, not flows (${st.records.written})`);
  const q = { since: t0 - 120_000, until: Date.now() + 120_000, limit: 10_000 };
  const all = await h.query(q, 'all');
  assert.deepEqual(all.totals, total, 'the records add up to every flow fed');
  const rolled = all.flows!.filter((f) => f.state === 'rolled-up');
  assert.equal(rolled.reduce((s, f) => s + f.connections, 0), st.records.rolledUp, 'status counts what the budget did not keep');
  // Outbound closes keep their endpoint (remote address, port 443); inbound ones name a new
  // service port each (their local port), so each process soon has no room for more
  // endpoints and sums the rest without one.
  const unspecified = (f: { remoteAddr: string }) => f.remoteAddr === '0.0.0.0' || f.remoteAddr === '::';
  const withEndpoint = rolled.filter((f) => !unspecified(f));
  assert.ok(withEndpoint.length > 0 && withEndpoint.every((f) => (f.localPort === null) !== (f.remotePort === null)), 'an endpoint: the address and one port, the service\'s');
  assert.ok(withEndpoint.some((f) => f.remotePort === 443 && f.direction === 'outbound'), 'connections made keep the remote port');
  assert.ok(rolled.some(unspecified) && rolled.filter(unspecified).every((f) => f.localPort === null && f.remotePort === null), 'beyond the endpoints kept: no address, no ports');
  assert.equal(shownClosed, 4);
  assert.equal(byMinute.size, 2, 'the closes span two minutes');
  for (const [m, want] of byMinute) {
    const res = await h.query({ since: m * 60_000, until: (m + 1) * 60_000, by: 'process', limit: 100 }, 'all');
    assert.deepEqual(res.totals, want, `minute ${m}: per-minute totals`);
  }
  await h.stop();

  // Restart: the other ten long flows are restored open. Exhaust the new burst, then close
  // them beyond the budget: they must still add only what they gained.
  h = History.start(opts);
  await ready(h);
  const t1 = Date.now();
  for (let i = 0; i < 200; i++) {
    const f = flow(N + i, t1 + i);
    h.recordClose(f, t1 + i);
    add(total, f);
  }
  for (const l of long.slice(10)) {
    const at = t1 + 300;
    h.recordClose({ ...l, closedMs: at, lastMs: at, txBytes: l.txBytes + 40, rxBytes: l.rxBytes + 50, txPackets: l.txPackets + 1, rxPackets: l.rxPackets + 2 }, at);
    add(total, { txBytes: 40, rxBytes: 50, txPackets: 1, rxPackets: 2 }, 0);
  }
  await h.flush();
  const again = await h.query({ ...q, until: Date.now() + 120_000 }, 'all');
  assert.deepEqual(again.totals, total, 'after a restart: restored flows counted once');
  const byProc = await h.query({ ...q, until: Date.now() + 120_000, by: 'process' }, 'all');
  assert.deepEqual(byProc.totals, total, 'per-minute totals agree');
});

test('beyond the budget, a process\'s remote endpoints stay queryable: --remote and --by remote add up to the flows fed, the endpoints kept are bounded', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-remotes-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const h = History.start({ dir, maxBytes: 1 << 30, retentionDays: 30, detailFlowsPerSec: 1, accountant: { detailBurst: 1 } });
  after(() => h.stop());
  await ready(h);
  const t0 = Date.now();
  // curl (pid 300) connects to three services; nginx (pid 200) accepts from 200 clients on
  // port 8080, more endpoints than a process keeps between two hand-overs.
  const services = [['198.18.7.1', 443], ['198.18.7.2', 443], ['fd00:198::7', 8443]] as const;
  const byRemote = new Map<string, Sums>();
  const total = zero();
  const nginx = zero();
  const N = 3000;
  for (let i = 0; i < N; i++) {
    const at = t0 + Math.floor(i / 10);
    let f: FlowObservation;
    if (i % 2 === 0) {
      const [addr, port] = services[(i / 2) % 3]!;
      f = flow(1, at, { remoteAddr: addr, remotePort: port, family: addr.includes(':') ? 'ipv6' : 'ipv4', proto: 'tcp', direction: 'outbound', attributedBy: 'connect', localPort: 30_000 + (i % 20_000), remoteName: `svc-${addr}` });
      if (!byRemote.has(addr)) byRemote.set(addr, zero());
      add(byRemote.get(addr)!, f);
    } else {
      f = flow(0, at, { remoteAddr: `198.18.${8 + (i % 200 >> 7)}.${i % 200 & 127}`, remotePort: 40_000 + i, localPort: 8080, proto: 'tcp', family: 'ipv4', direction: 'inbound', attributedBy: 'accept' });
      add(nginx, f);
    }
    add(total, f);
    h.recordClose(f, at);
  }
  await h.flush();
  const st = h.status();
  assert.ok(st.records.rolledUp >= N - 10, `nearly every close beyond the budget (${st.records.rolledUp} of ${N})`);
  const q = (p: Record<string, unknown>) => h.query(parseHistoryQuery({ since: new Date(t0 - 120_000).toISOString(), until: new Date(Date.now() + 120_000).toISOString(), limit: 10_000, ...p }, Date.now(), () => null), 'all');
  assert.deepEqual((await q({})).totals, total, 'totals exact');
  for (const [addr, want] of byRemote) {
    const r = await q({ remote: addr });
    assert.deepEqual(r.totals, want, `history --remote ${addr}: every close to it, rolled up or not`);
    assert.ok(r.flows!.filter((f) => f.state === 'rolled-up').every((f) => f.remoteName === `svc-${addr}` && f.localPort === null && f.remotePort === services.find(([a]) => a === addr)![1]), `${addr}: its name and service port kept`);
  }
  const grouped = await q({ by: 'remote', pid: 300 });
  for (const [addr, want] of byRemote) {
    const g = grouped.groups!.filter((x) => x.remoteAddr === addr);
    assert.equal(g.reduce((s, x) => s + x.connections, 0), want.connections, `--by remote: ${addr}'s connections`);
    assert.equal(g.reduce((s, x) => s + x.txBytes, 0), want.txBytes, `--by remote: ${addr}'s bytes`);
  }
  const server = await q({ pid: 200 });
  assert.deepEqual(server.totals, nginx, 'the server\'s totals exact');
  const rolled = server.flows!.filter((f) => f.state === 'rolled-up');
  const kept = rolled.filter((f) => f.remoteAddr !== '0.0.0.0');
  assert.ok(kept.length > 0 && kept.every((f) => f.localPort === 8080 && f.remotePort === null && f.direction === 'inbound'), 'accepted connections: the local port names the service');
  assert.ok(rolled.some((f) => f.remoteAddr === '0.0.0.0' && f.localPort === null), 'clients beyond the endpoints kept: summed without one');
  // At most REMOTES_PER_PROCESS endpoint rows per commit and minute (one commit here; the
  // closes span at most two minutes).
  assert.ok(kept.length <= 2 * REMOTES_PER_PROCESS, `endpoint rows bounded: ${kept.length}`);
});

test('event loop: closes fed in one observation filled again for every close (as the daemon feeds them) pack and sum exactly as fresh objects do', () => {
  // The daemon hands History.recordClose() one object filled again per close (app.ts,
  // feed.ts observationFromFacts' `into`): nothing may keep it. Two event-loop sides, one fed
  // fresh observations, one fed a single object overwritten: the same bytes to the writer.
  const sides = [0, 1].map(() => ({ r: new CloseRollups(50, 100, 0), p: new ObservationPacker() }));
  for (const s of sides) s.r.writerReady();
  const scratch = emptyObservation();
  const batches: Array<Array<{ rows: Uint8Array; strings: string[] }>> = [[], []];
  for (let i = 0; i < 5000; i++) {
    const at = 60_000 * 100 + i * 7; // 5000 closes over 35 s: beyond a budget of 50/s after the burst
    const fresh = flow(i, at, { remoteAddr: i % 3 ? `198.18.${i % 9}.2` : 'fd00:198::9', family: i % 3 ? 'ipv4' : 'ipv6', exe: i % 2 ? '/usr/bin/curl' : null });
    Object.assign(scratch, fresh);
    for (const [k, o] of [[0, fresh], [1, scratch]] as const) {
      const { r, p } = sides[k]!;
      if (!r.close(o, at)) p.add(OP.close, o, at);
      if (i % 500 === 499) {
        r.drain(p);
        const b = p.take()!;
        batches[k]!.push({ rows: new Uint8Array(b.rows, 0, b.count * ROW).slice(), strings: [...b.strings] });
        p.recycle(b.rows);
      }
    }
  }
  assert.equal(batches[0]!.length, 10);
  assert.deepEqual(batches[1], batches[0], 'the same rows and strings');
  const rolledRows = batches[0]!.reduce((n, b) => n + b.rows.length / ROW, 0);
  assert.ok(rolledRows < 5000 / 2, `most closes summed, not packed one by one (${rolledRows} rows)`);
});
