// SPDX-License-Identifier: Apache-2.0
// The daemon's event bus: every event (the monitor's connection and process events, the
// load balancer's changes) is published here once and fanned out to subscribers (JSON-RPC
// subscriptions, the D-Bus service). It belongs to the daemon, not to any feature: features
// publish, adapters subscribe, app.ts wires them.
//
// An event travels as a BusEvent: its type, pid and uid (what subscribers filter on) and
// its forms, each built at most once and only if some subscriber asks for it: the object,
// its JSON, its row (contract EVENT_FIELDS). The monitor publishes views over ring-buffer
// records that build the row straight from the record's bytes, so a subscriber that takes
// rows never costs an object or its JSON (bench/attribution: JSON.stringify of the object
// was the largest cost per event). Those views also carry remoteGeo and the owner's
// identity in every form; events published as objects are completed here (remoteGeo).
import { EVENT_FIELDS, EVENT_TYPES, type CloseEvent, type EventType, type MonitorEvent } from '../contract/events.js';
import type { RemoteGeo } from '../contract/geo.js';
import type { OwnerIdentity } from '../contract/identity.js';

/**
 * An event being published. The monitor's are views over a ring-buffer record, valid only
 * while publish() runs: a listener takes what it needs before it returns.
 */
export interface BusEvent {
  readonly type: EventType;
  readonly pid: number | null;
  readonly uid: number | null;
  /** Its forms already carry remoteGeo (the monitor's records): the bus need not complete it. */
  readonly complete?: boolean;
  /** The owner's identity (what an identity filter matches), or null for events no process
   * owns in that sense (lb, dns, http). */
  owner(): OwnerIdentity | null;
  /** The event as an object (a new object the listener may keep). */
  event(): MonitorEvent;
  /** JSON of event(). */
  json(): string;
  /** The event as a row: a JSON array of its values in EVENT_FIELDS[type] order. */
  row(): string;
  /**
   * row()'s UTF-8 bytes written into `d` from `p`: the position after them, or -1 when this
   * event has no byte form or it does not fit (then take row()). Only the monitor's records
   * have it (connection and close records: the high-rate ones).
   */
  rowInto?(d: Uint8Array, p: number): number;
  /**
   * A close event's facts that history records (closeFactsOf(event()) for any other close),
   * read from the bytes without building the event: no remote place, identity, ISO time or
   * payload counts. Null for other types. Only the monitor's records have it. `into`
   * (decodeCloseFacts' emptyCloseFacts()): filled and returned instead of a new object, valid
   * until the next call with it.
   */
  closeFacts?(into?: CloseFacts): CloseFacts | null;
}

/** What history takes of a close (history/feed.ts): CloseEvent's fields, its time in ms. */
export type CloseFacts = Pick<CloseEvent,
  'protocol' | 'family' | 'localAddr' | 'localPort' | 'remoteAddr' | 'remotePort' | 'pid' | 'uid' | 'comm' | 'attributedBy'
  | 'flowSeen' | 'interface' | 'txBytes' | 'rxBytes' | 'txPackets' | 'rxPackets' | 'durationMs'> & { atMs: number };

/** The facts of a close event object (BusEvent.closeFacts()'s general form). */
export function closeFactsOf(e: CloseEvent): CloseFacts {
  return {
    protocol: e.protocol, family: e.family, localAddr: e.localAddr, localPort: e.localPort, remoteAddr: e.remoteAddr, remotePort: e.remotePort,
    pid: e.pid, uid: e.uid, comm: e.comm, attributedBy: e.attributedBy, flowSeen: e.flowSeen, interface: e.interface,
    txBytes: e.txBytes, rxBytes: e.rxBytes, txPackets: e.txPackets, rxPackets: e.rxPackets, durationMs: e.durationMs, atMs: Date.parse(e.at),
  };
}

export type EventListener = (e: MonitorEvent) => void;
export type BusListener = (e: BusEvent) => void;

/** A row from an event object (the generic form; the monitor's records have a faster one). */
export function eventRow(e: MonitorEvent): string {
  const fields = EVENT_FIELDS[e.type] as readonly string[];
  const values = new Array<unknown>(fields.length);
  for (let i = 0; i < fields.length; i++) values[i] = (e as unknown as Record<string, unknown>)[fields[i]!];
  return JSON.stringify(values);
}

/** Event types that carry an owner's identity (contract/events.ts EventOwner). */
const OWNED: ReadonlySet<EventType> = new Set<EventType>(['connect', 'accept', 'close', 'exec', 'exit', 'dns', 'http']);

/** A BusEvent over an event object (the load balancer's, tests'). */
export class ObjectEvent implements BusEvent {
  private jsonText: string | null = null;
  private rowText: string | null = null;
  constructor(private readonly e: MonitorEvent) {}
  get type(): EventType {
    return this.e.type;
  }
  get pid(): number | null {
    return this.e.pid;
  }
  get uid(): number | null {
    return this.e.uid;
  }
  owner(): OwnerIdentity | null {
    return OWNED.has(this.e.type) ? (this.e as OwnerIdentity) : null;
  }
  event(): MonitorEvent {
    return this.e;
  }
  json(): string {
    return (this.jsonText ??= JSON.stringify(this.e));
  }
  row(): string {
    return (this.rowText ??= eventRow(this.e));
  }
}

