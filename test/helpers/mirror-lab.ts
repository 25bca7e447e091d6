// SPDX-License-Identifier: Apache-2.0
// The mirror tests' hosts (integration/mirror and integration/dbus-mirror): the monitored
// link `mon` <-> `peer`, a collector host `coll` on a second link from `mon` with a kernel
// VXLAN device that decapsulates the copies, and servers on the peer for the test's traffic
// (TCP 9000 on every address, UDP 9001). The daemon is the test's to start (its config
// differs), on both of `mon`'s links.
import { jsonLines, type Host, type Lab, type LinkInfo } from './lab.js';
import { monitorLab, PEER } from './daemon.js';

/** The test's own traffic: TCP (IPv4, IPv6; 1500-byte frames), UDP, ICMP echo (both families). */
export const MIRROR_EXPR = 'tcp port 9000 or udp port 9001 or icmp or (icmp6 and (ip6[40] == 128 or ip6[40] == 129))';

export interface MirrorLab {
  lab: Lab;
  mon: Host;
  peer: Host;
  coll: Host;
  /** The monitored link (mon = a, peer = b). */
  link: LinkInfo;
  /** mon (a) to the collector (b). */
  collLink: LinkInfo;
  dir: string;
}

/** Builds the hosts; `vni`: the collector's VXLAN device `vx0` takes this id (UDP 4789). */
export async function mirrorLab(vni: number): Promise<MirrorLab> {
  const { lab, mon, peer, link } = await monitorLab();
  const coll = await lab.host('coll');
  const collLink = await lab.link(mon, coll);
  const dir = lab.tmpdir();
  // Frames as they are on the wire: no segmentation or checksum offload on the monitored
  // link, so tcpdump there sees what the collector gets (with offloads, tcpdump shows
  // 64 KiB super-packets and unfinished checksums that no wire carries: docs/capture.md).
  for (const [h, i] of [[mon, link.a.ifname], [peer, link.b.ifname]] as const) await h.exec('ethtool', ['-K', i, 'tso', 'off', 'gso', 'off', 'gro', 'off', 'tx', 'off']);
  // A copy leaves with the original's checksum state: a NIC completes the inner checksum, a
  // veth never does, so on this lab link the kernel must (docs/capture.md "Checksums").
  await mon.exec('ethtool', ['-K', collLink.a.ifname, 'tx', 'off']);
  await coll.exec('ip', ['link', 'add', 'vx0', 'type', 'vxlan', 'id', String(vni), 'dstport', '4789', 'local', collLink.b.ip4, 'nolearning']);
  await coll.exec('ip', ['link', 'set', 'vx0', 'mtu', '9000', 'up']);
  // The decapsulating device would coalesce consecutive TCP segments (GRO) before its taps.
  await coll.exec('ethtool', ['-K', 'vx0', 'gro', 'off']);
  const srv = jsonLines(peer.spawn(process.execPath, [PEER, 'tcp-server', '::', '9000', '0']));
  await srv.next((o) => o.event === 'listening');
  const usrv = jsonLines(peer.spawn(process.execPath, [PEER, 'udp-server', '0.0.0.0', '9001']));
  await usrv.next((o) => o.event === 'listening');
  return { lab, mon, peer, coll, link, collLink, dir };
}
