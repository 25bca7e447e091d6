// SPDX-License-Identifier: Apache-2.0
// Which interfaces carry the classifier. The configured names and globs are matched
// against the interfaces of the daemon's network namespace on start, on every netlink
// link event (new interfaces get the classifier at once) and every 2 s as a safety net.
// Loopback is only monitored when named explicitly. Interfaces that disappear are
// forgotten (their filters went with them); interfaces that stop matching after a
// configuration reload are detached.
import type { Logger } from 'pino';
import type { Deployment } from '../bpf/deployment.js';
import { IFF_LOOPBACK, IFF_UP, listLinks, watchLinks, type Link, type LinkWatcher } from '../net/netlink.js';
import { globToRegExp, isGlob } from '../util/glob.js';
import { MAP, PROG } from './components.js';
import { HOOK, IFACE, IFACE_SLOTS, L2_UNKNOWN } from './wire.js';
import { readUint, writeUint } from '../bpf/layout.js';
import type { InterfaceStatus } from '../contract/status.js';

/** Link-layer header length in front of the network header, at TC, by ARPHRD_* type. Types
 * not listed are read through helpers relative to the network header (correct for any). */
const L2_LEN: Record<number, number> = { 1: 14 /* ether */, 772: 14 /* loopback */, 65534: 0 /* none: tun, wireguard */ };

export type AttachedInterface = InterfaceStatus;

export class InterfaceManager {
  private links = new Map<number, Link>();
  private globs: RegExp[] = [];
  private names = new Set<string>();
  private watcher: LinkWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly log: Logger;
  /** Interfaces that failed to attach, with the error (status shows them). */
  readonly failures = new Map<string, string>();
  /** Hook-chain bits wanted on every monitored interface, and on single ones (by ifindex). */
  private hooksAll = 0;
  private readonly hooksOne = new Map<number, number>();
  /** Bits a feature of this daemon has set or cleared. The others are left as the kernel
   * has them: a restarted daemon keeps handing packets to a pinned stage (mirrors run on
   * while it starts) until the feature takes its bit over. */
  private hooksKnown = 0;

  constructor(private readonly deployment: Deployment, logger: Logger, patterns: string[], private readonly pollMs = 2000) {
    this.log = logger.child({ component: 'interfaces' });
    this.setPatterns(patterns);
  }

  setPatterns(patterns: string[]): void {
    this.globs = patterns.filter(isGlob).map(globToRegExp);
    this.names = new Set(patterns.filter((p) => !isGlob(p)));
  }

  /** TC attachments of the classifier (not those of programs on ebpfmon's own devices). */
  private classifierRecords() {
    return this.deployment.tcRecords().filter((r) => !this.deployment.device(r.ifindex));
  }

  private wanted(link: Link): boolean {
    // Devices ebpfmon made itself (mirror tunnels) carry its own copies, never the host's traffic.
    if (this.deployment.device(link.ifindex)?.ifname === link.name) return false;
    if (this.names.has(link.name)) return true;
    if (link.flags & IFF_LOOPBACK) return false;
    return this.globs.some((re) => re.test(link.name));
  }

