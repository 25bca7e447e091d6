// SPDX-License-Identifier: Apache-2.0
// Mirror sessions end to end (issue 13): the real daemon in host `mon` watches its link to
// `peer`; `ebpfmonctl mirror add` sends copies to a collector in host `coll`, which
// decapsulates them with the kernel's own VXLAN (and GRETAP) device, over IPv4 and (VXLAN,
// ip6gretap) over IPv6. Truths: tcpdump on the
// monitored interface (the frames, byte for byte, that the collector's tcpdump must see on
// its decapsulating device), and the session counters against both. The copies continue
// while the daemon is killed with SIGKILL (pinned), the restarted daemon takes the session
// and its counters over, and removing the session stops the copies.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { jsonLines, type Host, type Lab, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { ctl, destroyMonitorLab, PEER, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { readPcapRecords, type PcapRecord } from '../helpers/pcap-frames.js';
import { frameDiff, startTcpdump as tcpdump, stopTcpdump as stop } from '../helpers/capture-truth.js';
import type { MirrorView } from '../../daemon/src/contract/capture.js';
import { MIRROR_EXPR, mirrorLab } from '../helpers/mirror-lab.js';
import { keepTestOutput } from '../helpers/keep.js';

const EXPR = MIRROR_EXPR;

describe('mirror sessions: copies at a VXLAN and a GRETAP collector equal the monitored frames', privileged({ timeout: 240_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let coll: Host;
  let link: LinkInfo;
  let collLink: LinkInfo;
  let daemon: TestDaemon | undefined;
  let dir: string;
  let gre = false;
  const file = (n: string) => path.join(dir, n);
  const mirrorCtl = async (args: string[]) => {
    const r = await ctl(['mirror', ...args], { socket: daemon!.socketPath });
    assert.equal(r.code, 0, `ebpfmonctl mirror ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const stats = async (name: string) => (JSON.parse(await mirrorCtl(['stats', name, '--json'])) as { mirrors: Array<{ counters: MirrorView['counters'] }> }).mirrors[0]!.counters;

  /** One round of the test's traffic from `mon` to `peer`; resolves when it is all answered. */
  const traffic = async () => {
    await mon.exec('ping', ['-c', '3', '-i', '0.2', '-s', '1472', link.b.ip4]);
    await mon.exec('ping', ['-6', '-c', '3', '-i', '0.2', link.b.ip6]);
    const c = jsonLines(mon.spawn(process.execPath, [PEER, 'tcp-client', link.b.ip4, '9000', '20000']));
    await c.next((o) => o.event === 'done', 20_000);
    const c6 = jsonLines(mon.spawn(process.execPath, [PEER, 'tcp-client', link.b.ip6, '9000', '3000']));
    await c6.next((o) => o.event === 'done', 20_000);
    const u = jsonLines(mon.spawn(process.execPath, [PEER, 'udp-client', link.b.ip4, '9001', '5', '200']));
    await u.next((o) => o.event === 'done', 20_000);
    await new Promise((r) => setTimeout(r, 300)); // the last copies cross the collector link
  };

  before(async () => {
    requireTool('tcpdump', 'ping', 'ethtool');
    // The collector's decapsulating devices: VXLAN 7 (mirrorLab) and GRETAP key 5, from mon's address.
    ({ lab, mon, coll, link, collLink, dir } = await mirrorLab(7));
    // Kernels built without GRE (CONFIG_NET_IPGRE off, as this machine's) cannot decapsulate
    // it either: the GRE case then checks that ebpfmon says so clearly.
    gre = (await coll.exec('ip', ['link', 'add', 'gt0', 'type', 'gretap', 'local', collLink.b.ip4, 'remote', collLink.a.ip4, 'key', '5'], { allowFail: true })).code === 0;
    if (gre) {
      await coll.exec('ip', ['link', 'set', 'gt0', 'mtu', '9000', 'up']);
      await coll.exec('ethtool', ['-K', 'gt0', 'gro', 'off']);
    }
    // Both links monitored: the outer (tunnel) packets leave through the collector link and
    // must not be counted as the host's flows.
    daemon = await startDaemon(mon, { config: { interfaces: [link.a.ifname, collLink.a.ifname] } });
  });
  after(() => destroyMonitorLab(daemon, lab));

  for (const encap of ['vxlan', 'gre'] as const) {
    test(`${encap}: the collector sees every selected frame byte for byte; counters agree; survives kill -9; remove stops copies${encap === 'gre' ? ' (a kernel without GRE: a clear refusal instead)' : ''}`, async () => {
      const name = `m-${encap}`;
      if (encap === 'gre' && !gre) {
        const r = await ctl(['mirror', 'add', name, '--to', collLink.b.ip4, '--encap', 'gre', EXPR], { socket: daemon!.socketPath });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /cannot make gretap devices .*CONFIG_NET_IPGRE/);
        const st = (await daemon!.call('status')).capture!;
        assert.equal(st.encaps.gre.available, false);
        assert.match(st.encaps.gre.reason ?? '', /CONFIG_NET_IPGRE/);
        assert.equal(st.encaps.vxlan.available, true);
        return;
      }
      const dev = encap === 'vxlan' ? 'vx0' : 'gt0';
      const vni = encap === 'vxlan' ? '7' : '5';
      const added = await mirrorCtl(['add', name, '--to', collLink.b.ip4, '--encap', encap, '--vni', vni, '-i', link.a.ifname, EXPR]);
      assert.match(added, /: active$/m);

      // Round 1, daemon running.
      const src = await tcpdump(mon, link.a.ifname, file(`${encap}-src.pcap`));
      const dst = await tcpdump(coll, dev, file(`${encap}-dst.pcap`), true);
      await traffic();
      const c1 = await stats(name);
      // Round 2, daemon killed: the kernel keeps copying.
      await daemon!.stop('SIGKILL');
      await traffic();
      daemon = await restartDaemon(daemon!);
      await stop(src);
      await stop(dst);
      const c2 = await stats(name);

      const truth = file(`${encap}-truth.pcap`);
      execFileSync('tcpdump', ['-r', file(`${encap}-src.pcap`), '-w', truth, EXPR], { stdio: 'pipe' });
      const want: PcapRecord[] = readPcapRecords(truth).records;
      const got: PcapRecord[] = readPcapRecords(file(`${encap}-dst.pcap`)).records;
      assert.ok(want.some((r) => r.data.length >= 1500), 'a 1500-byte frame among the selected ones');
      assert.ok(want.some((r) => r.data.readUInt16BE(12) === 0x86dd) && want.some((r) => r.data.readUInt16BE(12) === 0x0800), 'IPv4 and IPv6');
      // The tunnel device's own account (iproute2): nothing the mirror program handed it was
      // refused or dropped on its way out, and status reports the same counters.
      const tun = encap === 'vxlan' ? 'emon-vxlan' : 'emon-gre';
      const ipj = (JSON.parse((await mon.exec('ip', ['-s', '-d', '-j', 'link', 'show', 'dev', tun])).stdout) as Array<{ mtu: number; max_mtu?: number; stats64: { tx: { errors: number; dropped: number } } }>)[0]!;
      const capSt = (await daemon!.call('status')).capture!;
      assert.deepEqual({ errors: ipj.stats64.tx.errors, dropped: ipj.stats64.tx.dropped }, { errors: 0, dropped: 0 }, `${tun} refused no copy (mtu ${ipj.mtu}, max ${ipj.max_mtu})`);
      assert.deepEqual({ txErrors: capSt.encaps[encap].txErrors, txDropped: capSt.encaps[encap].txDropped, refused: capSt.loss.mirrorDeviceRefused }, { txErrors: 0, txDropped: 0, refused: 0 }, 'status reads the device\'s counters');
      if (encap === 'gre') assert.ok(ipj.mtu > 65_000, `the GRE device at its largest MTU (its transmit refuses DF frames over it): ${ipj.mtu}`);
      const d = frameDiff(want, got);
      if (keepTestOutput()) {
        const out = lab.outputDir(`mirror-${encap}`);
        for (const f of [`${encap}-src.pcap`, `${encap}-dst.pcap`]) fs.copyFileSync(file(f), path.join(out, f));
      }
      if (d.onlyA.length || d.onlyB.length) {
        // The sender's device was checked above; what the collector's IP layer says, for the failure message.
        const coll4 = await coll.exec('nstat', ['-az', 'IpReasm*', 'IpInDiscards', 'IpInHdrErrors'], { allowFail: true });
        assert.fail(`monitored ${want.length} frames, collector ${got.length}: ${d.onlyA.length} missing, ${d.onlyB.length} extra; first missing ${d.onlyA[0]?.slice(0, 120)}; first extra ${d.onlyB[0]?.slice(0, 120)}; `
          + `counters ${JSON.stringify(c2)}; collector: ${coll4.stdout.trim()}`);
      }
      // Counters: both rounds, across the restart; every matched frame mirrored.
      assert.ok(c1.mirrored > 0 && c1.mirrored < want.length, `round 1: ${c1.mirrored} of ${want.length}`);
      assert.deepEqual({ matched: c2.matched, mirrored: c2.mirrored, failed: c2.failed, rateLimited: c2.rateLimited },
        { matched: want.length, mirrored: want.length, failed: 0, rateLimited: 0 }, `round 1 ${JSON.stringify(c1)}; after the restart ${JSON.stringify(c2)}; ${daemon!.logs().filter((l) => l.component === 'capture').map((l) => l.msg).join(' / ')}`);
      assert.equal(c2.mirroredBytes, want.reduce((n, r) => n + r.data.length, 0));

      // The tunnel's outer packets are not the host's flows.
      const flows = await daemon!.call('flows.list', {});
      assert.equal(flows.flows.filter((f) => f.protocol === 'udp' && (f.remotePort === 4789 || f.localPort === 4789)).length, 0, 'no VXLAN flow');
      assert.equal(flows.flows.filter((f) => f.protocol === 'gre').length, 0, 'no GRE flow');

      // Removed: no more copies.
      await mirrorCtl(['remove', name]);
      const dst3 = await tcpdump(coll, dev, file(`${encap}-after.pcap`), true);
      await traffic();
      await stop(dst3);
      assert.equal(readPcapRecords(file(`${encap}-after.pcap`)).records.length, 0, 'copies after remove');
      assert.equal((await daemon!.call('mirror.list')).mirrors.length, 0);
    });
  }

  // IPv6 toward the collector: the tunnels do not fragment what the host sends, so a copy
  // longer than the path allows arrives cut to fit, counted in tooBig and truncated
  // (docs/capture.md "Mirror"). ICMP and UDP only: a GSO TCP packet becomes one cut frame,
  // which no tcpdump on the wire sees as such. In the 6.1 guest (EBPFMON_CAPTURE_QUICK,
  // emulated: about 15 s a test) only GRE, which this machine's kernel cannot run; VXLAN over
  // IPv6 runs here.
  const v6Encaps = process.env.EBPFMON_CAPTURE_QUICK === '1' ? (['gre'] as const) : (['vxlan', 'gre'] as const);
  for (const encap of v6Encaps) {
    test(`${encap} over IPv6: frames that fit arrive byte for byte, longer ones cut to fit and counted${encap === 'gre' ? ' (a kernel without IPv6 GRE: a clear refusal instead)' : ''}`, async () => {
      const name = `m6-${encap}`;
      const dev = encap === 'vxlan' ? 'vx6' : 'gt6';
      const id = encap === 'vxlan' ? '8' : '6';
      const made = await coll.exec('ip', ['link', 'add', dev, 'type', encap === 'vxlan' ? 'vxlan' : 'ip6gretap', ...(encap === 'vxlan'
        ? ['id', id, 'dstport', '4789', 'local', collLink.b.ip6, 'nolearning']
        : ['local', collLink.b.ip6, 'remote', collLink.a.ip6, 'key', id])], { allowFail: true });
      if (made.code !== 0) {
        assert.equal(encap, 'gre', `the collector's vxlan device over IPv6: ${made.stderr}`);
        // Only for kernels without GRE: one with gretap has ip6gretap too (Debian's 6.1 in
        // test/e2e/kernel-6.1 loads both modules), so the real path cannot be skipped there.
        assert.equal(gre, false, `gretap works here, ip6gretap does not: ${made.stderr}`);
        const r = await ctl(['mirror', 'add', name, '--to', collLink.b.ip6, '--encap', 'gre', EXPR], { socket: daemon!.socketPath });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /cannot make ip6gretap devices .*CONFIG_IPV6_GRE/);
        return;
      }
      await coll.exec('ip', ['link', 'set', dev, 'mtu', '9000', 'up']);
      await coll.exec('ethtool', ['-K', dev, 'gro', 'off']);
      const added = await mirrorCtl(['add', name, '--to', collLink.b.ip6, '--encap', encap, '--vni', id, '-i', link.a.ifname, EXPR]);
      assert.match(added, /: active$/m);
      const view = (JSON.parse(await mirrorCtl(['list', '--json'])) as { mirrors: Array<{ name: string; pathMtu: number | null; device: string }> }).mirrors.find((m) => m.name === name)!;
      assert.equal(view.device, encap === 'vxlan' ? 'emon-vxlan' : 'emon-gre6');
      assert.equal(view.pathMtu, 1500, 'the path to the collector: the lab link');
      // The frame (from its Ethernet header) that fits: path MTU less outer IPv6 and the
      // encapsulation (VXLAN: UDP and its header; GRE with a key: 8).
      const fit = view.pathMtu - 40 - (encap === 'vxlan' ? 16 : 8);

      const src = await tcpdump(mon, link.a.ifname, file(`${encap}6-src.pcap`));
      const dst = await tcpdump(coll, dev, file(`${encap}6-dst.pcap`), true);
      await mon.exec('ping', ['-c', '3', '-i', '0.2', '-s', '1472', link.b.ip4]); // 1514-byte frames: cut
      await mon.exec('ping', ['-c', '2', '-i', '0.2', '-s', '1000', link.b.ip4]);
      await mon.exec('ping', ['-6', '-c', '2', '-i', '0.2', '-s', '1400', link.b.ip6]); // 1462: cut over VXLAN and GRE
      const u = jsonLines(mon.spawn(process.execPath, [PEER, 'udp-client', link.b.ip4, '9001', '5', '200']));
      await u.next((o) => o.event === 'done', 20_000);
      await new Promise((r) => setTimeout(r, 300));
      await stop(src);
      await stop(dst);
      const c = await stats(name);

      const truth = file(`${encap}6-truth.pcap`);
      execFileSync('tcpdump', ['-r', file(`${encap}6-src.pcap`), '-w', truth, EXPR], { stdio: 'pipe' });
      const frames = readPcapRecords(truth).records;
      const want = frames.map((r) => ({ ...r, data: r.data.subarray(0, Math.min(r.data.length, fit)) }));
      const got = readPcapRecords(file(`${encap}6-dst.pcap`)).records;
      const cut = frames.filter((r) => r.data.length > fit).length;
      assert.ok(cut >= 6 && cut < frames.length, `frames longer than ${fit} among the selected: ${cut} of ${frames.length}`);
      const d = frameDiff(want, got);
      assert.deepEqual({ missing: d.onlyA.length, extra: d.onlyB.length }, { missing: 0, extra: 0 },
        `monitored ${frames.length} frames (${cut} over ${fit}), collector ${got.length}; first missing ${d.onlyA[0]?.slice(0, 120)}; first extra ${d.onlyB[0]?.slice(0, 120)}; counters ${JSON.stringify(c)}`);
      assert.deepEqual({ matched: c.matched, mirrored: c.mirrored, tooBig: c.tooBig, truncated: c.truncated, failed: c.failed },
        { matched: frames.length, mirrored: frames.length, tooBig: cut, truncated: cut, failed: 0 });
      assert.equal(c.mirroredBytes, want.reduce((n, r) => n + r.data.length, 0), 'bytes as they left: cut frames at their cut length');
      await mirrorCtl(['remove', name]);
    });
  }
});
