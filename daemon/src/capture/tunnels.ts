// SPDX-License-Identifier: Apache-2.0
// The tunnel devices mirror copies leave through: kernel vxlan, gretap and ip6gretap
// devices in external (collect-metadata) mode, one per kind, in the daemon's network
// namespace. tc_mirror_out on their egress gives each clone its collector and VNI/key; the
// kernel's device encapsulates, routes, resolves the neighbour and (IPv4) fragments.
// tc_mirror_in on their ingress drops everything (an external device accepts tunnel
// packets from anyone). They are recorded in the deployment's manifest, so `ebpfmon
// --teardown` deletes them, and adopted by a restarted daemon (mirrors keep running while
// it is away).
//
// Why kernel devices and not encapsulation written by the program: the device does what a
// program cannot, or only with much more code: segmenting GSO packets (TCP copies from the
// sender's side are 64 KiB super-packets), fragmenting outer IPv4 packets larger than the
// path, UDP checksums over IPv6, and neighbour resolution; docs/capture.md has the costs.
import fs from 'node:fs';
import type { Logger } from 'pino';
import type { Deployment } from '../bpf/deployment.js';
import { createTunnel, deleteLink, listLinks, NetlinkError, routeTo, setLinkMtu, setLinkUp, type Link, type TunnelKind } from '../net/netlink.js';
import { errnoName } from '../sys/errno.js';
import type { MirrorEncap } from '../contract/capture.js';
import { CAP_PROGS } from './wire.js';

/**
 * Sets a device's MTU to the largest it accepts; returns it. The kernel reports that limit
 * (IFLA_MAX_MTU) for most devices, but a GRE tunnel's own check is in its change_mtu
 * handler and its max_mtu reads 0 (Debian 12's 6.1): then the limit is found by trying,
 * a binary search from the current MTU up to 65535 (16 requests at most, when the daemon
 * makes or finds the device).
 */
export function raiseMtu(link: Pick<Link, 'ifindex' | 'mtu' | 'maxMtu'>, set: (ifindex: number, mtu: number) => void = setLinkMtu): number {
  let lo = link.mtu ?? 68;
  if (link.maxMtu && link.maxMtu > lo) {
    set(link.ifindex, link.maxMtu);
    return link.maxMtu;
  }
  let hi = 65_535;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    try {
      set(link.ifindex, mid);
      lo = mid;
    } catch (err) {
      if (!(err instanceof NetlinkError) || err.errno !== 22 /* EINVAL: over the limit */) throw err;
      hi = mid - 1;
    }
  }
  return lo;
}

/** Device names: ebpfmon's own (the classifier never attaches to them). */
export const TUNNEL_DEVICES: Record<TunnelKind, string> = { vxlan: 'emon-vxlan', gretap: 'emon-gre', ip6gretap: 'emon-gre6' };

/** Bytes in front of the inner Ethernet frame: outer IP + UDP + VXLAN, or outer IP + GRE with a key. */
export function tunnelOverhead(encap: MirrorEncap, v6: boolean): number {
  return (v6 ? 40 : 20) + (encap === 'vxlan' ? 16 : 8);
}

export function tunnelKind(encap: MirrorEncap, v6: boolean): TunnelKind {
  return encap === 'vxlan' ? 'vxlan' : v6 ? 'ip6gretap' : 'gretap';
}

export interface Tunnel {
  kind: TunnelKind;
  name: string;
  ifindex: number;
}

/** Why a kind of tunnel cannot be made here (kept: the kernel will not change its mind). */
export class TunnelUnavailable extends Error {
  override readonly name = 'TunnelUnavailable';
}

export class Tunnels {
  private readonly log: Logger;
  private readonly unavailable = new Map<TunnelKind, string>();

  constructor(private readonly deployment: Deployment, logger: Logger, private readonly vxlanPort: number) {
    this.log = logger.child({ component: 'tunnels' });
  }

  /** The reason a kind cannot be used, once it was tried. */
  reason(kind: TunnelKind): string | undefined {
    return this.unavailable.get(kind);
  }

  private find(kind: TunnelKind, links: Link[] = listLinks()): Link | undefined {
    const name = TUNNEL_DEVICES[kind];
    return links.find((l) => l.name === name && l.kind === kind);
  }

  /** The device of `kind` when it exists now (no creation). */
  existing(kind: TunnelKind): Tunnel | null {
    const l = this.find(kind);
    return l ? { kind, name: l.name, ifindex: l.ifindex } : null;
  }

