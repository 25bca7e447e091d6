// SPDX-License-Identifier: Apache-2.0
// The Manager's signals: who is subscribed (each connection, with its scope), what they
// are sent (ProcessStarted/ProcessStopped from the event bus, BandwidthChanged from the
// rate sampler, each filtered by the subscriber's scope and unicast to it), and the
// budgets that keep a flood of processes or a backed-up bus connection from growing the
// daemon (dropped signals are counted, never silently lost). The sampler and the event
// subscription run only while someone is subscribed.
import dbus, { type MessageBus, type Variant } from 'dbus-next';
import type { Logger } from 'pino';
import type { MonitorEvent } from '../contract/events.js';
import { MANAGER_IFACE, MANAGER_PATH, MANAGER_SIGNAL, MANAGER_SPEC, outSignature } from '../contract/dbus.js';
import type { ProcessTotals } from '../contract/flows.js';
import { AppError } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import { scopeOf, type AccessGroups } from './callers.js';
import { dictOf, geoDict, IDENTITY_TYPES, type Dict } from './convert.js';
import { LIMITS, talkerDict, visibleRates } from './manager.js';
import type { CallContext } from './object.js';
import { RateTracker, rankTalkers, type Talker } from './rates.js';
import { Subscribers } from './subscribers.js';
import { TalkingProcesses, type StartedVia, type TalkerChange } from './talkers.js';

/** Unsent bytes on the bus connection beyond which signals are dropped (replies never are). */
const MAX_BACKLOG = 8 << 20;

/** ProcessStarted's `details`: the keys known. */
export function startedDetails(via: StartedVia): Dict {
  const d = dictOf(via, { exe: 's', protocol: 's', remoteAddr: 's', remotePort: 'u', ...IDENTITY_TYPES });
  if (via.remoteGeo) d.remoteGeo = new dbus.Variant('a{sv}', geoDict(via.remoteGeo)) as Variant;
  return d;
}

export interface SignalHubOptions {
  bus: MessageBus;
  events: EventBus;
  groups: AccessGroups;
  log: Logger;
  limits: { maxSubscribers: number; maxSubscribersPerUid: number; reservedSubscribers: number; processSignalsPerSec: number; talkerIdleMs: number };
  /** Every process's totals, for the rate sampler. */
  totals(): Promise<ProcessTotals[]>;
  /** Whether a unique name is still on the bus. */
  hasOwner(name: string): Promise<boolean>;
}

export class SignalHub {
  readonly subscribers: Subscribers;
  readonly tracker: RateTracker;
  readonly talking: TalkingProcesses;
  readonly counters = { signalsSent: 0, signalsDropped: 0 };
  readonly refused = { tooManySubscribers: 0, uidLimit: 0 };
  private unsubscribeEvents: (() => void) | null = null;
  private stopped = false;
  /** Executables of the processes in the last sample (the event that starts a process has
   * none). ProcessStarted is sent at once with what is known: holding it back for the next
   * sample to learn the executable delayed it by up to a second and moved it out of the
   * per-second budget it is counted in (test/integration/dbus-signals.test.ts). */
  private exeByPid = new Map<number, string>();

  constructor(private readonly o: SignalHubOptions) {
    this.subscribers = new Subscribers({
      max: o.limits.maxSubscribers, maxPerUid: o.limits.maxSubscribersPerUid, reserved: o.limits.reservedSubscribers,
      processSignalsPerSec: o.limits.processSignalsPerSec,
    });
    this.talking = new TalkingProcesses((c) => this.onTalkerChange(c), { idleMs: o.limits.talkerIdleMs });
    this.tracker = new RateTracker({
      sample: () => o.totals(),
      onTick: (talkers) => this.onTick(talkers),
      onError: (err) => o.log.warn({ err }, 'traffic sample failed'),
    });
  }

  stop(): void {
    this.stopped = true;
    this.deactivate();
    this.subscribers.clear();
    this.tracker.stop();
  }

  subscribe(ctx: CallContext): void {
    const added = this.subscribers.add(ctx.sender, ctx.creds, ctx.scope);
    if (added === 'full') {
      this.refused.tooManySubscribers++;
      throw new AppError('TooManyClients', `at most ${this.subscribers.max} connections may subscribe (some kept for root and the ebpfmon group)`, { limit: this.subscribers.max });
    }
    if (added === 'uidLimit') {
      this.refused.uidLimit++;
      throw new AppError('TooManyClients', `uid ${ctx.creds.uid} already has ${this.o.limits.maxSubscribersPerUid} connections subscribed (the most one user may have)`, { limit: this.o.limits.maxSubscribersPerUid });
    }
    this.activate();
    // It may have disconnected while being identified, its NameOwnerChanged already handled.
    void this.o.hasOwner(ctx.sender).then(
      (has) => !has && this.dropSubscriber(ctx.sender),
      () => undefined,
    );
  }

