// SPDX-License-Identifier: Apache-2.0
// The application layer as the daemon runs it: deploys l7.bpf.o (the L7 stage of the
// classifier's hook chain and the loopback DNS tap) and ssl.bpf.o (OpenSSL uprobes) into
// the monitor's pin directory, puts tc_l7_flow in its slot and sets the L7 bit on the
// monitored interfaces, writes the switches into emon_config, reads the two rings into an
// L7Service, and hooks libssl copies at start and as processes exec.
//
// Nothing here may stop the daemon: a refused program leaves its part off, the slot empty
// (the classifier then runs alone) and the reason in `status().l7` (start() never throws).
import type { Logger } from 'pino';
import type { Deployment, DeployResult } from '../bpf/deployment.js';
import type { ProbeStatus } from '../contract/status.js';
import { RingBufReader } from '../bpf/ringbuf.js';
import type { DnsEvent, HttpEvent, L7Config, L7State, L7Status } from '../contract/l7.js';
import type { EventOwner } from '../contract/events.js';
import { AppError } from '../errors.js';
import { listLinks } from '../net/netlink.js';
import type { L7Api } from './api.js';
import { L7_CAPABILITY, L7_COMPONENT, L7_MAP, L7_PROG, SSL_COMPONENT, SSL_FUNCTIONS, SSL_MAP, SSL_SOCKET_PROGS } from './components.js';
import { l7Counters } from './kernel.js';
import { L7Service } from './service.js';
import { TlsHooks } from './ssl/hooks.js';
import { SslProbes } from './ssl/probes.js';
import type { DnsFilter, HttpFilter } from './store.js';
import { CFG_L7_DNS, CFG_L7_HTTP, CFG_L7_TLS } from './wire.js';

/** The monitor's hook port for the L7 stage (monitor/hooks.ts HookPort; app.ts hands it in). */
export interface L7HookPort {
  setProgram(prog: string | null): void;
  setAll(on: boolean): void;
  active(): string[];
}

export interface L7FeatureDeps {
  config: L7Config;
  deployment: Deployment;
  hookPort: L7HookPort;
  /** Sets the L7 bits of emon_config.flags (the monitor owns the map's other fields). */
  setConfigFlags(mask: number, bits: number): void;
  /** Calls `fn` with the pid of every exec event; returns the unsubscribe. */
  onExec(fn: (pid: number) => void): () => void;
  publish(e: DnsEvent | HttpEvent): void;
  comm(pid: number): string | undefined;
  /** The owner of a process (cgroup and identity) for DNS and HTTP events. */
  owner?(pid: number | null): EventOwner;
  /** CLOCK_BOOTTIME ns -> wall-clock ms (the monitor's clock). */
  wallMs(ns: number): number;
  bootNs(): number;
  logger: Logger;
}

const ALL_FLAGS = CFG_L7_DNS | CFG_L7_HTTP | CFG_L7_TLS;

export class L7Feature implements L7Api {
  private service: L7Service | null = null;
  private readonly readers: RingBufReader[] = [];
  private hooks: TlsHooks | null = null;
  private ssl: SslProbes | null = null;
  private unsubscribe: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private state: L7State = 'off';
  private reason: string | null = null;
  private readonly probes: ProbeStatus[] = [];
  private dnsTap: string | null = null;
  private tlsSocketsUnavailable: string | null = null;
  private readonly log: Logger;
  private lastHandlerLog = 0;

  constructor(private readonly d: L7FeatureDeps) {
    this.log = d.logger.child({ component: 'l7' });
  }

  private get wanted(): boolean {
    const c = this.d.config;
    return c.dns || c.http || c.tls;
  }

