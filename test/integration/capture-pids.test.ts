// SPDX-License-Identifier: Apache-2.0
// Several pid sessions at once (the engine's shape when every session names processes: one
// pass over all their pids first, bench/capture): `-p A`, `-p B` and `-p A -p B` while both
// processes send. Truth: tcpdump on the same interface, split by each client's port. Each
// file holds exactly its processes' frames, byte for byte.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { jsonLines } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { readPcapRecords } from '../helpers/pcap-frames.js';
import { captureLabSuite, frameDiff, framesOf, pcapngFrames, startCapture, startTcpdump, stopTcpdump } from '../helpers/capture-truth.js';

/** Reports its port, then on "go" sends 40 datagrams of 200 bytes and reports "done". */
const SENDER_JS = `
const dgram = require('node:dgram'); const rl = require('node:readline');
const [host, port] = process.argv.slice(1);
const u = dgram.createSocket('udp4');
u.bind(0, () => {
  console.log(JSON.stringify({ port: u.address().port }));
  rl.createInterface({ input: process.stdin }).once('line', () => {
    let i = 0; const next = () => { if (i++ === 40) { console.log(JSON.stringify({ done: true })); return; } u.send(Buffer.alloc(200, i), Number(port), host, () => setTimeout(next, 2)); }; next();
  });
});`;

describe('capture: several pid sessions at once select exactly their processes', privileged({ timeout: 120_000 }), () => {
  const l = captureLabSuite('tcpdump', 'tshark', 'editcap');

  test('-p A, -p B and -p A -p B: each file = tcpdump\'s frames of those processes', async () => {
    const { mon, link, daemon, dir } = l;
    const dump = path.join(dir, 'tcpdump.pcap');
    const td = await startTcpdump(mon, link.a.ifname, dump);
    const senders = [0, 1].map(() => {
      const child = mon.spawn(process.execPath, ['-e', SENDER_JS, link.b.ip4, '9001'], { stdio: ['pipe', 'pipe', 'pipe'] });
      return { child, lines: jsonLines(child) };
    });
    const ports = await Promise.all(senders.map(async (s) => ((await s.lines.next((o) => typeof o.port === 'number')) as { port: number }).port));
    const [a, b] = senders.map((s) => String(s.child.pid));
    const file = (n: string) => path.join(dir, `${n}.pcapng`);
    const caps = [
      await startCapture(mon, daemon.socketPath, ['-p', a!, '-w', file('a')]),
      await startCapture(mon, daemon.socketPath, ['-p', b!, '-w', file('b')]),
      await startCapture(mon, daemon.socketPath, ['-p', a!, '-p', b!, '-w', file('ab')]),
    ];
    for (const s of senders) s.child.stdin!.write('go\n');
    await Promise.all(senders.map((s) => s.lines.next((o) => o.done === true, 30_000)));
    for (const c of caps) process.kill(c.child.pid!, 'SIGINT');
    assert.deepEqual(await Promise.all(caps.map((c) => c.exit)), [0, 0, 0], caps.map((c) => c.stderr()).join('\n'));
    await stopTcpdump(td);

    const records = readPcapRecords(dump).records;
    const want = {
      a: framesOf(records, [{ proto: 'udp', localPort: ports[0]! }]),
      b: framesOf(records, [{ proto: 'udp', localPort: ports[1]! }]),
      ab: framesOf(records, [{ proto: 'udp', localPort: ports[0]! }, { proto: 'udp', localPort: ports[1]! }]),
    };
    assert.equal(want.a.length, 40);
    assert.equal(want.b.length, 40);
    for (const n of ['a', 'b', 'ab'] as const) {
      const got = pcapngFrames(file(n));
      const d = frameDiff(want[n], got);
      assert.deepEqual({ missing: d.onlyA.length, extra: d.onlyB.length }, { missing: 0, extra: 0 }, `-p ${n}: tcpdump ${want[n].length}, file ${got.length}`);
    }
  });
});
