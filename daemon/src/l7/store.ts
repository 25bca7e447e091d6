// SPDX-License-Identifier: Apache-2.0
// What the application layer keeps for `dns.list` and `http.list`: the last N DNS queries
// and HTTP requests in the contract's shapes (bounded rings, oldest dropped first), the
// queries over them, and the names flows carry. Pure: records in, arrays out.
import { NO_L7_FLOW_FIELDS, type DnsAnswer, type DnsQuery, type HttpFlag, type HttpFlowSummary, type HttpRequest, type L7FlowFields } from '../contract/l7.js';
import type { ResolverCache } from './dns/cache.js';
import type { DnsQueryRecord } from './dns/tracker.js';
import type { HttpEvent, TlsEvent } from './pipeline.js';
import { tlsVersionName } from './tls/hello.js';
import { OldestFirst } from '../util/oldest.js';

export interface DnsFilter {
  pid?: number;
  /** Only this uid's queries (the API's scoping: a caller without the group sees its own). */
  uid?: number;
  /** Compiled glob over the name. */
  name?: RegExp;
  limit: number;
}

export interface HttpFilter {
  pid?: number;
  uid?: number;
  host?: RegExp;
  /** Exact status, or [lo, hi] for a class (5xx: 500..599). */
  status?: [number, number];
  method?: string;
  tls?: boolean;
  limit: number;
}

/** `*` any run, `?` one character; case-insensitive, anchored. */
export function globRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

const ms = (ns: number | undefined): number | null => (ns === undefined ? null : Math.round(ns / 1e4) / 100);

/** Fixed-size ring, oldest overwritten. */
class Ring<T> {
  private readonly items: T[] = [];
  private head = 0;
  constructor(readonly capacity: number) {}
  push(x: T): void {
    if (this.items.length < this.capacity) this.items.push(x);
    else {
      this.items[this.head] = x;
      this.head = (this.head + 1) % this.capacity;
    }
  }
  get size(): number {
    return this.items.length;
  }
  /** Newest first. */
  *newest(): Generator<T> {
    const n = this.items.length;
    for (let i = 0; i < n; i++) yield this.items[(this.head - 1 - i + 2 * n) % n]!;
  }
}

export interface L7StoreOptions {
  maxDnsQueries?: number;
  maxHttpRequests?: number;
  /** CLOCK_BOOTTIME ns -> wall-clock ms. */
  wallMs: (ns: number) => number;
  cache: ResolverCache;
}

/** A flow with an HTTP summary: its identity as the HTTP events gave it, and its fields. */
export interface HttpFlowEntry {
  protocol: string;
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  fields: L7FlowFields;
}

export class L7Store {
  private readonly dns: Ring<DnsQuery>;
  private readonly http: Ring<HttpRequest>;
  /** Names each flow took when first looked at (kept after the cache entry expires). */
  private readonly flowNames = new Map<string, L7FlowFields>();
  private readonly oldestName = new OldestFirst(this.flowNames);
  private readonly maxFlowNames: number;
  /**
   * Flows with an HTTP summary, counted by their port pair (TCP): processes() asks per flow
   * with the ports it reads from the key, and formats the addresses (allocates) only on a
   * hit, so `top` pays nothing per flow that carries no HTTP.
   */
  private readonly httpPorts = new Map<number, number>();
  /**
   * The flows with an HTTP summary, by flow id (a subset of `flowNames`): processes() reads
   * the summaries of these flows rather than asking for every flow it keeps (issue 17, `top`
   * at 100k flows).
   */
  private readonly httpFlows = new Map<string, HttpFlowEntry>();

  constructor(private readonly opts: L7StoreOptions) {
    this.dns = new Ring(opts.maxDnsQueries ?? 10_000);
    this.http = new Ring(opts.maxHttpRequests ?? 10_000);
    this.maxFlowNames = 4 * (opts.maxHttpRequests ?? 10_000);
  }

  get dnsCount(): number {
    return this.dns.size;
  }

  get httpCount(): number {
    return this.http.size;
  }

  get capacities(): { maxDnsQueries: number; maxHttpRequests: number } {
    return { maxDnsQueries: this.dns.capacity, maxHttpRequests: this.http.capacity };
  }

