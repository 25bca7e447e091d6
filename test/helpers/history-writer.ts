// SPDX-License-Identifier: Apache-2.0
// A process that feeds ebpfmon's history (the real writer thread) with closed flows at a
// steady rate, for the crash test: flow i has local port 1024 + i % 60000 (remote port
// 443 + i / 60000) and i + 1000 bytes sent,
// so what survives a SIGKILL can be checked flow by flow. Prints JSON lines: `started`,
// then, in the same tick as each handover (before the flows can reach the writer thread,
// which is posted to from a timer of its own; stdout to a pipe is written synchronously on
// Linux), how many flows it has handed over and when, with the writer's lag as its status
// said at most 20 ms earlier (records committed, batches journaled). The last line the
// child wrote is therefore an upper bound on what any file can hold. `all`: every flow in
// detail (no budget: a row per flow).
//
//   node history-writer.js <dir> <flows per second> [all]
import { History } from '../../daemon/src/history/history.js';

const [dir = '', rateS = '2000', detail = ''] = process.argv.slice(2);
const rate = Number(rateS);
const h = History.start({ dir, maxBytes: 1 << 30, retentionDays: 30, ...(detail === 'all' ? { detailFlowsPerSec: 1e9, accountant: { detailBurst: 1e9 } } : {}) });
while (h.status().state !== 'ok') await new Promise((r) => setTimeout(r, 10));
const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
out({ event: 'started', t: Date.now() });
let fed = 0;
let lag = { lagMs: 0, written: 0, journaled: 0 };
const start = performance.now();
setInterval(() => {
  const from = fed;
  const due = Math.min(1_000_000, Math.floor(((performance.now() - start) * rate) / 1000));
  const now = Date.now();
  for (; fed < due; fed++) {
    h.recordClose({
      proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 1024 + (fed % 60_000), remoteAddr: '198.18.0.2', remotePort: 443 + Math.floor(fed / 60_000),
      interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: process.pid, comm: 'crashtest', uid: 0, exe: process.execPath, cgroupId: null,
      firstMs: now - 3, lastMs: now, closedMs: now, txBytes: fed + 1000, rxBytes: 2 * fed + 500, txPackets: 3, rxPackets: 4,
    }, now);
  }
  if (fed !== from) out({ event: 'fed', fed, t: Date.now(), ...lag });
}, 2);
setInterval(() => {
  const st = h.status();
  lag = { lagMs: st.records.lagMs, written: st.records.written, journaled: st.journal?.batches ?? 0 };
}, 20);
