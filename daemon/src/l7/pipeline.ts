// SPDX-License-Identifier: Apache-2.0
// From ring-buffer records to DNS queries, HTTP exchanges and TLS hellos, per process.
// One pipeline serves the classifier's records, the loopback tap's and the OpenSSL
// uprobes': it keeps the per-connection state (streams and parsers), bounded in number
// (least recently used connections are ended first) and in idle time. Pure: no kernel, no
// clock of its own (times come from the records; `wallMs` converts them), so the daemon,
// tests and bench/l7 drive it alike.
import { DnsTcpFramer, type DnsTcpCounters } from './dns/tcp.js';
import { DnsTracker, newDnsCounters, type DnsCounters, type DnsPacketMeta, type DnsQueryRecord, type Owner } from './dns/tracker.js';
import type { ResolverCache } from './dns/cache.js';
import { HttpFlowParser, newHttpCounters, type HttpCounters, type HttpExchange } from './http/parser.js';
import { newStreamCounters, Stream, type StreamCounters } from './stream.js';
import { newTlsCounters, TlsHelloParser, type TlsCounters, type TlsInfo } from './tls/hello.js';
import { decodeL7, decodeSsl, EV_L7, EV_SSL, L7_F_SKIPPED, SSL_F_EOF, L7_KIND, recordType, type FlowKey, type L7Record, type SslRecord } from './wire.js';
import { OldestFirst } from '../util/oldest.js';

const FIN = 0x01;
const RST = 0x04;

export interface HttpEvent extends HttpExchange {
  pid: number;
  uid: number;
  comm?: string;
  /** The connection's socket (for TLS plaintext: when the uprobe found it). */
  flow?: FlowKey;
}

export interface TlsEvent extends TlsInfo {
  pid: number;
  uid: number;
  flow: FlowKey;
}

export interface L7Sinks {
  dns?: (r: DnsQueryRecord) => void;
  http?: (e: HttpEvent) => void;
  tls?: (e: TlsEvent) => void;
}

export interface L7PipelineOptions {
  cache: ResolverCache;
  sinks: L7Sinks;
  keepQuery?: boolean;
  /** Wall-clock milliseconds of a record time (CLOCK_BOOTTIME ns). */
  wallMs: (tsNs: number) => number;
  /** Process name of a pid, when the daemon knows it. */
  comm?: (pid: number) => string | undefined;
  /** Connections with state at once (default 16384; the oldest-created is ended first when
   * full: reordering a Map on every record cost more than the rest of a record's work). */
  maxConnections?: number;
  /** A connection idle this long is ended (default 120 s). */
  idleNs?: number;
}

export interface L7Counters {
  records: number;
  badRecords: number;
  connections: number;
  /** Connections ended early because the table was full. */
  connectionsEvicted: number;
  dns: DnsCounters;
  dnsTcp: DnsTcpCounters;
  http: HttpCounters;
  tls: TlsCounters;
  tlsStreams: StreamCounters;
}

interface Conn {
  kind: 'http' | 'tls' | 'dns-tcp' | 'ssl';
  lastNs: number;
  ended: [boolean, boolean];
  http?: HttpFlowParser;
  streams?: [Stream, Stream];
  tls?: TlsHelloParser;
  owner: Owner;
  key?: FlowKey;
}

export class L7Pipeline {
  readonly counters: L7Counters;
  readonly dns: DnsTracker;
  private readonly conns = new Map<string, Conn>();
  private readonly oldestConn = new OldestFirst(this.conns);
  private readonly maxConnections: number;
  private readonly idleNs: number;

  constructor(private readonly opts: L7PipelineOptions) {
    this.counters = {
      records: 0, badRecords: 0, connections: 0, connectionsEvicted: 0,
      dns: newDnsCounters(), dnsTcp: { messages: 0, lostMessages: 0, framingLost: 0 },
      http: newHttpCounters(), tls: newTlsCounters(), tlsStreams: newStreamCounters(),
    };
    this.dns = new DnsTracker({ cache: opts.cache, counters: this.counters.dns, onQuery: (r) => opts.sinks.dns?.(r) });
    this.maxConnections = opts.maxConnections ?? 16384;
    this.idleNs = opts.idleNs ?? 120e9;
  }

  /** A ring-buffer record handler (RingBufReader's RecordHandler). */
  readonly onRecord = (v: DataView, off: number, len: number): void => {
    const t = recordType(v, off, len);
    const r = t === EV_L7 ? decodeL7(v, off, len) : t === EV_SSL ? decodeSsl(v, off, len) : null;
    if (!r) {
      this.counters.badRecords++;
      return;
    }
    if (t === EV_L7) this.l7(r as L7Record);
    else this.ssl(r as SslRecord);
  };

  get connectionCount(): number {
    return this.conns.size;
  }

