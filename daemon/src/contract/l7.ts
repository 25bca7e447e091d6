// SPDX-License-Identifier: Apache-2.0
// The application layer (issue 14) in the contract: DNS queries and HTTP requests per
// process (`dns.list`, `http.list`, events `dns` and `http`), the names flows carry
// (L7FlowFields, part of Flow), the L7 section of `status`. methods.ts, events.ts,
// flows.ts, status.ts and dbus.ts take their L7 parts from here.
import type { Family, ProbeStatus } from './common.js';
import type { EventOwner } from './identity.js';

// --- DNS -----------------------------------------------------------------------------------

export interface DnsAnswer {
  /** Owner name of the record (the question's name, or a name a CNAME led to). */
  name: string;
  /** `A`, `AAAA`, `CNAME`..., or the type number as a string. */
  recordType: string;
  /** The address (A, AAAA) or target name (CNAME, NS, PTR); null for other types. */
  data: string | null;
  /** Seconds. */
  ttl: number;
}

/** One question a process asked and what came back (`dns.list`, event `dns`). */
export interface DnsQuery {
  /** When the query left the process (or the answer arrived, if the query was not seen). */
  at: string;
  /** The process that asked: through a local stub resolver, the stub's client, not the stub. */
  pid: number | null;
  uid: number | null;
  comm: string | null;
  /** The name asked for (lower case, no trailing dot). */
  name: string;
  /** The question's type: `A`, `AAAA`, `HTTPS`... */
  recordType: string;
  /** `NOERROR`, `NXDOMAIN`...; null when no answer came (in time). */
  rcode: string | null;
  answers: DnsAnswer[];
  /** From the query to its answer. */
  latencyMs: number | null;
  /** The resolver the process asked, `198.18.1.2:53` or `[fd00::1]:53`. */
  server: string;
  transport: 'udp' | 'tcp';
  /** The local stub resolver that answered for the process (systemd-resolved, dnsmasq...). */
  via: { pid: number | null; comm: string | null } | null;
  /** The answer had the TC bit (the client retries over TCP). */
  truncated: boolean;
  /** The answer could not be read in full: why (`truncated`, `bad-rdata`...). */
  error: string | null;
}

export interface DnsListParams {
  pid?: number;
  uid?: number;
  /** Glob on the name asked (`*` any run of characters, `?` one): `*.example.com`. */
  name?: string;
  /** Newest first; default 1000. */
  limit?: number;
}

export interface DnsListResult {
  queries: DnsQuery[];
  /** Queries kept (all owners). */
  total: number;
  /** Queries that matched the filters before `limit`. */
  matched: number;
}

// --- HTTP ----------------------------------------------------------------------------------

export const HTTP_FLAGS = ['request-line-too-long', 'request-incomplete', 'response-incomplete', 'unanswered', 'upgraded'] as const;
export type HttpFlag = (typeof HTTP_FLAGS)[number];

/** One HTTP/1.x request and its response (`http.list`, event `http`). */
export interface HttpRequest {
  /** When the request's first byte was seen. */
  at: string;
  pid: number | null;
  uid: number | null;
  comm: string | null;
  /** The connection, from this host's point of view; null (each) for decrypted TLS whose
   * socket the uprobes could not learn. */
  family: Family | null;
  localAddr: string | null;
  localPort: number | null;
  remoteAddr: string | null;
  remotePort: number | null;
  method: string;
  /** Host header (or the authority of an absolute-form target), lower case. */
  host: string | null;
  /** The target's path; the query string only with `l7.keepQuery`. null when the request
   * line was over 8 KiB (flag `request-line-too-long`). */
  path: string | null;
  /** `1.0` or `1.1`. */
  version: string | null;
  /** null: no response (flag `unanswered`). */
  status: number | null;
  /** Head and body bytes of the request and of the response, as sent (the same from the
   * client's and the server's point of view, hence not tx/rx). */
  requestBytes: number;
  responseBytes: number;
  /** From the request's last byte to the response's first byte. */
  timeToFirstByteMs: number | null;
  /** From the request's first byte to the response's last byte. */
  durationMs: number | null;
  /** Decrypted through the OpenSSL uprobes (HTTPS). */
  tls: boolean;
  flags: HttpFlag[];
}

