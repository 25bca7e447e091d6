// SPDX-License-Identifier: Apache-2.0
// Start-up failures read as one clear line naming the object and the cause - never a
// stack trace: a missing object, a corrupt object, a verifier rejection, a pin path off
// bpffs, an invalid configuration. And the daemon mounts bpffs itself when it is absent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, type Host } from '../helpers/lab.js';
import { hostOnlyTest, privileged, scaled } from '../helpers/privileged.js';
import { DAEMON_MAIN, DAEMON_NODE_ARGS, OBJECT_DIR, daemonOnce, startDaemon, writeConfig } from '../helpers/daemon.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { BpfError } from '../../daemon/src/bpf/errors.js';

/** Runs the daemon to completion; it must fail by itself, quickly. */
async function runExpectingFailure(host: Host, config: string): Promise<{ code: number; stderr: string; stdout: string }> {
  const r = await daemonOnce(host, config, []);
  assert.notEqual(r.code, 0, `daemon should have failed:\n${r.stdout.slice(-2000)}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace on stderr');
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line on stderr, got:\n${r.stderr}`);
  return r;
}

describe('start-up errors', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let host: Host;
  before(async () => {
    lab = await Lab.create();
    host = await lab.host('err');
  });
  after(async () => lab?.destroy());

  /** The first objects the daemon loads, with `flowsObject` as flows.bpf.o (null: none);
   * `all`: every shipped object besides, the classifier without the dirty-flow ring (its
   * alternative) among them. */
  function objectDirWith(flowsObject: Buffer | null, all = false): string {
    const dir = lab.tmpdir();
    const files = all ? fs.readdirSync(OBJECT_DIR).filter((f) => f.endsWith('.bpf.o') && f !== 'flows.bpf.o') : ['sockets.bpf.o', 'procs.bpf.o', 'scan.bpf.o'];
    for (const f of files) fs.copyFileSync(path.join(OBJECT_DIR, f), path.join(dir, f));
    if (flowsObject) fs.writeFileSync(path.join(dir, 'flows.bpf.o'), flowsObject);
    return dir;
  }

  hostOnlyTest('a missing BPF object names the file and how to get it', async () => {
    const dir = objectDirWith(null);
    const cfg = writeConfig(lab.tmpdir(), path.join(lab.tmpdir(), 's.sock'), lab.pinPath('missing'), { bpfObjectDir: dir });
    const r = await runExpectingFailure(host, cfg);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^ebpfmon: cannot load the BPF programs: opening flows\.bpf\.o at .*flows\.bpf\.o: ENOENT; build it with `npm run build`/);
  });

  hostOnlyTest('a corrupt BPF object names the file and says it is not a BPF object', async () => {
    const dir = objectDirWith(Buffer.from('\x7fELF this is not really an object file'.padEnd(4096, '\0')));
    const cfg = writeConfig(lab.tmpdir(), path.join(lab.tmpdir(), 's.sock'), lab.pinPath('corrupt'), { bpfObjectDir: dir });
    const r = await runExpectingFailure(host, cfg);
    assert.match(r.stderr, /opening flows\.bpf\.o at .*: LIBBPF_EFORMAT \(not a valid BPF ELF object\)/);
  });

  test('a verifier rejection names the program and the verifier\'s reason', async () => {
    const bad = fs.readFileSync(path.join(OBJECT_DIR, 'fixtures/flows_bad_verifier.bpf.o'));
    const dir = objectDirWith(bad);
    const cfg = writeConfig(lab.tmpdir(), path.join(lab.tmpdir(), 's.sock'), lab.pinPath('verifier'), { bpfObjectDir: dir });
    const r = await runExpectingFailure(host, cfg);
    assert.match(r.stderr, /loading flows\/tc_ingress: EACCES \(.*(outside of the packet|invalid access to packet|invalid mem access).*\)/);
    // The library call behind it carries the verifier's log for debugging.
    const obj = BpfObject.open(path.join(dir, 'flows.bpf.o'));
    try {
      assert.throws(() => obj.load(), (e: unknown) => e instanceof BpfError && e.object === 'flows/tc_ingress' && e.errnoName === 'EACCES' && !!e.detail);
    } finally {
      obj.close();
    }
  });

  test('a refused flows.bpf.o with its alternative present: the daemon starts on flows_walk.bpf.o, and status says so and why', async () => {
    const bad = fs.readFileSync(path.join(OBJECT_DIR, 'fixtures/flows_bad_verifier.bpf.o'));
    const d = await startDaemon(host, { config: { bpfObjectDir: objectDirWith(bad, true), interfaces: ['lo'] } });
    let stopped: number | null = null;
    try {
      const st = await d.call('status');
      assert.equal(st.flowIndex.mode, 'full-walk');
      assert.match(st.flowIndex.reason ?? '', /refused the classifier with the dirty-flow ring: .*flows\/tc_ingress: EACCES/);
      // The alternative counts: traffic on the interface it watches reaches the flow table.
      await host.exec('ping', ['-c', '2', '-i', '0.2', '127.0.0.1']);
      const flows = (await d.call('flows.list', { protocol: 'icmp', limit: 100 })).flows;
      assert.ok(flows.some((f) => f.remoteAddr === '127.0.0.1' && f.txPackets + f.rxPackets >= 2), JSON.stringify(flows));
    } finally {
      stopped = await d.stop('SIGTERM');
      await daemonOnce(host, d.configPath, ['--teardown']);
    }
    // Checked after the finally, so that a failure above is the one reported.
    assert.equal(stopped, 0, 'the daemon on the alternative stops cleanly (SIGTERM, exit 0)');
  });

  test('a pin path outside bpffs is refused with the reason', async () => {
    const notBpf = path.join(lab.tmpdir(), 'pins');
    const cfg = writeConfig(lab.tmpdir(), path.join(lab.tmpdir(), 's.sock'), notBpf);
    const r = await runExpectingFailure(host, cfg);
    assert.match(r.stderr, /mounting bpffs at .*pins: EINVAL \(pin path is not on a bpf filesystem\); use a pinPath under \/sys\/fs\/bpf/);
  });

  hostOnlyTest('an invalid configuration stops start-up with exit code 2 and names key, value and expectation', async () => {
    const dir = lab.tmpdir();
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, JSON.stringify({ maps: { flows: 'lots' } }));
    const r = await runExpectingFailure(host, file);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), `ebpfmon: invalid configuration: ${file}: maps.flows: must be an integer from 1024 to 16777216: got "lots"`);
    const missing = await daemonOnce(host, path.join(dir, 'nope.json'), []);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.json: no such configuration file/);
  });

  hostOnlyTest('probes.disable naming an alternative that does not exist: exit code 2, the name and the known ones; --check-config says the same', async () => {
    const file = path.join(lab.tmpdir(), 'probes.json');
    fs.writeFileSync(file, JSON.stringify({ probes: { disable: ['socket-scan/proc', 'socket-scan/nope'] } }));
    for (const args of [[], ['--check-config']]) {
      const r = await daemonOnce(host, file, args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^ebpfmon: invalid configuration: probes\.disable: unknown probe alternative "socket-scan\/nope" \(known: .*socket-scan\/task-file, socket-scan\/task-file-core, socket-scan\/tcp-udp-iter, socket-scan\/proc/);
    }
    fs.writeFileSync(file, JSON.stringify({ probes: { disable: 'socket-scan' } }));
    const bad = await daemonOnce(host, file, ['--check-config']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /probes\.disable: must be an array of "capability\/alternative" names/);
  });

  test('without a bpffs mounted, the daemon mounts one and starts', async () => {
    const pin = '/sys/fs/bpf/ebpfmon-mount-test';
    const cfg = writeConfig(lab.tmpdir(), path.join(lab.tmpdir(), 's.sock'), pin, { interfaces: ['nothing-matches'] });
    // A private mount namespace where /sys/fs/bpf is not mounted (the host keeps its own).
    const script = `while mountpoint -q /sys/fs/bpf; do umount -l /sys/fs/bpf; done; exec ${process.execPath} ${DAEMON_NODE_ARGS.join(' ')} ${DAEMON_MAIN} --config ${cfg}`;
    const child = host.spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script]);
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const deadline = Date.now() + scaled(90_000); // the same suite runs under emulation too
    while (!out.includes('"msg":"ebpfmon ready"') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    if (child.exitCode === null) {
      process.kill(child.pid!, 'SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    assert.match(out, /"msg":"mounted bpffs at \/sys\/fs\/bpf"/, out.slice(-2000));
    assert.match(out, /"msg":"ebpfmon ready"/);
    assert.ok(!fs.existsSync(pin), 'the host bpffs was not touched');
  });
});
