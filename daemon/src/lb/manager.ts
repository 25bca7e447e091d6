// SPDX-License-Identifier: Apache-2.0
// LbManager: the user side of the XDP load balancer as the API layer (api/lb.ts) and the
// daemon use it. A facade: it wires the modules that do the work (state.ts and restore.ts
// hold the configuration, writer.ts writes it to the maps, changes.ts and droplist.ts
// change it, planner.ts compares it with the configuration file, info.ts and view.ts
// answer the reads) and runs every change one at a time, so concurrent calls cannot
// interleave. It owns no state the kernel does not have: the pinned maps are the
// configuration, so a restarted daemon rebuilds its view from them and changes nothing.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { AppError, invalidParam } from '../errors.js';
import type {
  AddBackendParams, AddVipParams, BackendInfo, BackendParams, DeclaredVip, DropRuleInfo, DropRuleParams, LbFlows,
  LbFlowsParams, LbList, LbStats, RemoveVipResult, VipInfo, VipParams,
} from '../contract/lb.js';
import type { ApplyReport, GcResult, SetWeightParams } from './api.js';
import { LbChanges } from './changes.js';
import { LB_COMPONENT } from './components.js';
import { DropList } from './droplist.js';
import { LB_EVENTS } from './events.js';
import { collect } from './gc.js';
import { HealthChecker } from './health.js';
import { vipInfo, type InfoSources } from './info.js';
import { LbInterfaces } from './interfaces.js';
import { LinkFollower } from './links.js';
import { openMaps, systemHost, type LbDeployment, type LbHost, type LbMaps } from './kernel.js';
import { resolveOptions, warnNatPortOverlap, type LbManagerOptions, type LbSettings } from './options.js';
import { decide, parseDeclarations } from './planner.js';
import { restoreState } from './restore.js';
import { LbState, limitsOf } from './state.js';
import { kernelError } from './tx.js';
import { objectParam, parseDropRule } from './validate.js';
import { readFlows, readStats } from './view.js';
import { LbWriter } from './writer.js';

export type { LbManagerOptions };

export class LbManager {
  /** lb.* events (see events.ts); the daemon forwards them to subscribers. */
  readonly events = new EventEmitter();
  private readonly log: Logger;
  private readonly host: LbHost;
  private readonly opts: LbSettings;
  private readonly m: LbMaps;
  private readonly ifs: LbInterfaces;
  private readonly state: LbState;
  private readonly drops: DropList;
  private readonly writer: LbWriter;
  private readonly changes: LbChanges;
  private queue: Promise<unknown> = Promise.resolve();
  private health: HealthChecker | null = null;
  private gcTimer: NodeJS.Timeout | null = null;
  private readonly links: LinkFollower;
  private linkTimer: NodeJS.Timeout | null = null;
  private stopWatch: (() => void) | null = null;
  private closed = false;

  constructor(deployment: LbDeployment, logger: Logger, opts: LbManagerOptions = {}) {
    this.log = logger.child({ component: 'lb' });
    this.host = opts.host ?? systemHost();
    this.opts = resolveOptions(opts);
    warnNatPortOverlap(this.opts.natPorts, this.log);
    const deployed = deployment.deploy(LB_COMPONENT);
    this.log.info({ adopted: deployed.adopted, reason: deployed.reason }, deployed.adopted ? 'adopted pinned load balancer' : 'loaded load balancer');
    this.m = openMaps(deployment);
    this.ifs = new LbInterfaces(deployment, this.host, this.m.ifaddr, this.opts.xdpMode, this.log);
    this.state = new LbState(limitsOf(this.m, this.opts.maxBackendsPerVip));
    this.drops = new DropList(this.m, this.state.limits.rules, this.log);

    const restored = restoreState(this.m, this.state, this.log);
    // A new daemon (maybe a new program) starts from fresh routes.
    this.writer = new LbWriter(this.m, this.ifs, this.log, this.opts, () => this.drops.cfgFlags(), restored.nhGen + 1);
    this.changes = new LbChanges({
      state: this.state, writer: this.writer, ifs: this.ifs, host: this.host, opts: this.opts, log: this.log, events: this.events,
      info: () => this.info, syncHealth: () => this.syncHealth(),
    });
    this.drops.restore();
    this.writer.syncVports(this.state.portCounts());
    this.writer.writeConfig();
    this.ifs.reattach();
    this.writer.syncIfaddrs();
    this.links = new LinkFollower({ state: this.state, writer: this.writer, ifs: this.ifs, defaults: this.opts.interfaces, log: this.log });
    this.log.info({ vips: this.state.vipCount, backends: this.state.backendCount, dropRules: this.drops.size, fresh: restored.fresh },
      restored.fresh ? 'load balancer maps created' : 'load balancer state restored from pinned maps');
  }