  unsubscribe(ctx: CallContext): void {
    if (!this.subscribers.has(ctx.sender)) throw new AppError('NotFound', 'this connection is not subscribed');
    this.dropSubscriber(ctx.sender);
  }

  dropSubscriber(sender: string): void {
    if (this.subscribers.remove(sender) && this.subscribers.size === 0) this.deactivate();
  }

  /** The first subscriber: follow events and sample rates. */
  private activate(): void {
    if (this.unsubscribeEvents || this.stopped) return;
    this.unsubscribeEvents = this.o.events.subscribe((e: MonitorEvent) => {
      try {
        this.talking.onEvent(e);
      } catch (err) {
        // The event bus drops a listener that throws; losing the signals silently would be worse.
        this.o.log.error({ err }, 'tracking talking processes failed');
      }
    }, TalkingProcesses.EVENT_TYPES);
    this.tracker.setActive(true);
  }

  /** The last subscriber left: stop following (GetTopTalkers keeps sampling for a while on its own). */
  private deactivate(): void {
    this.unsubscribeEvents?.();
    this.unsubscribeEvents = null;
    this.tracker.setActive(false);
    this.talking.reset();
    this.exeByPid.clear();
  }

  private onTick(talkers: Talker[]): void {
    if (this.subscribers.size === 0) return;
    this.exeByPid = new Map(talkers.flatMap((t) => (t.pid !== null && t.exe ? [[t.pid, t.exe] as const] : [])));
    this.talking.onSample(talkers);
    for (const s of this.subscribers.all()) {
      s.scope = scopeOf(s.creds, this.o.groups);
      const uid = s.scope.seesAll ? undefined : s.creds.uid;
      const top = rankTalkers(talkers, uid, LIMITS.signalTop);
      const key = JSON.stringify(top.map((t) => [t.pid, t.comm, t.txBytesPerSec, t.rxBytesPerSec, t.txBytes, t.rxBytes, t.places.map((p) => [p.remoteAddr, p.txBytes, p.rxBytes])]));
      if (key !== s.lastTop && this.signal(s.sender, MANAGER_SIGNAL.BandwidthChanged, [top.map(talkerDict)])) s.lastTop = key;
      const rates = visibleRates(talkers, uid);
      const rkey = `${rates.tx} ${rates.rx}`;
      if (rkey !== s.lastRates && this.signal(s.sender, MANAGER_SIGNAL.RatesChanged, [rates.tx, rates.rx])) s.lastRates = rkey;
    }
  }

  private onTalkerChange(c: TalkerChange): void {
    if (c.kind === 'started') c.via.exe ??= this.exeByPid.get(c.pid);
    for (const s of this.subscribers.seeing(c.uid)) {
      if (!this.subscribers.take(s)) {
        this.counters.signalsDropped++;
        continue;
      }
      if (c.kind === 'started') this.signal(s.sender, MANAGER_SIGNAL.ProcessStarted, [c.pid, c.comm, c.uid, startedDetails(c.via)]);
      else this.signal(s.sender, MANAGER_SIGNAL.ProcessStopped, [c.pid, c.comm, c.uid, c.txBytes, c.rxBytes]);
    }
  }

  /** A signal to one connection only (the destination header set). */
  private signal(destination: string, member: keyof typeof MANAGER_SPEC.signals, body: unknown[]): boolean {
    const stream = (this.o.bus as unknown as { _connection: { stream?: { writableLength?: number } } })._connection.stream;
    if ((stream?.writableLength ?? 0) > MAX_BACKLOG) {
      this.counters.signalsDropped++;
      return false;
    }
    try {
      this.o.bus.send(new dbus.Message({
        type: dbus.MessageType.SIGNAL, path: MANAGER_PATH, interface: MANAGER_IFACE, member, destination,
        signature: outSignature(MANAGER_SPEC.signals[member]), body,
      }));
      this.counters.signalsSent++;
      return true;
    } catch (err) {
      this.o.log.warn({ err, member, destination }, 'cannot send a D-Bus signal');
      return false;
    }
  }
}
