// SPDX-License-Identifier: Apache-2.0
// A process that runs ebpfmon's ClickHouse flow export towards a server that is not there
// (a port nothing listens on), so that rows wait, for the export's kill -9 test: it offers
// `n` close events (one row each), then prints `{"event":"pending","rows":N}` once the
// export has recorded them as waiting, and keeps running until it is killed.
//
//   node export-writer.js <spool file> <rows>
import fs from 'node:fs';
import { ClickHouseFlowExport } from '../../daemon/src/export/clickhouse.js';
import { pendingFile } from '../../daemon/src/export/spool.js';

const [spoolFile = '', nS = '10'] = process.argv.slice(2);
const n = Number(nS);
const x = new ClickHouseFlowExport({
  url: 'http://127.0.0.1:9', database: 'emon', table: 'flows', batchRows: 1000, flushIntervalMs: 100, bufferRows: 10_000, compress: false, timeoutMs: 1000,
  backoff: { initialMs: 100, maxMs: 200 }, host: { hostName: 'crash-test', machineId: '0123456789abcdef0123456789abcdef' }, updateIntervalMs: 0, spoolFile,
});
x.start();
const at = new Date().toISOString();
for (let i = 0; i < n; i++) {
  x.onClose({
    at, protocol: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 20_000 + i, remoteAddr: '198.18.0.2', remotePort: 80, pid: 4242, uid: 0, comm: 'crashtest',
    attributedBy: 'connect', flowSeen: true, interface: 'veth0', txBytes: 100 + i, rxBytes: 200, txPackets: 2, rxPackets: 2, durationMs: 5, payloadBytesSent: 10, payloadBytesReceived: 20,
  });
}
const t = setInterval(() => {
  let rows = 0;
  try {
    rows = (JSON.parse(fs.readFileSync(pendingFile(spoolFile), 'utf8')) as { rows: number }).rows;
  } catch {
    return; // not recorded yet
  }
  if (rows !== n) return;
  clearInterval(t);
  // The export's own timers do not hold the process: this one does, until the kill -9
  // (a child that exited by itself first would leave the test waiting for an exit already past).
  setInterval(() => {}, 60_000);
  process.stdout.write(`${JSON.stringify({ event: 'pending', rows, buffered: x.status().buffered })}\n`);
}, 50);
