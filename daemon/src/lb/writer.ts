// SPDX-License-Identifier: Apache-2.0
// The kernel writer: every change to the load balancer's maps, each one a transaction
// (tx.ts) so that a failure leaves the running configuration as it was:
//   - Maglev tables are double-buffered per VIP: the new table goes into the idle half,
//     then one map update flips the VIP to it (the commit point). Rolling back is flipping
//     back: the old half is never written while it is live.
//   - everything written before the commit point (backend slots, counters, XDP
//     attachments) is undone if a later step fails.
// It keeps the kernel-side fields of VipState (live half, generation, table) in step with
// the maps; which VIPs and backends exist is the caller's state (state.ts).
import type { Logger } from 'pino';
import { BPF_ANY, BPF_EXIST, BPF_NOEXIST } from '../bpf/uapi.js';
import { addU64, decodeU32, decodeU8, encodeU8, u32Key } from './codec/fields.js';
import { connBackend, natBackend } from './codec/flows.js';
import { encodeConfig } from './codec/settings.js';
import { encodeBackend, encodeVip, encodeVipCfg, encodeVipKey } from './codec/vips.js';
import type { LbInterfaces } from './interfaces.js';
import { entries, readU32Range, ringBase, writeU32Range, type LbKernelMap, type LbMaps } from './kernel.js';
import type { LbSettings } from './options.js';
import type { BackendState, VipState } from './state.js';
import { kernelError, transact, type Step } from './tx.js';
import { healthType } from './validate.js';
import { BE, LB_LAYOUT_VERSION, MODE, RING_SIZE, STAT } from './wire.js';

export class LbWriter {
  /** emon_lb_config.nh_gen: bumped to invalidate the data path's next-hop caches. */
  private nhGen: number;

  /**
   * `nhGen`: the generation to start from (a new daemon, maybe a new program, starts from
   * fresh routes); `dropFlags`: the emon_lb_config flags the drop list needs.
   */
  constructor(
    private readonly m: LbMaps,
    private readonly ifs: LbInterfaces,
    private readonly log: Logger,
    private readonly settings: Pick<LbSettings, 'promoteAfterMs' | 'natPorts'>,
    private readonly dropFlags: () => number,
    nhGen: number,
  ) {
    this.nhGen = nhGen >>> 0;
  }

  // --- settings and host-derived tables -------------------------------------------------------

  writeConfig(): void {
    this.m.cfg.update(u32Key(0), encodeConfig({
      promoteNs: BigInt(this.settings.promoteAfterMs) * 1_000_000n,
      natPortMin: this.settings.natPorts.min,
      natPortMax: this.settings.natPorts.max,
      flags: this.dropFlags(),
      layout: LB_LAYOUT_VERSION,
      nhGen: this.nhGen,
    }));
  }

  /** emon_lb_ifaddr in step with the host; cached next hops carry the nat source, so a change invalidates them. */
  syncIfaddrs(): void {
    if (!this.ifs.syncAddresses()) return;
    this.nhGen = (this.nhGen + 1) >>> 0;
    this.writeConfig();
  }

  private setVport(port: number, n: number): void {
    this.m.vports.update(u32Key(port), encodeU8(n), BPF_ANY);
  }

  /** Makes emon_lb_vports match `counts` (VIPs per port), whatever an interrupted change left. */
  syncVports(counts: Map<number, number>): void {
    for (const { key, value } of entries(this.m.vports)) {
      const port = decodeU32(key);
      const n = Math.min(counts.get(port) ?? 0, 255);
      if (decodeU8(value) !== n) this.setVport(port, n);
    }
  }

  // --- VIPs ---------------------------------------------------------------------------------

  /**
   * Installs a new VIP (with its empty table in v.table) on the interfaces `want`;
   * `onPort`: VIPs already on its destination port.
   */
  addVip(v: VipState, want: Map<number, string>, onPort: number): void {
    const { slot } = v;
    transact(this.log, `adding VIP ${v.spec.text}`, [
      () => {
        this.m.vipcfg.update(u32Key(slot), this.vipCfg(v), BPF_ANY);
        return () => this.m.vipcfg.update(u32Key(slot), encodeVipCfg(null), BPF_ANY);
      },
      () => this.zeroSlot(this.m.vstats, slot),
      () => {
        this.setVport(v.spec.port, onPort + 1);
        return () => this.setVport(v.spec.port, onPort);
      },
      // A slot's old table must not route the new VIP's first packets.
      () => writeU32Range(this.m.ring, ringBase(slot, 0), v.table!),
      () => this.attach(want),
      () => this.m.vips.update(this.vipKey(v), encodeVip({ slot, gen: 0, mode: MODE[v.mode], ring: 0 }), BPF_NOEXIST),
    ]);
  }

