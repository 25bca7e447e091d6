// SPDX-License-Identifier: Apache-2.0
// How long a captured packet waits in the kernel's ring before the daemon writes it
// (capture.start `latencyMs`, `ebpfmonctl capture --latency MS`; docs/capture.md "Latency").
// Truth: the time the test's sender sent each datagram, and the time its Enhanced Packet
// Block appeared in the file the daemon writes (fd delivery), polled every 5 ms. One
// datagram at a time never reaches the ring's wakeup mark, so only the reader's timer
// brings it: with `--latency 1000` the delays spread over a second (the old fixed 50 ms
// timer kept every one under about 100 ms), and once a second session asks for 20 ms the
// first session's packets come within a fraction of that second too (the shortest bound
// of the open sessions is kept), and the second session's end gives the longer bound back.
// A process that sends one datagram and exits before the reader's run is still named in the
// packet's comment (the daemon's process table behind /proc).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { jsonLines } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { ctl } from '../helpers/daemon.js';
import { captureLabSuite, countEpbs as epbs, pcapngBlocks, startCapture } from '../helpers/capture-truth.js';
import { until } from '../helpers/wait.js';

/** Reports its port, then sends one 200-byte datagram per "send" line and reports when. */
const ONE_BY_ONE_JS = `
const dgram = require('node:dgram'); const rl = require('node:readline');
const [host, port] = process.argv.slice(1);
const u = dgram.createSocket('udp4');
u.bind(0, () => {
  console.log(JSON.stringify({ port: u.address().port }));
  rl.createInterface({ input: process.stdin }).on('line', (l) => {
    if (l !== 'send') { u.close(); return; }
    const at = Date.now();
    u.send(Buffer.alloc(200, 7), Number(port), host, () => console.log(JSON.stringify({ sentAt: at })));
  });
});`;

