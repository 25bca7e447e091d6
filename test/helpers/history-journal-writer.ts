// SPDX-License-Identifier: Apache-2.0
// A process that feeds a HistoryWriter (in its own thread, no event loop packer timer) packed
// batches of closed flows, commits once part way, then keeps feeding without committing
// (commitIntervalMs far away), so what is past the commit is only in the journal when the
// test kills it with SIGKILL. Flow i: local port 1024 + i, i + 1000 bytes sent, 2i + 500
// received, every flow in detail. Prints JSON lines: `acked` after each batch the writer
// took (ingest returned), `committed` after the commit, `done` at the end; then waits.
//
//   node history-journal-writer.js <dir> <flows> <batch size> <commit after this many flows>
import { HistoryWriter } from '../../daemon/src/history/writer.js';
import { ObservationPacker, OP } from '../../daemon/src/history/pack.js';

const [dir = '', nS = '3000', batchS = '100', commitS = '1000'] = process.argv.slice(2);
const N = Number(nS);
const BATCH = Number(batchS);
const COMMIT = Number(commitS);
const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
const w = new HistoryWriter({ dir, maxBytes: 1 << 30, retentionDays: 30, commitIntervalMs: 1e9, commitRecords: 1e9, accountant: { detailPerSec: 1e9, detailBurst: 1e9 } });
await w.open();
const p = new ObservationPacker();
const t0 = Date.now() - 10_000;
for (let i = 0; i < N; i += BATCH) {
  for (let k = i; k < Math.min(N, i + BATCH); k++) {
    const now = t0 + k;
    p.add(OP.close, {
      proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 1024 + k, remoteAddr: `198.18.${1 + (k % 7)}.2`, remotePort: 443,
      interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 4242, comm: `journal${k % 3}`, uid: 0, exe: null, cgroupId: null,
      firstMs: now - 3, lastMs: now, closedMs: now, txBytes: k + 1000, rxBytes: 2 * k + 500, txPackets: 3, rxPackets: 4,
    }, now);
  }
  w.ingest(p.take()!);
  const fed = Math.min(N, i + BATCH);
  out({ event: 'acked', fed });
  if (fed === COMMIT) {
    await w.flush();
    out({ event: 'committed', fed, written: w.status().records.written });
  }
}
out({ event: 'done', fed: N, status: w.status() });
setInterval(() => {}, 1000);