  start(): void {
    this.reconcile();
    this.watcher = watchLinks(() => this.reconcile());
    this.timer = setInterval(() => this.reconcile(), this.pollMs);
    this.timer.unref();
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  name(ifindex: number): string | null {
    return this.links.get(ifindex)?.name ?? null;
  }

  attached(): AttachedInterface[] {
    return this.classifierRecords().map((r) => ({ name: r.ifname, ifindex: r.ifindex, attachedAt: r.attachedAt, ingress: r.programs.ingress ?? null, egress: r.programs.egress ?? null }));
  }

  /**
   * Asks the classifier to hand the packets of one interface (an ifindex) or of every
   * monitored interface ('all', including those attached later) to a stage of its hook
   * chain (`HOOK.l7.bit`, `HOOK.capture.bit`), or to stop. The one way features set their
   * bit in emon_ifaces: the entries are written here, with the link-layer length, so
   * neither write loses the other's.
   */
  setHookBits(target: number | 'all', bit: number, on: boolean): void {
    if (!Object.values(HOOK).some((h) => h.bit === bit)) throw new RangeError(`not a hook bit: ${bit}`);
    this.hooksKnown |= bit;
    if (target === 'all') {
      this.hooksAll = on ? this.hooksAll | bit : this.hooksAll & ~bit;
    } else {
      const cur = this.hooksOne.get(target) ?? 0;
      const next = on ? cur | bit : cur & ~bit;
      if (next) this.hooksOne.set(target, next);
      else this.hooksOne.delete(target);
    }
    for (const rec of this.classifierRecords()) {
      const link = this.links.get(rec.ifindex);
      if (link && link.name === rec.ifname && (target === 'all' || target === rec.ifindex)) this.recordInterface(link);
    }
  }

  /** The hook bits an interface's entry carries now (0 when it has no entry of its own). */
  hookBits(ifindex: number): number {
    if (!this.deployment.hasMap(MAP.ifaces)) return 0;
    const cur = this.deployment.map(MAP.ifaces).lookup(slotKey(ifindex));
    if (!cur || readUint(cur, IFACE.fields.ifindex) !== ifindex) return 0;
    return readUint(cur, IFACE.fields.hooks);
  }

  /** Tells the classifier about an interface it is attached to (emon_ifaces): its
   * link-layer length, so it can read headers directly (unknown types: through helpers),
   * and the hook-chain stages that want its packets. Two interfaces sharing a slot: the
   * later one uses the helpers and runs no stage. */
  private recordInterface(link: Link): void {
    if (!this.deployment.hasMap(MAP.ifaces)) return;
    const l2 = L2_LEN[link.type] ?? L2_UNKNOWN;
    const map = this.deployment.map(MAP.ifaces);
    const key = slotKey(link.ifindex);
    const cur = map.lookup(key);
    const holder = cur ? readUint(cur, IFACE.fields.ifindex) : 0;
    if (holder !== 0 && holder !== link.ifindex && this.links.has(holder)) return;
    const kept = holder === link.ifindex ? readUint(cur!, IFACE.fields.hooks) & ~this.hooksKnown : 0;
    const hooks = this.hooksAll | (this.hooksOne.get(link.ifindex) ?? 0) | kept;
    if (holder === link.ifindex && readUint(cur!, IFACE.fields.l2_len) === l2 && readUint(cur!, IFACE.fields.hooks) === hooks) return;
    const v = Buffer.alloc(IFACE.size);
    writeUint(v, IFACE.fields.ifindex, link.ifindex);
    writeUint(v, IFACE.fields.l2_len, l2);
    writeUint(v, IFACE.fields.hooks, hooks);
    map.update(key, v);
  }

  private forgetInterface(ifindex: number): void {
    this.hooksOne.delete(ifindex);
    if (!this.deployment.hasMap(MAP.ifaces)) return;
    const map = this.deployment.map(MAP.ifaces);
    const key = slotKey(ifindex);
    const cur = map.lookup(key);
    if (cur && readUint(cur, IFACE.fields.ifindex) === ifindex) map.update(key, Buffer.alloc(IFACE.size));
  }

  reconcile(): void {
    let links: Link[];
    try {
      links = listLinks();
    } catch (err) {
      this.log.warn({ err }, 'listing interfaces failed');
      return;
    }
    this.links = new Map(links.map((l) => [l.ifindex, l]));
    for (const link of links) {
      if (!this.wanted(link) || !(link.flags & IFF_UP)) continue;
      try {
        const i = this.deployment.attachTc(link.ifindex, link.name, 'ingress', PROG.tcIngress);
        const e = this.deployment.attachTc(link.ifindex, link.name, 'egress', PROG.tcEgress);
        if (i !== 'adopted' || e !== 'adopted') this.log.info({ iface: link.name, ingress: i, egress: e }, 'classifier attached');
        this.recordInterface(link);
        this.failures.delete(link.name);
      } catch (err) {
        if (this.failures.get(link.name) !== (err as Error).message) this.log.error({ err, iface: link.name }, 'attaching classifier failed');
        this.failures.set(link.name, (err as Error).message);
      }
    }
    for (const rec of this.classifierRecords()) {
      const link = this.links.get(rec.ifindex);
      if (!link || link.name !== rec.ifname) {
        this.forgetInterface(rec.ifindex);
        this.deployment.forgetTc(rec.ifindex);
        this.log.info({ iface: rec.ifname }, 'interface gone, forgotten');
      } else if (!this.wanted(link)) {
        try {
          this.forgetInterface(rec.ifindex);
          this.deployment.detachTc(rec.ifindex);
          this.log.info({ iface: rec.ifname }, 'interface no longer configured, classifier detached');
        } catch (err) {
          this.log.error({ err, iface: rec.ifname }, 'detaching classifier failed');
        }
      }
    }
  }
}

function slotKey(ifindex: number): Buffer {
  const k = Buffer.alloc(4);
  k.writeUInt32LE(ifindex % IFACE_SLOTS);
  return k;
}