/** Reports its port, then on "go" sends one datagram and exits as soon as it is sent. */
const SEND_AND_EXIT_JS = `
const dgram = require('node:dgram'); const rl = require('node:readline');
const [host, port] = process.argv.slice(1);
const u = dgram.createSocket('udp4');
u.bind(0, () => {
  console.log(JSON.stringify({ port: u.address().port }));
  rl.createInterface({ input: process.stdin }).on('line', () => u.send(Buffer.alloc(100, 1), Number(port), host, () => process.exit(0)));
});`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('capture latency: a packet waits in the ring at most the shortest bound the open sessions asked for', privileged({ timeout: 180_000 }), () => {
  const l = captureLabSuite();

  test('--latency 1000 spreads the delays over the second; a 20 ms session joining shortens them; its end restores 1000', async () => {
    const { mon, link, daemon, dir } = l;
    const sender = mon.spawn(process.execPath, ['-e', ONE_BY_ONE_JS, link.b.ip4, '9001'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines = jsonLines(sender);
    await lines.next((o) => typeof o.port === 'number');
    const file = path.join(dir, 'slow.pcapng');
    const other = path.join(dir, 'fast.pcapng');
    const slow = await startCapture(mon, daemon.socketPath, ['-p', String(sender.pid), '--latency', '1000', '--stats-interval', '0', '-w', file]);
    let fast: Awaited<ReturnType<typeof startCapture>> | null = null;
    let sends = 0;
    /** The time the sender reports for its `n`-th datagram (jsonLines keeps every line). */
    const nthSend = async (n: number): Promise<number> => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const at = lines.lines.filter((o) => typeof o.sentAt === 'number')[n - 1]?.sentAt as number | undefined;
        if (at !== undefined) return at;
        if (Date.now() > deadline) throw new Error(`the sender did not report datagram ${n}`);
        await sleep(2);
      }
    };
    /** Sends `n` datagrams one at a time at random phases; the delay of each until it is in `file`. */
    const delays = async (n: number): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        await sleep(Math.floor(Math.random() * 400));
        const before = epbs(file);
        sender.stdin!.write('send\n');
        const sentAt = await nthSend(++sends);
        const deadline = Date.now() + 5000;
        while (epbs(file) <= before) {
          if (Date.now() > deadline) throw new Error(`datagram ${i + 1} not in the file 5 s after it was sent`);
          await sleep(5);
        }
        out.push(Date.now() - sentAt);
      }
      return out;
    };
    try {
      const st = (await daemon.call('status')).capture!;
      assert.equal(st.readerLatencyMs, 1000, 'status: the reader keeps the only session\'s bound');
      assert.deepEqual(st.sessions.map((s) => s.latencyMs), [1000]);
      const alone = await delays(6);
      process.stderr.write(`latency 1000, delays (ms): ${alone.join(' ')}\n`);
      assert.ok(Math.max(...alone) >= 150, `with a 1000 ms bound some datagram waits longer than the old 50 ms timer allowed: ${alone.join(', ')} ms`);
      assert.ok(Math.max(...alone) <= 2500, `no datagram waits far beyond its 1000 ms bound: ${alone.join(', ')} ms`);

      fast = await startCapture(mon, daemon.socketPath, ['-p', String(sender.pid), '--latency', '20', '--stats-interval', '0', '-w', other]);
      const both = (await daemon.call('status')).capture!;
      assert.equal(both.readerLatencyMs, 20, 'status: the shortest bound of the two sessions');
      assert.deepEqual(both.sessions.map((s) => s.latencyMs).sort((a, b) => a - b), [20, 1000]);
      const shared = await delays(6);
      process.stderr.write(`latency 1000 beside a 20 ms session, delays (ms): ${shared.join(' ')}\n`);
      assert.ok(Math.max(...shared) <= 400, `the 20 ms session's bound serves the first session's packets too: ${shared.join(', ')} ms`);

      process.kill(fast.child.pid!, 'SIGINT');
      assert.equal(await fast.exit, 0, fast.stderr());
      fast = null;
      assert.equal((await daemon.call('status')).capture!.readerLatencyMs, 1000, 'status: the longer bound again once the 20 ms session ended');
      assert.equal(epbs(other), 6, 'the second session wrote the 6 datagrams sent while it ran');
    } finally {
      for (const c of [fast, slow]) if (c && c.child.exitCode === null) c.child.kill('SIGINT');
      await Promise.all([fast?.exit, slow.exit]);
      sender.stdin!.end();
      sender.kill();
    }
    assert.equal(epbs(file), 12, 'the slow session wrote all 12 datagrams');
  });

  test('a process gone before the reader writes its packet is still named, from the daemon\'s process table', async () => {
    const { mon, link, daemon, dir } = l;
    const file = path.join(dir, 'gone.pcapng');
    const sender = mon.spawn(process.execPath, ['-e', SEND_AND_EXIT_JS, link.b.ip4, '9001'], { stdio: ['pipe', 'pipe', 'pipe'] });
    await jsonLines(sender).next((o) => typeof o.port === 'number');
    const pid = sender.pid!;
    const cap = await startCapture(mon, daemon.socketPath, ['-p', String(pid), '--latency', '1000', '--stats-interval', '0', '-w', file]);
    try {
      const exited = new Promise((r) => sender.once('exit', r));
      sender.stdin!.write('go\n');
      await exited;
      // Gone (and reaped) before the reader's next run, up to a second after the send.
      assert.equal(fs.existsSync(`/proc/${pid}`), false);
      await until('the datagram in the file', () => epbs(file) === 1, 5000, 10);
    } finally {
      if (cap.child.exitCode === null) cap.child.kill('SIGINT');
    }
    assert.equal(await cap.exit, 0, cap.stderr());
    const epb = pcapngBlocks(file).filter((b) => b.type === 6);
    assert.equal(epb.length, 1);
    const comments = epb[0]!.options.filter((o) => o.code === 1).map((o) => Buffer.from(o.hex, 'hex').toString('utf8'));
    const escaped = process.execPath.replace(/[/.]/g, '\\$&');
    // The arguments as the exec event carried them (the kernel cuts long ones short).
    assert.match(comments[0] ?? '', new RegExp(`^PID: ${pid}\\nCmd: ${escaped}\\nArgs: ${escaped} -e +const dgram`), JSON.stringify(comments));
    assert.ok(comments.includes(`ParentPID: ${process.pid}\nParentCmd: ${process.execPath}\nParentArgs: ${process.argv.join(' ')}`), JSON.stringify(comments));
  });

  test('bad latencies are refused naming the flag or the field; nothing starts', async () => {
    const { daemon, dir } = l;
    for (const v of ['5', '1001', 'soon']) {
      const r = await ctl(['capture', '--latency', v, '-w', path.join(dir, 'never.pcapng')], { socket: daemon.socketPath });
      assert.equal(r.code, 1, `--latency ${v}: ${r.stderr}`);
      assert.match(r.stderr, /--latency/, `--latency ${v}: the error names the flag`);
    }
    assert.equal(fs.existsSync(path.join(dir, 'never.pcapng')), false, 'no file was made');
    for (const v of [0, 9, 1001, 2.5, '250', null]) {
      await assert.rejects(daemon.callRaw('capture.start', { stream: true, latencyMs: v }), /params\.latencyMs: expected an integer from 10 to 1000/, `latencyMs ${JSON.stringify(v)}`);
    }
    assert.deepEqual((await daemon.call('status')).capture!.sessions, [], 'no session was left behind');
  });
});