/** `5xx`-style classes or an exact status. */
export const HTTP_STATUS_PATTERN = /^[1-5](xx|[0-9]{2})$/;

export interface HttpListParams {
  pid?: number;
  uid?: number;
  /** Glob on the Host (`*.example.com`). */
  host?: string;
  /** `404`, or a class: `5xx`. */
  status?: string;
  method?: string;
  tls?: boolean;
  limit?: number;
}

export interface HttpListResult {
  requests: HttpRequest[];
  total: number;
  matched: number;
}

// --- flows, events, methods ----------------------------------------------------------------

/** The HTTP/1.x requests seen on one flow (plain, or decrypted through the OpenSSL uprobes
 * when they learned the socket): `Flow.http`. Counts every request reported on the flow
 * (answered or not), the last one's line and status. */
export interface HttpFlowSummary {
  requests: number;
  /** Requests answered 4xx and 5xx. */
  clientErrors: number;
  serverErrors: number;
  /** Requests with no response (lost, or the connection ended first). */
  unanswered: number;
  /** Sum over the requests (head and body, as in HttpRequest). */
  requestBytes: number;
  responseBytes: number;
  /** The last request: its method, Host, path (as http.list has it), status (null: no response) and time. */
  lastMethod: string;
  lastHost: string | null;
  lastPath: string | null;
  lastStatus: number | null;
  lastAt: string;
  /** Some of the flow's requests were decrypted TLS. */
  tls: boolean;
}

/** The HTTP/1.x requests of one process (`ProcessTotals.http`): its flows' HttpFlowSummary
 * counts summed, flows the monitor already collected included. */
export interface ProcessHttpSummary {
  requests: number;
  /** Requests answered 4xx and 5xx. */
  clientErrors: number;
  serverErrors: number;
  requestBytes: number;
  responseBytes: number;
}

/** Part of Flow (flows.ts); null when L7 is off or knows nothing of the flow. */
export interface L7FlowFields {
  /** The name the flow's process asked DNS for to get `remoteAddr` (kept for the flow's life). */
  remoteName: string | null;
  /** TLS server name (SNI) of the ClientHello, and the version the server chose (`1.3`). */
  serverName: string | null;
  tlsVersion: string | null;
  /** HTTP/1.x requests on this flow; null when none was seen (or l7.http and l7.tls are off). */
  http: HttpFlowSummary | null;
}

/** L7FlowFields when nothing is known (spread it: `{ ...NO_L7_FLOW_FIELDS }`). */
export const NO_L7_FLOW_FIELDS: Readonly<L7FlowFields> = Object.freeze({ remoteName: null, serverName: null, tlsVersion: null, http: null });

export const L7_EVENT_TYPES = ['dns', 'http'] as const;
export type L7EventType = (typeof L7_EVENT_TYPES)[number];
/** A query as an event, with the owner of the process that asked (cgroup and identity). */
export interface DnsEvent extends DnsQuery, EventOwner {
  type: 'dns';
}
/** A request as an event, with the owner of its process (cgroup and identity). */
export interface HttpEvent extends HttpRequest, EventOwner {
  type: 'http';
}

export interface L7Methods {
  'dns.list': { params: DnsListParams; result: DnsListResult };
  'http.list': { params: HttpListParams; result: HttpListResult };
}
export type L7MethodName = keyof L7Methods;

export const L7_METHODS = {
  dnsList: 'dns.list',
  httpList: 'http.list',
} as const satisfies Record<string, L7MethodName>;

// --- status and configuration --------------------------------------------------------------

/**
 * The L7 kernel counters (bpf/l7.h enum emon_l7_stat, in order: the index is the key in
 * emon_l7_stats and emon_ssl_stats). Each name is the enumerator's after EMON_L7_STAT_, in
 * camelCase (test/unit/daemon/l7/layout.test.ts checks).
 */
