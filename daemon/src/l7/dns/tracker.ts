// SPDX-License-Identifier: Apache-2.0
// DNS queries per process: pairs each response with its query, attributes both to the
// process that asked, and feeds the answers into the resolver cache.
//
// Who asked: the client is the side that is not port 53. A query is captured as it leaves
// its socket (egress), so it carries the asking process; a response is matched to its query
// by (client address, client port, id, question). Through a local stub resolver
// (systemd-resolved on 127.0.0.53, dnsmasq on loopback) the process's query and the stub's
// answer cross the loopback interface: the query carries the process, the answer the stub.
// The pair makes the answer the process's, with the stub named as `via`. The stub's own
// upstream query and answer are a second, separate pair, the stub's own.
import { DNS_TYPE, parseDnsMessage, rcodeName, resolvedAddresses, typeName, type DnsError, type DnsMessage } from './message.js';
import type { ResolverCache } from './cache.js';
import { OldestFirst } from '../../util/oldest.js';

export interface Owner {
  pid: number;
  uid: number;
  comm?: string;
}

export interface DnsPacketMeta {
  tsNs: number;
  /** Wall clock of tsNs (ms), for the cache's TTLs and for records. */
  wallMs: number;
  transport: 'udp' | 'tcp';
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  /** egress: the local socket sent it; ingress: it arrived for the local socket. */
  dir: 'egress' | 'ingress';
  /** The local socket's owner, when known. */
  owner?: Owner;
}

export interface DnsAnswer {
  type: string;
  data?: string;
  ttl: number;
  name: string;
}

export interface DnsQueryRecord {
  /** When the query was sent (or the response received, if the query was not seen). */
  timeMs: number;
  pid?: number;
  uid?: number;
  comm?: string;
  name: string;
  type: string;
  /** Absent while/when no response came. */
  rcode?: string;
  answers: DnsAnswer[];
  latencyNs?: number;
  /** Resolver asked (address:port as the client saw it). */
  server: string;
  transport: 'udp' | 'tcp';
  /** The local stub that answered for the process. */
  via?: Owner;
  /** The response had the TC bit (the client retries over TCP). */
  truncated?: boolean;
  /** The response could not be read in full. */
  error?: DnsError;
}

export interface DnsCounters {
  messages: number;
  malformed: number;
  queries: number;
  responses: number;
  /** Responses whose query was not seen and whose client is not local-socket-known. */
  unmatchedResponses: number;
  unanswered: number;
  pendingOverflow: number;
}

export function newDnsCounters(): DnsCounters {
  return { messages: 0, malformed: 0, queries: 0, responses: 0, unmatchedResponses: 0, unanswered: 0, pendingOverflow: 0 };
}

interface PendingQuery {
  meta: DnsPacketMeta;
  record: DnsQueryRecord;
}

export interface DnsTrackerOptions {
  cache: ResolverCache;
  counters: DnsCounters;
  onQuery: (r: DnsQueryRecord) => void;
  maxPending?: number;
  /** Queries unanswered after this are reported without an answer. */
  timeoutNs?: number;
}

export class DnsTracker {
  private readonly pending = new Map<string, PendingQuery>();
  private readonly oldestPending = new OldestFirst(this.pending);
  private readonly maxPending: number;
  private readonly timeoutNs: number;

  constructor(private readonly opts: DnsTrackerOptions) {
    this.maxPending = opts.maxPending ?? 4096;
    this.timeoutNs = opts.timeoutNs ?? 10e9;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** One DNS message (a UDP payload, or one message cut from a TCP stream). */
  message(meta: DnsPacketMeta, bytes: Uint8Array): void {
    const c = this.opts.counters;
    c.messages++;
    const parsed = parseDnsMessage(bytes);
    const msg = parsed.message;
    if (!msg || msg.questions.length === 0) {
      c.malformed++;
      return;
    }
    if (parsed.error) c.malformed++;
    const q = msg.questions[0]!;
    if (!msg.response) {
      // A query as it left a local socket; one that arrives is for a server here: not ours.
      if (meta.dir !== 'egress' || meta.remotePort !== 53) return;
      c.queries++;
      const record: DnsQueryRecord = {
        timeMs: meta.wallMs, name: q.name, type: typeName(q.type), answers: [],
        server: `${fmtAddr(meta.remoteAddr)}:${meta.remotePort}`, transport: meta.transport,
      };
      if (meta.owner) Object.assign(record, ownerFields(meta.owner));
      const k = pendingKey(meta.localAddr, meta.localPort, msg, q.name, q.type);
      this.pending.delete(k);
      this.pending.set(k, { meta, record });
      if (this.pending.size > this.maxPending) {
        c.pendingOverflow++;
        const [, p] = this.oldestPending.shift()!;
        this.report(p.record, true);
      }
      return;
    }
    c.responses++;
    // The client is the side that is not the server's port.
    const clientIsLocal = meta.remotePort === 53;
    const [cAddr, cPort] = clientIsLocal ? [meta.localAddr, meta.localPort] : [meta.remoteAddr, meta.remotePort];
    const k = pendingKey(cAddr, cPort, msg, q.name, q.type);
    const p = this.pending.get(k);
    let record: DnsQueryRecord;
    if (p) {
      this.pending.delete(k);
      record = p.record;
      record.latencyNs = Math.max(0, meta.tsNs - p.meta.tsNs);
      if (!clientIsLocal && meta.owner && meta.owner.pid !== record.pid) record.via = meta.owner;
    } else if (clientIsLocal) {
      record = {
        timeMs: meta.wallMs, name: q.name, type: typeName(q.type), answers: [],
        server: `${fmtAddr(meta.remoteAddr)}:${meta.remotePort}`, transport: meta.transport,
      };
      if (meta.owner) Object.assign(record, ownerFields(meta.owner));
    } else {
      c.unmatchedResponses++;
      return;
    }
    fillAnswer(record, msg, parsed.error);
    if (record.pid !== undefined && record.rcode === 'NOERROR') {
      this.opts.cache.add(record.pid, resolvedAddresses(msg), meta.wallMs);
    }
    this.report(record, false);
  }

  /** Reports queries that waited longer than the timeout (call from a timer). */
  expire(nowNs: number): void {
    for (const [k, p] of this.pending) {
      if (nowNs - p.meta.tsNs < this.timeoutNs) break; // insertion order = age order
      this.pending.delete(k);
      this.report(p.record, true);
    }
  }

  private report(r: DnsQueryRecord, unanswered: boolean): void {
    if (unanswered) this.opts.counters.unanswered++;
    this.opts.onQuery(r);
  }
}

function pendingKey(addr: string, port: number, msg: DnsMessage, name: string, type: number): string {
  return `${addr}|${port}|${msg.id}|${name}|${type}`;
}

function ownerFields(o: Owner): Pick<DnsQueryRecord, 'pid' | 'uid' | 'comm'> {
  return o.comm !== undefined ? { pid: o.pid, uid: o.uid, comm: o.comm } : { pid: o.pid, uid: o.uid };
}

function fmtAddr(a: string): string {
  return a.includes(':') ? `[${a}]` : a;
}

function fillAnswer(r: DnsQueryRecord, msg: DnsMessage, error: DnsError | undefined): void {
  r.rcode = rcodeName(msg.rcode);
  r.answers = msg.answers
    .filter((a) => a.type !== DNS_TYPE.OPT)
    .map((a) => (a.data !== undefined ? { name: a.name, type: typeName(a.type), data: a.data, ttl: a.ttl } : { name: a.name, type: typeName(a.type), ttl: a.ttl }));
  if (msg.truncated) r.truncated = true;
  if (error) r.error = error;
}
