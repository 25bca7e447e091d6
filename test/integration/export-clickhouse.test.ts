// SPDX-License-Identifier: Apache-2.0
// The ClickHouse flow export (daemon/src/export/clickhouse.ts) into a real clickhouse-server
// (Debian 12's 18.16, the oldest version supported, started here on free local ports from a
// temporary directory), fed by the real daemon in a lab host: close events from
// events.subscribe and snapshots from flows.list, over JSON-RPC (the daemon feeds its own
// export the same two inputs in-process: export-clickhouse-daemon.test.ts). Driving the
// module directly lets these tests vary its options per test (clusters, credentials, a
// small buffer) against one daemon.
//
// Truth: tcpdump on the monitored interface (IP-layer bytes), the bytes each client itself
// sent (TCP payload), the number of connections the test made, /etc/machine-id and the
// host name. ClickHouse's own SELECT says what arrived.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { jsonLines, type Host, type Lab, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { until as waitUntil } from '../helpers/wait.js';
import { BUILD, destroyMonitorLab, monitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals } from '../helpers/pcap.js';
import { ClickHouseServer } from '../helpers/servers.js';
import { DaemonClient } from '../../client/src/rpc.js';
import { ClickHouseFlowExport, type ClickHouseFlowExportOptions } from '../../daemon/src/export/clickhouse.js';
import { hostIdentity } from '../../daemon/src/export/host.js';
import type { CloseEventInput } from '../../daemon/src/export/api-types.js';

const TCP = 6;
const USER = { name: 'ebpfmon', password: 'pa:ss word' };

