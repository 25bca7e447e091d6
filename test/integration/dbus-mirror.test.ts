// SPDX-License-Identifier: Apache-2.0
// org.ebpfmon1.Capture on a private system bus (the packaged bus policy), served by the
// real daemon in host `mon` with capture loaded: a mirror added over D-Bus copies the
// selected traffic to a collector namespace's kernel VXLAN device. Truths: tcpdump on the
// monitored interface (filtered by the same expression) against tcpdump on the collector's
// decapsulating device, byte for byte, and the counters GetMirrorStats gives against both.
// A user outside the admin group with no polkit on the bus is denied (and nothing is
// added); garbage arguments are InvalidArgs naming the argument, before polkit.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { jsonLines, type Host, type Lab, type LinkInfo, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { destroyMonitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { readPcapRecords } from '../helpers/pcap-frames.js';
import { frameDiff, startTcpdump, stopTcpdump, udpFramesTo } from '../helpers/capture-truth.js';
import { until } from '../helpers/wait.js';
import { Agent, errorOf, getAll, ok, plain, REPO, signatures, startPrivateBus, v, type CallSpec, type Wire } from '../helpers/dbus.js';
import { BUS_NAME, CAPTURE_IFACE, CAPTURE_PATH, POLKIT_ACTION_MANAGE_MIRRORS } from '../../daemon/src/contract/dbus.js';
import { ERRORS } from '../../daemon/src/contract/errors.js';
import { MIRROR_EXPR, mirrorLab } from '../helpers/mirror-lab.js';

const EXPR = MIRROR_EXPR;
const cap = (member: string, sig = '', body: Wire[] = []): CallSpec => ({ dest: BUS_NAME, path: CAPTURE_PATH, iface: CAPTURE_IFACE, member, sig, body });

