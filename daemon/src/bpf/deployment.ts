// SPDX-License-Identifier: Apache-2.0
// The pinned deployment: everything ebpfmon keeps in the kernel between daemon runs.
//
//  open()      finds the pin directory (mounting bpffs if needed), checks the layout
//              version in the manifest, and recreates everything when it changed.
//  deploy(c)   makes one component's programs current: if the pinned programs came
//              from the same object file, it adopts them (no reload, no reattach, no
//              counter reset); otherwise it loads the object reusing the pinned maps,
//              picks each probe's first alternative the kernel accepts, attaches, and
//              swaps the pins (an upgrade keeps every counter).
//  attachTc()  puts a classifier on an interface, or finds it already there.
//  teardown()  detaches and unpins everything ebpfmon owns, and nothing else.
//
// After deploy(), maps and programs are always used through their pins, so the adopt
// and load paths share all later code. Which probe alternatives load: probes.ts; what a
// component is: component.ts; teardown: teardown.ts.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import * as L from './libbpf.js';
import { BpfError } from './errors.js';
import { BpfObject } from './object.js';
import { BpfMap } from './maps.js';
import { linkInfo, progInfo, type ProgInfo } from './info.js';
import { ProbePlan } from './probes.js';
import { PinDir } from './pins.js';
import { emptyManifest, ManifestStore, type DeviceRecord, type Manifest, type TcFeatureRecord, type TcRecord, type XdpRecord } from './manifest.js';
import { probeId, type AttachSpec, type ComponentDef, type DeployResult } from './component.js';

export type { AttachSpec, ComponentDef, DeployResult, ProbeAlternative, ProbeGroup } from './component.js';
export { probeId } from './component.js';
import { attachTc, detachTc, ensureClsact, queryTc, type TcDirection } from './tc.js';
import { removeClsactIfUnused, teardown, type TeardownResult } from './teardown.js';
import { BPF_TRACE_ITER, BPF_XDP, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE } from './uapi.js';
import { cgroup2Root, ensureBpffs, ensureTracefs } from '../sys/mounts.js';
import { close, lastErrno, read } from '../sys/libc.js';
import { ERRNO } from '../sys/errno.js';

export interface DeploymentOptions {
  pinPath: string;
  objectDir: string;
  layoutVersion: number;
  daemonVersion: string;
  logger: Logger;
  /** max_entries for maps this deployment creates (existing pins keep their size). */
  mapSizes?: Record<string, number>;
  /** Alternatives not to use, as `capability/id` (configuration `probes.disable`). */
  disabledProbes?: readonly string[];
  /** TC filter identity: ebpfmon's filters live at this (handle, priority). */
  tcHandle?: number;
  tcPriority?: number;
}

export const DEFAULT_TC_HANDLE = 0xeb9f;
export const DEFAULT_TC_PRIORITY = 1;

