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
import { IFACE, IFACE_SLOTS } from './wire.js';
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

  constructor(private readonly deployment: Deployment, logger: Logger, patterns: string[], private readonly pollMs = 2000) {
    this.log = logger.child({ component: 'interfaces' });
    this.setPatterns(patterns);
  }

  setPatterns(patterns: string[]): void {
    this.globs = patterns.filter(isGlob).map(globToRegExp);
    this.names = new Set(patterns.filter((p) => !isGlob(p)));
  }

  private wanted(link: Link): boolean {
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
    return this.deployment.tcRecords().map((r) => ({ name: r.ifname, ifindex: r.ifindex, attachedAt: r.attachedAt, ingress: r.programs.ingress ?? null, egress: r.programs.egress ?? null }));
  }

  /** Tells the classifier the interface's link-layer length (emon_ifaces), so it can read
   * headers directly. Two interfaces sharing a slot: the later one uses the helpers. */
  private recordLinkLayer(link: Link): void {
    const l2 = L2_LEN[link.type];
    if (l2 === undefined || !this.deployment.hasMap(MAP.ifaces)) return;
    const map = this.deployment.map(MAP.ifaces);
    const key = slotKey(link.ifindex);
    const cur = map.lookup(key);
    const holder = cur?.readUInt32LE(IFACE.fields.ifindex.offset) ?? 0;
    if (holder !== 0 && holder !== link.ifindex && this.links.has(holder)) return;
    if (holder === link.ifindex && cur!.readUInt16LE(IFACE.fields.l2_len.offset) === l2) return;
    const v = Buffer.alloc(IFACE.size);
    v.writeUInt32LE(link.ifindex, IFACE.fields.ifindex.offset);
    v.writeUInt16LE(l2, IFACE.fields.l2_len.offset);
    map.update(key, v);
  }

  private forgetLinkLayer(ifindex: number): void {
    if (!this.deployment.hasMap(MAP.ifaces)) return;
    const map = this.deployment.map(MAP.ifaces);
    const key = slotKey(ifindex);
    if (map.lookup(key)?.readUInt32LE(IFACE.fields.ifindex.offset) === ifindex) map.update(key, Buffer.alloc(IFACE.size));
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
        this.recordLinkLayer(link);
        this.failures.delete(link.name);
      } catch (err) {
        if (this.failures.get(link.name) !== (err as Error).message) this.log.error({ err, iface: link.name }, 'attaching classifier failed');
        this.failures.set(link.name, (err as Error).message);
      }
    }
    for (const rec of this.deployment.tcRecords()) {
      const link = this.links.get(rec.ifindex);
      if (!link || link.name !== rec.ifname) {
        this.forgetLinkLayer(rec.ifindex);
        this.deployment.forgetTc(rec.ifindex);
        this.log.info({ iface: rec.ifname }, 'interface gone, forgotten');
      } else if (!this.wanted(link)) {
        try {
          this.forgetLinkLayer(rec.ifindex);
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