  /** A backend's route changed (its egress interface was recreated): the same slot, the new egress. */
  rerouteBackend(v: VipState, b: BackendState): void {
    this.writeBackend(v, b);
  }

  /** Rewrites a VIP's settings (emon_lb_vipcfg: what a restart rebuilds it from). */
  updateVipCfg(v: VipState): void {
    this.m.vipcfg.update(u32Key(v.slot), this.vipCfg(v), BPF_ANY);
  }

  /** The commit point of a removal: from here the VIP's packets pass untouched. */
  deleteVip(v: VipState): void {
    try {
      this.m.vips.delete(this.vipKey(v));
    } catch (err) {
      throw kernelError(err, `removing VIP ${v.spec.text}`);
    }
  }

  /**
   * After deleteVip: clears its backend slots, settings and flows, and sets its port's VIP
   * count to `onPort`. Best effort (leftovers are cleared at the next restore); returns the
   * flow entries deleted.
   */
  clearVip(v: VipState, onPort: number): number {
    const ids = new Set([...v.backends.values()].map((b) => b.id));
    let flowsDeleted = 0;
    try {
      for (const id of ids) this.m.backends.update(u32Key(id), encodeBackend(null), BPF_ANY);
      this.m.vipcfg.update(u32Key(v.slot), encodeVipCfg(null), BPF_ANY);
      flowsDeleted = this.sweepFlows(ids);
    } catch (err) {
      this.log.warn({ err, vip: v.spec.text }, 'VIP removed; clearing its backends failed');
    }
    try {
      this.setVport(v.spec.port, onPort);
    } catch (err) {
      this.log.warn({ err, vip: v.spec.text }, 'could not update the VIP port table (fixed at the next restore)');
    }
    return flowsDeleted;
  }

  // --- backends -----------------------------------------------------------------------------

  /** Installs backend `b` and `table` (the VIP's table with it); XDP goes on `want` first. */
  addBackend(v: VipState, b: BackendState, table: Uint32Array, want: Map<number, string>): void {
    transact(this.log, `adding backend ${b.spec.text} to ${v.spec.text}`, [
      () => {
        this.writeBackend(v, b);
        return () => this.m.backends.update(u32Key(b.id), encodeBackend(null), BPF_ANY);
      },
      () => this.zeroSlot(this.m.bstats, b.id),
      // An id may be reused: its cached next hop must not be the previous backend's.
      () => this.zeroSlot(this.m.nhc, b.id),
      () => this.attach(want),
      () => this.flip(v, table),
    ]);
  }

  /**
   * Replaces backend `b`'s slot with `next` and installs `table`. `tableFirst`: flip first
   * (a backend leaving the table gets no new flows before its flags steer new SYNs of old
   * tuples); otherwise the slot first (a weight change).
   */
  replaceBackend(v: VipState, b: BackendState, next: BackendState, table: Uint32Array, tableFirst: boolean, what: string): void {
    const slot: Step = () => {
      this.writeBackend(v, next);
      return () => this.writeBackend(v, b);
    };
    const flip: Step = () => this.flip(v, table);
    transact(this.log, what, tableFirst ? [flip, slot] : [slot, flip]);
  }

  /** Takes `b` out: `table` (without it) first, then its slot. */
  removeBackend(v: VipState, b: BackendState, table: Uint32Array): void {
    transact(this.log, `removing backend ${b.spec.text} from ${v.spec.text}`, [
      () => this.flip(v, table),
      () => this.m.backends.update(u32Key(b.id), encodeBackend(null), BPF_ANY),
    ]);
  }

  /** After removeBackend: its flow entries (best effort: the data path re-schedules them). */
  sweepBackendFlows(b: BackendState): number {
    try {
      return this.sweepFlows(new Set([b.id]));
    } catch (err) {
      this.log.warn({ err }, 'could not delete the removed backend\'s flow entries (the data path re-schedules them)');
      return 0;
    }
  }

