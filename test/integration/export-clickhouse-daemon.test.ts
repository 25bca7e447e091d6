// SPDX-License-Identifier: Apache-2.0
// The daemon's own ClickHouse export (`export.clickhouse.*`, wired in app.ts) into a real
// clickhouse-server (Debian 12's 18.16, started here in the root namespace on the root end
// of a link to the daemon's lab host; the daemon monitors only its link to the peer, so
// its inserts are not in the counts). Across a ClickHouse outage AND a daemon restart
// during it, every connection's rows arrive once: the spool carries the undelivered rows
// and the per-flow export state to the next run. A kill -9 during an outage writes no
// spool: the rows that waited are lost, and the next start counts them (dropped.crash).
//
// Truth: tcpdump on the monitored interface (IP-layer bytes and packets per connection),
// the payload each client says it sent, the number of connections the test made, and
// ClickHouse's own SELECT. export-clickhouse.test.ts covers the exporter's other paths
// (clusters, credentials, the buffer's bound) with the module driven directly.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { jsonLines, type Host, type Lab, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { ctl, destroyMonitorLab, monitorLab, PEER, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals, type Packet } from '../helpers/pcap.js';
import { ClickHouseServer } from '../helpers/servers.js';
import { pendingFile, type SpoolContent } from '../../daemon/src/export/spool.js';

const TCP = 6;
const USER = { name: 'ebpfmon', password: 'secret' };