  /** Deploys and starts what the switches ask for; with every switch off, removes what a previous run left. */
  start(): void {
    const c = this.d.config;
    if (!this.wanted) {
      this.switchOff();
      this.reason = 'every l7.* switch is off';
      return;
    }
    let l7: DeployResult;
    try {
      l7 = this.d.deployment.deploy(L7_COMPONENT);
    } catch (err) {
      this.fail(`cannot load ${L7_COMPONENT.file}: ${(err as Error).message}`, err);
      return;
    }
    this.probes.push(...l7.probes);
    const flowProbe = l7.probes.find((p) => p.capability === L7_CAPABILITY.flows);
    if (!flowProbe?.active) {
      this.fail(`the kernel refused ${L7_PROG.flow}: ${flowProbe?.inactive.map((i) => i.reason).join('; ') || 'unknown reason'}`, null);
      return;
    }
    try {
      this.service = new L7Service({
        switches: { dns: c.dns, http: c.http, tls: c.tls, keepQuery: c.keepQuery },
        wallMs: (ns) => this.d.wallMs(ns),
        comm: (pid) => this.d.comm(pid),
        kernelCounters: () => l7Counters([this.d.deployment.map(L7_MAP.stats), ...(this.ssl ? [this.d.deployment.map(SSL_MAP.stats)] : [])]),
        programMisses: () => this.programMisses(),
        maxDnsQueries: c.maxDnsQueries,
        maxHttpRequests: c.maxHttpRequests,
        publish: (e) => this.d.publish(e),
        ...(this.d.owner ? { owner: (pid: number | null) => this.d.owner!(pid) } : {}),
        // A ClientHello from a process none of whose files is hooked: try its executable, else
        // list it as not hooked with the reason (the hooks exist only with l7.tls, after this).
        onTls: (e) => {
          if (e.pid) this.hooks?.onTlsFlow(e.pid, null);
        },
      });
      this.readers.push(this.reader(L7_MAP.events));
      if (c.tls) this.startTls();
      else this.stopTls();
      if (c.dns) this.attachTap();
      else this.detachTap();
      this.d.setConfigFlags(ALL_FLAGS, (c.dns ? CFG_L7_DNS : 0) | (c.http ? CFG_L7_HTTP : 0) | (c.tls ? CFG_L7_TLS : 0));
      this.d.hookPort.setProgram(L7_PROG.flow);
      this.d.hookPort.setAll(true);
      this.timer = setInterval(() => {
        try {
          this.service?.tick(this.d.bootNs());
        } catch (err) {
          this.log.error({ err }, 'L7 sweep failed');
        }
      }, 1000);
      this.timer.unref();
      this.state = 'running';
      this.log.info({ dns: c.dns, http: c.http, tls: c.tls, dnsTap: this.dnsTap, tlsLibraries: this.hooks?.status().tlsLibraries.length ?? 0 }, 'application layer running');
    } catch (err) {
      this.fail(`cannot start: ${(err as Error).message}`, err);
    }
  }

  private reader(map: string): RingBufReader {
    const r = new RingBufReader(this.d.deployment.map(map), this.service!.onRecord, {
      onError: (err) => {
        // Counted (status.l7.loss.handlerErrors); logged at most once a minute, never per record.
        const svc = this.service;
        if (!svc) return;
        if (svc.handlerErrors++ === 0 || Date.now() - this.lastHandlerLog > 60_000) {
          this.lastHandlerLog = Date.now();
          this.log.warn({ err, count: svc.handlerErrors }, 'L7 record handler failed');
        }
      },
      maxCoalesceMs: 8,
    });
    r.start();
    return r;
  }

  /** recursionMisses of every L7 and SSL program loaded (a program that cannot be read counts 0). */
  private programMisses(): number {
    const progs: string[] = [L7_PROG.flow, L7_PROG.tap];
    if (this.ssl) {
      progs.push(...SSL_FUNCTIONS.flatMap((f) => [f.entry, f.ret]), ...SSL_SOCKET_PROGS);
    }
    let n = 0;
    for (const p of progs) {
      try {
        n += Number(this.d.deployment.progInfo(p).recursionMisses);
      } catch {
        // not loaded (refused by the kernel, or disabled): nothing to miss
      }
    }
    return n;
  }

  private startTls(): void {
    let res: DeployResult;
    try {
      res = this.d.deployment.deploy(SSL_COMPONENT);
    } catch (err) {
      this.probes.push({ capability: L7_CAPABILITY.tlsPlaintext, active: null, inactive: [{ label: SSL_COMPONENT.file, reason: (err as Error).message }] });
      this.log.warn({ err }, 'OpenSSL uprobes not available: TLS server names only');
      return;
    }
    this.probes.push(...res.probes);
    const uprobes = res.probes.find((p) => p.capability === L7_CAPABILITY.tlsPlaintext);
    if (!uprobes?.active) return;
    const sock = res.probes.find((p) => p.capability === L7_CAPABILITY.tlsSocket);
    if (!sock?.active) this.tlsSocketsUnavailable = sock?.inactive.map((i) => i.reason).join('; ') || 'not loaded';
    this.ssl = new SslProbes(this.d.deployment, this.log);
    // A new ssl.bpf.o: links pinned by the previous run hold the old programs.
    if (!res.adopted) this.ssl.unhookAll();
    this.hooks = new TlsHooks({ probes: this.ssl, comm: (pid) => this.d.comm(pid) ?? null });
    this.hooks.start();
    this.ssl.prune(this.hooks.hookedIdentities());
    this.readers.push(this.reader(SSL_MAP.events));
    const hooks = this.hooks;
    this.unsubscribe = this.d.onExec((pid) => hooks.onExec(pid));
  }

  private stopTls(): void {
    try {
      if (this.d.deployment.linkPins('ssl_').length) new SslProbes(this.d.deployment, this.log).unhookAll();
    } catch (err) {
      this.log.warn({ err }, 'cannot remove the OpenSSL uprobes');
    }
  }

  private loopback(): { ifindex: number; name: string } | undefined {
    return listLinks().find((l) => l.name === 'lo');
  }

