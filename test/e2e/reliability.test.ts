// SPDX-License-Identifier: Apache-2.0
// Issue 18, reproduced as written and asserted the other way round: no local user exhausts
// the daemon (memory, connections, descriptors, logs), deployments cannot corrupt each
// other (the pin lock, teardown), clients never lose output (pipes) or die silently
// (streams), and bad configurations are refused before anything changes. The truth is the
// kernel's own view: /proc/<pid>/status and fd/, `tc filter show`, the exit codes and
// output of the real binaries.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type Host, type Lab, type TestUser, sh } from '../helpers/lab.js';
import { privileged, scaled } from '../helpers/privileged.js';
import { until as waitUntil } from '../helpers/wait.js';
import { BUILD, CTL_MAIN, DAEMON_MAIN, DAEMON_NODE_ARGS, ctl, daemonOnce, destroyMonitorLab, monitorLab, restartDaemon, startDaemon, writeConfig, type TestDaemon } from '../helpers/daemon.js';
import type { Flow, StatusResult } from '../../daemon/src/contract/index.js';

const HOG = path.join(BUILD, 'test/helpers/rpc-hog.js');

function procStatus(pid: number, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}
const rssMb = (pid: number) => procStatus(pid, 'VmRSS') / 1024;
const fdCount = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** rpc-hog run as `user`: resolves with its first JSON line; `stop()` ends it (closes stdin). */
function hog(lab: Lab, user: TestUser, args: Array<string | number>): { ready: Promise<Record<string, unknown>>; child: ChildProcess; stop(): Promise<void> } {
  const child = spawn('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--', process.execPath, HOG, ...args.map(String)], { stdio: ['pipe', 'pipe', 'pipe'] });
  lab.track(child);
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
    });
    child.once('exit', (code) => reject(new Error(`rpc-hog ${args[0]} exited ${code}: ${err}`)));
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { ready, child, stop: async () => { child.stdin!.end(); await exited; } };
}