  addDns(r: DnsQueryRecord): DnsQuery {
    const q: DnsQuery = {
      at: new Date(r.timeMs).toISOString(),
      pid: r.pid ?? null, uid: r.uid ?? null, comm: r.comm ?? null,
      name: r.name, recordType: r.type, rcode: r.rcode ?? null,
      answers: r.answers.map((a): DnsAnswer => ({ name: a.name, recordType: a.type, data: a.data ?? null, ttl: a.ttl })),
      latencyMs: ms(r.latencyNs), server: r.server, transport: r.transport,
      via: r.via ? { pid: r.via.pid || null, comm: r.via.comm ?? null } : null,
      truncated: r.truncated ?? false, error: r.error ?? null,
    };
    this.dns.push(q);
    return q;
  }

  addHttp(e: HttpEvent): HttpRequest {
    const end = e.responseEndNs;
    const r: HttpRequest = {
      at: new Date(this.opts.wallMs(e.requestStartNs)).toISOString(),
      pid: e.pid || null, uid: e.pid || e.uid ? e.uid : null, comm: e.comm ?? null,
      family: e.flow?.family ?? null, localAddr: e.flow?.localAddr ?? null, localPort: e.flow?.localPort ?? null,
      remoteAddr: e.flow?.remoteAddr ?? null, remotePort: e.flow?.remotePort ?? null,
      method: e.method, host: e.host ?? null, path: e.path ?? null, version: e.version ?? null, status: e.status ?? null,
      requestBytes: e.requestBytes, responseBytes: e.responseBytes,
      timeToFirstByteMs: ms(e.ttfbNs), durationMs: end !== undefined ? ms(end - e.requestStartNs) : null,
      tls: e.tls, flags: [...e.flags] as HttpFlag[],
    };
    this.http.push(r);
    if (e.flow) this.summarise(flowId(e.flow.protocol, e.flow.localAddr, e.flow.localPort, e.flow.remoteAddr, e.flow.remotePort), e.flow, r);
    return r;
  }

  /** The flow's HTTP summary takes one more request (the flow's entry is bounded with the names). */
  private summarise(k: string, flow: NonNullable<HttpEvent['flow']>, r: HttpRequest): void {
    const f = this.flowEntry(k);
    if (!f.http) {
      this.countPorts(k, 1);
      const { protocol, localAddr, localPort, remoteAddr, remotePort } = flow;
      this.httpFlows.set(k, { protocol, localAddr, localPort, remoteAddr, remotePort, fields: f });
    }
    const h = (f.http ??= {
      requests: 0, clientErrors: 0, serverErrors: 0, unanswered: 0, requestBytes: 0, responseBytes: 0,
      lastMethod: r.method, lastHost: null, lastPath: null, lastStatus: null, lastAt: r.at, tls: false,
    });
    h.requests++;
    if (r.status !== null && r.status >= 400 && r.status < 500) h.clientErrors++;
    else if (r.status !== null && r.status >= 500) h.serverErrors++;
    else if (r.status === null) h.unanswered++;
    h.requestBytes += r.requestBytes;
    h.responseBytes += r.responseBytes;
    // Pipelined requests are reported in order, so the last reported is the flow's last.
    h.lastMethod = r.method;
    h.lastHost = r.host;
    h.lastPath = r.path;
    h.lastStatus = r.status;
    h.lastAt = r.at;
    h.tls ||= r.tls;
  }

  /** A TLS hello: the flow's server name and version. */
  addTls(e: TlsEvent): void {
    const k = flowId(e.flow.protocol, e.flow.localAddr, e.flow.localPort, e.flow.remoteAddr, e.flow.remotePort);
    const f = this.flowEntry(k);
    if (e.serverName !== undefined) f.serverName = e.serverName;
    // `1.3`, not `TLS 1.3`: the field says it is TLS.
    if (e.version !== undefined) f.tlsVersion = tlsVersionName(e.version).replace(/^TLS /, '');
  }

  dnsList(f: DnsFilter): { queries: DnsQuery[]; total: number; matched: number } {
    const out: DnsQuery[] = [];
    let matched = 0;
    for (const q of this.dns.newest()) {
      if (f.uid !== undefined && q.uid !== f.uid) continue;
      if (f.pid !== undefined && q.pid !== f.pid) continue;
      if (f.name && !f.name.test(q.name)) continue;
      matched++;
      if (out.length < f.limit) out.push(q);
    }
    return { queries: out, total: this.dns.size, matched };
  }