  private attachTap(): void {
    const lo = this.loopback();
    if (!lo) return;
    if (!this.probes.some((p) => p.capability === L7_CAPABILITY.dnsTap && p.active)) return;
    try {
      this.d.deployment.attachFeatureTc(lo.ifindex, lo.name, 'egress', L7_PROG.tap);
      this.dnsTap = `${lo.name} egress`;
    } catch (err) {
      this.log.warn({ err }, 'loopback DNS tap not attached: names asked of a local stub resolver are not seen');
      const p = this.probes.find((x) => x.capability === L7_CAPABILITY.dnsTap);
      if (p) {
        p.inactive.push({ label: p.active ?? L7_PROG.tap, reason: (err as Error).message });
        p.active = null;
      }
    }
  }

  private detachTap(): void {
    for (const r of this.d.deployment.tcFeatureRecords()) {
      if (r.program !== L7_PROG.tap) continue;
      try {
        this.d.deployment.detachFeatureTc(r.ifindex, r.dir);
      } catch (err) {
        this.log.warn({ err, iface: r.ifname }, 'cannot remove the loopback DNS tap');
      }
    }
  }

  /** Every switch off: the slot emptied, the bits and flags cleared, the tap and the uprobes removed. */
  private switchOff(): void {
    // Each step on its own: one that fails (a map a previous version did not pin) must not
    // leave the others undone.
    const steps: Array<[string, () => void]> = [
      ['clear the L7 bit on the interfaces', () => this.d.hookPort.setAll(false)],
      ['clear the L7 switches', () => this.d.setConfigFlags(ALL_FLAGS, 0)],
      ['empty the L7 slot', () => this.d.hookPort.setProgram(null)],
      ['remove the loopback DNS tap', () => this.detachTap()],
      ['remove the OpenSSL uprobes', () => this.stopTls()],
    ];
    for (const [what, fn] of steps) {
      try {
        fn();
      } catch (err) {
        this.log.warn({ err }, `cannot ${what}`);
      }
    }
  }

  /** A part the kernel refused: the classifier runs alone, status says why. */
  private fail(reason: string, err: unknown): void {
    this.stopReaders();
    this.switchOff();
    this.service = null;
    this.state = 'unavailable';
    this.reason = reason;
    this.log.warn({ err }, `application layer off: ${reason}`);
  }

  private stopReaders(): void {
    for (const r of this.readers.splice(0)) r.close();
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.hooks?.stop();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  // --- for the monitor's flows ---------------------------------------------------------------

  get store(): L7Service['store'] | null {
    return this.service?.store ?? null;
  }

  hasNames(pid: number): boolean {
    return this.service?.cache.hasProcess(pid) ?? false;
  }

  // --- L7Api --------------------------------------------------------------------------------

  private running(): L7Service {
    if (!this.service) throw new AppError('NotAvailable', this.state === 'off' ? 'the application layer is off (set l7.dns, l7.http or l7.tls in the configuration)' : `the application layer is unavailable: ${this.reason}`);
    return this.service;
  }

  dnsList(f: DnsFilter) {
    return this.running().dnsList(f);
  }

  httpList(f: HttpFilter) {
    return this.running().httpList(f);
  }

  status(): L7Status {
    const c = this.d.config;
    const common = { state: this.state, reason: this.reason, probes: this.probes, dnsTap: this.dnsTap };
    if (!this.service) {
      return {
        ...common, interfaces: [], dns: c.dns, http: c.http, tls: c.tls, keepQuery: c.keepQuery,
        tlsLibraries: [], tlsLibraryErrors: [], tlsNotHooked: [], tlsSocketsUnavailable: null,
        counters: l7Counters([]),
        kept: { dnsQueries: 0, httpRequests: 0, maxDnsQueries: c.maxDnsQueries, maxHttpRequests: c.maxHttpRequests },
        loss: {
          connectionsEvicted: 0, dnsUnanswered: 0, httpUnanswered: 0, bytesLost: 0, ringbufFull: 0, helloErrors: 0,
          httpStateFull: 0, dnsStateFull: 0, httpLinesTooLong: 0, dnsTcpLost: 0, undecodable: 0, handlerErrors: 0, programMisses: 0,
        },
      };
    }
    const s = this.service.status();
    return {
      ...s, ...common,
      interfaces: this.d.hookPort.active(),
      tlsSocketsUnavailable: this.hooks ? this.tlsSocketsUnavailable : c.tls ? 'OpenSSL uprobes not loaded (see probes)' : null,
      ...(this.hooks ? this.hooks.status() : {}),
    };
  }

  /** Stops reading (what is pinned stays: the next daemon adopts it). Drains the rings first. */
  stop(): void {
    for (const r of this.readers) {
      try {
        while (r.pendingBytes() > 0) r.drain();
      } catch {
        break;
      }
    }
    this.service?.flush(this.d.bootNs());
    this.stopReaders();
  }
}
