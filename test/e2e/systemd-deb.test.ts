// SPDX-License-Identifier: Apache-2.0
// How users meet ebpfmon, end to end: the built .deb installed into a real systemd 252 and
// system bus (systemd-nspawn, test/e2e/nspawn/), then: the unit reaches active with READY
// and a STATUS line; an unprivileged user gets the flows of a process it started through
// ebpfmonctl and through D-Bus (busctl and dbus-next), exact to the byte, and is denied the
// load balancer's changing methods; restarts lose no counted byte; the watchdog restarts a
// hung daemon; stop and the documented teardown leave no program and no pin.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { privileged, requireTool } from '../helpers/privileged.js';
import { sh } from '../helpers/lab.js';
import { Container, DEFAULT_SYSCALL_FILTER } from './nspawn/container.js';
import { ensureRootfs } from './nspawn/rootfs.js';
import { PhaseTimer } from './nspawn/phases.js';
import { packagedDeb, type BuiltDeb } from '../helpers/deb.js';
import type { Flow } from '../../daemon/src/contract/flows.js';
import type { ProgramsListResult, StatusResult } from '../../daemon/src/contract/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const PEER = path.join(root, 'build/js/test/helpers/peer.js');
const UNIT = 'ebpfmon.service';
const IP_UDP = 28; // IPv4 + UDP headers per datagram

