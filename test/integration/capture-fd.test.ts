// SPDX-License-Identifier: Apache-2.0
// `fd` delivery (issue 13): `ebpfmonctl capture -w FILE` opens FILE itself and offers the
// descriptor; the daemon takes a duplicate (pidfd_getfd) and writes the pcapng into it. The
// evidence that it really does: status and capture.list say `fd`; the daemon's own write
// counter (/proc/PID/io wchar) grows by the file's bytes while the CLI's read counter
// (rchar) stays near zero. Truth for the packets: tcpdump on the same interface. Also:
// --stream gives the same packets through the socket (status says `stream` and why);
// `-w -` into `tshark -r -` as an unprivileged user runs on the fd path; a descriptor the
// daemon must not write (read-only, a directory, one the client does not have) is refused
// naming params.fd, and a daemon without CAP_SYS_PTRACE falls back to the stream and says why.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { jsonLines } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { until } from '../helpers/wait.js';
import { CTL_MAIN, startDaemon } from '../helpers/daemon.js';
import { readPcapRecords } from '../helpers/pcap-frames.js';
import { captureLabSuite, udpSenderJs, frameDiff, framesOf, lastIsb, pcapngFrames, startCapture, startTcpdump, stopTcpdump } from '../helpers/capture-truth.js';

/** Reports its port, then on "go" sends a 1000-byte datagram every millisecond until "stop", then reports its count. */
const SENDER_JS = udpSenderJs(1000, 1);

/** A raw JSON-RPC client run as the test user: opens what it is told and offers each descriptor in capture.start. */
const OFFER_JS = `
const fs = require('node:fs'); const net = require('node:net');
const [sock, ...what] = process.argv.slice(1);
const fds = what.map((w) => w.startsWith('fd:') ? Number(w.slice(3)) : w.startsWith('ro:') ? fs.openSync(w.slice(3), 'r') : fs.openSync(w.slice(4), 'r'));
(async () => {
  for (const fd of fds) {
    const reply = await new Promise((res) => {
      const s = net.connect(sock, () => s.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'capture.start', params: { stream: true, fd, pids: [process.pid] } }) + '\\n'));
      let b = ''; s.on('data', (d) => { b += d; const nl = b.indexOf('\\n'); if (nl >= 0) { s.destroy(); res(JSON.parse(b.slice(0, nl))); } });
    });
    console.log(JSON.stringify({ fd, reply }));
  }
})();`;

const io = (pid: number): { rchar: number; wchar: number } => {
  const t = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
  return { rchar: Number(/rchar: (\d+)/.exec(t)![1]), wchar: Number(/wchar: (\d+)/.exec(t)![1]) };
};

/**
 * A raw JSON-RPC client: opens FILE, offers it in capture.start for PID's packets with
 * `progress` as given ("default": not sent), asks the daemon to stop MS after the reply, and
 * reports the reply, the methods of the lines that followed and the final counters.
 */
const LINES_JS = `
const fs = require('node:fs'); const net = require('node:net');
const [sock, file, progress, pid, ms] = process.argv.slice(1);
const fd = fs.openSync(file, 'w');
const params = { stream: true, fd, pids: [Number(pid)], ...(progress === 'default' ? {} : { progress: JSON.parse(progress) }) };
const s = net.connect(sock, () => s.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'capture.start', params }) + '\\n'));
let b = ''; const lines = [];
const report = () => console.log(JSON.stringify({ reply: lines[0], methods: lines.slice(1).map((l) => l.method), counters: lines.at(-1)?.params?.counters }));
s.on('data', (d) => {
  b += d; let nl;
  while ((nl = b.indexOf('\\n')) >= 0) {
    lines.push(JSON.parse(b.slice(0, nl))); b = b.slice(nl + 1);
    if (lines.length === 1) { if (lines[0].error) { report(); s.destroy(); return; } setTimeout(() => s.write('{}\\n'), Number(ms)); }
  }
});
s.on('close', () => { if (!lines[0]?.error) report(); });
`;