  // --- lifecycle ----------------------------------------------------------------------------

  /** Starts the periodic GC and the health checks. */
  start(): void {
    if (this.closed) return;
    if (this.opts.gcIntervalMs > 0 && !this.gcTimer) {
      this.gcTimer = setInterval(() => {
        void this.serial(() => this.gcNow()).catch((err) => this.log.warn({ err }, 'lb gc failed'));
      }, this.opts.gcIntervalMs);
      this.gcTimer.unref();
    }
    if (this.opts.healthChecks && !this.health) {
      this.health = new HealthChecker(this.events, this.log, (t, up) => this.setBackendHealth(t.vip, t.backend, up));
      this.syncHealth();
    }
    if (!this.linkTimer) {
      // Interfaces are followed like the classifier's: at once on a netlink link event, and
      // every 2 s in case an event was missed (links.ts).
      const follow = () => void this.serial(() => this.links.sync()).catch((err: unknown) => this.log.warn({ err }, 'could not follow interface changes'));
      this.stopWatch = this.host.watchLinks?.(follow) ?? null;
      this.linkTimer = setInterval(follow, 2000);
      this.linkTimer.unref();
      follow();
    }
  }

  /** Stops timers and checks. Everything in the kernel stays as it is (pinned). */
  close(): void {
    this.closed = true;
    this.stopWatch?.();
    this.stopWatch = null;
    if (this.linkTimer) clearInterval(this.linkTimer);
    this.linkTimer = null;
    if (this.gcTimer) clearInterval(this.gcTimer);
    this.gcTimer = null;
    this.health?.stop();
    this.health = null;
  }