describe('reliability: nobody exhausts the daemon, nothing is lost silently', privileged({ timeout: 600_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let daemon: TestDaemon;
  let mallory: TestUser;
  let bob: TestUser;
  let peerIp: string;

  before(async () => {
    let link;
    ({ lab, mon, link } = await monitorLab());
    peerIp = link.b.ip4;
    mallory = await lab.user('mal');
    bob = await lab.user('bob');
    daemon = await startDaemon(mon, { config: { maps: { flows: 262144 } } });
  });
  after(() => destroyMonitorLab(daemon, lab));

  const rootStatus = async () => {
    const r = await ctl(['status', '--json'], { socket: daemon.socketPath });
    assert.equal(r.code, 0, `root's status: ${r.stderr}`);
    return JSON.parse(r.stdout) as StatusResult;
  };

  test('items 1-2: batches from an unprivileged user, read or not, and work for clients that left: RSS stays under 300 MB while root is served', async (t) => {
    const peak = { rss: rssMb(daemon.pid) };
    const startRss = peak.rss;
    const sampler = setInterval(() => (peak.rss = Math.max(peak.rss, rssMb(daemon.pid))), 100);
    try {
      // Three clients of one user, 79 lines of 64 status calls each, never reading a reply.
      const noread = hog(lab, mallory, ['flood', daemon.socketPath, 3, 79, 64, 'noread']);
      await noread.ready;
      await rootStatus();
      // Ten connections writing 16 such lines each and closing at once.
      const gone = hog(lab, mallory, ['flood', daemon.socketPath, 10, 16, 64, 'close']);
      await gone.ready;
      const st = await rootStatus();
      assert.ok(st.transports.rpc.clients >= 1);
      // 2,000 lb.stats calls (NotAvailable here: no LB) and a reader that reads everything.
      const reader = hog(lab, bob, ['flood', daemon.socketPath, 2, 20, 64, 'read']);
      const r = await reader.ready;
      assert.equal(r.replies, 40, 'every batch line got its reply');
      await rootStatus();
      await noread.stop();
      await reader.stop();
    } finally {
      clearInterval(sampler);
    }
    t.diagnostic(`RSS at the start ${startRss.toFixed(0)} MB, peak ${peak.rss.toFixed(0)} MB`);
    assert.ok(peak.rss < 300, `peak RSS ${peak.rss.toFixed(0)} MB (at the start ${startRss.toFixed(0)} MB)`);
  });

  test('item 3: 64 idle connections from one user do not lock root (or another user) out; the user gets its own limit', async () => {
    const base = (await rootStatus()).transports.rpc;
    const h = hog(lab, mallory, ['hold', daemon.socketPath, 64]);
    const r = await h.ready;
    const st = await rootStatus();
    assert.equal(r.opened, st.transports.rpc.limits.maxClientsPerUid, `admitted: ${JSON.stringify(r)}`);
    assert.equal(r.refused, 64 - st.transports.rpc.limits.maxClientsPerUid);
    assert.match(String((r.messages as string[])[0]), /already has 16 connections open/);
    assert.equal((st.transports.rpc.refused.uidLimit ?? 0) - (base.refused.uidLimit ?? 0), r.refused);
    const other = await ctl(['status'], { socket: daemon.socketPath, user: bob });
    assert.equal(other.code, 0, `another user still gets in: ${other.stderr}`);
    assert.match(other.stdout, /refused: uidLimit \d+/, 'status shows the refusals');
    await h.stop();
  });

  test('item 5: 2,000 `null` lines from a user: each answered InvalidRequest, nothing logged as an error', async () => {
    const errorsBefore = daemon.logs().filter((l) => Number(l.level) >= 50).length;
    const child = spawn('setpriv', [`--reuid=${mallory.uid}`, `--regid=${mallory.gid}`, '--init-groups', '--', process.execPath, '-e', `
      const s = require('node:net').connect(process.argv[1]);
      let n = 0, bad = 0, buf = '';
      s.on('connect', () => s.write('null\\n'.repeat(2000)));
      s.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\\n')) >= 0) { const m = JSON.parse(buf.slice(0, i)); buf = buf.slice(i + 1); n++; if (m.error?.code !== -32600 || m.id !== null) bad++; } if (n >= 2000) { console.log(JSON.stringify({ n, bad })); s.destroy(); } });
    `, daemon.socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    lab.track(child);
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    await new Promise((r) => child.once('exit', r));
    assert.deepEqual(JSON.parse(out), { n: 2000, bad: 0 });
    await sleep(200);
    assert.equal(daemon.logs().filter((l) => Number(l.level) >= 50).length, errorsBefore, 'client mistakes are counted, not logged');
  });

  test('item 9: `flows --json` through a pipe is the whole answer (100,000 flows), as to a file', async () => {
    // 100,000 flows: two UDP sockets in the monitored host send to 50,000 ports each of the peer.
    const sender = mon.spawn(process.execPath, ['-e', `
      const dgram = require('node:dgram');
      const b = Buffer.alloc(1);
      const run = (s, done) => { let p = 0; const next = () => { for (let i = 0; i < 2000 && p < 50000; i++, p++) s.send(b, 10000 + p, process.argv[1]); if (p < 50000) setImmediate(next); else setTimeout(() => { s.close(); done(); }, 500); }; s.bind(0, next); };
      let left = 2; for (let k = 0; k < 2; k++) run(dgram.createSocket('udp4'), () => { if (--left === 0) process.exit(0); });
    `, peerIp], { stdio: 'ignore' });
    await new Promise((r) => sender.once('exit', r));
    await sleep(3000); // the daemon's next collection
    // To a file, and through a pipe (`| cat`): both whole. The flows are live (counters move
    // between two dumps), so the truth is the set of flows, not a byte count.
    const dir = lab.tmpdir();
    const file = path.join(dir, 'flows.json');
    const piped = path.join(dir, 'piped.json');
    const [c, a] = mon.wrap('sh', ['-c', `"$0" "$1" --socket "$2" flows --json --limit 100000 > "$3" && "$0" "$1" --socket "$2" flows --json --limit 100000 | cat > "$4"`, process.execPath, CTL_MAIN, daemon.socketPath, file, piped]);
    await sh(c, a, { timeoutMs: scaled(180_000) });
    const keys = (f: string) => new Set((JSON.parse(fs.readFileSync(f, 'utf8')) as Flow[]).map((x) => `${x.protocol} ${x.localAddr}:${x.localPort} ${x.remoteAddr}:${x.remotePort}`));
    const toFile = keys(file);
    const toPipe = keys(piped);
    assert.equal(toFile.size, 100000, 'the file holds 100,000 flows');
    assert.equal(toPipe.size, 100000, 'the pipe got 100,000 flows, and they parse whole');
    assert.deepEqual([...toPipe].filter((k) => !toFile.has(k)), [], 'the same flows');
    // `| head -c 10`: the reader goes away; the client stops quietly (128+SIGPIPE), no stack trace.
    const head = await sh('sh', ['-c', `"$0" "$1" --socket "$2" flows --json --limit 100000 | head -c 10 >/dev/null`, process.execPath, CTL_MAIN, daemon.socketPath], { allowFail: true, timeoutMs: scaled(180_000) });
    assert.equal(head.stderr, '', 'nothing on stderr');
  });

  test('item 10: streaming clients say the daemon went away, exit 2 when told not to wait, and otherwise reconnect and report the gap', async () => {
    const start = (args: string[]) => {
      const child = spawn(process.execPath, [CTL_MAIN, '--socket', daemon.socketPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, EBPFMONCTL_ANNOUNCE: '1' } });
      lab.track(child);
      const io = { out: '', err: '', code: null as number | null };
      child.stdout.setEncoding('utf8').on('data', (d: string) => (io.out += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (io.err += d));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r((io.code = code))));
      return { child, io, exited };
    };
    const until = (what: string, fn: () => boolean, ms = scaled(20_000)) => waitUntil(what, fn, ms);
    const quitter = start(['events', '--json', '--reconnect', '0']);
    const events = start(['events', '--json']);
    const top = start(['top', '--json']);
    const watch = start(['flows', '--watch', '--json', '--limit', '5']);
    await until('subscriptions', () => quitter.io.err.includes('subscribed') && events.io.err.includes('subscribed'));
    await until('top and watch output', () => top.io.out.includes('\n') && watch.io.out.includes('\n'));

    await daemon.stop('SIGKILL');
    assert.equal(await quitter.exited, 2, `--reconnect 0 exits 2: ${quitter.io.err}`);
    assert.match(quitter.io.err, /lost the connection to the daemon/);
    for (const c of [events, top, watch]) await until('the loss on stderr', () => /lost the connection to the daemon.*\n.*waiting up to 60 s/s.test(c.io.err));
    assert.deepEqual([events.io.code, top.io.code, watch.io.code], [null, null, null], 'the others wait for it');

    daemon = await restartDaemon(daemon);
    for (const c of [events, top, watch]) await until('reconnection', () => /reconnected after [\d.]+ s/.test(c.io.err));
    // stdout and stderr are separate pipes: the gap line may be read after the message on stderr.
    const gapLine = () => events.io.out.slice(0, events.io.out.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.type === 'gap');
    await until('the gap line', () => gapLine() !== undefined, scaled(5_000)).catch(() => undefined);
    const gap = gapLine();
    assert.ok(gap && typeof gap.since === 'string' && typeof gap.until === 'string', 'events --json reports the gap as a line');
    // And they work again: an exec after the restart reaches the reconnected subscriber.
    const marker = `emon-reconnect-${process.pid}`;
    await mon.exec('sh', ['-c', `exec /bin/true ${marker}`]);
    await until('an event after the restart', () => events.io.out.includes(marker));
    const topLines = top.io.out.split('\n').filter(Boolean).length;
    await until('top refreshing again', () => top.io.out.split('\n').filter(Boolean).length > topLines);
    for (const c of [events, top, watch]) {
      c.child.kill('SIGINT');
      assert.equal(await c.exited, 0, 'Ctrl-C still exits 0');
    }
  });

  test('item 4: 2,000 connections refused after sending leave no descriptor behind; SIGTERM then exits within 5 s', async () => {
    // Four slots for everyone, one kept for root (which reads status at the end).
    const small = await startDaemon(mon, { pinPath: lab.pinPath('small'), config: { interfaces: ['nothing-matches'], rpc: { maxClients: 5, reservedClients: 1 } } });
    try {
      const holders = hog(lab, bob, ['hold', small.socketPath, 4]);
      await holders.ready;
      await sleep(300);
      const base = fdCount(small.pid);
      const h = hog(lab, mallory, ['linger', small.socketPath, 2000]);
      const r = await h.ready;
      assert.equal(r.closedByDaemon, 2000, `the daemon closed every refused connection itself: ${JSON.stringify(r)}`);
      const t0 = Date.now();
      while (fdCount(small.pid) > base + 2 && Date.now() - t0 < 3000) await sleep(100);
      assert.ok(fdCount(small.pid) <= base + 2, `fds ${fdCount(small.pid)} vs ${base} before`);
      const st = await ctl(['status', '--json'], { socket: small.socketPath });
      assert.ok((JSON.parse(st.stdout) as StatusResult).transports.rpc.refused.tooManyClients! >= 2000);
      const t1 = Date.now();
      assert.equal(await small.stop('SIGTERM'), 0, 'SIGTERM with 2,000 refused clients: a clean stop');
      assert.ok(Date.now() - t1 < 5000, `SIGTERM to exit: ${Date.now() - t1} ms`);
      await h.stop();
      await holders.stop();
      // The lock went with the process: the same deployment starts again at once.
      const again = await restartDaemon(small);
      assert.equal(await again.stop('SIGTERM'), 0, 'SIGTERM: a clean stop');
    } finally {
      await small.stop('SIGKILL');
      await daemonOnce(mon, small.configPath, ['--teardown']);
    }
  });

  test('item 6: a second daemon on the same pin path, with another socket, refuses to start', async () => {
    const dir = lab.tmpdir();
    const cfg = writeConfig(dir, path.join(dir, 'other.sock'), daemon.pinPath, { interfaces: ['nothing-matches'] });
    assert.equal((await rootStatus()).pid, daemon.pid, 'the first daemon runs');
    const r = await daemonOnce(mon, cfg, [], { timeoutMs: scaled(60_000) });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /already running/);
    assert.ok(!fs.existsSync(path.join(dir, 'other.sock')), 'it never listened');
    assert.equal((await rootStatus()).pinPath, daemon.pinPath, 'the running daemon is untouched');
  });

  test('item 7: --teardown of another deployment leaves this one\'s classifiers attached', async () => {
    const ifname = (await rootStatus()).interfaces[0]!.name;
    const filters = async () => (await mon.exec('tc', ['filter', 'show', 'dev', ifname, 'ingress'])).stdout + (await mon.exec('tc', ['filter', 'show', 'dev', ifname, 'egress'])).stdout;
    const before0 = await filters();
    assert.match(before0, /direct-action/);
    const dir = lab.tmpdir();
    const cfgY = writeConfig(dir, path.join(dir, 'y.sock'), lab.pinPath('other'), { interfaces: ['rpnope'] });
    const r = await daemonOnce(mon, cfgY, ['--teardown']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await filters(), before0, 'the running deployment\'s filters are all still there');
  });

  test('items 11 and 13: --check-config catches what the start would refuse; a non-root start names the capabilities and creates nothing', async () => {
    const dir = lab.tmpdir();
    const pin = lab.pinPath('chk');
    const cfg = writeConfig(dir, path.join(dir, 'c.sock'), pin, { interfaces: ['nosuchif0'], lb: { vips: [{ vip: 'nope' }] } });
    const chk = await daemonOnce(mon, cfg, ['--check-config']);
    assert.equal(chk.code, 2);
    assert.match(chk.stderr, /lb\.vips\[0\]\.vip: expected ADDR:PORT\/PROTO.*got "nope"/);
    const run = await daemonOnce(mon, cfg, []);
    assert.equal(run.code, 2, 'the start refuses it the same way');
    const cfg2 = writeConfig(dir, path.join(dir, 'c.sock'), pin, { interfaces: ['nosuchif0'] });
    const warn = await daemonOnce(mon, cfg2, ['--check-config']);
    assert.equal(warn.code, 0);
    assert.match(warn.stderr, /warning: interfaces: interface "nosuchif0" does not exist in this network namespace/);
    // Not root: one line naming what is missing, and no directory under the pin path.
    fs.chmodSync(dir, 0o755); // bob reads the config
    fs.chmodSync(cfg2, 0o644);
    const [c, a] = mon.wrap('setpriv', [`--reuid=${bob.uid}`, `--regid=${bob.gid}`, '--init-groups', '--', process.execPath, ...DAEMON_NODE_ARGS, DAEMON_MAIN, '--config', cfg2]);
    const nonRoot = await sh(c, a, { allowFail: true });
    assert.equal(nonRoot.code, 1, nonRoot.stderr);
    assert.match(nonRoot.stderr, /needs root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN/);
    assert.equal(nonRoot.stderr.trim().split('\n').length, 1);
    assert.ok(!fs.existsSync(pin), 'nothing was created under the pin path');
  });
});
