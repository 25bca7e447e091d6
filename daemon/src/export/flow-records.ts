// SPDX-License-Identifier: Apache-2.0
// Flows -> ClickHouse records, each counting what its flow did since the flow's previous
// record, so that sum() over a flow's rows is its total whether it lived 10 ms or 10 days.
//
// Two inputs, both plain:
//  - close events (events.subscribe): a TCP connection's final counts, at once;
//  - snapshots of the flow table (flows.list, closed flows included) every
//    `updateIntervalSec`: an `update` record for each open flow that moved, and a `close`
//    record for each closed flow no close event reported (UDP, ICMP, forwarded traffic,
//    an event lost to a full ring buffer).
// A flow is known by its 5-tuple and its first-seen time (a 5-tuple reused later is a new
// flow). What was exported per flow is remembered until the flow leaves the table, at most
// `maxTracked` flows (the oldest are forgotten first, and counted).
import { containerLabel, type CloseEventInput, type ContainerLabel, type FlowInput, type FlowRecord, type RecordKind } from './api-types.js';
import type { HostIdentity } from './host.js';
import { OldestFirst } from '../util/oldest.js';

/** (uid_t)-1, the kernel's "no uid". */
export const UID_UNKNOWN = 4294967295;

interface Tracked {
  /** ms; NaN for flows first met in a close event (the table's entry may differ by a tick). */
  firstSeenMs: number;
  tx: number;
  rx: number;
  txp: number;
  rxp: number;
  /** A close record was written: later snapshots of the closed entry add nothing. */
  closed: boolean;
  /** Snapshot generation that last listed the flow. */
  seen: number;
}

/** What the tracker remembers, as the spool stores it (spool.ts): [key, firstSeenMs|null, tx, rx, txp, rxp, closed, seen]. */
export interface TrackerState {
  generation: number;
  flows: Array<[string, number | null, number, number, number, number, boolean, number]>;
}

/**
 * Two first-seen times of one flow may differ by this much: the kernel's timestamp is the
 * same, but each daemon run measures the monotonic-to-wall-clock offset again (sys/clock.ts)
 * and the ms may round the other way. A 5-tuple reused within 2 ms is not a case that exists.
 */
const SAME_FLOW_MS = 2;

export interface TrackerOptions {
  host: HostIdentity;
  /** Snapshots of the flow table will come (default true); false: close events only. */
  snapshots?: boolean;
  maxTracked?: number;
}

const sec = (ms: number) => Math.floor(ms / 1000);

/** Joined, not a template literal: a Map key keeps a template's tree of concatenations
 * alive whole (history/accountant.ts flowKey()). */
function flowKey(proto: string, la: string, lp: number | null, ra: string, rp: number | null): string {
  return [proto, la, lp ?? '', ra, rp ?? ''].join('|');
}

export class FlowRecordTracker {
  private readonly tracked = new Map<string, Tracked>();
  private readonly oldest = new OldestFirst(this.tracked);
  private readonly maxTracked: number;
  private generation = 0;
  overflow = 0;

  constructor(private readonly opts: TrackerOptions) {
    this.maxTracked = opts.maxTracked ?? 1_000_000;
  }

  get size(): number {
    return this.tracked.size;
  }

  /** The final record of a connection, from its close event. */
  closed(e: CloseEventInput): FlowRecord | null {
    const key = flowKey(e.protocol, e.localAddr, e.localPort, e.remoteAddr, e.remotePort);
    const endMs = Date.parse(e.at);
    const firstMs = e.durationMs !== null ? endMs - e.durationMs : endMs;
    const t = this.tracked.get(key);
    // An entry already closed is an earlier connection on the same 5-tuple (port reuse).
    const prev = t && !t.closed ? t : undefined;
    // No IP-layer counts when no monitored interface carried the flow (loopback): the
    // payload counts still say what the sockets moved.
    const tx = e.flowSeen ? e.txBytes : 0;
    const rx = e.flowSeen ? e.rxBytes : 0;
    const txp = e.flowSeen ? e.txPackets : 0;
    const rxp = e.flowSeen ? e.rxPackets : 0;
    const rec = this.record('close', sec(endMs), e, {
      firstSeenMs: prev && !Number.isNaN(prev.firstSeenMs) ? prev.firstSeenMs : firstMs,
      durationMs: e.durationMs ?? 0,
      tx: Math.max(0, tx - (prev?.tx ?? 0)),
      rx: Math.max(0, rx - (prev?.rx ?? 0)),
      txp: Math.max(0, txp - (prev?.txp ?? 0)),
      rxp: Math.max(0, rxp - (prev?.rxp ?? 0)),
      payloadSent: e.payloadBytesSent,
      payloadReceived: e.payloadBytesReceived,
    });
    // Without snapshots there is nothing to tell apart later: remember nothing.
    if (this.opts.snapshots === false) return rec;
    this.track(key, { firstSeenMs: prev?.firstSeenMs ?? NaN, tx: Math.max(tx, prev?.tx ?? 0), rx: Math.max(rx, prev?.rx ?? 0), txp: Math.max(txp, prev?.txp ?? 0), rxp: Math.max(rxp, prev?.rxp ?? 0), closed: true, seen: prev?.seen ?? this.generation });
    return rec;
  }