/**
 * A connection event published as an object, completed (remoteGeo) before any subscriber
 * sees it; its JSON and row are built from the completed object. (The monitor's records
 * carry remoteGeo in every form already, the row included: they are not wrapped.)
 */
class EnrichedEvent implements BusEvent {
  private e: MonitorEvent | null = null;
  private jsonText: string | null = null;
  private rowText: string | null = null;
  constructor(private readonly inner: BusEvent, private readonly enrich: (e: MonitorEvent) => void) {}
  get type(): EventType {
    return this.inner.type;
  }
  get pid(): number | null {
    return this.inner.pid;
  }
  get uid(): number | null {
    return this.inner.uid;
  }
  owner(): OwnerIdentity | null {
    return this.inner.owner();
  }
  event(): MonitorEvent {
    if (!this.e) {
      this.e = this.inner.event();
      try {
        this.enrich(this.e);
      } catch {
        /* an event without its extras beats no event */
      }
    }
    return this.e;
  }
  json(): string {
    return (this.jsonText ??= JSON.stringify(this.event()));
  }
  row(): string {
    return (this.rowText ??= eventRow(this.event()));
  }
}

/** Event types the enricher completes (they carry a remote address). */
const ENRICHED: ReadonlySet<EventType> = new Set<EventType>(['connect', 'accept', 'close']);

const zero = (): Record<EventType, number> => Object.fromEntries(EVENT_TYPES.map((t) => [t, 0])) as Record<EventType, number>;

interface Listening {
  readonly fn: BusListener;
  readonly types: ReadonlySet<EventType> | null;
  live: boolean;
}

/** Fan-out of events to subscribers. A listener that throws is dropped, not fatal. */
export class EventBus {
  /** Each listener and the event types it wants (all when not said). */
  private readonly listeners = new Map<BusListener, Listening>();
  /**
   * The same, as an array publish() walks (a new one when a listener comes or goes): a Map's
   * entry iteration cost about 5% of an event's way to a row subscriber (bench/events).
   */
  private walk: Listening[] = [];
  /** How many listeners want each type: events of a type nobody wants need not be built. */
  private readonly wanted = zero();
  /** Events published (or counted without being built) per type. */
  readonly counts = zero();
  /** Records a publisher could not turn into an event (unknown type, short record). */
  undecodable = 0;
  /** Where a remote address is (app.ts sets the geo service's lookup; null: geo is off). */
  private geo: ((addr: string) => RemoteGeo | null) | null = null;
  private readonly enrich = (e: MonitorEvent): void => {
    if (e.type === 'connect' || e.type === 'accept' || e.type === 'close') e.remoteGeo = this.remoteGeo(e.remoteAddr);
  };

  setRemoteGeo(fn: ((addr: string) => RemoteGeo | null) | null): void {
    this.geo = fn;
  }

  /** Where `addr` is, or null when geo is off (the monitor's decoder asks this). */
  remoteGeo(addr: string): RemoteGeo | null {
    return this.geo === null ? null : this.geo(addr);
  }

  /** Listens to event objects (built once per event, whoever else listens). */
  subscribe(fn: EventListener, types?: Iterable<EventType>): () => void {
    return this.subscribeEvents((e) => fn(e.event()), types);
  }

  /** Listens to BusEvents: for transports that take a serialized form (json(), row()). */
  subscribeEvents(fn: BusListener, types?: Iterable<EventType>): () => void {
    const set = types ? new Set(types) : null;
    this.remove(fn);
    const l: Listening = { fn, types: set, live: true };
    this.listeners.set(fn, l);
    this.walk = [...this.walk, l];
    for (const t of EVENT_TYPES) if (!set || set.has(t)) this.wanted[t]++;
    return () => this.remove(fn);
  }

  private remove(fn: BusListener): void {
    const l = this.listeners.get(fn);
    if (l === undefined) return;
    // A publish() under way walks the array it started with: `live` keeps a listener
    // removed meanwhile from being called (as a Map's iteration skips deleted entries).
    l.live = false;
    this.listeners.delete(fn);
    this.walk = this.walk.filter((x) => x !== l);
    const set = l.types;
    for (const t of EVENT_TYPES) if (!set || set.has(t)) this.wanted[t]--;
  }

  get subscriberCount(): number {
    return this.listeners.size;
  }

  /** True when some listener wants events of this type. */
  wants(type: EventType): boolean {
    return this.wanted[type] > 0;
  }

  /** Counts an event of a type nobody wants, which the publisher did not build. */
  countUnwanted(type: EventType): void {
    this.counts[type]++;
  }

  /** Publishes an event object. */
  publish(e: MonitorEvent): void {
    this.publishEvent(new ObjectEvent(e));
  }

  /** Publishes a BusEvent (the monitor's record views). */
  publishEvent(raw: BusEvent): void {
    const type = raw.type;
    this.counts[type]++;
    const e = this.geo !== null && raw.complete !== true && ENRICHED.has(type) ? new EnrichedEvent(raw, this.enrich) : raw;
    const walk = this.walk;
    for (let i = 0; i < walk.length; i++) {
      const l = walk[i]!;
      if (!l.live || (l.types !== null && !l.types.has(type))) continue;
      try {
        l.fn(e);
      } catch {
        this.remove(l.fn);
      }
    }
  }
}
