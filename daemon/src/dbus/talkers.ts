// SPDX-License-Identifier: Apache-2.0
// Which processes are talking, for ProcessStarted/ProcessStopped. A process talks while
// it has a connection open (connect/accept events, until their close events) or while its
// flows in the flow table move bytes (UDP and anything without socket events; sampled
// every second). Events make the common TCP case immediate; the flow table catches the
// rest and processes whose close events were lost. Tracking runs only while someone is
// subscribed, so processes already talking when the first subscriber arrives are picked
// up by their next connection or by the next sample.
import type { EventType, MonitorEvent } from '../contract/events.js';
import type { RemoteGeo } from '../contract/geo.js';
import { IDENTITY_FIELDS, type OwnerIdentity } from '../contract/identity.js';
import type { Talker } from './rates.js';

/** What a process started talking to, when known: the connection that started it, or the
 * busiest place of its traffic; and who it is (its unit, container, app), when known. */
export interface StartedVia extends Partial<OwnerIdentity> {
  exe?: string;
  protocol?: string;
  remoteAddr?: string;
  remotePort?: number;
  remoteGeo?: RemoteGeo;
}

/** The owner's identity fields that are known (null ones are not sent). */
function withIdentity(via: StartedVia, id: OwnerIdentity): StartedVia {
  for (const k of IDENTITY_FIELDS) if (id[k] !== null && id[k] !== undefined) (via as Record<string, unknown>)[k] = id[k];
  return via;
}

export type TalkerChange =
  | { kind: 'started'; pid: number; comm: string; uid: number; via: StartedVia }
  | { kind: 'stopped'; pid: number; comm: string; uid: number; txBytes: number; rxBytes: number };

interface State {
  comm: string;
  uid: number;
  /** Connections opened by events and not yet closed. */
  sockets: Set<string>;
  /** Talking through flow-table traffic until this time (0: not). */
  flowUntil: number;
  txBytes: number;
  rxBytes: number;
}

export interface TalkerOptions {
  /** A process whose flows moved no bytes for this long stops talking (default 5 s). */
  idleMs?: number;
  /** Bounds on what is tracked (a flood of connections must not grow the daemon). */
  maxProcesses?: number;
  maxSockets?: number;
  now?: () => number;
}

export class TalkingProcesses {
  private readonly states = new Map<number, State>();
  private sockets = 0;
  private readonly idleMs: number;
  private readonly maxProcesses: number;
  private readonly maxSockets: number;
  private readonly now: () => number;
  /** Connections not tracked because a bound was reached. */
  untracked = 0;

  constructor(private readonly emit: (c: TalkerChange) => void, opts: TalkerOptions = {}) {
    this.idleMs = opts.idleMs ?? 5000;
    this.maxProcesses = opts.maxProcesses ?? 16_384;
    this.maxSockets = opts.maxSockets ?? 65_536;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.states.size;
  }

  private talking(s: State): boolean {
    return s.sockets.size > 0 || s.flowUntil > this.now();
  }

  private state(pid: number, comm: string, uid: number): State | null {
    let s = this.states.get(pid);
    if (!s) {
      if (this.states.size >= this.maxProcesses) {
        this.untracked++;
        return null;
      }
      s = { comm, uid, sockets: new Set(), flowUntil: 0, txBytes: 0, rxBytes: 0 };
      this.states.set(pid, s);
    }
    return s;
  }

  private stop(pid: number, s: State): void {
    this.states.delete(pid);
    this.sockets -= s.sockets.size;
    this.emit({ kind: 'stopped', pid, comm: s.comm, uid: s.uid, txBytes: s.txBytes, rxBytes: s.rxBytes });
  }

  /** The events onEvent() uses. */
  static readonly EVENT_TYPES: readonly EventType[] = ['connect', 'accept', 'close', 'exit'];

  onEvent(e: MonitorEvent): void {
    if (e.pid === null || e.uid === null) return;
    switch (e.type) {
      case 'connect':
      case 'accept': {
        const s = this.state(e.pid, e.comm ?? '', e.uid);
        if (!s) return;
        const was = this.talking(s);
        const k = `${e.protocol} ${e.localAddr} ${e.localPort} ${e.remoteAddr} ${e.remotePort}`;
        if (!s.sockets.has(k)) {
          if (this.sockets >= this.maxSockets) {
            this.untracked++;
            if (s.sockets.size === 0 && s.flowUntil === 0) this.states.delete(e.pid);
            return;
          }
          s.sockets.add(k);
          this.sockets++;
        }
        if (e.comm) s.comm = e.comm;
        if (!was) {
          const via: StartedVia = { protocol: e.protocol, remoteAddr: e.remoteAddr, remotePort: e.remotePort };
          if (e.remoteGeo) via.remoteGeo = e.remoteGeo;
          this.emit({ kind: 'started', pid: e.pid, comm: s.comm, uid: s.uid, via: withIdentity(via, e) });
        }
        return;
      }
      case 'close': {
        const s = this.states.get(e.pid);
        if (!s) return;
        const k = `${e.protocol} ${e.localAddr} ${e.localPort} ${e.remoteAddr} ${e.remotePort}`;
        if (s.sockets.delete(k)) this.sockets--;
        // IP-layer counts when a monitored interface carried the flow, TCP payload otherwise (loopback).
        s.txBytes += e.flowSeen ? e.txBytes : e.payloadBytesSent;
        s.rxBytes += e.flowSeen ? e.rxBytes : e.payloadBytesReceived;
        if (!this.talking(s)) this.stop(e.pid, s);
        return;
      }
      case 'exit': {
        const s = this.states.get(e.pid);
        if (s) this.stop(e.pid, s);
        return;
      }
      default:
        return;
    }
  }

  /** A new traffic sample (RateTracker tick). */
  onSample(talkers: readonly Talker[]): void {
    const now = this.now();
    const seen = new Map<number, Talker>();
    for (const t of talkers) {
      if (t.pid === null || t.uid === null) continue;
      seen.set(t.pid, t);
      if (t.openFlows === 0 || t.txDelta + t.rxDelta === 0) continue;
      const s = this.state(t.pid, t.comm ?? '', t.uid);
      if (!s) continue;
      const was = this.talking(s);
      s.flowUntil = now + this.idleMs;
      // Connections tracked by events count their bytes at close; do not count them twice.
      if (s.sockets.size === 0) {
        s.txBytes += t.txDelta;
        s.rxBytes += t.rxDelta;
      }
      if (!was) {
        const via: StartedVia = {};
        if (t.exe) via.exe = t.exe;
        const p = t.places[0];
        if (p) {
          via.remoteAddr = p.remoteAddr;
          via.remoteGeo = { country: p.country, city: p.city, lat: p.lat, lon: p.lon, asn: p.asn, org: p.org, label: p.label };
        }
        this.emit({ kind: 'started', pid: t.pid, comm: s.comm, uid: s.uid, via: withIdentity(via, t) });
      }
    }
    for (const [pid, s] of this.states) {
      if (s.sockets.size > 0 || s.flowUntil === 0) continue;
      const t = seen.get(pid);
      if (s.flowUntil <= now || (t !== undefined && t.openFlows === 0)) this.stop(pid, s);
    }
  }

  /** Forget everything (the last subscriber left). */
  reset(): void {
    this.states.clear();
    this.sockets = 0;
  }
}
