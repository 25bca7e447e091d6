// SPDX-License-Identifier: Apache-2.0
// The application layer as the daemon will hold it: ring-buffer records (classifier, tap,
// uprobes) -> pipeline -> store (dns.list, http.list, flow names) and events; the OpenSSL
// hooks told about TLS flows; status. L7Feature (feature.ts) holds it and serves L7Api. No kernel
// objects here: the caller owns them and hands their counters in.
import type { DnsEvent, HttpEvent as HttpEventContract, L7CounterName, L7Status } from '../contract/l7.js';
import { EVENT_OWNER_FIELDS, type EventOwner } from '../contract/identity.js';
import { ResolverCache } from './dns/cache.js';
import { L7Pipeline, type TlsEvent } from './pipeline.js';
import { L7Store, type DnsFilter, type HttpFilter } from './store.js';
import type { TlsHooks } from './ssl/hooks.js';

export interface L7ServiceOptions {
  switches: { dns: boolean; http: boolean; tls: boolean; keepQuery: boolean };
  /** CLOCK_BOOTTIME ns -> wall-clock ms. */
  wallMs: (ns: number) => number;
  comm?: (pid: number) => string | undefined;
  kernelCounters: () => Record<L7CounterName, number>;
  hooks?: TlsHooks | null;
  tlsSocketsUnavailable?: string | null;
  maxDnsQueries?: number;
  maxHttpRequests?: number;
  /** Kernel runs of the L7 programs skipped (recursion misses), summed. */
  programMisses?: () => number;
  /** Events for the bus (contract shapes). */
  publish?: (e: DnsEvent | HttpEventContract) => void;
  /** The owner (cgroup, unit, container, app) of a process, for the events (default: unknown). */
  owner?: (pid: number | null) => EventOwner;
  /** TLS hellos (they end up as flow fields, not as events). */
  onTls?: (e: TlsEvent) => void;
}

/** What the service knows of its status; L7Feature adds the kernel side (state, probes, interfaces). */
export type L7ServiceStatus = Omit<L7Status, 'state' | 'reason' | 'probes' | 'interfaces' | 'dnsTap'>;

const NOBODY: EventOwner = Object.freeze(Object.fromEntries(EVENT_OWNER_FIELDS.map((f) => [f, null])) as unknown as EventOwner);

export class L7Service {
  readonly cache = new ResolverCache();
  readonly store: L7Store;
  readonly pipeline: L7Pipeline;
  /** Records whose handler threw (the ring reader's onError). */
  handlerErrors = 0;

  constructor(private readonly opts: L7ServiceOptions) {
    this.store = new L7Store({ wallMs: opts.wallMs, cache: this.cache, maxDnsQueries: opts.maxDnsQueries, maxHttpRequests: opts.maxHttpRequests });
    const pipeOpts: ConstructorParameters<typeof L7Pipeline>[0] = {
      cache: this.cache,
      keepQuery: opts.switches.keepQuery,
      wallMs: opts.wallMs,
      sinks: {
        dns: (r) => {
          const q = this.store.addDns(r);
          if (opts.publish) opts.publish({ type: 'dns', ...q, ...(opts.owner?.(q.pid) ?? NOBODY) });
        },
        http: (e) => {
          const h = this.store.addHttp(e);
          if (opts.publish) opts.publish({ type: 'http', ...h, ...(opts.owner?.(h.pid) ?? NOBODY) });
        },
        tls: (e) => {
          this.store.addTls(e);
          if (e.pid) opts.hooks?.onTlsFlow(e.pid, null);
          opts.onTls?.(e);
        },
      },
    };
    if (opts.comm) pipeOpts.comm = opts.comm;
    this.pipeline = new L7Pipeline(pipeOpts);
  }

  /** A RingBufReader handler for the L7 and SSL rings. */
  get onRecord(): L7Pipeline['onRecord'] {
    return this.pipeline.onRecord;
  }

  /** Once a second or so: idle connections ended, unanswered queries reported, TTLs expired. */
  tick(nowNs: number): void {
    this.pipeline.sweep(nowNs);
    this.cache.sweep(this.opts.wallMs(nowNs));
  }

  flush(nowNs: number): void {
    this.pipeline.flush(nowNs);
  }

  dnsList(f: DnsFilter) {
    return this.store.dnsList(f);
  }

  httpList(f: HttpFilter) {
    return this.store.httpList(f);
  }

  status(): L7ServiceStatus {
    const c = this.pipeline.counters;
    const k = this.opts.kernelCounters();
    const tls = this.opts.hooks?.status() ?? { tlsLibraries: [], tlsLibraryErrors: [], tlsNotHooked: [] };
    return {
      ...this.opts.switches,
      ...tls,
      tlsSocketsUnavailable: this.opts.tlsSocketsUnavailable ?? null,
      counters: k,
      kept: { dnsQueries: this.store.dnsCount, httpRequests: this.store.httpCount, ...this.store.capacities },
      loss: {
        connectionsEvicted: c.connectionsEvicted,
        dnsUnanswered: c.dns.unanswered,
        httpUnanswered: c.http.unanswered,
        bytesLost: c.http.bytesLost + c.tlsStreams.bytesLost,
        ringbufFull: k.ringbufFull,
        helloErrors: c.tls.malformed + c.tls.incomplete,
        httpStateFull: c.http.pendingOverflow,
        dnsStateFull: c.dns.pendingOverflow,
        httpLinesTooLong: c.http.linesTooLong,
        dnsTcpLost: c.dnsTcp.lostMessages + c.dnsTcp.framingLost,
        undecodable: c.badRecords,
        handlerErrors: this.handlerErrors,
        programMisses: this.opts.programMisses?.() ?? 0,
      },
    };
  }
}