  /**
   * The device of `kind`, created (and its programs attached) if needed. Throws
   * TunnelUnavailable when this kernel cannot make it, NetlinkError/BpfError otherwise.
   */
  ensure(kind: TunnelKind): Tunnel {
    const known = this.unavailable.get(kind);
    if (known) throw new TunnelUnavailable(known);
    const name = TUNNEL_DEVICES[kind];
    let link = this.find(kind);
    if (!link) {
      const other = listLinks().find((l) => l.name === name);
      if (other) {
        if (this.deployment.device(other.ifindex)?.ifname === name) {
          // Ours, of another kind after a configuration change: cannot be; replace it.
          deleteLink(other.ifindex);
        } else {
          throw new TunnelUnavailable(`an interface named ${name} exists and is not ebpfmon's: rename or delete it`);
        }
      }
      try {
        createTunnel(name, kind, { port: this.vxlanPort });
      } catch (err) {
        if (err instanceof NetlinkError && (err.errno === 95 /* EOPNOTSUPP */ || err.errno === 93 /* EPROTONOSUPPORT */)) {
          const why = `this kernel cannot make ${kind} devices (${errnoName(err.errno)}: ${kind === 'vxlan' ? 'CONFIG_VXLAN' : kind === 'gretap' ? 'CONFIG_NET_IPGRE' : 'CONFIG_IPV6_GRE'} is off or its module missing)`;
          this.unavailable.set(kind, why);
          throw new TunnelUnavailable(why);
        }
        if (err instanceof NetlinkError && err.errno === 98 /* EADDRINUSE */) {
          throw new TunnelUnavailable(`UDP port ${this.vxlanPort} is taken by another vxlan device (configuration capture.vxlanPort)`);
        }
        throw err;
      }
      link = this.find(kind);
      if (!link) throw new Error(`${name} was created but is not listed`);
      this.deployment.recordDevice({ ifindex: link.ifindex, ifname: name, kind });
      this.log.info({ iface: name, kind }, 'created mirror tunnel device');
    } else if (!this.deployment.device(link.ifindex)) {
      this.deployment.recordDevice({ ifindex: link.ifindex, ifname: name, kind });
    }
    // No IPv6 link-local address or neighbour discovery on the device: nothing should ever
    // be said through it but the copies (best effort: the sysctl may be read-only).
    try {
      fs.writeFileSync(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, '1');
    } catch {
      /* no IPv6, or a read-only /proc/sys */
    }
    // A GRE device's MTU must not be the limit: its transmit refuses (and counts in
    // tx_errors, nowhere else) an IPv4 frame with DF set that is larger than the device's
    // MTU when the copy carries no route of its own (measured on Debian 12's 6.1: the first
    // 1500-byte ping request copied to a GRETAP collector was lost so, the device's default
    // MTU being 1462). The path to the collector is handled by the mirror program (the
    // outer IPv4 packet fragmented, an IPv6 one cut to fit: docs/capture.md), so the device
    // takes the largest MTU it allows. (VXLAN's transmit checks the route's MTU, not the
    // device's: left at its default, measured without loss on 6.1 and 6.18.)
    if (kind !== 'vxlan') {
      try {
        const mtu = raiseMtu(link);
        if (mtu !== link.mtu) this.log.info({ iface: name, mtu }, 'mirror tunnel device MTU raised to its largest');
      } catch (err) {
        this.log.warn({ err, iface: name }, 'could not raise the mirror tunnel device\'s MTU: copies of DF frames larger than its MTU may be refused (its tx_errors, status capture.encaps)');
      }
    }
    this.deployment.attachTc(link.ifindex, name, 'egress', CAP_PROGS.mirrorOut);
    this.deployment.attachTc(link.ifindex, name, 'ingress', CAP_PROGS.mirrorIn);
    if (!(link.flags & 1)) setLinkUp(link.ifindex);
    return { kind, name, ifindex: link.ifindex };
  }

  /** Deletes a device no mirror uses any more. */
  release(kind: TunnelKind): void {
    const l = this.find(kind);
    if (!l) return;
    try {
      this.deployment.detachTc(l.ifindex);
      deleteLink(l.ifindex);
    } catch (err) {
      this.log.warn({ err, iface: l.name }, 'deleting the mirror tunnel device failed');
    }
    this.deployment.forgetDevice(l.ifindex);
    this.log.info({ iface: l.name }, 'deleted mirror tunnel device (no mirror uses it)');
  }
}

export interface PathInfo {
  /** null: no route. */
  mtu: number | null;
  via: string | null;
}

/** The path to a collector: the route's MTU (its metric, else the output interface's). */
export function pathTo(remote: Uint8Array): PathInfo {
  const r = routeTo(remote);
  if (!r) return { mtu: null, via: null };
  const link = listLinks().find((l) => l.ifindex === r.ifindex);
  return { mtu: r.mtu ?? link?.mtu ?? null, via: link?.name ?? String(r.ifindex) };
}