  /**
   * One pass over the flow table. Returns the records it makes; flows no longer in the
   * table are forgotten.
   */
  snapshot(flows: readonly FlowInput[], nowMs = Date.now()): FlowRecord[] {
    const gen = ++this.generation;
    const out: FlowRecord[] = [];
    for (const f of flows) {
      const key = flowKey(f.protocol, f.localAddr, f.localPort, f.remoteAddr, f.remotePort);
      const firstMs = Date.parse(f.firstSeenAt);
      let t = this.tracked.get(key);
      // Same 5-tuple, another flow: the previous one left the table between two snapshots.
      if (t && !Number.isNaN(t.firstSeenMs) && Math.abs(t.firstSeenMs - firstMs) > SAME_FLOW_MS) t = undefined;
      if (t?.closed) {
        t.seen = gen;
        // The close event came first; the entry may still have had a last ACK since.
        if (f.txBytes <= t.tx && f.rxBytes <= t.rx) continue;
      }
      const d = {
        tx: Math.max(0, f.txBytes - (t?.tx ?? 0)),
        rx: Math.max(0, f.rxBytes - (t?.rx ?? 0)),
        txp: Math.max(0, f.txPackets - (t?.txp ?? 0)),
        rxp: Math.max(0, f.rxPackets - (t?.rxp ?? 0)),
      };
      const isClosed = f.closedAt !== null;
      const moved = d.tx + d.rx + d.txp + d.rxp > 0;
      if (moved || (isClosed && !t?.closed)) {
        const endMs = isClosed ? Date.parse(f.closedAt!) : nowMs;
        out.push(this.record(isClosed || t?.closed ? 'close' : 'update', sec(isClosed ? endMs : nowMs), f, {
          firstSeenMs: firstMs,
          durationMs: Math.max(0, (isClosed ? endMs : Date.parse(f.lastSeenAt)) - firstMs),
          ...d,
          payloadSent: 0,
          payloadReceived: 0,
        }));
      }
      this.track(key, {
        firstSeenMs: firstMs,
        tx: Math.max(f.txBytes, t?.tx ?? 0), rx: Math.max(f.rxBytes, t?.rx ?? 0),
        txp: Math.max(f.txPackets, t?.txp ?? 0), rxp: Math.max(f.rxPackets, t?.rxp ?? 0),
        closed: isClosed || (t?.closed ?? false),
        seen: gen,
      });
    }
    // Gone from the table: nothing more will come for them. Close events of this round
    // (seen === gen - 1 at most) are kept one snapshot longer, so that a snapshot taken
    // just before the event does not drop what the event recorded.
    for (const [k, t] of this.tracked) if (t.seen < gen - 1) this.tracked.delete(k);
    return out;
  }

  /** What was exported per flow, for the next daemon run (spool.ts). */
  save(): TrackerState {
    const flows: TrackerState['flows'] = [];
    for (const [k, t] of this.tracked) flows.push([k, Number.isNaN(t.firstSeenMs) ? null : t.firstSeenMs, t.tx, t.rx, t.txp, t.rxp, t.closed, t.seen]);
    return { generation: this.generation, flows };
  }

  /** Takes over a previous run's state (before the first snapshot); malformed entries are skipped. */
  load(s: TrackerState): number {
    const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
    if (!num(s.generation) || !Array.isArray(s.flows)) return 0;
    this.generation = s.generation;
    let n = 0;
    for (const e of s.flows) {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || !(e[1] === null || num(e[1])) || ![e[2], e[3], e[4], e[5], e[7]].every(num) || typeof e[6] !== 'boolean') continue;
      this.track(e[0], { firstSeenMs: e[1] ?? NaN, tx: e[2], rx: e[3], txp: e[4], rxp: e[5], closed: e[6], seen: e[7] });
      n++;
    }
    return n;
  }

  private track(key: string, t: Tracked): void {
    this.tracked.delete(key);
    this.tracked.set(key, t); // most recently touched last
    if (this.tracked.size > this.maxTracked) {
      this.oldest.shift();
      this.overflow++;
    }
  }

  private record(
    kind: RecordKind,
    time: number,
    f: {
      protocol: string; family: 'ipv4' | 'ipv6'; localAddr: string; localPort: number | null; remoteAddr: string; remotePort: number | null;
      interface: string | null; pid: number | null; comm: string | null; uid: number | null; attributedBy: string; direction?: string;
      unit?: string | null; container?: ContainerLabel;
    },
    c: { firstSeenMs: number; durationMs: number; tx: number; rx: number; txp: number; rxp: number; payloadSent: number; payloadReceived: number },
  ): FlowRecord {
    return {
      at: time,
      host: this.opts.host.hostName,
      machine_id: this.opts.host.machineId,
      kind,
      first_seen_at: sec(c.firstSeenMs),
      duration_ms: Math.round(c.durationMs),
      protocol: f.protocol,
      family: f.family,
      local_addr: f.localAddr,
      local_port: f.localPort ?? 0,
      remote_addr: f.remoteAddr,
      remote_port: f.remotePort ?? 0,
      direction: f.direction ?? 'unknown',
      interface: f.interface ?? '',
      pid: f.pid ?? 0,
      comm: f.comm ?? '',
      uid: f.uid ?? UID_UNKNOWN,
      unit: f.unit ?? '',
      container: containerLabel(f.container),
      attributed_by: f.attributedBy,
      tx_bytes: c.tx,
      rx_bytes: c.rx,
      tx_packets: c.txp,
      rx_packets: c.rxp,
      payload_sent: c.payloadSent,
      payload_received: c.payloadReceived,
    };
  }
}
