// SPDX-License-Identifier: Apache-2.0
// The L7 kernel objects loaded and joined without a daemon, for bench/l7: the shipped
// classifier (flows.bpf.o, with the hook chain), the L7 object (tc_l7_flow in emon_hooks
// slot 0, and the loopback tap) sharing its maps by fd, and the switches in emon_config.
// The daemon does the same through its Deployment (l7/feature.ts: pins instead of fds).
// Order matters: the classifier creates the maps, the L7 object reuses them, and only a
// loaded L7 program is put in the prog array (an empty slot: the classifier runs alone).
// Also: l7Counters, which the daemon uses.
import path from 'node:path';
import { BpfObject } from '../bpf/object.js';
import { L7_COUNTERS, type L7CounterName } from '../contract/l7.js';
import type { BpfMap } from '../bpf/maps.js';
import { CFG_L7_DNS, CFG_L7_HTTP, CFG_L7_TLS, L7_STAT_MAX } from './wire.js';
import { L7_MAP, L7_PROG } from './components.js';

/** The classifier's hook chain as bpf/monitor/common.h declares it (L7: bit 0, slot 0). */
const HOOKS_MAP = 'emon_hooks';
const L7_SLOT = 0;
export const L7_HOOK_BIT = 1 << 0;

export interface L7Switches {
  dns: boolean;
  http: boolean;
  tls: boolean;
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

export class L7Kernel {
  private constructor(readonly classifier: BpfObject, readonly l7: BpfObject) {}

  /**
   * Loads `classifierFile` (a classifier built with the L7 hook) and `l7File`, shares the
   * maps, fills the prog array. `mapSizes` as for the daemon (emon_flows ...).
   */
  static load(opts: { objectDir: string; classifierFile?: string; l7File?: string; mapSizes?: Record<string, number> }): L7Kernel {
    const classifier = BpfObject.open(path.resolve(opts.objectDir, opts.classifierFile ?? 'flows.bpf.o'));
    let l7: BpfObject | undefined;
    try {
      for (const [m, n] of Object.entries(opts.mapSizes ?? {})) if (classifier.mapNames().includes(m)) classifier.setMaxEntries(m, n);
      classifier.load();
      l7 = BpfObject.open(path.resolve(opts.objectDir, opts.l7File ?? 'l7.bpf.o'));
      const shared = new Set(classifier.mapNames());
      for (const m of l7.mapNames()) if (shared.has(m)) l7.reuseMap(m, classifier.map(m).fd);
      l7.load();
      classifier.map(HOOKS_MAP).update(u32(L7_SLOT), u32(l7.progFd(L7_PROG.flow)));
      return new L7Kernel(classifier, l7);
    } catch (err) {
      l7?.close();
      classifier.close();
      throw err;
    }
  }

  /** The emon_ifaces entry of `ifindex`: its link-layer length and hook bits (L7_HOOK_BIT). */
  setInterface(ifindex: number, l2Len: number, hooks: number): void {
    const v = Buffer.alloc(8);
    v.writeUInt32LE(ifindex, 0);
    v.writeUInt16LE(l2Len, 4);
    v.writeUInt8(hooks, 6);
    this.classifier.map('emon_ifaces').update(u32(ifindex & 1023), v);
  }

  /** Writes the L7 switches into emon_config.flags, keeping its other fields. */
  setSwitches(s: L7Switches): void {
    const m = this.classifier.map('emon_config');
    const v = m.lookup(u32(0)) ?? Buffer.alloc(16);
    let flags = v.readUInt32LE(8) & ~(CFG_L7_DNS | CFG_L7_HTTP | CFG_L7_TLS);
    if (s.dns) flags |= CFG_L7_DNS;
    if (s.http) flags |= CFG_L7_HTTP;
    if (s.tls) flags |= CFG_L7_TLS;
    v.writeUInt32LE(flags >>> 0, 8);
    m.update(u32(0), v);
  }

  /** Restricts socket tracking to one network namespace (emon_config.netns_cookie). */
  setNetnsCookie(cookie: bigint): void {
    const m = this.classifier.map('emon_config');
    const v = m.lookup(u32(0)) ?? Buffer.alloc(16);
    v.writeBigUInt64LE(cookie, 0);
    m.update(u32(0), v);
  }

  /** emon_l7_stats, plus the same rows of `extra` (the uprobes' emon_ssl_stats). */
  stats(extra?: BpfMap): Record<L7CounterName, number> {
    return l7Counters([this.l7.map(L7_MAP.stats), ...(extra ? [extra] : [])]);
  }

  progFd(name: 'tc_ingress' | 'tc_egress' | typeof L7_PROG.tap): number {
    return name === L7_PROG.tap ? this.l7.progFd(name) : this.classifier.progFd(name);
  }

  close(): void {
    this.l7.close();
    this.classifier.close();
  }
}


/** The L7 counters summed over per-CPU stats maps indexed by enum emon_l7_stat. */
export function l7Counters(maps: BpfMap[]): Record<L7CounterName, number> {
  const out = Object.fromEntries(L7_COUNTERS.map((n) => [n, 0])) as Record<L7CounterName, number>;
  for (const m of maps) {
    for (let i = 0; i < L7_COUNTERS.length && i < L7_STAT_MAX; i++) {
      const v = m.lookup(u32(i));
      if (v) out[L7_COUNTERS[i]!] += Number(m.sumPerCpuU64(v));
    }
  }
  return out;
}