describe("the daemon's ClickHouse export into a real clickhouse-server 18.16", privileged({ timeout: 600_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let ch: ClickHouseServer;
  let spoolFile: string;
  let srvPort: number;

  before(async () => {
    requireTool('clickhouse-server', 'tcpdump');
    ({ lab, mon, peer, link } = await monitorLab());
    const toCh = await lab.link(lab.root, mon, { ipv6: false });
    await mon.exec('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    ch = await ClickHouseServer.start(lab, { host: toCh.a.ip4, user: USER });
    const dir = lab.tmpdir();
    const credentialsFile = path.join(dir, 'clickhouse.credentials');
    fs.writeFileSync(credentialsFile, `${USER.name}:${USER.password}\n`, { mode: 0o600 });
    spoolFile = path.join(dir, 'state', 'clickhouse-spool.json');
    daemon = await startDaemon(mon, {
      config: {
        interfaces: [link.a.ifname],
        flows: { closedRetentionSec: 1800, gcIntervalSec: 2 },
        export: {
          clickhouse: {
            url: ch.url, database: 'emon', table: 'flows', credentialsFile, spoolFile,
            batchRows: 4, flushIntervalSec: 1, updateIntervalSec: 1, bufferRows: 1000, timeoutSec: 2, retryMaxSec: 1,
          },
        },
      },
    });
    const s = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '0']);
    srvPort = Number((await jsonLines(s).next((o) => o.event === 'listening')).port);
  });
  after(async () => {
    await ch?.stop();
    await destroyMonitorLab(daemon, lab);
  });

  const capture = () => Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'ch.pcap'), ['tcp', 'port', String(srvPort)]);

  /** One client connection: sends `n` bytes, closes. */
  async function connection(n: number): Promise<{ localPort: number; sent: number }> {
    const c = mon.spawn(process.execPath, [PEER, 'tcp-client', link.b.ip4, String(srvPort), String(n), '--expect', '0']);
    const done = await jsonLines(c).next((o) => o.event === 'done');
    return { localPort: Number(done.localPort), sent: Number(done.sent) };
  }

  async function until<T>(what: string, get: () => Promise<T> | T, ok: (v: T) => boolean, timeoutMs = 60_000): Promise<T> {
    const t0 = Date.now();
    for (;;) {
      const v = await get();
      if (ok(v)) return v;
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out: ${what}; last ${JSON.stringify(v)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  interface Row { local_port: number; rows: number; closes: number; tx: number; rx: number; txp: number; rxp: number; sent: number }
  const rows = (ports: number[]) =>
    ch.rows<Row>(`SELECT local_port, count() AS rows, countIf(kind = 'close') AS closes, sum(tx_bytes) AS tx, sum(rx_bytes) AS rx,
       sum(tx_packets) AS txp, sum(rx_packets) AS rxp, sum(payload_sent) AS sent
       FROM emon.flows WHERE remote_addr = '${link.b.ip4}' AND remote_port = ${srvPort} AND local_port IN (${ports.join(',')}) GROUP BY local_port ORDER BY local_port`);

  /** What ClickHouse should hold per connection: tcpdump's counts, the client's payload, one close. */
  const expected = (pkts: Packet[], conns: Array<{ localPort: number; sent: number }>) =>
    conns
      .map((c) => {
        const t = flowTotals(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: TCP, localPort: c.localPort, remotePort: srvPort });
        return { local_port: c.localPort, closes: 1, tx: t.txBytes, rx: t.rxBytes, txp: t.txPackets, rxp: t.rxPackets, sent: c.sent };
      })
      .sort((a, b) => a.local_port - b.local_port);
  const strip = (rs: Row[]) => rs.map(({ rows: _n, ...r }) => r);
  const chStatus = async () => (await daemon.call('status')).export!.clickhouse!;

  test('closed connections arrive with tcpdump\'s bytes, the client\'s payload and one close row each; status and ebpfmonctl status show the export', async () => {
    const cap = await capture();
    const conns: Array<{ localPort: number; sent: number }> = [];
    for (const n of [1000, 65_000, 200_000]) conns.push(await connection(n));
    const pkts = await cap.stop(500);
    const want = expected(pkts, conns);
    // Snapshots (each second) add the last ACKs counted after a close event: wait for them.
    const got = await until('rows == tcpdump', () => rows(conns.map((c) => c.localPort)), (r) => JSON.stringify(strip(r)) === JSON.stringify(want), 60_000).catch(async (e: Error) => {
      throw new Error(`${e.message}\nwanted ${JSON.stringify(want)}\nstatus ${JSON.stringify(await chStatus())}`);
    });
    assert.deepEqual(strip(got), want);
    const st = await chStatus();
    assert.equal(st.state, 'ok');
    assert.equal(st.table, 'emon.flows');
    assert.equal(st.serverVersion, (await ch.query('SELECT version()')).trim());
    assert.ok(st.sent.rows >= 3, JSON.stringify(st.sent));
    assert.deepEqual(st.dropped, { bufferFull: 0, rejected: 0, shutdown: 0, crash: 0 });
    assert.equal(st.spool.file, spoolFile);
    const cli = await ctl(['status'], { socket: daemon.socketPath });
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`ClickHouse: ${ch.url.replaceAll('.', '\\.')} emon\\.flows: ok \\(server [0-9.]+\\); sent \\d+ rows`));
    assert.match(cli.stdout, /dropped: none/);
  });

  test('ClickHouse down, the daemon restarted meanwhile: rows wait in the spool and arrive once each when ClickHouse is back', async () => {
    const cap = await capture();
    await ch.stop();
    const before: Array<{ localPort: number; sent: number }> = [];
    for (const n of [3001, 3002, 3003, 3004, 3005]) before.push(await connection(n));
    await until('rows buffered while ClickHouse is down', chStatus, (s) => s.state === 'retrying' && s.buffered >= before.length, 30_000);

    // A clean restart while ClickHouse is still away: what waits goes to the spool.
    assert.equal(await daemon.stop(), 0, 'SIGTERM: clean exit');
    const spooled = JSON.parse(fs.readFileSync(spoolFile, 'utf8')) as SpoolContent;
    assert.equal(fs.statSync(spoolFile).mode & 0o777, 0o600);
    const spooledPorts = new Set(spooled.rows.map((r) => (JSON.parse(r) as { local_port: number }).local_port));
    for (const c of before) assert.ok(spooledPorts.has(c.localPort), `the row of port ${c.localPort} is in the spool`);
    assert.ok((spooled.tracker?.flows.length ?? 0) >= before.length, 'the flow tracker is in the spool');
    daemon = await restartDaemon(daemon);
    let st = await chStatus();
    assert.equal(fs.existsSync(spoolFile), false, 'the spool is taken at start');
    assert.equal(st.spool.restoredRows, spooled.rows.length);
    assert.equal(st.spool.restoredFlows, spooled.tracker!.flows.length);
    assert.equal(st.spool.restoredUncertainRows, 0, 'nothing was in flight: every attempt was refused');

    // More connections while still down, then ClickHouse comes back.
    const afterRestart: Array<{ localPort: number; sent: number }> = [];
    for (const n of [4001, 4002, 4003]) afterRestart.push(await connection(n));
    const pkts = await cap.stop(500);
    await ch.restart();
    const all = [...before, ...afterRestart];
    const want = expected(pkts, all);
    await until('rows == tcpdump', () => rows(all.map((c) => c.localPort)), (r) => JSON.stringify(strip(r)) === JSON.stringify(want), 60_000).catch(async (e: Error) => {
      throw new Error(`${e.message}\nwanted ${JSON.stringify(want)}\nstatus ${JSON.stringify(await chStatus())}`);
    });
    // Nothing more comes later: wait until the buffer is empty and a few more snapshots ran.
    st = await until('buffer drained', chStatus, (s) => s.buffered === 0 && s.state === 'ok');
    const sentRows = st.sent.rows;
    await until('more snapshots', chStatus, (s) => Date.parse(s.lastSuccessAt ?? '') > Date.now() - 500 && s.sent.batches >= 1, 10_000);
    await new Promise((r) => setTimeout(r, 3000)); // three snapshot intervals: a duplicate would show now
    const got = strip(await rows(all.map((c) => c.localPort)));
    assert.deepEqual(got, want, `each connection once, with tcpdump's counts (sent ${sentRows} rows before the wait, ${(await chStatus()).sent.rows} after)`);
    st = await chStatus();
    assert.deepEqual(st.dropped, { bufferFull: 0, rejected: 0, shutdown: 0, crash: 0 }, 'nothing dropped');
  });

  test('ClickHouse down, then a kill -9: the rows that waited are counted as lost at the next start', async () => {
    await ch.stop();
    const conns: Array<{ localPort: number; sent: number }> = [];
    for (const n of [5001, 5002, 5003]) conns.push(await connection(n));
    // Every connection's close row waits; the daemon records how many (rewritten at most
    // once a second): wait for that record to say what status says.
    const recorded = (): number => {
      try {
        return (JSON.parse(fs.readFileSync(pendingFile(spoolFile), 'utf8')) as { rows: number }).rows;
      } catch {
        return -1;
      }
    };
    const st = await until('rows waiting, and recorded as waiting', async () => ({ s: await chStatus(), rec: recorded() }),
      (v) => v.s.state === 'retrying' && v.s.buffered >= conns.length && v.rec === v.s.buffered, 60_000);
    const waiting = st.s.buffered;
    assert.equal(await daemon.stop('SIGKILL'), null, 'killed');
    assert.equal(fs.existsSync(spoolFile), false, 'a kill -9 writes no spool');
    daemon = await restartDaemon(daemon);
    const after = await chStatus();
    assert.equal(after.dropped.crash, waiting, `the ${waiting} rows that waited (the test's ${conns.length} connections' rows) are counted as lost`);
    const cli = await ctl(['status'], { socket: daemon.socketPath });
    assert.match(cli.stdout, new RegExp(`dropped: [^\\n]*crash ${waiting}`));
    await ch.restart();
  });
});
