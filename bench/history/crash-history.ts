// SPDX-License-Identifier: Apache-2.0
// Child process of bench/history's crash runs for ebpfmon's own history: feeds closed flows
// to History at a steady rate (as the daemon's close events would) until the bench kills
// it with SIGKILL.
import { History } from '../../daemon/src/history/history.js';
import { FlowGen } from './gen.js';

const [, dir = '', rateS = '10000'] = process.argv.slice(2);
const rate = Number(rateS);
const h = History.start({ dir, maxBytes: 1 << 30, retentionDays: 3650 });
while (h.status().state !== 'ok') await new Promise((r) => setTimeout(r, 20));
const gen = new FlowGen(11);
let fed = 0;
const start = performance.now();
process.stdout.write(`${JSON.stringify({ event: 'started' })}\n`);
setInterval(() => {
  const due = Math.floor(((performance.now() - start) * rate) / 1000);
  const now = Date.now();
  for (; fed < due; fed++) {
    const s = gen.next(now);
    h.recordClose(s, now);
  }
}, 5);
setInterval(() => process.stdout.write(`${JSON.stringify({ event: 'fed', fed })}\n`), 100);
