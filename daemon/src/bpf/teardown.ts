// SPDX-License-Identifier: Apache-2.0
// Removing a deployment: everything it put in the kernel, and nothing another deployment
// (another pin path) or another tool put there. A TC filter is ebpfmon's to remove only if
// it sits at ebpfmon's (handle, priority) AND runs a program of THIS deployment, known by
// kernel id: a pinned program, or one the manifest recorded attaching (an upgrade interrupted
// before the filter was swapped). Names are never enough: every deployment's programs
// have the same names. A clsact qdisc goes only if this deployment created it and no filter
// is left on it. Pinned links (XDP, tracepoints, cgroups) detach when their pins go.
import fs from 'node:fs';
import type { Logger } from 'pino';
import * as L from './libbpf.js';
import { progInfo } from './info.js';
import { ManifestStore, type Manifest } from './manifest.js';
import { PinDir } from './pins.js';
import { destroyClsact, detachTc } from './tc.js';
import { close } from '../sys/libc.js';
import { deleteLink, listLinks, listTcFilters, TC_PARENT_EGRESS, TC_PARENT_INGRESS, type Link } from '../net/netlink.js';

export interface TeardownResult {
  tcFilters: number;
  links: number;
  pins: number;
  /** Network devices ebpfmon created (mirror tunnels) and deleted. */
  devices?: number;
}

/** `keepRoot`: empty the pin directory but keep it (its lock stays valid: a daemon recreating its pins). */
export function teardown(pinPath: string, logger: Logger, tcId: { handle: number; priority: number }, keepRoot = false): TeardownResult {
  const log = logger.child({ component: 'teardown' });
  const pins = new PinDir(pinPath);
  const result: TeardownResult = { tcFilters: 0, links: 0, pins: 0 };
  if (!pins.exists()) return result;

  let manifest: Manifest | null = null;
  if (fs.existsSync(pins.metaPath)) {
    try {
      const store = ManifestStore.open(pins.metaPath);
      manifest = store.read().manifest;
      store.close();
    } catch (err) {
      log.warn({ err }, 'manifest unreadable; removing only filters that run a pinned program');
    }
  }
  const ourIds = new Set<number>();
  for (const p of pins.list('progs')) {
    const fd = L.bpf_obj_get(pins.path('progs', p));
    if (fd < 0) continue;
    try {
      ourIds.add(progInfo(fd, p).id);
    } finally {
      close(fd);
    }
  }

  let links: Link[] = [];
  try {
    links = listLinks();
  } catch (err) {
    log.warn({ err }, 'could not list interfaces');
  }
  for (const link of links) {
    const rec = manifest?.tc[String(link.ifindex)];
    const recorded = rec && rec.ifname === link.name ? rec.progIds ?? {} : {};
    for (const [dir, parent] of [['ingress', TC_PARENT_INGRESS], ['egress', TC_PARENT_EGRESS]] as const) {
      const ours = (id: number | undefined) => id !== undefined && (ourIds.has(id) || recorded[dir] === id);
      const mine = listTcFilters(link.ifindex, parent).find((f) => f.handle === tcId.handle && f.priority === tcId.priority && f.kind === 'bpf' && ours(f.progId));
      if (mine && detachTc(link.ifindex, dir, tcId)) {
        result.tcFilters++;
        log.info({ iface: link.name, dir }, 'removed classifier');
      }
    }
    // Features' own filters (L7's DNS tap on lo): the next priority, same rule.
    const feature = { handle: tcId.handle, priority: tcId.priority + 1 };
    let featureClsact = false;
    for (const [dir, parent] of [['ingress', TC_PARENT_INGRESS], ['egress', TC_PARENT_EGRESS]] as const) {
      const frec = manifest?.tcFeature?.[`${link.ifindex}:${dir}`];
      const recorded = frec && frec.ifname === link.name ? frec.progId : undefined;
      const mine = listTcFilters(link.ifindex, parent).find((f) => f.handle === feature.handle && f.priority === feature.priority && f.kind === 'bpf' && f.progId !== undefined && (ourIds.has(f.progId) || f.progId === recorded));
      if (mine && detachTc(link.ifindex, dir, feature)) {
        result.tcFilters++;
        log.info({ iface: link.name, dir }, 'removed feature filter');
      }
      if (frec?.createdClsact && frec.ifname === link.name) featureClsact = true;
    }
    if ((rec?.createdClsact && rec.ifname === link.name) || featureClsact) removeClsactIfUnused(link.ifindex);
  }
  // Devices it created, if they are still the ones it made (same name and kind at that ifindex).
  for (const rec of Object.values(manifest?.devices ?? {})) {
    const link = links.find((l) => l.ifindex === rec.ifindex);
    if (!link || link.name !== rec.ifname || link.kind !== rec.kind) continue;
    try {
      deleteLink(rec.ifindex);
      result.devices = (result.devices ?? 0) + 1;
      log.info({ iface: rec.ifname, kind: rec.kind }, 'deleted device');
    } catch (err) {
      log.warn({ err, iface: rec.ifname }, 'could not delete device');
    }
  }
  for (const l of pins.list('links')) {
    pins.unpin('links', l);
    result.links++;
  }
  for (const kind of ['progs', 'maps'] as const) {
    for (const p of pins.list(kind)) {
      pins.unpin(kind, p);
      result.pins++;
    }
  }
  pins.removeAll(keepRoot);
  log.info({ pinPath, ...result }, 'teardown complete');
  return result;
}

/** Removes the clsact qdisc when no filter is left on either hook. */
export function removeClsactIfUnused(ifindex: number): void {
  if (listTcFilters(ifindex, TC_PARENT_INGRESS).length === 0 && listTcFilters(ifindex, TC_PARENT_EGRESS).length === 0) {
    destroyClsact(ifindex);
  }
}