  private serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(() => {
      if (this.closed) throw new AppError('NotAvailable', 'the load balancer is shutting down');
      return fn();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private syncHealth(): void {
    this.health?.sync(this.state.healthTargets());
  }

  private get info(): InfoSources {
    return { state: this.state, writer: this.writer, ifs: this.ifs, health: this.health, defaults: this.opts.interfaces, sysctl: (n) => this.host.sysctl(n) };
  }

  // --- VIPs and backends (changes.ts) -----------------------------------------------------

  addVip(p: AddVipParams): Promise<VipInfo> {
    return this.serial(() => this.changes.addVip(p, 0n));
  }

  removeVip(p: VipParams): Promise<RemoveVipResult> {
    return this.serial(() => this.changes.removeVip(p));
  }

  addBackend(p: AddBackendParams): Promise<BackendInfo> {
    return this.serial(() => this.changes.addBackend(p));
  }

  removeBackend(p: BackendParams): Promise<BackendInfo> {
    return this.serial(() => this.changes.removeBackend(p));
  }

  /** No new flows; established flows keep the backend until they end (or it is removed). */
  drainBackend(p: BackendParams): Promise<BackendInfo> {
    return this.serial(() => this.changes.drainBackend(p));
  }

  /** Changes a backend's weight (not an `lb` command: configuration files use it). */
  setBackendWeight(p: SetWeightParams): Promise<BackendInfo> {
    return this.serial(() => this.changes.setBackendWeight(p));
  }

  /** Health transitions (called by the checker); throws if the kernel refused. */
  setBackendHealth(vip: string, backend: string, up: boolean): Promise<void> {
    return this.serial(() => this.changes.setBackendHealth(vip, backend, up));
  }

  // --- drop list ----------------------------------------------------------------------------

  addDropRule(p: DropRuleParams): Promise<DropRuleInfo> {
    return this.serial(() => {
      const raw = objectParam(p, '{ rule }').rule;
      const info = this.drops.add(parseDropRule('params.rule', raw), raw, () => this.writer.writeConfig());
      this.log.info({ rule: info.rule, id: info.id }, 'drop rule added');
      this.events.emit(LB_EVENTS.dropAdded, { rule: info.rule });
      return info;
    });
  }

  removeDropRule(p: DropRuleParams): Promise<DropRuleInfo> {
    return this.serial(() => {
      const raw = objectParam(p, '{ rule }').rule;
      const info = this.drops.remove(parseDropRule('params.rule', raw), raw, () => this.writer.writeConfig());
      this.log.info({ rule: info.rule }, 'drop rule removed');
      this.events.emit(LB_EVENTS.dropRemoved, { rule: info.rule });
      return info;
    });
  }

  listDropRules(): { rules: DropRuleInfo[] } {
    return { rules: this.drops.list() };
  }

  // --- configuration file -------------------------------------------------------------------

  /**
   * Applies the VIPs the configuration file declares, as planner.ts decides. Everything is
   * validated before anything changes; a VIP that cannot be applied is reported (conflict)
   * and the others still are.
   */
  applyConfig(declared: DeclaredVip[]): Promise<ApplyReport> {
    return this.serial(async () => {
      const plans = parseDeclarations(declared);
      const report: ApplyReport = { vips: [] };
      for (const pl of plans) {
        const vip = pl.spec.text;
        try {
          const d = decide(this.state.vip(vip), pl);
          if (d.action === 'add') {
            this.changes.addVip({ vip, mode: pl.mode, interface: pl.ifname ?? undefined, health: pl.health ?? undefined }, pl.hash);
            for (const b of pl.backends) await this.changes.addBackend({ vip, backend: b.spec.text, weight: b.weight });
            report.vips.push({ vip, action: 'added' });
          } else if (d.action === 'unchanged') {
            report.vips.push({ vip, action: 'unchanged' });
          } else if (d.action === 'conflict') {
            report.vips.push({ vip, action: 'conflict', detail: d.detail });
          } else {
            for (const c of d.changes) {
              if (c.kind === 'add') await this.changes.addBackend({ vip, backend: c.backend, weight: c.weight });
              else this.changes.setWeight(d.vip, c.backend, c.weight);
            }
            d.vip.health = pl.health;
            d.vip.declHash = pl.hash;
            this.writer.updateVipCfg(d.vip);
            report.vips.push({ vip, action: 'updated' });
          }
        } catch (err) {
          const e = err instanceof AppError ? err : kernelError(err, `applying ${vip}`);
          this.log.warn({ err: e, vip }, 'declared VIP not applied');
          report.vips.push({ vip, action: 'conflict', detail: e.message });
        }
      }
      this.syncHealth();
      this.events.emit(LB_EVENTS.configApplied, { vips: report.vips.map((r) => ({ vip: r.vip, action: r.action })) });
      return report;
    });
  }

  // --- reads --------------------------------------------------------------------------------

  list(): LbList {
    const { limits } = this.state;
    return {
      vips: this.state.vips().map((v) => vipInfo(this.info, v)),
      interfaces: this.ifs.attached().map((r) => ({ name: r.ifname, ifindex: r.ifindex, mode: r.mode })),
      limits: { vips: limits.vips, backends: limits.ids - 1, backendsPerVip: limits.perVip, dropRules: limits.rules },
    };
  }

  /** The live Maglev table of a VIP (backend ids by slot), for tests and diagnostics. */
  table(vip: string): { table: Uint32Array; ids: Record<string, number> } {
    const v = this.state.findVip('params.vip', vip);
    return { table: this.writer.liveTable(v), ids: Object.fromEntries([...v.backends.values()].map((b) => [b.spec.text, b.id])) };
  }

  stats(): LbStats {
    return readStats(this.m, this.state.vips().map((v) => ({
      text: v.spec.text, slot: v.slot,
      backends: [...v.backends.values()].sort((a, b) => a.id - b.id).map((b) => ({ text: b.spec.text, id: b.id })),
    })));
  }

  flows(p: LbFlowsParams = {}): LbFlows {
    const q = objectParam(p, '{ vip?, limit? }');
    const only = q.vip === undefined || q.vip === null ? null : this.state.findVip('params.vip', q.vip);
    const limit = q.limit === undefined || q.limit === null ? 1000 : q.limit;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > 100_000) throw invalidParam('params.limit', q.limit, 'an integer 1..100000');
    return readFlows(this.m, {
      vip: (text) => {
        const v = this.state.vip(text);
        return v && (!only || v === only) ? { text: v.spec.text, mode: v.mode } : undefined;
      },
      backend: (id) => this.state.backend(id)?.spec.text,
      now: this.host.monotonicNs(),
      limit,
    });
  }

  // --- GC -----------------------------------------------------------------------------------

  gc(): Promise<GcResult> {
    return this.serial(() => this.gcNow());
  }

  /** Collects idle long-lived and NAT entries (see gc.ts) and refreshes the interface addresses. */
  private gcNow(): GcResult {
    const r = collect(this.m, { live: (id) => this.state.backend(id) !== undefined, now: this.host.monotonicNs(), idle: this.opts.idle });
    this.writer.syncIfaddrs();
    if (r.longDeleted || r.natDeleted) this.log.debug(r, 'lb gc');
    return r;
  }
}