  l7(r: L7Record): void {
    this.counters.records++;
    const owner = r.tgid ? this.owner(r.tgid, r.uid) : { pid: 0, uid: r.uid };
    if (r.kind === L7_KIND.dns && r.key.protocol !== 'tcp') {
      if (r.seq !== 0 || r.data.length === 0) return; // later pieces of a datagram over 2 KiB: the first has what we read
      this.dns.message(this.dnsMeta(r, owner), r.data);
      return;
    }
    const kind = r.kind === L7_KIND.http ? 'http' : r.kind === L7_KIND.tls ? 'tls' : r.kind === L7_KIND.dns ? 'dns-tcp' : null;
    if (!kind) {
      this.counters.badRecords++;
      return;
    }
    const id = kind + r.rawKey;
    const c = this.conns.get(id) ?? this.conn(id, kind, owner, r.key, r.tsNs, r);
    c.lastNs = r.tsNs;
    if (r.len > 0) {
      const piece = { seq: r.seq, len: r.len, data: r.data, tsNs: r.tsNs, ack: r.ack };
      if (c.http) {
        if (r.flags & L7_F_SKIPPED) c.http.skipTo(r.dir, r.seq, r.tsNs);
        c.http.piece(r.dir, piece);
      } else if (c.streams && !c.tls?.done) {
        if (r.flags & L7_F_SKIPPED) c.streams[r.dir].skipTo(r.seq, r.tsNs);
        c.streams[r.dir].push(piece);
      }
    }
    if (r.tcpFlags & RST) c.ended = [true, true];
    else if (r.tcpFlags & FIN) c.ended[r.dir] = true;
    // A TLS flow whose hellos are read stays (ignoring what the kernel still copies of its
    // budget) until it ends or idles out: ended at once, the next record would open it
    // again with that record's direction taken for the client's (counted malformed).
    if (c.ended[0] && c.ended[1]) this.end(id, c, r.tsNs);
  }

  ssl(r: SslRecord): void {
    this.counters.records++;
    const id = `ssl|${r.tgid}|${r.ssl}`;
    const owner: Owner = { pid: r.tgid, uid: r.uid, comm: r.comm };
    if (r.flags & SSL_F_EOF) {
      const ended = this.conns.get(id);
      if (ended) this.end(id, ended, r.tsNs);
      return;
    }
    const c = this.conn(id, 'ssl', owner, r.key, r.tsNs, null);
    if (r.key && !c.key) c.key = r.key;
    c.http!.piece(r.dir, { seq: r.seq, len: r.len, data: r.data, tsNs: r.tsNs });
  }

  /** Ends connections idle for longer than idleNs (call from a timer with the current boot time). */
  sweep(nowNs: number): void {
    for (const [id, c] of this.conns) {
      if (nowNs - c.lastNs < this.idleNs) continue;
      this.end(id, c, nowNs);
    }
    this.dns.expire(nowNs);
  }

  /** Ends every connection (daemon stop, tests). */
  flush(nowNs: number): void {
    for (const [id, c] of this.conns) this.end(id, c, nowNs);
  }

  private owner(tgid: number, uid: number): Owner {
    const comm = tgid ? this.opts.comm?.(tgid) : undefined;
    return comm !== undefined ? { pid: tgid, uid, comm } : { pid: tgid, uid };
  }

  private dnsMeta(r: L7Record, owner: Owner): DnsPacketMeta {
    const m: DnsPacketMeta = {
      tsNs: r.tsNs, wallMs: this.opts.wallMs(r.tsNs), transport: r.key.protocol === 'tcp' ? 'tcp' : 'udp',
      localAddr: r.key.localAddr, localPort: r.key.localPort, remoteAddr: r.key.remoteAddr, remotePort: r.key.remotePort,
      dir: r.dir === 0 ? 'egress' : 'ingress',
    };
    if (owner.pid) m.owner = owner;
    return m;
  }

  private conn(id: string, kind: Conn['kind'], owner: Owner, key: FlowKey | undefined, tsNs: number, r: L7Record | null): Conn {
    let c = this.conns.get(id);
    if (c) {
      c.lastNs = tsNs;
      if (!c.owner.pid && owner.pid) c.owner = owner;
      return c;
    }
    if (this.conns.size >= this.maxConnections) {
      const [oldId, old] = this.oldestConn.shift()!;
      this.counters.connectionsEvicted++;
      this.end(oldId, old, tsNs);
    }
    this.counters.connections++;
    c = { kind, lastNs: tsNs, ended: [false, false], owner };
    if (key) c.key = key;
    const cc = c;
    if (kind === 'http' || kind === 'ssl') {
      c.http = new HttpFlowParser({
        counters: this.counters.http, keepQuery: this.opts.keepQuery ?? false, tls: kind === 'ssl',
        onExchange: (e) => {
          const ev: HttpEvent = { ...e, pid: cc.owner.pid, uid: cc.owner.uid };
          if (cc.owner.comm !== undefined) ev.comm = cc.owner.comm;
          if (cc.key) ev.flow = cc.key;
          this.opts.sinks.http?.(ev);
        },
      });
    } else if (kind === 'tls') {
      const tls = new TlsHelloParser(this.counters.tls, (info) => {
        this.opts.sinks.tls?.({ ...info, offeredVersions: [...info.offeredVersions], alpn: [...info.alpn], pid: cc.owner.pid, uid: cc.owner.uid, flow: cc.key! });
      });
      c.tls = tls;
      // The direction of the first record carries the ClientHello.
      const clientDir = r?.dir ?? 0;
      const cs = new Stream(tls.client, this.counters.tlsStreams);
      const ss = new Stream(tls.server, this.counters.tlsStreams);
      c.streams = clientDir === 0 ? [cs, ss] : [ss, cs];
    } else {
      const framers = ([0, 1] as const).map((d) => new DnsTcpFramer((m, ts) => {
        const meta = { ...this.dnsMeta({ ...r!, dir: d, tsNs: ts }, cc.owner), transport: 'tcp' as const };
        this.dns.message(meta, m);
      }, this.counters.dnsTcp));
      c.streams = [new Stream(framers[0]!, this.counters.tlsStreams), new Stream(framers[1]!, this.counters.tlsStreams)];
    }
    this.conns.set(id, c);
    return c;
  }

  private end(id: string, c: Conn, tsNs: number): void {
    this.conns.delete(id);
    c.http?.end(tsNs);
    if (c.streams) for (const s of c.streams) s.flush();
  }
}