describe('org.ebpfmon1.Capture: mirrors over D-Bus, the real daemon and a VXLAN collector', privileged({ timeout: 180_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let coll: Host;
  let link: LinkInfo;
  let collLink: LinkInfo;
  let daemon: TestDaemon | undefined;
  let alice: TestUser;
  let root: Agent;
  let a: Agent;
  let dir: string;

  before(async () => {
    requireTool('tcpdump', 'ping', 'ethtool', 'dbus-daemon', 'setpriv');
    ({ lab, mon, coll, link, collLink, dir } = await mirrorLab(42));
    alice = await lab.user('alice');
    const bus = await startPrivateBus({ policies: [path.join(REPO, 'packaging/dbus/org.ebpfmon1.conf')], lab });
    daemon = await startDaemon(mon, { config: { interfaces: [link.a.ifname, collLink.a.ifname], dbus: { enabled: true, address: bus.address } } });
    [root, a] = await Promise.all([Agent.start(lab, bus.address, null), Agent.start(lab, bus.address, alice)]);
  });
  after(() => destroyMonitorLab(daemon, lab));

  const addParams: Wire = {
    name: v('s', 'dbus-web'), to: v('s', '198.18.0.0'), vni: v('u', 42), interfaces: v('as', ['x']), expression: v('s', EXPR),
  };

  test('a user without authorization is denied; garbage arguments are InvalidArgs naming the argument, before polkit', async () => {
    assert.equal(plain(ok(await a.call(getAll(CAPTURE_IFACE, CAPTURE_PATH))))[0].Available, true);
    const params = { ...(addParams as object), to: v('s', collLink.b.ip4), interfaces: v('as', [link.a.ifname]) };
    // No polkit on this bus: a change by a user outside ebpfmon-admin is denied, never allowed.
    const denied = await a.call(cap('AddMirror', 'a{sv}', [params]));
    assert.equal(errorOf(denied), ERRORS.PermissionDenied.dbus);
    assert.match((denied as { text: string }).text, new RegExp(`not authorized for ${POLKIT_ACTION_MANAGE_MIRRORS.replaceAll('.', '\\.')}`));
    assert.equal(errorOf(await a.call(cap('RemoveMirror', 's', ['dbus-web']))), ERRORS.PermissionDenied.dbus);
    assert.deepEqual((await daemon!.call('mirror.list')).mirrors, [], 'nothing was added');

    const cases: Array<[string, string, Wire[], RegExp]> = [
      ['AddMirror', 'a{sv}', [{ ...(params as object), to: v('s', 'nowhere') }], /^params\.to: expected the collector's IPv4 or IPv6 address, got "nowhere"/],
      ['AddMirror', 'a{sv}', [{ ...(params as object), pids: v('s', '12') }], /^params\.pids: expected an array of integers variant \(au\), not type s/],
      ['AddMirror', 'a{sv}', [{ ...(params as object), pids: v('ai', [0]) }], /^params\.pids\[0\]: expected process ids/],
      ['AddMirror', 'a{sv}', [{ ...(params as object), name: v('s', 'no spaces!') }], /^params\.name: expected a name of 1 to 32/],
      ['AddMirror', 'a{sv}', [{ ...(params as object), colour: v('s', 'red') }], /^params\.colour: expected one of the known keys/],
      ['AddMirror', 'a{sv}', [{ ...(params as object), vni: v('u', 1 << 24) }], /^params\.vni: expected an integer/],
      ['AddMirror', 'a{sv}', [{ ...(params as object), direction: v('s', 'sideways') }], /^params\.direction: expected one of/],
      ['AddMirror', 's', ['dbus-web'], /AddMirror\(a\{sv\} params\) takes arguments of type \(a\{sv\}\), got \(s\)/],
      ['RemoveMirror', 's', ['../etc'], /^name: expected a mirror name/],
      ['GetMirrorStats', 'u', [1], /takes arguments of type \(s\), got \(u\)/],
    ];
    for (const [m, sig, body, re] of cases) {
      for (const agent of [a, root]) {
        const r = await agent.call(cap(m, sig, body));
        assert.equal(errorOf(r), ERRORS.InvalidParams.dbus, `${m} ${sig} ${agent.user?.name ?? 'root'}`);
        assert.match((r as { text: string }).text, re, `${m} ${sig}`);
      }
    }
    // The expression reaches libpcap (the API's check, not the adapter's).
    const bad = await root.call(cap('AddMirror', 'a{sv}', [{ ...(params as object), expression: v('s', 'tcp prot 80') }]));
    assert.match((bad as { text: string }).text, /tcp prot 80.*syntax error/);
    assert.equal(errorOf(await root.call(cap('GetMirrorStats', 's', ['nope']))), ERRORS.UnknownMirror.dbus);
    assert.deepEqual((await daemon!.call('mirror.list')).mirrors, []);
  });

  test('root adds a mirror over D-Bus: the collector sees every selected frame byte for byte; stats agree; RemoveMirror stops it', async () => {
    const params = { ...(addParams as object), to: v('s', collLink.b.ip4), interfaces: v('as', [link.a.ifname]) };
    const added = ok(await root.call(cap('AddMirror', 'a{sv}', [params])))[0] as Wire;
    const m = plain(added);
    assert.deepEqual([m.name, m.to, m.encap, m.vni, m.state, m.source], ['dbus-web', collLink.b.ip4, 'vxlan', 42, 'active', 'api']);
    const sigs = signatures(added);
    assert.deepEqual([sigs.vni, sigs.counters, sigs.spec, sigs.interfaces, sigs.pathMtu], ['u', 'a{sv}', 'a{sv}', 'aa{sv}', 'u']);
    // The JSON-RPC API sees the same session.
    assert.deepEqual((await daemon!.call('mirror.list')).mirrors.map((x) => [x.name, x.to, x.vni]), [['dbus-web', collLink.b.ip4, 42]]);

    const src = await startTcpdump(mon, link.a.ifname, path.join(dir, 'src.pcap'));
    const dst = await startTcpdump(coll, 'vx0', path.join(dir, 'dst.pcap'), true);
    await mon.exec('ping', ['-c', '3', '-i', '0.2', '-s', '1472', link.b.ip4]);
    await mon.exec('ping', ['-6', '-c', '2', '-i', '0.2', link.b.ip6]);
    const c = jsonLines(mon.spawn(process.execPath, [PEER, 'tcp-client', link.b.ip4, '9000', '20000']));
    await c.next((o) => o.event === 'done', 20_000);
    const u = jsonLines(mon.spawn(process.execPath, [PEER, 'udp-client', link.b.ip4, '9001', '5', '200']));
    await u.next((o) => o.event === 'done', 20_000);
    // The datagrams get no answer: wait until the monitored side's tcpdump holds all five.
    await until('the monitored tcpdump to hold the 5 UDP datagrams', () => udpFramesTo(path.join(dir, 'src.pcap'), 9001) >= 5, 10_000);
    const stats = async () => plain(ok(await a.call(cap('GetMirrorStats', 's', ['dbus-web']))))[0] as Array<{ name: string; counters: Record<string, number> }>;
    // Everything sent is in it now, so the monitored side is complete; ARP and
    // neighbour discovery on the link are there too, and the expression leaves them out.
    await stopTcpdump(src);
    const truth = path.join(dir, 'truth.pcap');
    execFileSync('tcpdump', ['-r', path.join(dir, 'src.pcap'), '-w', truth, EXPR], { stdio: 'pipe' });
    const want = readPcapRecords(truth).records;
    // The last copies are on their way to the collector: wait until its tcpdump has written
    // as many frames as were selected (or 10 s), then stop it.
    const dstFile = path.join(dir, 'dst.pcap');
    const t0 = Date.now();
    while (Date.now() - t0 < 10_000 && readPcapRecords(dstFile).records.length < want.length) await new Promise((r) => setTimeout(r, 50));
    await stopTcpdump(dst);
    const got = readPcapRecords(dstFile).records;
    assert.ok(want.some((r) => r.data.length >= 1500), 'a 1500-byte frame among the selected ones');
    const d = frameDiff(want, got);
    assert.deepEqual({ missing: d.onlyA.length, extra: d.onlyB.length }, { missing: 0, extra: 0 },
      `monitored ${want.length} frames, collector ${got.length}; first missing ${d.onlyA[0]?.slice(0, 120)}; first extra ${d.onlyB[0]?.slice(0, 120)}`);
    const s = await stats();
    assert.equal(s.length, 1);
    assert.deepEqual({ matched: s[0]!.counters.matched, mirrored: s[0]!.counters.mirrored, failed: s[0]!.counters.failed },
      { matched: want.length, mirrored: want.length, failed: 0 });
    assert.equal(s[0]!.counters.mirroredBytes, want.reduce((n, r) => n + r.data.length, 0));
    // Every mirror: "" lists them all; ListMirrors carries the declaration with its types.
    assert.deepEqual(plain(ok(await a.call(cap('GetMirrorStats', 's', ['']))))[0].map((x: { name: string }) => x.name), ['dbus-web']);
    const listed = ok(await a.call(cap('ListMirrors')))[0] as Wire[];
    assert.equal(plain(listed)[0].spec.expression, EXPR);
    assert.deepEqual(signatures((listed[0] as Record<string, { value: Wire }>).spec!.value), { name: 's', to: 's', vni: 'u', interfaces: 'as', expression: 's' });

    const removed = plain(ok(await root.call(cap('RemoveMirror', 's', ['dbus-web']))))[0];
    assert.equal(removed.name, 'dbus-web');
    assert.equal(removed.counters.mirrored, want.length);
    assert.deepEqual(plain(ok(await a.call(cap('ListMirrors'))))[0], []);
    const after = await startTcpdump(coll, 'vx0', path.join(dir, 'after.pcap'), true);
    await mon.exec('ping', ['-c', '3', '-i', '0.2', link.b.ip4]);
    await stopTcpdump(after);
    assert.equal(readPcapRecords(path.join(dir, 'after.pcap')).records.length, 0, 'copies after RemoveMirror');
    assert.deepEqual(plain(ok(await a.call(cap('ListCaptures'))))[0], []);
  });
});
