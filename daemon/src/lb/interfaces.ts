// SPDX-License-Identifier: Apache-2.0
// Where the load balancer meets the host: which interfaces xdp_lb is attached to (through the
// Deployment's pinned XDP links), the host's own addresses (emon_lb_ifaddr: the nat-mode
// source on each interface), and the kernel's route toward a backend.
import type { Logger } from 'pino';
import { invalidParam } from '../errors.js';
import { BPF_ANY } from '../bpf/uapi.js';
import { ipText, isLinkLocal, parseIp, type IpAddr } from '../net/ip.js';
import { LB_PROG } from './components.js';
import { encodeAddr, encodeIfKey } from './codec/settings.js';
import type { LbMode } from './wire.js';
import { entries, inSubnet, type LbDeployment, type LbHost, type LbKernelMap } from './kernel.js';
import type { BackendSpec } from './validate.js';

export type XdpMode = 'native' | 'generic';

export class LbInterfaces {
  /** Source address the kernel chose toward backends, per "ifindex/family" (preferred as the nat source). */
  private readonly localPref = new Map<string, string>();

  constructor(
    private readonly deployment: LbDeployment,
    private readonly host: LbHost,
    private readonly ifaddr: LbKernelMap,
    private readonly mode: XdpMode,
    private readonly log: Logger,
  ) {}

  byName(): Map<string, number> {
    return new Map(this.host.links().map((l) => [l.name, l.ifindex]));
  }

  byIndex(): Map<number, string> {
    return new Map(this.host.links().map((l) => [l.ifindex, l.name]));
  }

  /** xdp_lb's attachments, as the Deployment recorded them. */
  attached(): Array<{ ifindex: number; ifname: string; mode: XdpMode }> {
    return this.deployment.xdpRecords().filter((r) => r.program === LB_PROG.xdp);
  }

  /** Attaches xdp_lb where it is not yet; returns the interfaces attached now (for undo). */
  ensure(want: Map<number, string>): number[] {
    const have = new Set(this.attached().map((r) => r.ifindex));
    const done: number[] = [];
    try {
      for (const [ifindex, name] of want) {
        if (have.has(ifindex)) continue;
        this.deployment.attachXdp(ifindex, name, LB_PROG.xdp, this.mode);
        done.push(ifindex);
        this.log.info({ iface: name, mode: this.mode }, 'attached xdp_lb');
      }
    } catch (err) {
      for (const i of done) this.deployment.detachXdp(i);
      throw err;
    }
    return done;
  }

  detach(ifindex: number): void {
    this.deployment.detachXdp(ifindex);
  }

  /** Detaches xdp_lb from every interface not in `need` (best effort). */
  prune(need: Map<number, string>): void {
    for (const r of this.attached()) {
      if (need.has(r.ifindex)) continue;
      try {
        this.deployment.detachXdp(r.ifindex);
        this.log.info({ iface: r.ifname }, 'detached xdp_lb (no VIP or nat backend needs it)');
      } catch (err) {
        this.log.warn({ err, iface: r.ifname }, 'could not detach xdp_lb');
      }
    }
  }

  /** After a restart or an upgrade: keep every recorded attachment, now with the current program. */
  reattach(): void {
    const byName = this.byName();
    for (const r of this.attached()) {
      try {
        if (byName.get(r.ifname) !== r.ifindex) {
          this.deployment.detachXdp(r.ifindex); // the interface is gone (or renumbered)
          continue;
        }
        const how = this.deployment.attachXdp(r.ifindex, r.ifname, LB_PROG.xdp, r.mode);
        if (how !== 'adopted') this.log.info({ iface: r.ifname, how }, 'xdp_lb attachment updated');
      } catch (err) {
        this.log.warn({ err, iface: r.ifname }, 'could not re-attach xdp_lb');
      }
    }
  }

  /** Makes emon_lb_ifaddr match the host's addresses. Returns whether anything changed. */
  syncAddresses(): boolean {
    const addrs = this.host.addresses();
    const want = new Map<string, Buffer>();
    for (const link of this.host.links()) {
      const list = addrs.get(link.name) ?? [];
      for (const family of ['ipv4', 'ipv6'] as const) {
        const cands = list.filter((a) => a.family === family).map((a) => parseIp(a.address)).filter((a): a is IpAddr => a !== null && !isLinkLocal(a));
        const pref = this.localPref.get(`${link.ifindex}/${family}`);
        const pick = cands.find((a) => ipText(a) === pref) ?? cands[0];
        if (pick) want.set(encodeIfKey(link.ifindex, family).toString('hex'), encodeAddr(pick));
      }
    }
    let changed = false;
    for (const { key, value } of entries(this.ifaddr)) {
      const k = key.toString('hex');
      const w = want.get(k);
      if (!w) {
        this.ifaddr.delete(key);
        changed = true;
      } else if (w.equals(value)) want.delete(k);
    }
    for (const [k, v] of want) {
      this.ifaddr.update(Buffer.from(k, 'hex'), v, BPF_ANY);
      changed = true;
    }
    return changed;
  }

  /**
   * Where does the kernel route backend `b`? Returns the egress ifindex (0 if unknown). Also
   * makes the kernel resolve the next hop's MAC (bpf_fib_lookup answers NO_NEIGH until then).
   * dsr needs the backend on a directly connected network.
   */
  async probe(b: BackendSpec, mode: LbMode): Promise<number> {
    let local: string;
    try {
      local = (await this.host.probe(b.addr)).local;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw invalidParam('params.backend', b.text, `a backend this host has a route to (${code})`);
    }
    const addrs = this.host.addresses();
    let ifname: string | null = null;
    for (const [name, list] of addrs) if (list.some((a) => a.address === local)) ifname = name;
    const ifindex = ifname !== null ? this.byName().get(ifname) ?? 0 : 0;
    if (ifindex) this.localPref.set(`${ifindex}/${b.addr.family}`, local);
    if (mode === 'dsr') {
      const onLink = ifname !== null && (addrs.get(ifname) ?? []).some((a) => inSubnet(b.addr, a.address, a.prefix));
      if (!onLink) {
        throw invalidParam('params.backend', b.text, 'for a dsr VIP, a backend on a network directly connected to this host (dsr rewrites only MAC addresses)');
      }
    }
    return ifindex;
  }
}