function sha256File(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function now(): string {
  return new Date().toISOString();
}

export class Deployment {
  readonly pins: PinDir;
  private manifest: Manifest;
  private readonly store: ManifestStore;
  private readonly log: Logger;
  private readonly maps = new Map<string, BpfMap>();
  private readonly progFds = new Map<string, number>();
  private closed = false;

  private constructor(private readonly opts: DeploymentOptions, store: ManifestStore, manifest: Manifest) {
    this.pins = new PinDir(opts.pinPath);
    this.store = store;
    this.manifest = manifest;
    this.log = opts.logger.child({ component: 'deployment' });
  }

  get tcId(): { handle: number; priority: number } {
    return { handle: this.opts.tcHandle ?? DEFAULT_TC_HANDLE, priority: this.opts.tcPriority ?? DEFAULT_TC_PRIORITY };
  }

  /** Opens (or creates) the pin directory. A different layout version is torn down and recreated. */
  static open(opts: DeploymentOptions): Deployment {
    const log = opts.logger.child({ component: 'deployment' });
    if (ensureBpffs(opts.pinPath)) log.info('mounted bpffs at /sys/fs/bpf');
    if (ensureTracefs()) log.info('mounted tracefs at /sys/kernel/tracing');
    const pins = new PinDir(opts.pinPath);

    // An empty directory is a fresh one (the daemon's lock creates it).
    if (pins.exists() && fs.readdirSync(opts.pinPath).length > 0) {
      let reason: string | null = null;
      if (!fs.existsSync(pins.metaPath)) {
        reason = 'no manifest';
      } else {
        const store = ManifestStore.open(pins.metaPath);
        const { layout, manifest } = store.read();
        if (manifest && layout === opts.layoutVersion) {
          pins.ensure();
          log.info({ pinPath: opts.pinPath, createdAt: manifest.createdAt }, 'found pinned deployment');
          return new Deployment(opts, store, manifest);
        }
        store.close();
        reason = manifest ? `layout version ${layout} differs from this daemon's ${opts.layoutVersion}` : 'unreadable manifest';
      }
      log.warn({ pinPath: opts.pinPath, reason }, `recreating pinned programs and maps (${reason}); counters restart from zero`);
      Deployment.teardown(opts.pinPath, opts.logger, opts, true);
    }
    pins.ensure();
    const store = ManifestStore.create(pins.metaPath);
    const manifest = emptyManifest(opts.layoutVersion, opts.daemonVersion);
    store.write(manifest);
    log.info({ pinPath: opts.pinPath }, 'created pin directory');
    return new Deployment(opts, store, manifest);
  }

  get current(): Readonly<Manifest> {
    return this.manifest;
  }

  private save(): void {
    this.store.write(this.manifest);
  }

  // --- components ---------------------------------------------------------------------

  deploy(def: ComponentDef): DeployResult {
    const file = path.join(this.opts.objectDir, def.file);
    if (!fs.existsSync(file)) {
      throw new BpfError('opening', def.file, ERRNO.ENOENT, { target: file, hint: 'build it with `npm run build` (or reinstall the package)' });
    }
    const hash = sha256File(file);
    const rec = this.manifest.components[def.name];
    let reason: string;
    const disabled = this.disabledIn(def);
    if (!rec) reason = 'not loaded yet';
    else if (rec.hash !== hash) reason = 'object file changed (upgrade)';
    else if ((rec.disabled ?? []).join(',') !== disabled.join(',')) reason = 'probes.disable changed';
    else {
      const missing = [...rec.programs.filter((p) => !this.pins.has('progs', p)), ...rec.links.filter((l) => !this.pins.has('links', l))];
      if (missing.length === 0) {
        this.openPinnedMaps(BpfObjectNames.get(file) ?? this.readMapNames(file));
        for (const p of rec.programs) this.openProg(p);
        this.log.info({ componentName: def.name, programs: rec.programs }, 'adopted pinned programs');
        return { component: def.name, adopted: true, probes: rec.probes };
      }
      reason = `pins missing: ${missing.join(', ')}`;
    }
    this.log.info({ componentName: def.name, reason }, 'loading BPF object');
    const result = this.load(def, file, hash, disabled);
    return { ...result, reason };
  }

  /** The configured `probes.disable` entries that name one of this component's alternatives, sorted. */
  private disabledIn(def: ComponentDef): string[] {
    const mine = new Set(def.groups.flatMap((g) => g.alternatives.map((a) => probeId(g, a))));
    return [...new Set(this.opts.disabledProbes ?? [])].filter((d) => mine.has(d)).sort();
  }

  private readMapNames(file: string): string[] {
    const obj = BpfObject.open(file);
    try {
      const names = obj.mapNames();
      BpfObjectNames.set(file, names);
      return names;
    } finally {
      obj.close();
    }
  }

  private openPinnedMaps(names: string[]): void {
    for (const name of names) {
      if (this.maps.has(name)) continue;
      this.maps.set(name, BpfMap.fromPin(this.pins.path('maps', name), name));
    }
  }

  private openProg(name: string): number {
    let fd = this.progFds.get(name);
    if (fd === undefined) {
      fd = L.bpf_obj_get(this.pins.path('progs', name));
      if (fd < 0) throw new BpfError('reopening', name, -fd, { target: this.pins.path('progs', name) });
      this.progFds.set(name, fd);
    }
    return fd;
  }

  /** Checks a pinned map against the object's definition; throws on an incompatible layout. */
  private reusePinnedMap(obj: BpfObject, name: string): void {
    const pinned = BpfMap.fromPin(this.pins.path('maps', name), name);
    try {
      const want = obj.mapSpec(name);
      const have = pinned.info;
      const diff: string[] = [];
      if (want.type !== have.type) diff.push(`type ${have.type} != ${want.type}`);
      if (want.keySize !== have.keySize) diff.push(`key size ${have.keySize} != ${want.keySize}`);
      if (want.valueSize !== have.valueSize) diff.push(`value size ${have.valueSize} != ${want.valueSize}`);
      if (diff.length) {
        throw new BpfError('reopening', name, ERRNO.EINVAL, {
          detail: `pinned map does not match this build (${diff.join(', ')})`,
          hint: 'the layout changed without a layout version bump; run `ebpfmon --teardown`',
        });
      }
      const wantSize = this.opts.mapSizes?.[name];
      if (wantSize !== undefined && wantSize !== have.maxEntries) {
        this.log.warn({ map: name, pinned: have.maxEntries, configured: wantSize },
          'map keeps its pinned size; the configured size applies after `ebpfmon --teardown`');
      }
      obj.reuseMap(name, pinned.fd);
    } finally {
      pinned.close();
    }
  }

  private load(def: ComponentDef, file: string, hash: string, disabled: string[]): Omit<DeployResult, 'reason'> {
    const plan = new ProbePlan(def, disabled, this.log);
    for (let attempt = 0; attempt < plan.maxAttempts; attempt++) {
      const obj = BpfObject.open(file);
      const links: Array<{ prog: string; ptr: L.Ptr }> = [];
      try {
        for (const name of obj.mapNames()) {
          if (this.pins.has('maps', name)) this.reusePinnedMap(obj, name);
          else if (this.opts.mapSizes?.[name] !== undefined) obj.setMaxEntries(name, this.opts.mapSizes[name]!);
        }
        plan.skipUnavailable();
        const active = plan.activePrograms();
        for (const p of obj.programs()) obj.setAutoload(p.name, active.has(p.name));

        const loaded = obj.tryLoad();
        if (!loaded.ok) {
          const gi = loaded.program !== undefined ? plan.groupLoading(loaded.program) : undefined;
          if (gi === undefined) throw loaded.error;
          plan.refuse(gi, loaded.error.message.replace(/^loading [^:]+: /, ''), loaded.error);
          continue;
        }

        let attachFailed = false;
        for (let gi = 0; gi < def.groups.length && !attachFailed; gi++) {
          const alt = plan.current(gi);
          if (!alt) continue;
          for (const spec of alt.attach) {
            try {
              const ptr = this.attachAtDeploy(obj, spec);
              if (ptr !== null) links.push({ prog: spec.prog, ptr });
            } catch (err) {
              if (!(err instanceof BpfError)) throw err;
              plan.refuse(gi, err.message.replace(/^attaching [^:]+: /, ''), err);
              attachFailed = true;
              break;
            }
          }
        }
        if (attachFailed) {
          for (const l of links) L.bpf_link__destroy(l.ptr);
          links.length = 0;
          continue;
        }

        // Commit: pin new maps, swap program and link pins.
        for (const name of obj.mapNames()) {
          if (this.pins.has('maps', name)) continue;
          const ret = L.bpf_map__pin(obj.mapPtrOf(name), this.pins.path('maps', name));
          if (ret < 0) throw new BpfError('pinning', name, -ret, { target: this.pins.path('maps', name) });
        }
        for (const prog of active) {
          this.pins.unpin('progs', prog);
          const old = this.progFds.get(prog);
          if (old !== undefined) {
            close(old);
            this.progFds.delete(prog);
          }
          const ret = L.bpf_program__pin(obj.program(prog), this.pins.path('progs', prog));
          if (ret < 0) throw new BpfError('pinning', prog, -ret, { target: this.pins.path('progs', prog) });
        }
        const prev = this.manifest.components[def.name];
        const linkNames = links.map((l) => l.prog);
        for (const l of links) {
          // The new link is attached already; dropping the old pin detaches the old
          // program, so the hook is never left empty.
          this.pins.unpin('links', l.prog);
          const ret = L.bpf_link__pin(l.ptr, this.pins.path('links', l.prog));
          if (ret < 0) throw new BpfError('pinning', `link ${l.prog}`, -ret, { target: this.pins.path('links', l.prog) });
        }
        for (const stale of prev?.links ?? []) if (!linkNames.includes(stale)) this.pins.unpin('links', stale);
        for (const stale of prev?.programs ?? []) if (!active.has(stale)) this.pins.unpin('progs', stale);

        const probes = plan.status();
        this.manifest.components[def.name] = { hash, loadedAt: now(), programs: [...active], links: linkNames, probes, disabled };
        this.save();
        BpfObjectNames.set(file, obj.mapNames());
        this.openPinnedMaps(obj.mapNames());
        for (const prog of active) this.openProg(prog);
        return { component: def.name, adopted: false, probes };
      } catch (err) {
        for (const l of links) L.bpf_link__destroy(l.ptr); // not pinned yet: detach
        links.length = 0;
        throw err;
      } finally {
        // Pinned links keep their attachment when our handle goes away.
        for (const l of links) {
          L.bpf_link__disconnect(l.ptr);
          L.bpf_link__destroy(l.ptr);
        }
        obj.close();
      }
    }
    throw new BpfError('loading', def.name, ERRNO.ENOTSUP, { detail: 'no combination of probes could be loaded' });
  }

  /** Attaches a deploy-time hook; returns the link, or null for per-interface/on-demand programs. */
  private attachAtDeploy(obj: BpfObject, spec: AttachSpec): L.Ptr | null {
    const prog = obj.program(spec.prog);
    let link: L.Ptr | null;
    let target: string;
    switch (spec.kind) {
      case 'tracepoint':
        target = `${spec.category}:${spec.name}`;
        link = L.bpf_program__attach_tracepoint(prog, spec.category, spec.name);
        break;
      case 'cgroup': {
        const root = cgroup2Root();
        if (!root) throw new BpfError('attaching', spec.prog, ERRNO.ENOENT, { target: 'cgroup v2', detail: 'no cgroup2 filesystem is mounted' });
        target = root;
        const fd = fs.openSync(root, 'r');
        try {
          link = L.bpf_program__attach_cgroup(prog, fd);
        } finally {
          fs.closeSync(fd);
        }
        break;
      }
      case 'auto':
        target = 'its section';
        link = L.bpf_program__attach(prog);
        break;
      default:
        return null;
    }
    if (link === null) throw new BpfError('attaching', spec.prog, lastErrno(), { target });
    return link;
  }

  // --- access ---------------------------------------------------------------------------

  map(name: string): BpfMap {
    const m = this.maps.get(name);
    if (!m) throw new BpfError('finding', `map ${name}`, ERRNO.ENOENT, { target: this.opts.pinPath });
    return m;
  }

  hasMap(name: string): boolean {
    return this.maps.has(name);
  }

  progFd(name: string): number {
    return this.openProg(name);
  }

  progInfo(name: string): ProgInfo {
    return progInfo(this.openProg(name), name);
  }

  /**
   * Puts a pinned program into slot `index` of a program-array map (tail-call targets such
   * as the classifier's hook chain), or empties the slot (`prog` null). The map is pinned,
   * so the entry lasts across daemon restarts until it is changed.
   */
  setProgArrayEntry(map: string, index: number, prog: string | null): void {
    const m = this.map(map);
    const key = Buffer.alloc(4);
    key.writeUInt32LE(index);
    if (prog === null) {
      m.delete(key);
      return;
    }
    const v = Buffer.alloc(4);
    v.writeUInt32LE(this.openProg(prog));
    m.update(key, v);
  }

  /** The kernel id of the program in a program-array slot (null: empty). */
  progArrayEntry(map: string, index: number): number | null {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(index);
    const v = this.map(map).lookup(key, Buffer.alloc(4));
    return v ? v.readUInt32LE(0) : null;
  }

  /** Every program and link ebpfmon has pinned, with kernel ids (for status). */
  describe(): { programs: Array<ProgInfo & { pinned: string }>; links: Array<{ name: string; id: number; progId: number; type: number }> } {
    const programs = this.pins.list('progs').map((p) => ({ ...progInfo(this.openProg(p), p), pinned: this.pins.path('progs', p) }));
    const links = this.pins.list('links').flatMap((l) => {
      const fd = L.bpf_obj_get(this.pins.path('links', l));
      if (fd < 0) return [];
      try {
        const i = linkInfo(fd, l);
        return [{ name: l, id: i.id, progId: i.progId, type: i.type }];
      } finally {
        close(fd);
      }
    });
    return { programs, links };
  }

  // --- TC -------------------------------------------------------------------------------

  tcRecords(): TcRecord[] {
    return Object.values(this.manifest.tc);
  }

  /**
   * Puts `prog` on the interface's clsact hook at ebpfmon's (handle, priority), unless it
   * is already there. Returns 'adopted' when nothing had to change.
   */
  attachTc(ifindex: number, ifname: string, dir: TcDirection, prog: string): 'adopted' | 'attached' | 'replaced' {
    const fd = this.openProg(prog);
    const want = progInfo(fd, prog).id;
    const key = String(ifindex);
    let rec = this.manifest.tc[key];
    if (rec && rec.ifname !== ifname) rec = undefined; // ifindex reused by another interface
    const have = queryTc(ifindex, dir, this.tcId);
    if (have === want && rec) return 'adopted';
    const created = ensureClsact(ifindex, ifname);
    attachTc(ifindex, ifname, dir, prog, fd, this.tcId);
    this.manifest.tc[key] = {
      ifindex,
      ifname,
      createdClsact: created || (rec?.createdClsact ?? false),
      attachedAt: rec?.attachedAt ?? now(),
      programs: { ...rec?.programs, [dir]: prog },
      // Teardown removes a filter only if it runs one of these ids (or a pinned program).
      progIds: { ...rec?.progIds, [dir]: want },
    };
    this.save();
    return have ? 'replaced' : 'attached';
  }

  /** Removes ebpfmon's filters from an interface (and the clsact qdisc if ebpfmon created it and nothing else uses it). */
  detachTc(ifindex: number): void {
    const rec = this.manifest.tc[String(ifindex)];
    for (const dir of ['ingress', 'egress'] as const) detachTc(ifindex, dir, this.tcId);
    if (rec?.createdClsact) removeClsactIfUnused(ifindex);
    delete this.manifest.tc[String(ifindex)];
    this.save();
  }

  /** The interface is gone (its filters went with it): drop the record. */
  forgetTc(ifindex: number): void {
    if (this.manifest.tc[String(ifindex)]) {
      delete this.manifest.tc[String(ifindex)];
      this.save();
    }
  }

  /** ebpfmon's filter id for features' own filters: the classifier's handle, the next priority
   * (after the classifier, where both are on one hook). */
  get tcFeatureId(): { handle: number; priority: number } {
    return { handle: this.tcId.handle, priority: this.tcId.priority + 1 };
  }

  tcFeatureRecords(): TcFeatureRecord[] {
    return Object.values(this.manifest.tcFeature ?? {});
  }

  /** Puts a feature's program on an interface's hook at the feature priority (L7's DNS tap
   * on `lo`), unless it is already there. Teardown removes it like the classifier. */
  attachFeatureTc(ifindex: number, ifname: string, dir: TcDirection, prog: string): 'adopted' | 'attached' | 'replaced' {
    const fd = this.openProg(prog);
    const want = progInfo(fd, prog).id;
    const key = `${ifindex}:${dir}`;
    const recs = (this.manifest.tcFeature ??= {});
    let rec = recs[key];
    if (rec && rec.ifname !== ifname) rec = undefined;
    const have = queryTc(ifindex, dir, this.tcFeatureId);
    if (have === want && rec) return 'adopted';
    const created = ensureClsact(ifindex, ifname);
    attachTc(ifindex, ifname, dir, prog, fd, this.tcFeatureId);
    recs[key] = { ifindex, ifname, dir, program: prog, progId: want, createdClsact: created || (rec?.createdClsact ?? false), attachedAt: rec?.attachedAt ?? now() };
    this.save();
    return have ? 'replaced' : 'attached';
  }

  /** Removes a feature filter (and a clsact qdisc ebpfmon created that nothing else uses). */
  detachFeatureTc(ifindex: number, dir: TcDirection): void {
    const key = `${ifindex}:${dir}`;
    const rec = this.manifest.tcFeature?.[key];
    detachTc(ifindex, dir, this.tcFeatureId);
    if (rec?.createdClsact && !this.manifest.tc[String(ifindex)]) removeClsactIfUnused(ifindex);
    if (rec) {
      delete this.manifest.tcFeature![key];
      this.save();
    }
  }

  // --- links a feature attaches at run time ---------------------------------------------

  /**
   * Pins a link a feature attached itself (uprobes, one per library file and function:
   * uprobe.ts) under `name`, and closes the fd: the pin keeps it attached across daemon
   * restarts; a link already pinned under the name is replaced (and detached).
   */
  pinLink(name: string, linkFd: number): void {
    try {
      this.pins.unpin('links', name);
      const ret = L.bpf_obj_pin(linkFd, this.pins.path('links', name));
      if (ret < 0) throw new BpfError('pinning', `link ${name}`, -ret, { target: this.pins.path('links', name) });
    } finally {
      close(linkFd);
    }
  }

  /** Names of pinned links that start with `prefix`. */
  linkPins(prefix: string): string[] {
    return this.pins.list('links').filter((l) => l.startsWith(prefix));
  }

  /** Unpins a link (the last reference: the kernel detaches it); false when it was not pinned. */
  unpinLink(name: string): boolean {
    return this.pins.unpin('links', name);
  }

  // --- devices ebpfmon created ----------------------------------------------------------

  /** Records a device this deployment created (teardown deletes it). */
  recordDevice(rec: DeviceRecord): void {
    this.manifest.devices = { ...this.manifest.devices, [String(rec.ifindex)]: rec };
    this.save();
  }

  forgetDevice(ifindex: number): void {
    if (!this.manifest.devices?.[String(ifindex)]) return;
    delete this.manifest.devices[String(ifindex)];
    this.save();
  }

  /** The device record of `ifindex` when this deployment created it. */
  device(ifindex: number): DeviceRecord | undefined {
    return this.manifest.devices?.[String(ifindex)];
  }

  // --- XDP ------------------------------------------------------------------------------

  xdpRecords(): XdpRecord[] {
    return Object.values(this.manifest.xdp);
  }

  /** Attaches an XDP program through a pinned link (kept across restarts), or adopts it. */
  attachXdp(ifindex: number, ifname: string, prog: string, mode: 'native' | 'generic'): 'adopted' | 'attached' | 'replaced' {
    const fd = this.openProg(prog);
    const want = progInfo(fd, prog).id;
    const linkName = `xdp_${ifname}`;
    const linkPath = this.pins.path('links', linkName);
    const rec = this.manifest.xdp[String(ifindex)];
    if (rec && rec.ifname === ifname && fs.existsSync(linkPath)) {
      const lfd = L.bpf_obj_get(linkPath);
      if (lfd >= 0) {
        try {
          const info = linkInfo(lfd, linkName);
          if (info.progId === want && info.ifindex === ifindex) return 'adopted';
          // Same hook, new program: swap atomically.
          const ret = L.bpf_link_update(lfd, fd, null);
          if (ret < 0) throw new BpfError('attaching', prog, -ret, { target: `${ifname} (xdp link update)` });
          rec.program = prog;
          this.save();
          return 'replaced';
        } finally {
          close(lfd);
        }
      }
    }
    const opts = Buffer.alloc(32);
    opts.writeBigUInt64LE(32n, 0);
    opts.writeUInt32LE(mode === 'native' ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE, 8);
    const lfd = L.bpf_link_create(fd, ifindex, BPF_XDP, opts);
    if (lfd < 0) throw new BpfError('attaching', prog, -lfd, { target: `${ifname} (xdp ${mode})` });
    try {
      this.pins.unpin('links', linkName);
      const ret = L.bpf_obj_pin(lfd, linkPath);
      if (ret < 0) throw new BpfError('pinning', linkName, -ret, { target: linkPath });
    } finally {
      close(lfd);
    }
    this.manifest.xdp[String(ifindex)] = { ifindex, ifname, program: prog, mode, link: linkName, attachedAt: now() };
    this.save();
    return 'attached';
  }

  detachXdp(ifindex: number): void {
    const rec = this.manifest.xdp[String(ifindex)];
    if (!rec) return;
    // The pin is named after the interface: when an interface was deleted and recreated
    // under its name, the pin may already hold the new interface's link. Only a link still
    // on this ifindex (or on none: its interface is gone) is this record's to remove.
    const linkPath = this.pins.path('links', rec.link);
    let mine = true;
    const lfd = fs.existsSync(linkPath) ? L.bpf_obj_get(linkPath) : -1;
    if (lfd >= 0) {
      try {
        const on = linkInfo(lfd, rec.link).ifindex;
        mine = on === undefined || on === 0 || on === ifindex;
      } finally {
        close(lfd);
      }
    }
    if (mine) this.pins.unpin('links', rec.link); // last reference: the kernel detaches it
    delete this.manifest.xdp[String(ifindex)];
    this.save();
  }

  // --- iterators ------------------------------------------------------------------------

  /** Runs a pinned iterator program once and returns everything it wrote. */
  runIter(prog: string): Buffer {
    const lfd = L.bpf_link_create(this.openProg(prog), 0, BPF_TRACE_ITER, null);
    if (lfd < 0) throw new BpfError('attaching', prog, -lfd, { target: 'iterator' });
    try {
      const ifd = L.bpf_iter_create(lfd);
      if (ifd < 0) throw new BpfError('running', prog, -ifd, { target: 'iterator' });
      const chunks: Buffer[] = [];
      const buf = Buffer.alloc(64 * 1024);
      try {
        for (;;) {
          const n = read(ifd, buf, buf.length);
          if (n < 0) {
            const e = lastErrno();
            if (e === ERRNO.EAGAIN || e === ERRNO.EINTR) continue;
            throw new BpfError('running', prog, e, { target: 'iterator' });
          }
          if (n === 0) break;
          chunks.push(Buffer.from(buf.subarray(0, n)));
        }
      } finally {
        close(ifd);
      }
      return Buffer.concat(chunks);
    } finally {
      close(lfd);
    }
  }

  // --- teardown and release -------------------------------------------------------------

  /** Releases this process's file descriptors; everything stays pinned and attached. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.maps.values()) m.close();
    for (const fd of this.progFds.values()) close(fd);
    this.maps.clear();
    this.progFds.clear();
    this.store.close();
  }

  /** Detaches and unpins everything this deployment put in the kernel (teardown.ts). */
  static teardown(pinPath: string, logger: Logger, ids: { tcHandle?: number; tcPriority?: number } = {}, keepRoot = false): TeardownResult {
    return teardown(pinPath, logger, { handle: ids.tcHandle ?? DEFAULT_TC_HANDLE, priority: ids.tcPriority ?? DEFAULT_TC_PRIORITY }, keepRoot);
  }
}

/** The object's own map names, cached per object file for the adopt path. */
const BpfObjectNames = new Map<string, string[]>();