describe('ClickHouse flow export into a real clickhouse-server 18.16', privileged({ timeout: 900_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let ch: ClickHouseServer;
  let events: DaemonClient;
  let credentials: string;
  /** Every export the tests make gets the daemon's close events. */
  const exports = new Set<ClickHouseFlowExport>();
  const closes: CloseEventInput[] = [];

  before(async () => {
    requireTool('clickhouse-server', 'tcpdump');
    ({ lab, mon, peer, link } = await monitorLab());
    daemon = await startDaemon(mon, { config: { flows: { closedRetentionSec: 1800, gcIntervalSec: 2 } } });
    ch = await ClickHouseServer.start(lab, { user: USER, cluster: 'emon_test' });
    credentials = path.join(lab.tmpdir(), 'clickhouse.credentials');
    fs.writeFileSync(credentials, `${USER.name}:${USER.password}\n`, { mode: 0o600 });
    events = await DaemonClient.connect(daemon.socketPath);
    events.onNotification('events.event', (p) => {
      const e = (p as { event: CloseEventInput & { type: string } }).event;
      if (e.type !== 'close') return;
      closes.push(e);
      for (const x of exports) x.onClose(e);
    });
    await events.call('events.subscribe', { types: ['close'] });
  });
  after(async () => {
    for (const x of exports) await x.stop(0);
    events?.close();
    await ch?.stop();
    await destroyMonitorLab(daemon, lab);
  });

  function makeExport(o: Partial<ClickHouseFlowExportOptions> = {}): ClickHouseFlowExport {
    const x = new ClickHouseFlowExport(
      {
        url: ch.url, database: 'emon', table: 'flows', credentialsFile: credentials,
        batchRows: 1000, flushIntervalMs: 200, bufferRows: 10_000, compress: true, timeoutMs: 5000,
        backoff: { initialMs: 100, maxMs: 1000 }, host: hostIdentity(), updateIntervalMs: 0, ...o,
      },
      { flows: async () => (await daemon.call('flows.list', { includeClosed: true, limit: 100_000 })).flows },
    );
    exports.add(x);
    x.start();
    return x;
  }

  async function tcpServer(reply: number) {
    const s = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', String(reply)]);
    const out = jsonLines(s);
    return { port: Number((await out.next((o) => o.event === 'listening')).port), out };
  }

  /** One client connection: sends `n`, reads the reply, closes. Resolves with its local port and pid,
   * and `since`: how many close events had arrived before it started (its own comes later). */
  async function connection(port: number, n: number, expect: number): Promise<{ localPort: number; pid: number; sent: number; received: number; since: number }> {
    const since = closes.length;
    const c = mon.spawn(process.execPath, [PEER, 'tcp-client', link.b.ip4, String(port), String(n), '--expect', String(expect)]);
    const done = await jsonLines(c).next((o) => o.event === 'done');
    return { localPort: Number(done.localPort), pid: c.pid!, sent: Number(done.sent), received: Number(done.received), since };
  }

  /** The close event of a connection: one that arrived after it started (a local port is
   * reused by later connections, so an older event on the same port is another one). */
  async function closeEventFor(c: { localPort: number; since?: number }, timeoutMs = 15_000): Promise<CloseEventInput> {
    const t0 = Date.now();
    for (;;) {
      const e = closes.slice(c.since ?? 0).find((x) => x.localPort === c.localPort && x.remoteAddr === link.b.ip4);
      if (e) return e;
      if (Date.now() - t0 > timeoutMs) throw new Error(`no close event for local port ${c.localPort}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const until = (what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 60_000) => waitUntil(what, ok, timeoutMs, 100);

  interface Sums { local_port: number; rows: number; tx: number; rx: number; txp: number; rxp: number; sent: number; received: number; kinds: string[]; host: string; machine_id: string; pid: number; comm: string }
  const sums = (table: string, ports: number[]) =>
    ch.rows<Sums>(`SELECT local_port, count() AS rows, sum(tx_bytes) AS tx, sum(rx_bytes) AS rx, sum(tx_packets) AS txp, sum(rx_packets) AS rxp,
       sum(payload_sent) AS sent, sum(payload_received) AS received, groupArray(toString(kind)) AS kinds, any(host) AS host, any(machine_id) AS machine_id,
       any(pid) AS pid, any(comm) AS comm FROM ${table} WHERE remote_addr = '${link.b.ip4}' AND local_port IN (${ports.join(',')}) GROUP BY local_port ORDER BY local_port`);

  test('the schema is created on 18.16 and closed flows arrive with exact bytes, owner, host name and machine id', async () => {
    const x = makeExport();
    await until('schema ready', () => x.status().schema.ready);
    const st = x.status();
    assert.equal(st.serverVersion, (await ch.query('SELECT version()')).trim());
    assert.deepEqual(st.schema.missingColumns, []);
    assert.match(await ch.query("SELECT engine FROM system.tables WHERE database = 'emon' AND name = 'flows' FORMAT TSV"), /^MergeTree\n$/);

    const srv = await tcpServer(30_000);
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'a.pcap'), ['tcp', 'port', String(srv.port)]);
    const conns = [];
    for (const n of [1000, 77_777, 250_000]) conns.push(await connection(srv.port, n, 30_000));
    for (const c of conns) await closeEventFor(c);
    const pkts = await cap.stop(500);
    await x.snapshot(); // packets counted after a close event (the last ACK) are in the table, not the event
    assert.ok(await x.exporter.flush(), JSON.stringify(x.status().lastError));

    const rows = await sums('emon.flows', conns.map((c) => c.localPort));
    assert.equal(rows.length, 3, JSON.stringify(rows));
    const machineId = fs.readFileSync('/etc/machine-id', 'utf8').trim();
    for (const c of conns) {
      const r = rows.find((y) => y.local_port === c.localPort)!;
      const t = flowTotals(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: TCP, localPort: c.localPort, remotePort: srv.port });
      assert.deepEqual([r.tx, r.rx, r.txp, r.rxp], [t.txBytes, t.rxBytes, t.txPackets, t.rxPackets], `port ${c.localPort}: bytes and packets == tcpdump`);
      assert.deepEqual([r.sent, r.received], [c.sent, c.received], 'payload == what the client sent and read');
      assert.ok(r.kinds.includes('close'));
      assert.deepEqual([r.pid, r.comm], [c.pid, 'node']);
      assert.deepEqual([r.host, r.machine_id], [os.hostname(), machineId]);
    }
    assert.equal(x.status().dropped.bufferFull + x.status().dropped.rejected, 0);
  });

  test('the example queries of docs/export.md run on 18.16 and "top talkers per host" agrees with the rows', async () => {
    const doc = fs.readFileSync(path.join(BUILD, '../../docs/export.md'), 'utf8');
    const section = doc.slice(doc.indexOf('### Example queries'));
    const sql = /```sql\n([\s\S]*?)```/.exec(section)![1]!;
    const queries = sql.split(/;\s*\n/).map((q) => q.replace(/^--.*$/gm, '').trim()).filter(Boolean);
    assert.equal(queries.length, 4);
    for (const q of queries) await ch.rows(q.replaceAll('ebpfmon.flows', 'emon.flows'));
    const top = await ch.rows<{ host: string; comm: string; bytes: number }>(queries[0]!.replaceAll('ebpfmon.flows', 'emon.flows'));
    const direct = await ch.rows<{ bytes: number }>(`SELECT sum(tx_bytes + rx_bytes) AS bytes FROM emon.flows WHERE at > now() - 86400 AND host = '${os.hostname()}' AND comm = 'node'`);
    assert.equal(top.find((r) => r.host === os.hostname() && r.comm === 'node')?.bytes, direct[0]!.bytes);
  });

  test('a long-lived flow: update records while it is open, then its close; they add up to tcpdump\'s count', async () => {
    const x = makeExport({ table: 'flows_long' });
    const srv = await tcpServer(0);
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'b.pcap'), ['tcp', 'port', String(srv.port)]);
    const since = closes.length;
    const c = mon.spawn(process.execPath, [PEER, 'tcp-hold', link.b.ip4, String(srv.port)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = jsonLines(c);
    const localPort = Number((await out.next((o) => o.event === 'connected')).localPort);
    const send = async (n: number, total: number) => {
      c.stdin!.write(`send ${n}\n`);
      await out.next((o) => o.event === 'sent' && Number(o.total) === total);
      await new Promise((r) => setTimeout(r, 300)); // the peer's ACKs land
    };
    // Three snapshots while it is open: after 40,000 bytes, idle, after 90,000 more.
    await send(40_000, 40_000);
    await x.snapshot();
    await x.snapshot();
    await send(90_000, 130_000);
    await x.snapshot();
    c.stdin!.write('close\n');
    await out.next((o) => o.event === 'done');
    await closeEventFor({ localPort, since });
    const pkts = await cap.stop(500);
    await x.snapshot();
    assert.ok(await x.exporter.flush());
    const [r] = await sums('emon.flows_long', [localPort]);
    const t = flowTotals(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: TCP, localPort, remotePort: srv.port });
    assert.ok(r, 'rows arrived');
    assert.deepEqual([r.tx, r.rx, r.txp, r.rxp], [t.txBytes, t.rxBytes, t.txPackets, t.rxPackets], 'sum over the flow\'s records == tcpdump');
    assert.equal(r.sent, 130_000, 'payload of the close record == what the client sent');
    assert.equal(r.kinds.filter((k) => k === 'update').length, 2, `one update per snapshot in which the flow moved, none for the idle one: ${r.kinds}`);
    assert.ok(r.kinds.includes('close'));
  });

  test('with a cluster: a Distributed table over TABLE_local, rows stored in the local table', async () => {
    const x = makeExport({ table: 'fleet', cluster: 'emon_test' });
    await until('schema ready', () => x.status().schema.ready);
    const engines = await ch.rows<{ name: string; engine: string }>("SELECT name, engine FROM system.tables WHERE database = 'emon' AND name IN ('fleet', 'fleet_local') ORDER BY name");
    assert.deepEqual(engines, [{ name: 'fleet', engine: 'Distributed' }, { name: 'fleet_local', engine: 'MergeTree' }]);
    const srv = await tcpServer(100);
    const c = await connection(srv.port, 5555, 100);
    await closeEventFor(c);
    assert.ok(await x.exporter.flush());
    // The Distributed engine forwards in the background: wait for the row in the local table.
    await until('row in fleet_local', async () => (await sums('emon.fleet_local', [c.localPort])).length === 1, 30_000);
    const [r] = await sums('emon.fleet_local', [c.localPort]);
    assert.equal(r!.sent, 5555);
    assert.equal(r!.machine_id, fs.readFileSync('/etc/machine-id', 'utf8').trim());
  });

  test('server down: rows wait in the buffer and arrive without loss once it is back; beyond the buffer they are dropped and counted', async () => {
    const BUFFER = 20;
    const x = makeExport({ table: 'flows_outage', bufferRows: BUFFER, batchRows: 5, timeoutMs: 2000 });
    await until('schema ready', () => x.status().schema.ready);
    const srv = await tcpServer(0);

    const run = async (count: number, base: number) => {
      const out: Array<{ localPort: number; sent: number; since: number }> = [];
      for (let i = 0; i < count; i++) {
        const c = await connection(srv.port, base + i, 0);
        await closeEventFor(c);
        out.push(c);
      }
      return out;
    };

    // 1. Within the buffer: 12 connections while the server is down.
    await ch.stop();
    const first = await run(12, 1000);
    await until('12 rows buffered, attempts failing', () => x.status().buffered === 12 && x.status().state === 'retrying', 30_000);
    assert.ok(x.status().retries >= 1);
    await ch.restart();
    await until('buffer drained', () => x.status().buffered === 0, 60_000);
    let got1 = await sums('emon.flows_outage', first.map((c) => c.localPort));
    if (got1.length !== first.length) {
      const all = await ch.rows('SELECT local_port, remote_addr, payload_sent, kind, at FROM emon.flows_outage ORDER BY at');
      const events = closes.slice(first[0]!.since).map((e) => [e.localPort, e.remoteAddr, e.payloadBytesSent, e.at]);
      await new Promise((r) => setTimeout(r, 5000));
      got1 = await sums('emon.flows_outage', first.map((c) => c.localPort));
      console.log(`# outage diagnosis: rows then ${JSON.stringify(all)}; close events ${JSON.stringify(events)}; after 5 s ${got1.length} rows`);
    }
    assert.deepEqual(got1.map((r) => [r.local_port, r.sent, r.rows]), first.map((c) => [c.localPort, c.sent, 1]).sort((a, b) => a[0]! - b[0]!), `every row, once, with its payload (status ${JSON.stringify(x.status())})`);
    assert.equal(x.status().dropped.bufferFull, 0);

    // 2. Beyond the buffer: 30 connections, room for 20; the last 10 are dropped and counted.
    await ch.stop();
    const second = await run(30, 2000);
    await until('buffer full', () => x.status().buffered === BUFFER, 30_000);
    assert.equal(x.status().dropped.bufferFull, 10, 'exactly the rows beyond the buffer');
    await ch.restart();
    await until('buffer drained', () => x.status().buffered === 0, 60_000);
    const got2 = await sums('emon.flows_outage', second.map((c) => c.localPort));
    assert.deepEqual(got2.map((r) => r.local_port).sort(), second.slice(0, BUFFER).map((c) => c.localPort).sort(), 'the first 20 arrived, the 10 that did not fit did not');
    assert.equal(got2.length + x.status().dropped.bufferFull, second.length, 'delivered + dropped == connections made');
    assert.equal(x.status().state, 'ok');
  });

  test('wrong credentials: the error is in the status and rows wait; a corrected file is read again and they arrive', async () => {
    const bad = path.join(lab.tmpdir(), 'bad.credentials');
    fs.writeFileSync(bad, `${USER.name}:wrong\n`, { mode: 0o600 });
    const x = makeExport({ table: 'flows_auth', credentialsFile: bad });
    await until('auth failure reported', () => x.status().lastError !== null, 30_000);
    const st = x.status();
    assert.equal(st.lastError!.code, 193, st.lastError!.message);
    assert.match(st.lastError!.message, /Wrong password/);
    assert.equal(st.state, 'retrying');
    const srv = await tcpServer(0);
    const c = await connection(srv.port, 4321, 0);
    await closeEventFor(c);
    await until('row buffered', () => x.status().buffered === 1);
    fs.writeFileSync(bad, `${USER.name}:${USER.password}\n`);
    await until('delivered', () => x.status().buffered === 0 && x.status().state === 'ok', 60_000);
    const [r] = await sums('emon.flows_auth', [c.localPort]);
    assert.equal(r!.sent, 4321);
  });
});
