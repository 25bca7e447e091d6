// SPDX-License-Identifier: Apache-2.0
// The daemon's event bus: every event (the monitor's connection and process events, the
// load balancer's changes) is published here once and fanned out to subscribers (JSON-RPC
// subscriptions, the D-Bus service). It belongs to the daemon, not to any feature: features
// publish, adapters subscribe, app.ts wires them.
import { EVENT_TYPES, type EventType, type MonitorEvent } from '../contract/events.js';

export type EventListener = (e: MonitorEvent) => void;

// The last event serialized: publish() hands one event to every subscriber in turn, so
// one slot is a full cache (a WeakMap cost more than it saved with one subscriber).
let lastSerialized: MonitorEvent | null = null;
let lastJson = '';
/** An event as JSON, computed once however many subscribers receive it. */
export function eventJson(e: MonitorEvent): string {
  if (e !== lastSerialized) {
    lastJson = JSON.stringify(e);
    lastSerialized = e;
  }
  return lastJson;
}

const zero = (): Record<EventType, number> => Object.fromEntries(EVENT_TYPES.map((t) => [t, 0])) as Record<EventType, number>;

/** Fan-out of events to subscribers. A listener that throws is dropped, not fatal. */
export class EventBus {
  /** Each listener and the event types it wants (all when not said). */
  private readonly listeners = new Map<EventListener, ReadonlySet<EventType> | null>();
  /** How many listeners want each type: events of a type nobody wants need not be built. */
  private readonly wanted = zero();
  /** Events published (or counted without being built) per type. */
  readonly counts = zero();
  /** Records a publisher could not turn into an event (unknown type, short record). */
  undecodable = 0;

  subscribe(fn: EventListener, types?: Iterable<EventType>): () => void {
    const set = types ? new Set(types) : null;
    this.listeners.set(fn, set);
    for (const t of EVENT_TYPES) if (!set || set.has(t)) this.wanted[t]++;
    return () => this.remove(fn);
  }

  private remove(fn: EventListener): void {
    if (!this.listeners.has(fn)) return;
    const set = this.listeners.get(fn)!;
    this.listeners.delete(fn);
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

  publish(e: MonitorEvent): void {
    this.counts[e.type]++;
    for (const [fn, types] of this.listeners) {
      if (types && !types.has(e.type)) continue;
      try {
        fn(e);
      } catch {
        this.remove(fn);
      }
    }
  }
}
