// SPDX-License-Identifier: Apache-2.0
// The daemon under stress: kill -9 and restart during continuous traffic loses no byte
// (tcpdump is the truth), 10,000 malformed or hostile messages each get the right error
// or a clean disconnect while the daemon keeps serving, and its memory comes back down.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { type Lab, jsonLines, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { destroyMonitorLab, monitorLab, PEER, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals } from '../helpers/pcap.js';


function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

describe('daemon resilience', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;

  before(async () => {
    ({ lab, mon, peer, link } = await monitorLab());
    daemon = await startDaemon(mon, { config: { rpc: { maxMessageBytes: 65536, maxClients: 32, maxSubscriptionsPerClient: 4, subscriberQueue: 1000 } } });
  });
  after(() => destroyMonitorLab(daemon, lab));

  test('kill -9 and restart under continuous traffic: the flow counts every byte tcpdump saw', async () => {
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '0']);
    const port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'restart.pcap'));
    // ~3 s of steady traffic: 1400 bytes every 10 ms.
    const stream = mon.spawn(process.execPath, [PEER, 'tcp-stream', link.b.ip4, String(port), '1400', '10', '300']);
    const out = jsonLines(stream);
    await out.next((o) => o.event === 'connected');
    await new Promise((r) => setTimeout(r, 700));
    await daemon.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 700)); // traffic flows with no daemon at all
    daemon = await restartDaemon(daemon);
    const done = await out.next((o) => o.event === 'done', 30_000);
    const pkts = await cap.stop();
    const oracle = flowTotals(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: 6, localPort: Number(done.localPort), remotePort: port });
    const fl = await daemon.call('flows.list', { pid: stream.pid });
    assert.equal(fl.flows.length, 1);
    const f = fl.flows[0]!;
    assert.equal(done.sent, 300 * 1400);
    assert.deepEqual([f.txBytes, f.rxBytes, f.txPackets, f.rxPackets], [oracle.txBytes, oracle.rxBytes, oracle.txPackets, oracle.rxPackets]);
    const st = await daemon.call('status');
    assert.deepEqual(st.adopted, { flows: true, sockets: true, procs: true, scan: true, handoff: true, flowread: true });
  });

  test('10,000 malformed or hostile messages: each gets the right error or a clean disconnect; the daemon keeps serving; memory returns', async () => {
    const sock = daemon.socketPath;
    const open = () => new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(sock, () => resolve(s));
      s.once('error', reject);
    });
    /** Sends lines on one connection; resolves with the replies once `expect` have arrived or the server closed. */
    const exchange = async (lines: string[], expect: number, waitClose = false) => {
      const s = await open();
      s.setEncoding('utf8');
      let buf = '';
      const replies: Array<Record<string, unknown>> = [];
      let closed = false;
      s.on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const m = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
          if ('id' in m) replies.push(m); // event notifications (no id) are not replies
          buf = buf.slice(nl + 1);
        }
      });
      s.on('close', () => (closed = true));
      s.on('error', () => undefined);
      s.write(lines.map((l) => `${l}\n`).join(''));
      const t0 = Date.now();
      while (replies.length < expect && !closed && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 5));
      while (waitClose && !closed && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 5));
      s.destroy();
      return { replies, closed };
    };
    const code = (r: Record<string, unknown>) => (r.error as { code?: number } | undefined)?.code;
    let sent = 0;
    const round = async (scale: number) => {
      // bad JSON
      let r = await exchange(Array.from({ length: 200 * scale }, (_, i) => `{"jsonrpc":"2.0","id":${i},"method":`), 200 * scale);
      assert.ok(r.replies.length === 200 * scale && r.replies.every((x) => code(x) === -32700), JSON.stringify(r.replies.slice(0, 2)) + r.replies.length);
      sent += 200 * scale;
      // wrong types and unknown parameters
      const bad = [{ pid: 'x' }, { limit: -5 }, { proto: 7 }, { remoteAddr: {} }, { port: [] }, { sort: null }, { nope: 1 }];
      r = await exchange(Array.from({ length: 300 * scale }, (_, i) => JSON.stringify({ jsonrpc: '2.0', id: i, method: 'flows.list', params: bad[i % bad.length] })), 300 * scale);
      assert.ok(r.replies.length === 300 * scale && r.replies.every((x) => code(x) === -32602 && (x.error as { data?: { field?: string } }).data?.field?.startsWith('params')), JSON.stringify(r.replies.find((x) => code(x) !== -32602)) + r.replies.length);
      sent += 300 * scale;
      // unknown methods and invalid requests
      r = await exchange(Array.from({ length: 200 * scale }, (_, i) => (i % 2 ? JSON.stringify({ jsonrpc: '2.0', id: i, method: `x.${i}` }) : JSON.stringify({ jsonrpc: '1.0', id: i, method: 'status' }))), 200 * scale);
      assert.ok(r.replies.length === 200 * scale && r.replies.every((x) => code(x) === -32601 || code(x) === -32600), JSON.stringify(r.replies.find((x) => code(x) !== -32601 && code(x) !== -32600)) + r.replies.length);
      sent += 200 * scale;
      // deep nesting (within the size limit)
      r = await exchange(Array.from({ length: 20 * scale }, (_, i) => `{"jsonrpc":"2.0","id":${i},"method":"flows.list","params":{"pid":${'['.repeat(10000)}${']'.repeat(10000)}}}`), 20 * scale);
      assert.ok(r.replies.length === 20 * scale && r.replies.every((x) => code(x) === -32602), JSON.stringify(r.replies.slice(0, 1)) + r.replies.length);
      sent += 20 * scale;
      // subscription floods: the 5th and later on a connection are refused
      r = await exchange(Array.from({ length: 100 * scale }, (_, i) => JSON.stringify({ jsonrpc: '2.0', id: i, method: 'events.subscribe' })), 100 * scale);
      assert.equal(r.replies.filter((x) => 'result' in x).length, 4);
      assert.ok(r.replies.filter((x) => !('result' in x)).every((x) => code(x) === 1003));
      sent += 100 * scale;
      // oversize messages: error, then the connection is closed
      for (let i = 0; i < 5 * scale; i++) {
        r = await exchange([`{"jsonrpc":"2.0","id":1,"method":"status","params":"${'x'.repeat(70_000)}"}`], 1, true);
        assert.equal(code(r.replies[0]!), 1004);
        assert.ok(r.closed);
        sent++;
      }
      // clients that connect and vanish, some mid-message
      for (let i = 0; i < 170 * scale; i++) {
        const s = await open();
        if (i % 2) s.write('{"jsonrpc":"2.0","id":1,"meth');
        s.destroy();
        sent++;
      }
    };
    await round(1); // warm-up: the daemon reaches its working size
    await new Promise((r) => setTimeout(r, 1000));
    const baseline = rssKb(daemon.pid);
    sent = 0;
    while (sent < 10_000) await round(2);
    // still serving, correctly
    const st = await daemon.call('status');
    assert.equal(st.transports.rpc.clients, 1, 'only this status call is connected: every hostile client was cleaned up');
    assert.ok((await daemon.call('flows.list', { limit: 1 })).total >= 0);
    await new Promise((r) => setTimeout(r, 3000));
    const final = rssKb(daemon.pid);
    assert.ok(final < baseline * 1.25 + 20 * 1024, `RSS ${final} kB vs baseline ${baseline} kB after ${sent} hostile messages`);
  });
});