describe('the .deb under a real systemd', privileged({ timeout: 20 * 60_000 }), () => {
  const timer = new PhaseTimer();
  let c: Container | undefined;
  let out: string;
  let built: BuiltDeb | undefined;
  let alice: { uid: number };
  let udpPort = 0;
  const box = () => {
    assert.ok(c, 'the container did not start (see the before hook)');
    return c;
  };
  const ctl = (args: string[], user?: string) => box().exec(['ebpfmonctl', ...args], { user, allowFail: true });
  const ctlJson = async <T>(args: string[], user?: string): Promise<T> => {
    const r = await ctl([...args, '--json'], user);
    assert.equal(r.code, 0, `ebpfmonctl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  /** Sends `n` datagrams of `size` bytes from a fixed local port, as `user`; returns the sender's pid. */
  const udpBurst = async (n: number, size: number, localPort: number, user = 'alice'): Promise<number> => {
    const r = await box().exec(['node', PEER, 'udp-client', '127.0.0.1', String(udpPort), String(n), String(size), '--local-port', String(localPort)], { user });
    return Number((JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { pid: number }).pid);
  };
  const flowTx = async (localPort: number): Promise<Flow | undefined> =>
    (await ctlJson<Flow[]>(['flows', '--port', String(localPort), '--protocol', 'udp'])).find((f) => f.localPort === localPort);

  before(async () => {
    requireTool('systemd-nspawn', 'debootstrap', 'dpkg-deb');
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-deb-'));
    // The run's .deb (helpers/deb.ts: built once, from the tested build/).
    built = await timer.time('npm run package', () => packagedDeb(10 * 60_000));
    const deb = path.basename(built.deb);
    fs.copyFileSync(built.deb, path.join(out, deb));
    const image = await timer.time('rootfs', () => ensureRootfs());
    // pidfd_getfd allowed by the container's own filter (systemd 252's nspawn does not list it;
    // a host has no such filter): what is tested is the unit's, which must allow it too.
    c = await timer.time('boot', () => Container.create({ rootfs: image, binds: [root, { host: out, container: '/mnt/debs' }], systemCallFilter: `${DEFAULT_SYSCALL_FILTER} pidfd_getfd` }));
    // A veth pair inside the container for the load balancer (the container has its own network).
    await c.exec(['sh', '-c', 'ip link add vt0 type veth peer name vt1 && ip link set vt0 up && ip link set vt1 up && ip link set lo up']);
    await timer.time('install .deb', () => box().installDeb(`/mnt/debs/${deb}`, { timeoutMs: 5 * 60_000 }));
    alice = await c.addUser('alice');
  });

  after(async () => {
    await timer.time('destroy', async () => c?.destroy());
    fs.rmSync(out, { recursive: true, force: true });
    built?.release();
    process.stderr.write(`\n${timer.table('systemd e2e phases')}\n`);
  });

  test('systemctl: the unit is active after READY=1, with a STATUS line, as the packaged unit says', async () => {
    const ct = box();
    const p = await ct.waitForUnit(UNIT, ['ActiveState', 'SubState', 'Type', 'StatusText', 'MainPID', 'UnitFileState'], (x) => x.ActiveState === 'active', 'ebpfmon active', 60_000);
    assert.equal(p.Type, 'notify');
    assert.equal(p.UnitFileState, 'enabled', 'postinst enabled it');
    assert.match(p.StatusText!, /^monitoring \d+ interfaces?, \d+ client\(s\); socket \/run\/ebpfmon\/ebpfmon\.sock$/);
    const st = await ctlJson<StatusResult>(['status']);
    assert.equal(st.pid, Number(p.MainPID), 'the daemon answering is the unit\'s main process');
    const groups = await ct.exec(['getent', 'group', 'ebpfmon', 'ebpfmon-admin']);
    assert.equal(groups.stdout.trim().split('\n').length, 2, 'sysusers created both groups');
    // Nice=-10, applied by systemd: the event loop keeps it, every other thread is back at 0
    // (daemon/src/sys/priority.ts). Each line: tid, nice (stat field 19), name.
    const threads = async () => (await ct.exec(['sh', '-c', `for t in /proc/${p.MainPID}/task/*; do echo "\${t##*/} $(sed 's/.*) //' $t/stat | cut -d' ' -f17) $(cat $t/comm)"; done`])).stdout
      .trim().split('\n').map((l) => l.split(' ')).map(([tid, nice, comm]) => ({ tid: Number(tid), nice: Number(nice), comm }));
    let ts = await threads();
    // The writer thread starts with history, which READY=1 does not wait for.
    for (const t0 = Date.now(); !ts.some((t) => t.comm === 'ebpfmon-history') && Date.now() - t0 < 20_000; ts = await threads()) await new Promise((r) => setTimeout(r, 200));
    const shown = JSON.stringify(ts);
    assert.equal(ts.find((t) => t.tid === Number(p.MainPID))?.nice, -10, `the event loop at the unit's Nice= (${shown})`);
    assert.deepEqual(ts.filter((t) => t.tid !== Number(p.MainPID) && t.nice !== 0), [], 'every other thread at nice 0');
    assert.ok(ts.some((t) => t.comm === 'ebpfmon-history'), `the history writer's thread (${shown})`);
  });

  test('configure loopback monitoring and the load balancer; a restart applies it', async () => {
    const ct = box();
    await ct.writeFile('/etc/ebpfmon/ebpfmon.json', JSON.stringify({ interfaces: ['lo'], lb: { interfaces: ['vt0'], xdpMode: 'generic' } }, null, 2));
    // interfaces apply on reload; the load balancer is set up at start
    await ct.systemctl(['restart', UNIT], { timeoutMs: 60_000 });
    await ct.waitForUnit(UNIT, ['ActiveState'], (x) => x.ActiveState === 'active', 'active after restart', 60_000);
    const srv = ct.spawn(['node', PEER, 'udp-server', '127.0.0.1', '0']);
    udpPort = Number((await srv.waitForOutput(/"port":(\d+)/))[1]);
    const st = await ctlJson<StatusResult & { lb?: { vips: number } }>(['status']);
    assert.deepEqual(st.interfaces.map((i) => i.name), ['lo']);
    assert.equal(st.lb?.vips, 0, 'the load balancer is loaded (XDP attaches with the first VIP)');
  });

  test('an unprivileged user gets its own process\'s flows with exact bytes: ebpfmonctl, busctl, dbus-next', async () => {
    const ct = box();
    const pid = await udpBurst(10, 300, 41001);
    const flows = await ctlJson<Flow[]>(['flows', '--pid', String(pid)], 'alice');
    assert.equal(flows.length, 1, JSON.stringify(flows));
    assert.deepEqual([flows[0]!.pid, flows[0]!.uid, flows[0]!.comm, flows[0]!.txBytes, flows[0]!.txPackets], [pid, alice.uid, 'node', 10 * (300 + IP_UDP), 10]);

    const busctl = await ct.exec(['busctl', '--system', '--json=short', 'call', 'org.ebpfmon1', '/org/ebpfmon1', 'org.ebpfmon1.Manager', 'GetFlows', 'a{sv}', '1', 'pid', 'u', String(pid)], { user: 'alice' });
    const viaBusctl = JSON.parse(busctl.stdout) as { data: Array<Array<Record<string, { data: unknown }>>> };
    assert.equal(viaBusctl.data[0]!.length, 1);
    assert.equal(viaBusctl.data[0]![0]!.pid!.data, pid);
    assert.equal(viaBusctl.data[0]![0]!.txBytes!.data, 10 * (300 + IP_UDP));

    const script = `import dbus from 'dbus-next';
const bus = dbus.systemBus();
const call = (path, iface, member, signature, body) => bus.call(new dbus.Message({ destination: 'org.ebpfmon1', path, interface: iface, member, signature, body }));
const flows = (await call('/org/ebpfmon1', 'org.ebpfmon1.Manager', 'GetFlows', 'a{sv}', [{ pid: new dbus.Variant('u', ${pid}) }])).body[0];
let denied = null;
try { await call('/org/ebpfmon1/lb', 'org.ebpfmon1.LoadBalancer', 'AddVip', 'a{sv}', [{ vip: new dbus.Variant('s', '198.19.10.10:80/tcp') }]); } catch (e) { denied = e.type ?? e.message; }
console.log(JSON.stringify({ flows: flows.map((f) => ({ pid: f.pid.value, txBytes: Number(f.txBytes.value) })), denied }));
bus.disconnect();`;
    const r = await ct.exec(['node', '--input-type=module', '-e', script], { user: 'alice', cwd: root });
    const viaNode = JSON.parse(r.stdout.trim()) as { flows: Array<{ pid: number; txBytes: number }>; denied: string | null };
    assert.deepEqual(viaNode.flows, [{ pid, txBytes: 10 * (300 + IP_UDP) }]);
    assert.equal(viaNode.denied, 'org.ebpfmon1.Error.PermissionDenied', 'polkit refuses the LB change to alice');

    const bus2 = await ct.exec(['busctl', '--system', 'call', 'org.ebpfmon1', '/org/ebpfmon1/lb', 'org.ebpfmon1.LoadBalancer', 'AddVip', 'a{sv}', '1', 'vip', 's', '198.19.10.10:80/tcp'], { user: 'alice', allowFail: true });
    assert.notEqual(bus2.code, 0);
    assert.match(bus2.stderr, /may not change|not authorized|PermissionDenied/i);
    const viaCtl = await ctl(['lb', 'vip', 'add', '198.19.10.10:80/tcp'], 'alice');
    assert.equal(viaCtl.code, 3, 'and through the socket: permission denied');
    const asRoot = await ctl(['lb', 'vip', 'add', '198.19.10.10:80/tcp']);
    assert.equal(asRoot.code, 0, `root may: ${asRoot.stderr}`);
    const list = await ctlJson<{ interfaces: Array<{ name: string }> }>(['lb', 'list'], 'alice');
    assert.deepEqual(list.interfaces.map((i) => i.name), ['vt0'], 'XDP is on the configured interface');
  });

  test('capture -w FILE as alice: the unit\'s daemon writes into her own descriptor (fd delivery: CAP_SYS_PTRACE and pidfd_getfd allowed), though ProtectHome hides her home from it', async () => {
    const ct = box();
    const file = '/home/alice/cap.pcapng';
    // The capture in the background; once it runs, 20 datagrams from alice's sender; -c 10 ends it.
    const sh = `EBPFMONCTL_ANNOUNCE=1 ebpfmonctl capture -c 10 -w ${file} udp port 41010 2>/home/alice/cap.err & `
      + `until grep -q 'capturing on' /home/alice/cap.err; do if ! kill -0 $! 2>/dev/null; then break; fi; sleep 0.05; done; `
      + `node ${PEER} udp-client 127.0.0.1 ${udpPort} 20 200 --local-port 41010 >/dev/null; wait $!; echo "exit $?"; cat /home/alice/cap.err`;
    const r = await ct.exec(['sh', '-c', sh], { user: 'alice', timeoutMs: 60_000 });
    assert.match(r.stdout, /exit 0/, r.stdout + r.stderr);
    assert.match(r.stdout, /delivery fd \(the client's regular file\)/, r.stdout);
    assert.match(r.stdout, /10 packets written/, r.stdout);
    const count = await ct.exec(['node', '-e', `const b = require('fs').readFileSync(${JSON.stringify(file)}); let n = 0, off = 0, isb = 0; while (off + 8 <= b.length) { const t = b.readUInt32LE(off); if (t === 6) n++; if (t === 5) isb++; off += b.readUInt32LE(off + 4); } console.log(JSON.stringify({ epb: n, isb, owner: require('fs').statSync(${JSON.stringify(file)}).uid }));`], { user: 'alice' });
    assert.deepEqual(JSON.parse(count.stdout), { epb: 10, isb: 1, owner: alice.uid }, 'the file is alice\'s, with 10 packets and the final statistics');
  });

  test('stop, start and restart lose no counted byte (the programs stay pinned)', async () => {
    const ct = box();
    const port = 41002;
    await udpBurst(20, 200, port);
    await ct.systemctl(['stop', UNIT]);
    await udpBurst(20, 200, port); // no daemon running at all
    await ct.systemctl(['start', UNIT], { timeoutMs: 60_000 });
    await ct.waitForUnit(UNIT, ['ActiveState'], (x) => x.ActiveState === 'active', 'active', 60_000);
    await udpBurst(20, 200, port);
    await ct.systemctl(['restart', UNIT], { timeoutMs: 60_000 });
    await ct.waitForUnit(UNIT, ['ActiveState'], (x) => x.ActiveState === 'active', 'active', 60_000);
    await udpBurst(20, 200, port);
    const f = await flowTx(port);
    assert.equal(f?.txBytes, 80 * (200 + IP_UDP), 'every datagram counted, including those sent while stopped');
    const st = await ctlJson<StatusResult>(['status']);
    assert.deepEqual(st.adopted, { flows: true, sockets: true, procs: true, scan: true, handoff: true, flowread: true });
  });

  test('the watchdog restarts a hung daemon, which adopts its pins', async () => {
    const ct = box();
    await ct.writeFile(`/etc/systemd/system/${UNIT}.d/watchdog.conf`, '[Service]\nWatchdogSec=3s\nLimitCORE=0\n');
    await ct.systemctl(['daemon-reload']);
    await ct.systemctl(['restart', UNIT], { timeoutMs: 60_000 });
    const before1 = await ct.waitForUnit(UNIT, ['ActiveState', 'MainPID', 'NRestarts'], (x) => x.ActiveState === 'active', 'active', 60_000);
    const port = 41003;
    await udpBurst(5, 100, port);
    await ct.exec(['kill', '-STOP', before1.MainPID!]);
    const after1 = await ct.waitForUnit(UNIT, ['ActiveState', 'MainPID', 'NRestarts'], (x) => x.ActiveState === 'active' && x.MainPID !== before1.MainPID && x.MainPID !== '0', 'restarted by the watchdog', 60_000);
    assert.equal(Number(after1.NRestarts), Number(before1.NRestarts) + 1);
    assert.match(await ct.journal(UNIT, 200), /[Ww]atchdog timeout/);
    await udpBurst(5, 100, port);
    assert.equal((await flowTx(port))?.txBytes, 10 * (100 + IP_UDP), 'nothing lost across the watchdog restart');
    await ct.exec(['rm', '-rf', `/etc/systemd/system/${UNIT}.d`]);
    await ct.systemctl(['daemon-reload']);
  });

  test('systemctl stop, then the documented teardown, leaves no program and no pin', async () => {
    const ct = box();
    const progs = await ctlJson<ProgramsListResult>(['programs']);
    assert.ok(progs.programs.length > 0);
    await ct.systemctl(['stop', UNIT]);
    assert.ok(fs.readdirSync(ct.bpffs).includes('ebpfmon'), 'stopping leaves the pins');
    const r = await ct.exec(['ebpfmon', '--teardown']);
    assert.match(r.stdout, /removed \d+ classifier filter\(s\), \d+ link\(s\), \d+ pin\(s\)/);
    // maps.debug and progs.debug are the kernel's own iterators in every new bpffs.
    assert.deepEqual(fs.readdirSync(ct.bpffs).filter((f) => !f.endsWith('.debug')), [], 'no pin left');
    const tc = await ct.exec(['tc', 'filter', 'show', 'dev', 'lo', 'ingress']);
    assert.equal(tc.stdout.trim(), '', 'no classifier left on lo');
    const xdp = await ct.exec(['ip', 'link', 'show', 'vt0']);
    assert.doesNotMatch(xdp.stdout, /xdp/, 'no XDP program left on vt0');
    // Programs are freed once nothing holds them (RCU may take a moment).
    let alive: number[] = [];
    for (let i = 0; i < 25; i++) {
      alive = [];
      for (const p of progs.programs) if ((await sh('bpftool', ['prog', 'show', 'id', String(p.id)], { allowFail: true })).code === 0) alive.push(p.id);
      if (alive.length === 0) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.deepEqual(alive, [], 'no program left in the kernel');
  });
});
