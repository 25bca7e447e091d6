// SPDX-License-Identifier: Apache-2.0
// The live state behind the page: once a second, the daemon's per-process totals with the
// places each process's flows go to (`processes.list` with `places`: the daemon groups
// flows by place, so the map costs one answer per process, not one per flow) and the
// largest flows (`flows.list`, a bounded pool for the flow table and the hover details),
// turned into rates; events in batches. One model serves every open page; each page gets
// its own view of it (snapshot.ts). Polls only while a page is open.
import { EventEmitter } from 'node:events';
import type { MonitorEvent } from '../../../daemon/src/contract/events.js';
import type { Flow, ProcessTotals } from '../../../daemon/src/contract/flows.js';
import { MAX_PLACES, type GeoLabel } from '../../../daemon/src/contract/geo.js';
import { METHODS, NOTIFICATIONS } from '../../../daemon/src/contract/methods.js';
import { sleepUnless } from '../commands/follow.js';
import { bytes, endpoint, userName } from '../render/format.js';
import { placeText } from '../render/place.js';
import type { DaemonClient } from '../rpc.js';
import { placeKey, placeable } from './place.js';
import type { FlowRow, ProcessRow, UiEvent } from './protocol.js';

export const UI_EVENT_TYPES = ['connect', 'accept', 'close', 'exec'] as const;

/** A flow as the model keeps it: what a page is sent, plus its place key (computed once
 * per poll, not once per page). */
export interface ModelFlow extends FlowRow {
  place: string | null;
}

/** One process's traffic to one place. */
export interface ModelPlace {
  location: string;
  lat: number | null;
  lon: number | null;
  country: string | null;
  city: string | null;
  label: GeoLabel | null;
  /** Drawn on the map: it has coordinates or a country. */
  onMap: boolean;
  pid: number | null;
  comm: string | null;
  flows: number;
  txBytes: number;
  rxBytes: number;
  txRate: number;
  rxRate: number;
}

export interface ModelState {
  at: number;
  processes: ProcessRow[];
  places: ModelPlace[];
  /** The largest flows (at most `poolSize`). */
  flows: ModelFlow[];
  /** Flows of this user in the daemon's table. */
  flowsMatched: number;
}

export interface ModelOptions {
  intervalMs?: number;
  /** Flows read each poll (the largest by bytes): the flow table and hover details use them. */
  poolSize?: number;
  /** Places per process read each poll. */
  placesPerProcess?: number;
  /** Events kept per batch sent to pages (the newest). */
  maxEventsPerBatch?: number;
  eventBatchMs?: number;
}

export const DEFAULT_POOL = 2000;

/** Stable id of a flow across polls: its tuple and when it started (ports get reused). */
function flowId(f: Flow): string {
  return `${f.protocol}|${f.localAddr}|${f.localPort ?? f.icmpId ?? ''}|${f.remoteAddr}|${f.remotePort ?? f.icmpType ?? ''}|${f.firstSeenAt}`;
}

const procKey = (p: { pid: number | null; comm: string | null }) => `${p.pid}|${p.comm}`;

/** What the model tells the server: a new state, a batch of events, events the daemon
 * lost, and whether the daemon answers. */
interface LiveModelEvents {
  update: [s: ModelState];
  events: [events: UiEvent[], skipped: number];
  lost: [n: number];
  status: [ok: boolean, message: string];
}

export class LiveModel extends EventEmitter<LiveModelEvents> {
  state: ModelState | null = null;
  connected = false;
  lastError = '';
  private prevFlows = new Map<string, { tx: number; rx: number }>();
  private prevProcs = new Map<string, { tx: number; rx: number }>();
  private prevPlaces = new Map<string, { tx: number; rx: number }>();
  private prevAt = 0;
  private pending: UiEvent[] = [];
  private skipped = 0;
  private flushTimer: NodeJS.Timeout | null = null;
  private viewers = 0;
  private wake: (() => void) | null = null;
  private readonly o: Required<ModelOptions>;

  constructor(opts: ModelOptions = {}) {
    super();
    this.o = { intervalMs: 1000, poolSize: DEFAULT_POOL, placesPerProcess: 50, maxEventsPerBatch: 200, eventBatchMs: 250, ...opts };
    this.o.placesPerProcess = Math.min(this.o.placesPerProcess, MAX_PLACES);
  }

  /** Pages open now (set by the server): with none, the model does not poll the daemon. */
  setViewers(n: number): void {
    const was = this.viewers;
    this.viewers = n;
    if (was === 0 && n > 0) this.wake?.();
  }

  setStatus(ok: boolean, message: string): void {
    if (ok === this.connected && message === this.lastError) return;
    this.connected = ok;
    this.lastError = message;
    this.emit('status', ok, message);
  }

  /**
   * One connection's worth of work (follow.ts runs it again after a reconnection): waits
   * for a page, subscribes to events, then polls once an interval until `signal` fires.
   * A lost connection rejects (ConnectionLost), as follow() expects.
   */
  async session(client: DaemonClient, signal: AbortSignal): Promise<void> {
    this.prevAt = 0;
    let subscribed = false;
    signal.addEventListener('abort', () => this.wake?.());
    while (!signal.aborted) {
      if (this.viewers === 0) {
        await new Promise<void>((res) => (this.wake = res));
        this.wake = null;
        continue;
      }
      const t0 = Date.now();
      if (!subscribed) {
        client.onNotification(NOTIFICATIONS.event, (p) => this.onEvent(p.event));
        client.onNotification(NOTIFICATIONS.lost, (p) => this.emit('lost', p.lost));
        await client.call(METHODS.eventsSubscribe, { types: [...UI_EVENT_TYPES] });
        subscribed = true;
      }
      const [procs, flows] = await Promise.all([
        client.call(METHODS.processesList, { limit: 100_000, places: this.o.placesPerProcess }),
        client.call(METHODS.flowsList, { includeClosed: true, sort: 'bytes', limit: this.o.poolSize }),
      ]);
      this.update(procs.processes, flows.flows, flows.matched, Date.now());
      this.setStatus(true, '');
      await sleepUnless(Math.max(50, this.o.intervalMs - (Date.now() - t0)), signal);
    }
  }