describe('capture fd delivery: the daemon writes into the client\'s own descriptor', privileged({ timeout: 180_000 }), () => {
  const l = captureLabSuite('tcpdump', 'tshark', 'editcap', 'setpriv');

  /** One capture of a sender's datagrams next to tcpdump; returns what to compare. */
  async function run(name: string, extra: string[], during: (cap: { child: ChildProcess }, file: string) => Promise<void>) {
    const { mon, link, dir } = l;
    const file = path.join(dir, `${name}.pcapng`);
    const dump = path.join(dir, `${name}.tcpdump.pcap`);
    const td = await startTcpdump(mon, link.a.ifname, dump);
    const sender = mon.spawn(process.execPath, ['-e', SENDER_JS, link.b.ip4, '9001'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines = jsonLines(sender);
    const { port } = (await lines.next((o) => typeof o.port === 'number')) as { port: number };
    const cap = await startCapture(mon, l.daemon.socketPath, ['-p', String(sender.pid), ...extra, '-w', file]);
    sender.stdin!.write('go\n');
    try {
      await during(cap, file);
    } catch (err) {
      // Nothing of this trial may outlive it (the next test checks the daemon has no session).
      for (const p of [cap.child, sender, td]) if (p.exitCode === null) p.kill('SIGKILL');
      await cap.exit;
      throw err;
    }
    sender.stdin!.write('stop\n');
    const { sent } = (await lines.next((o) => typeof o.sent === 'number')) as { sent: number };
    await new Promise((r) => setTimeout(r, 200)); // the last datagrams through TC
    process.kill(cap.child.pid!, 'SIGINT');
    assert.equal(await cap.exit, 0, cap.stderr());
    await stopTcpdump(td);
    const truth = framesOf(readPcapRecords(dump).records, [{ proto: 'udp', localPort: port }]);
    const got = pcapngFrames(file);
    assert.equal(truth.length, sent, 'tcpdump saw every datagram');
    const d = frameDiff(got, truth);
    assert.deepEqual({ extra: d.onlyA.length, missing: d.onlyB.length }, { extra: 0, missing: 0 }, `file ${got.length}, tcpdump ${truth.length}`);
    const isb = lastIsb(file);
    assert.equal(Number(isb[7]), 0, 'no drop reported');
    assert.equal(Number(isb[8]), got.length, 'the final statistics block counts every packet (written before the daemon closed its duplicate)');
    assert.match(cap.stderr(), new RegExp(`${got.length} packets written`));
    return { file, got, cap };
  }

  test('-w FILE: status and capture.list say fd; the daemon writes the bytes, the CLI reads none; the same packets as tcpdump', async () => {
    let cliRead = 0;
    let daemonWrote = 0;
    let grew = 0;
    await run('fd', [], async (cap, file) => {
      const st = await l.daemon.call('status');
      assert.deepEqual(st.capture!.sessions.map((s) => [s.delivery, s.deliveryReason]), [['fd', "the client's regular file"]]);
      const list = await l.daemon.call('capture.list');
      assert.equal(list.sessions[0]!.delivery, 'fd');
      const size0 = fs.statSync(file).size;
      const c0 = io(cap.child.pid!);
      const d0 = io(l.daemon.pid);
      await until('300 KB in the file', () => fs.statSync(file).size - size0 > 300_000);
      grew = fs.statSync(file).size - size0;
      cliRead = io(cap.child.pid!).rchar - c0.rchar;
      daemonWrote = io(l.daemon.pid).wchar - d0.wchar;
    });
    process.stderr.write(`fd: file grew ${grew} B; the CLI read ${cliRead} B; the daemon wrote ${daemonWrote} B\n`);
    assert.ok(daemonWrote >= grew, `the daemon wrote ${daemonWrote} B, the file grew ${grew} B`);
    assert.ok(cliRead < 16_384, `the CLI read ${cliRead} B (only the daemon's end line: a regular file's client asks for no progress lines) while the file grew ${grew} B`);
  });

  test('progress: false, as the CLI asks for a regular file: no capture.progress line, only capture.ended; the default sends them', async () => {
    const { mon, link, dir } = l;
    const sender = mon.spawn(process.execPath, ['-e', SENDER_JS, link.b.ip4, '9001'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines = jsonLines(sender);
    await lines.next((o) => typeof o.port === 'number');
    sender.stdin!.write('go\n');
    try {
      const run = async (progress: string) => {
        const file = path.join(dir, `progress-${progress}.pcapng`);
        const r = await mon.exec(process.execPath, ['-e', LINES_JS, l.daemon.socketPath, file, progress, String(sender.pid), '1500'], { timeoutMs: 30_000 });
        const out = JSON.parse(r.stdout) as { reply: { result?: { delivery: string }; error?: { code: number; message: string; data?: { field?: string } } }; methods: string[]; counters?: { written: number } };
        return { ...out, file };
      };
      const quiet = await run('false');
      assert.equal(quiet.reply.result?.delivery, 'fd', JSON.stringify(quiet.reply));
      assert.deepEqual(quiet.methods, ['capture.ended'], 'no progress line, the end line only');
      const chatty = await run('default');
      assert.equal(chatty.reply.result?.delivery, 'fd');
      assert.ok(chatty.methods.filter((m) => m === 'capture.progress').length >= 2, `progress lines by default over 1.5 s: ${chatty.methods.join(', ')}`);
      assert.equal(chatty.methods.at(-1), 'capture.ended');
      // What each session wrote is in its file, and the end line counts it.
      for (const x of [quiet, chatty]) {
        const got = pcapngFrames(x.file).length;
        assert.ok(got > 100, `${x.file}: ${got} packets of the sender's 1,500`);
        assert.equal(x.counters?.written, got, `${x.file}: capture.ended's written = the file's packets`);
      }
      const bad = await run('"no"');
      assert.equal(bad.reply.error?.data?.field, 'params.progress', JSON.stringify(bad.reply));
      assert.match(bad.reply.error!.message, /progress/);
      assert.deepEqual((await l.daemon.call('status')).capture?.sessions, [], 'no session left behind');
    } finally {
      sender.stdin!.write('stop\n');
      await lines.next((o) => typeof o.sent === 'number').catch(() => undefined);
    }
  });

  test('--stream: status says stream and why; the same packets as tcpdump, through the CLI', async () => {
    let cliRead = 0;
    let grew = 0;
    await run('stream', ['--stream'], async (cap, file) => {
      const st = await l.daemon.call('status');
      assert.deepEqual(st.capture!.sessions.map((s) => [s.delivery, s.deliveryReason]), [['stream', 'the client did not offer a descriptor']]);
      const size0 = fs.statSync(file).size;
      const c0 = io(cap.child.pid!);
      await until('300 KB in the file', () => fs.statSync(file).size - size0 > 300_000);
      grew = fs.statSync(file).size - size0;
      cliRead = io(cap.child.pid!).rchar - c0.rchar;
    });
    assert.ok(cliRead >= grew * 0.9, `the CLI read ${cliRead} B while the file grew ${grew} B`);
  });

  test('-w - | tshark -r - as a user outside the ebpfmon group runs on the fd path (the pipe)', async () => {
    const { lab, mon, link } = l;
    const u = await lab.user('capfd');
    const talker = mon.spawn('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--init-groups', process.execPath, '-e',
      `const s = require('node:dgram').createSocket('udp4'); setInterval(() => s.send(Buffer.alloc(32, 7), 9001, '${link.b.ip4}'), 20); console.log('{"up":true}');`]);
    await jsonLines(talker).next((o) => o.up === true);
    try {
      const sh = `EBPFMONCTL_ANNOUNCE=1 setpriv --reuid=${u.uid} --regid=${u.gid} --init-groups ${process.execPath} ${CTL_MAIN} --socket ${l.daemon.socketPath} capture -p ${talker.pid} -c 20 -w - | tshark -r - -T fields -e frame.comment -e udp.dstport`;
      const r = await mon.exec('sh', ['-c', sh], { timeoutMs: 30_000 });
      assert.match(r.stderr, /delivery fd \(the client's pipe\)/);
      assert.match(r.stderr, /20 packets written/);
      const rows = r.stdout.trim().split('\n');
      assert.equal(rows.length, 20, r.stdout + r.stderr);
      for (const row of rows) assert.match(row, new RegExp(`^PID: ${talker.pid}\\\\n.*UserId: ${u.uid}.*\\t9001$`));
      assert.deepEqual((await l.daemon.call('status')).capture?.sessions, []);
    } finally {
      process.kill(talker.pid!, 'SIGKILL');
    }
  });

  test('descriptors the daemon must not write are refused, naming params.fd; nothing is written anywhere', async () => {
    const { lab, mon, dir } = l;
    const u = await lab.user('capfd2');
    const ro = path.join(dir, 'readonly.txt');
    fs.writeFileSync(ro, 'unchanged\n');
    fs.chmodSync(ro, 0o644); // root's file: the user may read it, not write it
    const r = await mon.exec('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--init-groups', process.execPath, '-e', OFFER_JS, l.daemon.socketPath, `ro:${ro}`, `dir:${dir}`, 'fd:987'], { timeoutMs: 20_000 });
    const replies = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { fd: number; reply: { error?: { message: string; data?: { field?: string } } } });
    assert.equal(replies.length, 3, r.stdout + r.stderr);
    const [rdonly, directory, absent] = replies.map((x) => x.reply.error);
    for (const e of [rdonly, directory, absent]) assert.equal(e?.data?.field, 'params.fd', JSON.stringify(e));
    assert.match(rdonly!.message, /is not open for writing/);
    assert.match(directory!.message, /is a directory/);
    assert.match(absent!.message, /descriptor 987 of the calling process is not open/);
    assert.equal(fs.readFileSync(ro, 'utf8'), 'unchanged\n');
    assert.deepEqual((await l.daemon.call('status')).capture?.sessions, [], 'no session was started');
  });

  test('a daemon without CAP_SYS_PTRACE: pidfd_getfd is refused, the session falls back to the stream and says why', async () => {
    // The daemon again, its main thread without CAP_SYS_PTRACE (what a unit without it in its bounding set gets).
    const { mon, link, dir, lab } = l;
    await l.daemon.stop(); // after() stops only a running daemon
    const main = path.join(dir, 'noptrace-main.mjs');
    fs.writeFileSync(main, `import koffi from '${path.resolve('node_modules/koffi/index.js')}';
const libc = koffi.load('libc.so.6');
const capget = libc.func('int capget(_Inout_ uint32_t *hdr, _Out_ uint32_t *data)');
const capset = libc.func('int capset(uint32_t *hdr, uint32_t *data)');
const hdr = new Uint32Array([0x20080522, 0]); const data = new Uint32Array(6);
if (capget(hdr, data) !== 0) throw new Error('capget');
data[0] &= ~(1 << 19); data[1] &= ~(1 << 19); // CAP_SYS_PTRACE out of effective and permitted
if (capset(hdr, data) !== 0) throw new Error('capset');
process.argv.splice(1, 1, ${JSON.stringify(path.resolve('build/js/daemon/src/ebpfmon.js'))});
await import(${JSON.stringify(path.resolve('build/js/daemon/src/ebpfmon.js'))});
`);
    const d2 = await startDaemon(mon, { main, config: { interfaces: [link.a.ifname] } });
    l.daemon = d2; // after() stops it
    {
      const u = await lab.user('capfd3');
      const file = path.join(dir, 'noptrace.pcapng');
      fs.writeFileSync(file, '');
      fs.chownSync(file, u.uid, u.gid);
      const talker = mon.spawn('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--init-groups', process.execPath, '-e',
        `const s = require('node:dgram').createSocket('udp4'); setInterval(() => s.send(Buffer.alloc(32, 7), 9001, '${link.b.ip4}'), 20); console.log('{"up":true}');`]);
      await jsonLines(talker).next((o) => o.up === true);
      try {
        const sh = `EBPFMONCTL_ANNOUNCE=1 setpriv --reuid=${u.uid} --regid=${u.gid} --init-groups ${process.execPath} ${CTL_MAIN} --socket ${d2.socketPath} capture -p ${talker.pid} -c 10 -w ${file}`;
        const r = await mon.exec('sh', ['-c', sh], { timeoutMs: 30_000 });
        assert.match(r.stderr, /delivery stream \(pidfd_getfd refused \(EPERM/, r.stderr);
        assert.match(r.stderr, /10 packets written/);
        const shown = execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.comment'], { encoding: 'utf8' }).trim().split('\n');
        assert.equal(shown.length, 10);
        assert.ok(d2.logs().some((e) => e.delivery === 'stream' && /pidfd_getfd refused/.test(String(e.deliveryReason))), 'the daemon logs the fallback and why');
      } finally {
        process.kill(talker.pid!, 'SIGKILL');
      }
    }
  });
});