  httpList(f: HttpFilter): { requests: HttpRequest[]; total: number; matched: number } {
    const out: HttpRequest[] = [];
    let matched = 0;
    for (const r of this.http.newest()) {
      if (f.uid !== undefined && r.uid !== f.uid) continue;
      if (f.pid !== undefined && r.pid !== f.pid) continue;
      if (f.host && !(r.host !== null && f.host.test(r.host))) continue;
      if (f.status && !(r.status !== null && r.status >= f.status[0] && r.status <= f.status[1])) continue;
      if (f.method !== undefined && r.method !== f.method) continue;
      if (f.tls !== undefined && r.tls !== f.tls) continue;
      matched++;
      if (out.length < f.limit) out.push(r);
    }
    return { requests: out, total: this.http.size, matched };
  }

  /**
   * The L7 fields of a flow: the name its process asked for to reach the remote address
   * (looked up while the resolver cache has it, then kept with the flow), the TLS server
   * name and version.
   */
  flowFields(flow: { protocol: string; localAddr: string; localPort: number | null; remoteAddr: string; remotePort: number | null; pid: number | null }, nowMs: number): L7FlowFields {
    const k = flowId(flow.protocol, flow.localAddr, flow.localPort ?? 0, flow.remoteAddr, flow.remotePort ?? 0);
    const f = this.flowNames.get(k);
    if (f?.remoteName) return copyFields(f);
    const e = flow.pid ? this.opts.cache.lookup(flow.pid, flow.remoteAddr, nowMs) : undefined;
    if (!e && !f) return { ...NO_L7_FLOW_FIELDS };
    const entry = f ?? this.flowEntry(k);
    if (e) entry.remoteName = e.name;
    return copyFields(entry);
  }

  /** The flow ended (the monitor removed it): forget its names. */
  forgetFlow(flow: { protocol: string; localAddr: string; localPort: number | null; remoteAddr: string; remotePort: number | null }): void {
    this.dropEntry(flowId(flow.protocol, flow.localAddr, flow.localPort ?? 0, flow.remoteAddr, flow.remotePort ?? 0));
  }

  /** Whether a TCP flow with these ports may have an HTTP summary (false: it has none). */
  mayHaveHttp(localPort: number, remotePort: number): boolean {
    return this.httpPorts.has(localPort * 0x10000 + remotePort);
  }

  /** Every flow with an HTTP summary (not copied: read it at once, do not keep it). */
  forEachHttpFlow(fn: (flow: Readonly<HttpFlowEntry>, http: Readonly<HttpFlowSummary>) => void): void {
    for (const e of this.httpFlows.values()) fn(e, e.fields.http!);
  }

  /** The flow's HTTP summary, not copied: read it at once, do not keep it. */
  httpOf(flow: { protocol: string; localAddr: string; localPort: number | null; remoteAddr: string; remotePort: number | null }): Readonly<HttpFlowSummary> | null {
    return this.flowNames.get(flowId(flow.protocol, flow.localAddr, flow.localPort ?? 0, flow.remoteAddr, flow.remotePort ?? 0))?.http ?? null;
  }

  private dropEntry(k: string): void {
    const f = this.flowNames.get(k);
    if (f === undefined) return;
    this.flowNames.delete(k);
    this.dropped(k, f);
  }

  /** `f`, the entry of `k`, left flowNames: its HTTP summary goes with it. */
  private dropped(k: string, f: L7FlowFields): void {
    if (f.http) {
      this.countPorts(k, -1);
      this.httpFlows.delete(k);
    }
  }

  private countPorts(k: string, by: 1 | -1): void {
    // flowId's last two fields are the ports.
    const parts = k.split('|');
    const pk = Number(parts[2]) * 0x10000 + Number(parts[4]);
    const n = (this.httpPorts.get(pk) ?? 0) + by;
    if (n > 0) this.httpPorts.set(pk, n);
    else this.httpPorts.delete(pk);
  }

  private flowEntry(k: string): L7FlowFields {
    let f = this.flowNames.get(k);
    if (!f) {
      if (this.flowNames.size >= this.maxFlowNames) {
        const [ok, of] = this.oldestName.shift()!;
        this.dropped(ok, of);
      }
      f = { ...NO_L7_FLOW_FIELDS };
      this.flowNames.set(k, f);
    }
    return f;
  }
}

/** A copy the caller may keep: the summary is updated in place as requests come. */
function copyFields(f: L7FlowFields): L7FlowFields {
  return { ...f, http: f.http ? { ...f.http } : null };
}

/** Joined, not a template literal: a Map key keeps a template's tree of concatenations
 * alive whole (history/accountant.ts flowKey()). */
function flowId(protocol: string, la: string, lp: number, ra: string, rp: number): string {
  return [protocol, la, lp, ra, rp].join('|');
}