export const L7_COUNTERS = [
  'records', 'bytesCopied', 'ringbufFull', 'packetsSkipped', 'piecesLimit', 'loadFailed',
  'flowsDns', 'flowsHttp', 'flowsTls', 'sslCalls', 'sslNoSocket', 'sslEntryMissed', 'sslReadFailed',
] as const;
export type L7CounterName = (typeof L7_COUNTERS)[number];

/** Kinds of TLS stack a process can use, as `status` names them. */
export const TLS_STACKS = ['openssl', 'openssl-static', 'gnutls', 'nss', 'wolfssl', 'mbedtls', 'go', 'unknown'] as const;
export type TlsStack = (typeof TLS_STACKS)[number];

/** A library file the uprobes are attached to (once per file, for every process). */
export interface TlsLibraryStatus {
  /** As the first process seen mapping it named it. */
  path: string;
  stack: 'openssl' | 'openssl-static';
  functions: string[];
  hookedAt: string;
  /** Processes seen mapping it (at most 32). */
  pids: number[];
}

/** A process whose TLS is not decrypted, and why. */
export interface TlsNotHooked {
  pid: number;
  comm: string | null;
  stack: TlsStack;
  reason: string;
}

/** `running`: the configuration switches something on and it is in the kernel; `off`: every
 * switch is off; `unavailable`: switched on, but the kernel refused it (`reason`). Parts
 * that could not be loaded are in `probes` (inactive, with the reason). */
export const L7_STATES = ['running', 'off', 'unavailable'] as const;
export type L7State = (typeof L7_STATES)[number];

export interface L7Status {
  state: L7State;
  /** Why L7 is not running (null when it is). */
  reason: string | null;
  /** The L7 and OpenSSL programs: which loaded, which the kernel (or probes.disable) refused. */
  probes: ProbeStatus[];
  /** Interfaces whose packets go through the L7 stage of the classifier's hook chain. */
  interfaces: string[];
  /** Loopback DNS (local stub resolvers): where the tap is, null when not attached (why in probes). */
  dnsTap: string | null;
  dns: boolean;
  http: boolean;
  tls: boolean;
  keepQuery: boolean;
  tlsLibraries: TlsLibraryStatus[];
  /** Library files that could not be hooked, with the error. */
  tlsLibraryErrors: Array<{ path: string; reason: string }>;
  tlsNotHooked: TlsNotHooked[];
  /** The uprobes record plaintext without its socket (no sock tracepoints): why. */
  tlsSocketsUnavailable: string | null;
  counters: Record<L7CounterName, number>;
  /** Kept in memory for dns.list / http.list, and their bounds. */
  kept: { dnsQueries: number; httpRequests: number; maxDnsQueries: number; maxHttpRequests: number };
  /** What user space lost or gave up on (the kernel's own are in counters). */
  loss: {
    connectionsEvicted: number;
    dnsUnanswered: number;
    httpUnanswered: number;
    bytesLost: number;
    ringbufFull: number;
    /** TLS hellos that could not be read (malformed, or incomplete when their flow ended). */
    helloErrors: number;
    /** Requests given up on because a connection's pending queue was full (16 HTTP requests
     * awaiting responses; DNS queries awaiting answers): state full. Also in the unanswered counts. */
    httpStateFull: number;
    dnsStateFull: number;
    /** HTTP request lines over 8 KiB: reported without their path (flag `request-line-too-long`). */
    httpLinesTooLong: number;
    /** DNS-over-TCP messages a capture hole cut into, and connections whose framing was lost. */
    dnsTcpLost: number;
    /** Ring records that could not be decoded (bad size or kind), and records whose handler threw. */
    undecodable: number;
    handlerErrors: number;
    /** Runs of the L7 programs (the classifier stage, the loopback tap, the OpenSSL uprobes and
     * their socket tracepoints) the kernel skipped because another BPF program was running on
     * that CPU: each program's recursionMisses summed (uprobe misses). */
    programMisses: number;
  };
}

/** Configuration keys (convict schema `l7`): all off by default. */
export interface L7Config {
  dns: boolean;
  http: boolean;
  tls: boolean;
  /** Keep query strings in HTTP paths (they often carry tokens). */
  keepQuery: boolean;
  maxDnsQueries: number;
  maxHttpRequests: number;
}
