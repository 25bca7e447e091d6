// SPDX-License-Identifier: Apache-2.0
// Capture and the identity service (issue 13's "container/unit lines where known" and
// "cgroup / systemd unit / container (as far as identity exists)"):
//   - packet comments name the process's unit, cgroup path and container, for a process
//     that still runs when the reader writes its packets and for one that exited before
//     (named from the cgroup id its exec had, kept in the daemon's process table, or, for
//     a process that predates the daemon, the cgroup id its start-up scan read);
//   - `--container` and `--app` select the processes of the cgroups identity says are that
//     container's or app's (and `--unit` those of its cgroup, within `--cgroup`'s when both are given); names that match nothing are
//     refused, naming the field.
//
// Truths: the cgroups the test creates, named as Docker's systemd driver names a
// container's scope (`docker-<64 hex>.scope`, with the id the test chose) and as Flatpak
// names an app's scope; the processes the test starts in them (their pids; each execs
// there, so its exec carries that cgroup); the datagrams each sends (count and payload,
// also read from tcpdump's capture).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { privileged } from '../helpers/privileged.js';
import { TestCgroups } from '../helpers/cgroups.js';
import { ROOT } from '../helpers/cc.js';
import { captureLabSuite, startCapture, startTcpdump, stopTcpdump } from '../helpers/capture-truth.js';
import { CTL_MAIN, restartDaemon } from '../helpers/daemon.js';

const LUA = path.join(ROOT, 'packaging/wireshark/ebpfmon.lua');
const ID = Buffer.from('e1'.repeat(32)).toString('hex').slice(0, 64);

/** The cgroup.procs file of a cgroup path below the cgroup2 mount. */
function procsOf(cg: string): string {
  const root = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').find((m) => m.split(' ')[2] === 'cgroup2')!.split(' ')[1]!;
  return path.join(root, cg, 'cgroup.procs');
}

