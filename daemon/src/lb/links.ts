// SPDX-License-Identifier: Apache-2.0
// Interfaces deleted, recreated or renumbered (`ip link del` and add, a VM or container
// restarted): xdp_lb follows them as the classifier does. An attachment whose interface is
// gone is forgotten, a nat backend whose route went with it is routed again, a VIP bound to
// an interface gets its new ifindex, and xdp_lb goes back on every interface a VIP or a
// backend needs. The manager runs this on every netlink link event and every 2 s.
import type { Logger } from 'pino';
import type { LbInterfaces } from './interfaces.js';
import type { LbState } from './state.js';
import type { LbWriter } from './writer.js';

export interface LinkFollowerDeps {
  state: LbState;
  writer: LbWriter;
  ifs: LbInterfaces;
  /** Interfaces a VIP without its own is served on. */
  defaults: string[];
  log: Logger;
}

/** Ifindex by name as last seen, to notice an interface recreated under the same name. */
export class LinkFollower {
  private seen = new Map<string, number>();

  constructor(private readonly d: LinkFollowerDeps) {
    this.seen = d.ifs.byName();
  }

  async sync(): Promise<void> {
    const { state, writer, ifs, log } = this.d;
    const byName = ifs.byName();
    for (const r of ifs.attached()) {
      if (byName.get(r.ifname) === r.ifindex) continue;
      ifs.detach(r.ifindex);
      log.info({ iface: r.ifname, ifindex: r.ifindex }, 'interface gone: its xdp_lb attachment is forgotten until it returns');
    }
    const renumbered = new Set([...byName].filter(([name, i]) => this.seen.has(name) && this.seen.get(name) !== i).map(([name]) => name));
    this.seen = byName;
    const byIndex = ifs.byIndex();
    for (const v of state.vips()) {
      if (v.ifname && renumbered.has(v.ifname)) writer.updateVipCfg(v);
      if (v.mode !== 'nat') continue;
      for (const b of v.backends.values()) {
        if (b.egress !== 0 && byIndex.has(b.egress)) continue;
        let egress: number;
        try {
          egress = await ifs.probe(b.spec, v.mode);
        } catch {
          continue; // no route yet: the next pass tries again
        }
        if (egress === b.egress || state.vip(v.spec.text) !== v || v.backends.get(b.spec.text) !== b) continue;
        b.egress = egress;
        writer.rerouteBackend(v, b);
        log.info({ vip: v.spec.text, backend: b.spec.text, via: byIndex.get(egress) ?? egress }, 'backend routed again after an interface change');
      }
    }
    const need = state.neededInterfaces(this.d.defaults, ifs.byName(), ifs.byIndex());
    const attached = ifs.ensure(need);
    if (attached.length) log.info({ interfaces: attached.map((i) => need.get(i)) }, 'xdp_lb attached to interfaces that (re)appeared');
    writer.syncIfaddrs();
  }
}
