// SPDX-License-Identifier: Apache-2.0
// Stands in for the daemon's history wiring until the lead moves it in-process: a process
// that feeds daemon/src/history from a running daemon the way the CLI talks to it, over
// JSON-RPC: every close event (events.subscribe, types close), and a listing of the flow
// table (flows.list with closed flows) every `listMs`. It reconnects when the daemon
// restarts. SIGTERM: writes what is pending and exits (a clean stop); SIGKILL is a crash.
//
//   node history-agent.js <daemon socket> <history dir> <listMs>
// Prints JSON lines: {"event":"ready"} once subscribed, {"event":"listed","flows":N} per listing.
import { DaemonClient } from '../../client/src/rpc.js';
import { History } from '../../daemon/src/history/history.js';
import { observationFromClose, observationFromFlow } from '../../daemon/src/history/feed.js';
import type { CloseEvent } from '../../daemon/src/monitor/events.js';
import type { EventNotification, FlowsListResult } from '../../daemon/src/rpc/protocol.js';

const [socket = '', dir = '', listS = '2000'] = process.argv.slice(2);
const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
const h = History.start({ dir, maxBytes: 1 << 30, retentionDays: 30, log: { warn: (m) => out({ event: 'warn', m }), error: (m) => out({ event: 'error', m }) } });
let client: DaemonClient | null = null;

async function connect(): Promise<void> {
  for (;;) {
    try {
      const c = await DaemonClient.connect(socket);
      c.onNotification('events.event', (p) => {
        const e = (p as EventNotification).event;
        if (e.type !== 'close') return;
        const o = observationFromClose(e as CloseEvent);
        if (o) h.recordClose(o);
      });
      await c.call('events.subscribe', { types: ['close'] });
      c.onClose(() => {
        client = null;
        void connect();
      });
      client = c;
      out({ event: 'ready' });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

while (h.status().state !== 'ok') await new Promise((r) => setTimeout(r, 20));
await connect();
setInterval(() => {
  const c = client;
  if (!c) return;
  const start = Date.now();
  c.call<FlowsListResult>('flows.list', { includeClosed: true, limit: 100_000 }).then(
    (r) => {
      h.recordListing(r.flows.map(observationFromFlow), start);
      out({ event: 'listed', flows: r.flows.length });
    },
    () => undefined, // the daemon went away mid-call: the next listing will do
  );
}, Number(listS));
process.on('SIGTERM', () => {
  client?.close();
  void h.stop().then(() => process.exit(0));
});