/** Each packet's pid, unit, cgroup path, container id and UDP payload, as the Lua plugin reads them. */
function ownerRows(file: string): string[] {
  return execFileSync('tshark', ['-r', file, '-X', `lua_script:${LUA}`, '-T', 'fields', '-E', 'separator=|',
    '-e', 'ebpfmon.pid', '-e', 'ebpfmon.unit', '-e', 'ebpfmon.cgroup', '-e', 'ebpfmon.container_id', '-e', 'udp.payload'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
}

/** The first line a child writes (the pid its script prints). */
const firstLine = (child: ChildProcess): Promise<string> => new Promise((r) => child.stdout!.once('data', (d: Buffer) => r(d.toString().trim())));

describe('capture and identity: comments name the unit, cgroup and container; --container and --app select by them', privileged({ timeout: 120_000 }), () => {
  const l = captureLabSuite('tshark', 'tcpdump');
  let cgs: TestCgroups | undefined;
  let ctr: string;
  let bin: string;

  let flatpak: string;
  let plain: string;

  before(async () => {
    cgs = await TestCgroups.create();
    ctr = cgs.mkdir(`system.slice/docker-${ID}.scope`);
    flatpak = cgs.mkdir('user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.example.App-4242.scope');
    plain = cgs.mkdir('system.slice/plain.service');
    // Commands with names of their own: bash through symlinks (comm is the path's last part).
    bin = l.lab.tmpdir();
    fs.chmodSync(bin, 0o755);
    for (const n of ['emon-live', 'emon-gone', 'emon-sel', 'emon-old']) fs.symlinkSync('/bin/bash', path.join(bin, n));
  });
  after(() => cgs?.destroy());

  test('the live one and the gone one: every packet names the container id, its scope and cgroup path', async () => {
    const out = (n: string) => path.join(l.dir, n);
    const dump = await startTcpdump(l.mon, l.link.a.ifname, out('truth.pcap'));
    const sock = l.daemon.socketPath;
    const procs = procsOf(ctr);
    // Into the container's cgroup, then exec the command there: its pid first (the shell's
    // $$, which the exec keeps), then three datagrams of its own, then `rest`.
    const script = (name: string, tag: string, rest: string) =>
      `echo $$ > ${procs} && exec ${path.join(bin, name)} -c 'echo $$; exec 3>/dev/udp/${l.link.b.ip4}/9001; for i in 1 2 3; do printf ${tag} >&3; done; ${rest}'`;
    const pids: Record<'live' | 'gone', number> = { live: 0, gone: 0 };

    // The gone one alone first: its session's reader runs once a second (--latency 1000),
    // and the process exits right after its datagrams, so the reader writes them after.
    const goneCap = await startCapture(l.mon, sock, ['--comm', 'emon-gone', '--latency', '1000', '-w', out('gone.pcapng')]);
    const g = await l.mon.exec('sh', ['-c', script('emon-gone', 'G', 'true')]);
    assert.equal(g.code, 0, g.stderr);
    pids.gone = Number(g.stdout.trim());
    assert.ok(!fs.existsSync(`/proc/${pids.gone}`), 'the gone one has exited');
    await new Promise((r) => setTimeout(r, 1500));
    process.kill(goneCap.child.pid!, 'SIGINT');
    assert.equal(await goneCap.exit, 0, goneCap.stderr());

    // The live one waits for a line after its datagrams: it runs while the reader writes them.
    const liveCap = await startCapture(l.mon, sock, ['--comm', 'emon-live', '-w', out('live.pcapng')]);
    const live = l.mon.spawn('sh', ['-c', script('emon-live', 'L', 'read -r x')], { stdio: ['pipe', 'pipe', 'pipe'] });
    pids.live = Number(await firstLine(live));
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(fs.existsSync(`/proc/${pids.live}`), 'the live one still runs');
    process.kill(liveCap.child.pid!, 'SIGINT');
    assert.equal(await liveCap.exit, 0, liveCap.stderr());
    live.stdin!.end('\n');
    await new Promise((r) => live.once('exit', r));
    await stopTcpdump(dump);

    const hex = (tag: string) => Buffer.from(tag).toString('hex');
    for (const [name, tag] of [['live', 'L'], ['gone', 'G']] as const) {
      const truth = execFileSync('tshark', ['-r', out('truth.pcap'), '-Y', `udp.dstport == 9001 && udp.payload == ${hex(tag)}`, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8' });
      assert.equal(truth.trim().split('\n').filter(Boolean).length, 3, `tcpdump saw the ${name} one's three datagrams`);
      const rows = ownerRows(out(`${name}.pcapng`));
      assert.deepEqual(rows, Array(3).fill([pids[name], `docker-${ID}.scope`, ctr, ID, hex(tag)].join('|')), `${name}: ${rows.join(' / ')}`);
    }
  });
  test('--container and --app select the processes of the cgroups the identity service names theirs, --unit those of its cgroup, and nothing else', async () => {
    const out = (n: string) => path.join(l.dir, n);
    const dump = await startTcpdump(l.mon, l.link.a.ifname, out('sel-truth.pcap'));
    const sock = l.daemon.socketPath;
    const caps = [
      await startCapture(l.mon, sock, ['--container', ID.slice(0, 12), '-w', out('ctr.pcapng')]),
      await startCapture(l.mon, sock, ['--container', ID, '--unit', `docker-${ID}.scope`, '-w', out('ctr-unit.pcapng')]),
      await startCapture(l.mon, sock, ['--app', 'org.example.App', '-w', out('app.pcapng')]),
      // A unit by its bare name (the same walk of the hierarchy, by directory name), with a
      // cgroup path above it (with a trailing slash): both must match (the slice alone holds the
      // container's scope too).
      await startCapture(l.mon, sock, ['--unit', 'plain', '--cgroup', `${path.posix.dirname(plain)}/`, '-w', out('unit.pcapng')]),
    ];
    // One command name in three cgroups (the container's, the app's, a plain service's):
    // only the cgroup tells their packets apart.
    const send = (cg: string, tag: string) => l.mon.exec('sh', ['-c',
      `echo $$ > ${procsOf(cg)} && exec ${path.join(bin, 'emon-sel')} -c 'exec 3>/dev/udp/${l.link.b.ip4}/9001; for i in 1 2 3 4; do printf ${tag} >&3; done'`]);
    for (const [cg, tag] of [[ctr, 'C'], [flatpak, 'A'], [plain, 'P']] as const) {
      const r = await send(cg, tag);
      assert.equal(r.code, 0, r.stderr);
    }
    await new Promise((r) => setTimeout(r, 800));
    for (const c of caps) process.kill(c.child.pid!, 'SIGINT');
    for (const c of caps) assert.equal(await c.exit, 0, c.stderr());
    await stopTcpdump(dump);
    const hex = (tag: string) => Buffer.from(tag).toString('hex');
    const payloads = (file: string) => execFileSync('tshark', ['-r', file, '-Y', 'udp.dstport == 9001', '-T', 'fields', '-e', 'udp.payload'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).sort();
    assert.deepEqual(payloads(out('sel-truth.pcap')), [...Array(4).fill(hex('A')), ...Array(4).fill(hex('C')), ...Array(4).fill(hex('P'))], 'tcpdump saw the three processes\' datagrams');
    assert.deepEqual(payloads(out('ctr.pcapng')), Array(4).fill(hex('C')), 'an id prefix: the container\'s process only');
    assert.deepEqual(payloads(out('ctr-unit.pcapng')), Array(4).fill(hex('C')), 'the id with its unit');
    assert.deepEqual(payloads(out('app.pcapng')), Array(4).fill(hex('A')), 'the app\'s process only');
    assert.deepEqual(payloads(out('unit.pcapng')), Array(4).fill(hex('P')), 'the plain service\'s process only, not the rest of the slice');
  });

  test('a container or app that names no cgroup is refused, naming the field; so are a malformed one and a unit outside the cgroup path given with it', async () => {
    for (const [args, field] of [[['--container', '0123456789ab'], 'params.container'], [['--app', 'org.example.Missing'], 'params.app'],
      [['--container', ID, '--unit', 'other.service'], 'params.container'], [['--container', 'has space'], 'params.container'],
      [['--unit', 'plain', '--cgroup', path.posix.dirname(flatpak)], 'params.unit']] as const) {
      const r = await l.mon.exec(process.execPath, [CTL_MAIN, '--socket', l.daemon.socketPath, 'capture', ...args, '-w', path.join(l.dir, 'never.pcapng')], { allowFail: true, timeoutMs: 15_000 });
      assert.notEqual(r.code, 0, `${args.join(' ')}: refused`);
      assert.match(r.stderr, new RegExp(field.replace('.', '\\.')), `${args.join(' ')}: ${r.stderr}`);
    }
  });
  test('a process that predates the daemon and is gone before its packets are written: named from the cgroup the start-up scan read', async () => {
    const out = (n: string) => path.join(l.dir, n);
    // Started in the container's cgroup, then the daemon restarts: it knows the process only
    // from its scan of /proc (no exec event).
    const old = l.mon.spawn('sh', ['-c', `echo $$ > ${procsOf(ctr)} && exec ${path.join(bin, 'emon-old')} -c 'echo $$; read -r x; exec 3>/dev/udp/${l.link.b.ip4}/9001; for i in 1 2 3; do printf O >&3; done'`],
      { stdio: ['pipe', 'pipe', 'pipe'] });
    const pid = Number(await firstLine(old));
    await l.daemon.stop();
    l.daemon = await restartDaemon(l.daemon);
    const cap = await startCapture(l.mon, l.daemon.socketPath, ['--comm', 'emon-old', '--latency', '1000', '-w', out('old.pcapng')]);
    const exited = new Promise((r) => old.once('exit', r));
    old.stdin!.end('go\n');
    await exited;
    assert.ok(!fs.existsSync(`/proc/${pid}`), 'it has exited');
    await new Promise((r) => setTimeout(r, 1500));
    process.kill(cap.child.pid!, 'SIGINT');
    assert.equal(await cap.exit, 0, cap.stderr());
    const rows = ownerRows(out('old.pcapng'));
    assert.deepEqual(rows, Array(3).fill([pid, `docker-${ID}.scope`, ctr, ID, Buffer.from('O').toString('hex')].join('|')), rows.join(' / '));
  });
});
