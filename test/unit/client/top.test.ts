// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl top` against daemons with and without incremental processes.list replies:
// a socket server answering as each would (line-delimited JSON-RPC), recording what the
// client asked. Against a daemon that refuses `since` (as every daemon before it does:
// unknown params are InvalidParams) or answers without a cursor, top asks for full replies
// and prints the same rows; against one with cursors, it sends the last cursor and merges.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CTL_MAIN } from '../../helpers/daemon.js';
import type { ProcessTotals } from '../../../daemon/src/contract/flows.js';

function proc(pid: number, txBytes: number): ProcessTotals {
  return {
    pid, comm: `p${pid}`, uid: 0, exe: null, cgroupId: null, flows: 1, openFlows: 1, txBytes, rxBytes: 0, txPackets: 1, rxPackets: 0, lastSeenAt: null,
    places: [], http: null, cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null,
  };
}

type Answer = (params: Record<string, unknown>, n: number) => { result?: unknown; error?: { code: number; message: string } };

/** A daemon on a socket: `answer` decides each processes.list reply; every request's params are kept. */
function fakeDaemon(sock: string, answer: Answer): Promise<{ server: net.Server; calls: Array<Record<string, unknown>> }> {
  const calls: Array<Record<string, unknown>> = [];
  const server = net.createServer((s) => {
    let buf = '';
    s.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const req = JSON.parse(buf.slice(0, nl)) as { id: number; method: string; params?: Record<string, unknown> };
        buf = buf.slice(nl + 1);
        const params = req.params ?? {};
        calls.push(params);
        s.write(`${JSON.stringify({ jsonrpc: '2.0', id: req.id, ...answer(params, calls.length) })}\n`);
      }
    });
  });
  return new Promise((resolve) => server.listen(sock, () => resolve({ server, calls })));
}

function top(sock: string, count: number): Promise<{ code: number | null; frames: ProcessTotals[][]; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CTL_MAIN, '--socket', sock, 'top', '--json', '--interval', '1', '--count', String(count)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    c.once('exit', (code) => resolve({ code, stderr, frames: stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ProcessTotals[]) }));
  });
}

/** What the daemon holds at refresh n (1-based): pid 3 exits after the first, pid 4 starts, pid 1 sends. */
const truth = (n: number): ProcessTotals[] => (n === 1 ? [proc(1, 100), proc(2, 50), proc(3, 10)] : [proc(1, 100 + n * 1000), proc(2, 50), proc(4, 5)]);
const pidsOf = (frame: ProcessTotals[]) => frame.map((p) => p.pid).sort();

describe('ebpfmonctl top: incremental replies, and daemons without them', () => {
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-top-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a daemon that refuses since (InvalidParams params.since): full replies, same rows', async () => {
    const sock = path.join(dir, 'old.sock');
    let n = 0;
    const d = await fakeDaemon(sock, (p) => {
      if ('since' in p) return { error: { code: -32602, message: `params.since: expected one of the known parameters (uid, limit, by, places, unit, container, app, cgroup), got ${JSON.stringify(p.since)}` } };
      return { result: { processes: truth(++n) } };
    });
    try {
      const r = await top(sock, 3);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.frames.map(pidsOf), [[1, 2, 3], [1, 2, 4], [1, 2, 4]]);
      assert.equal(r.frames[2]!.find((p) => p.pid === 1)!.txBytes, 3100);
      // One refused call, then plain ones only (the fallback sticks for the connection).
      assert.deepEqual(d.calls.map((c) => 'since' in c), [true, false, false, false]);
    } finally {
      d.server.close();
    }
  });

  test('a daemon that answers without a cursor: full replies from then on', async () => {
    const sock = path.join(dir, 'nocursor.sock');
    let n = 0;
    const d = await fakeDaemon(sock, () => ({ result: { processes: truth(++n) } }));
    try {
      const r = await top(sock, 3);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.frames.map(pidsOf), [[1, 2, 3], [1, 2, 4], [1, 2, 4]]);
      assert.deepEqual(d.calls.map((c) => 'since' in c), [true, false, false]);
    } finally {
      d.server.close();
    }
  });

  test('a daemon with cursors: the last cursor is sent, changed rows and gone keys merged', async () => {
    const sock = path.join(dir, 'new.sock');
    const d = await fakeDaemon(sock, (p, n) => {
      if (n === 1) return { result: { processes: truth(1), cursor: 'c1', full: true } };
      if (n === 2) return { result: { processes: [truth(2)[0], truth(2)[2]], cursor: 'c2', full: false, gone: ['3'] } };
      return { result: { processes: [truth(n)[0]], cursor: `c${n}`, full: false, gone: [] } };
    });
    try {
      const r = await top(sock, 3);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.frames.map(pidsOf), [[1, 2, 3], [1, 2, 4], [1, 2, 4]]);
      assert.equal(r.frames[2]!.find((p) => p.pid === 1)!.txBytes, 3100);
      assert.equal(r.frames[2]!.find((p) => p.pid === 2)!.txBytes, 50, 'a row the daemon did not resend is kept');
      assert.deepEqual(d.calls.map((c) => c.since), [null, 'c1', 'c2']);
    } finally {
      d.server.close();
    }
  });
});