  stop(): void {
    this.wake?.();
    if (this.flushTimer) clearTimeout(this.flushTimer);
  }

  /** One poll's answers -> the state pages are built from (public for tests and the bench). */
  update(processes: ProcessTotals[], flows: Flow[], matched: number, at: number): ModelState {
    const dt = this.prevAt ? Math.max(0.001, (at - this.prevAt) / 1000) : 0;
    // Something first seen in this poll: everything it carries arrived since the last one
    // (but on the first poll there is no "since").
    const rate = (now: number, before: number | undefined) => (!dt ? 0 : Math.max(0, now - (before ?? 0)) / dt);

    const nextProcs = new Map<string, { tx: number; rx: number }>();
    const nextPlaces = new Map<string, { tx: number; rx: number }>();
    const procRows: ProcessRow[] = [];
    const places: ModelPlace[] = [];
    for (const p of processes) {
      const k = procKey(p);
      const prev = this.prevProcs.get(k);
      nextProcs.set(k, { tx: p.txBytes, rx: p.rxBytes });
      procRows.push({
        pid: p.pid, comm: p.comm, uid: p.uid, user: userName(p.uid), txBytes: p.txBytes, rxBytes: p.rxBytes,
        // Totals include collected flows and what came before this poll: a process seen for
        // the first time gets no rate yet rather than a spike of everything it ever sent.
        txRate: prev ? rate(p.txBytes, prev.tx) : 0, rxRate: prev ? rate(p.rxBytes, prev.rx) : 0,
        flows: p.flows, openFlows: p.openFlows,
      });
      for (const pl of p.places) {
        const location = placeKey(pl);
        const pk = `${location}|${k}`;
        const before = this.prevPlaces.get(pk);
        nextPlaces.set(pk, { tx: pl.txBytes, rx: pl.rxBytes });
        places.push({
          location, lat: pl.lat, lon: pl.lon, country: pl.country, city: pl.city, label: pl.label, onMap: placeable(pl),
          pid: p.pid, comm: p.comm, flows: pl.flows, txBytes: pl.txBytes, rxBytes: pl.rxBytes,
          // A place's bytes are those of the flows in the table now: they drop when flows
          // are collected, so a drop is no traffic, not negative traffic.
          txRate: rate(pl.txBytes, before?.tx), rxRate: rate(pl.rxBytes, before?.rx),
        });
      }
    }

    const nextFlows = new Map<string, { tx: number; rx: number }>();
    const rows: ModelFlow[] = flows.map((f) => {
      const id = flowId(f);
      const prev = this.prevFlows.get(id);
      nextFlows.set(id, { tx: f.txBytes, rx: f.rxBytes });
      const g = f.remoteGeo;
      return {
        id, pid: f.pid, comm: f.comm, uid: f.uid, protocol: f.protocol, localAddr: f.localAddr, localPort: f.localPort,
        remoteAddr: f.remoteAddr, remotePort: f.remotePort, remoteName: (f as Flow & { remoteName?: string | null }).remoteName ?? null,
        state: f.state, closed: f.closedAt !== null, txBytes: f.txBytes, rxBytes: f.rxBytes,
        txRate: rate(f.txBytes, prev?.tx), rxRate: rate(f.rxBytes, prev?.rx),
        where: placeText(g), asn: g?.asn ?? null, org: g?.org ?? null,
        place: g ? placeKey(g) : null,
      };
    });
    this.prevFlows = nextFlows;
    this.prevProcs = nextProcs;
    this.prevPlaces = nextPlaces;
    this.prevAt = at;
    this.state = { at, processes: procRows, places, flows: rows, flowsMatched: matched };
    this.emit('update', this.state);
    return this.state;
  }

  private onEvent(e: MonitorEvent): void {
    if (e.type !== 'connect' && e.type !== 'accept' && e.type !== 'close' && e.type !== 'exec') return;
    const who = `${e.comm ?? '?'}[${e.pid ?? '?'}]`;
    let text: string;
    let where: string | null = null;
    if (e.type === 'exec') text = `${who} ${e.filename} ${e.args.slice(1).join(' ')}${e.argsTruncated ? ' ...' : ''}`;
    else {
      where = e.remoteGeo ? placeText(e.remoteGeo) : null;
      const arrow = e.type === 'accept' ? '<-' : e.type === 'connect' ? '->' : '--';
      text = `${who} ${e.protocol} ${endpoint(e.localAddr, e.localPort)} ${arrow} ${endpoint(e.remoteAddr, e.remotePort)}`;
      if (e.type === 'close') text += ` sent ${bytes(e.txBytes)} recv ${bytes(e.rxBytes)}`;
    }
    this.pending.push({ type: e.type, at: e.at, pid: e.pid, comm: e.comm, uid: e.uid, text, where });
    if (this.pending.length > this.o.maxEventsPerBatch) {
      this.skipped += this.pending.length - this.o.maxEventsPerBatch;
      this.pending.splice(0, this.pending.length - this.o.maxEventsPerBatch);
    }
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = null;
      const batch = this.pending;
      const skipped = this.skipped;
      this.pending = [];
      this.skipped = 0;
      this.emit('events', batch, skipped);
    }, this.o.eventBatchMs);
  }
}