  // --- Maglev tables ------------------------------------------------------------------------

  /**
   * Installs `table` as the VIP's live table: written into the idle half, then the VIP is
   * flipped to it in one update. Returns the undo (flip back to the untouched old half).
   */
  private flip(v: VipState, table: Uint32Array): () => void {
    const next = v.ring ^ 1;
    writeU32Range(this.m.ring, ringBase(v.slot, next), table);
    const key = this.vipKey(v);
    const before = encodeVip({ slot: v.slot, gen: v.gen, mode: MODE[v.mode], ring: v.ring });
    this.m.vips.update(key, encodeVip({ slot: v.slot, gen: v.gen + 1, mode: MODE[v.mode], ring: next }), BPF_EXIST);
    const prev = { ring: v.ring, gen: v.gen, table: v.table };
    v.ring = next;
    v.gen = (v.gen + 1) >>> 0;
    v.table = table;
    return () => {
      this.m.vips.update(key, before, BPF_EXIST);
      v.ring = prev.ring;
      v.gen = prev.gen;
      v.table = prev.table;
    };
  }

  /** The VIP's live table (read from the kernel on first use after a restore). */
  liveTable(v: VipState): Uint32Array {
    v.table ??= readU32Range(this.m.ring, ringBase(v.slot, v.ring), RING_SIZE);
    return v.table;
  }

  // --- helpers ------------------------------------------------------------------------------

  /** Attaches XDP where `want` needs it; the undo detaches what this attached. */
  private attach(want: Map<number, string>): () => void {
    const attached = this.ifs.ensure(want);
    return () => attached.forEach((i) => this.ifs.detach(i));
  }

  private zeroSlot(map: LbKernelMap, idx: number): void {
    map.update(u32Key(idx), Buffer.alloc(map.valueBytes), BPF_ANY);
  }

  /** Adds to a counter only user space writes (on CPU 0's slot; the data path never touches it). */
  private addStat(idx: number, n: number): void {
    if (n <= 0) return;
    const key = u32Key(idx);
    const v = this.m.stats.lookup(key) ?? Buffer.alloc(this.m.stats.valueBytes);
    addU64(v, n);
    this.m.stats.update(key, v, BPF_ANY);
  }

  private writeBackend(v: VipState, b: BackendState): void {
    this.m.backends.update(u32Key(b.id), encodeBackend({ addr: b.spec.addr, port: b.spec.port, flags: b.flags | BE.inUse, vip: v.slot, weight: b.weight, egress: b.egress }), BPF_ANY);
  }

  private vipKey(v: VipState): Buffer {
    return encodeVipKey({ addr: v.spec.addr, port: v.spec.port, proto: v.spec.proto });
  }

  private vipCfg(v: VipState): Buffer {
    return encodeVipCfg({
      key: { addr: v.spec.addr, port: v.spec.port, proto: v.spec.proto },
      ifindex: v.ifname ? this.ifs.byName().get(v.ifname) ?? 0 : 0, ifname: v.ifname, mode: MODE[v.mode],
      hcType: healthType(v.health), hcRise: v.health?.rise ?? 0, hcFall: v.health?.fall ?? 0, hcPort: v.health?.port ?? 0,
      hcIntervalMs: v.health?.intervalMs ?? 0, hcTimeoutMs: v.health?.timeoutMs ?? 0, hcPath: v.health?.path ?? '',
      declHash: v.declHash, createdNs: v.createdNs,
    });
  }

  /** Deletes conn, long-lived and NAT entries of these backend ids. Returns how many. */
  private sweepFlows(ids: Set<number>): number {
    if (ids.size === 0) return 0;
    let conns = 0;
    let total = 0;
    for (const [map, isNat] of [[this.m.conns, false], [this.m.long, false], [this.m.nat, true]] as const) {
      for (const { key, value } of entries(map)) {
        const id = isNat ? natBackend(value) : connBackend(value);
        if (!ids.has(id)) continue;
        if (map.delete(key)) {
          total++;
          if (map === this.m.conns) conns++;
        }
      }
    }
    this.addStat(STAT.connDeleted, conns);
    return total;
  }
}
