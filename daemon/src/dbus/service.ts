// SPDX-License-Identifier: Apache-2.0
// The D-Bus adapter: org.ebpfmon1 with org.ebpfmon1.Manager at /org/ebpfmon1 and
// org.ebpfmon1.LoadBalancer at /org/ebpfmon1/lb and org.ebpfmon1.Capture at
// /org/ebpfmon1/capture (docs/dbus.md, docs/org.ebpfmon1.xml), over
// the API (api/) and the daemon's event bus.
//
// Every call is dispatched here (not by dbus-next, which hides the sender): the
// signature is checked against schema.ts, the caller's credentials are looked up once per
// connection, reads are scoped to the caller's uid unless it is root or in the ebpfmon
// group, and errors are the table's (contract/errors.ts). Signals are unicast to each
// subscriber, filtered by its scope (subscribers.ts says why). Limits keep a flooding or
// hostile caller from growing the daemon or starving others: calls are served round-robin
// across connections with a bounded queue each, and subscribers, process signals per
// subscriber per second and reply sizes (manager.ts LIMITS) are bounded.
import dbus, { type Message, type MessageBus } from 'dbus-next';
import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { ERRORS } from '../contract/errors.js';
import { AppError } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import { SYSTEM_CALLER, type Caller, type MethodTable } from '../api/index.js';
import type { DbusStatus, StatusResult } from '../contract/status.js';
import type { ProcessTotals } from '../contract/flows.js';
import { DEFAULT_PLACES } from '../contract/geo.js';
import { connectBus, toDBusError, withTimeout } from './bus.js';
import { approxSize } from './convert.js';
import { Callers, scopeOf, type AccessGroups } from './callers.js';
import { lbObject } from './lb.js';
import { captureObject } from './capture.js';
import { managerObject } from './manager.js';
import { SignalHub } from './signals.js';
import {
  BUS_NAME, FDO, FDO_ERROR, FLAG_ALLOW_INTERACTIVE_AUTHORIZATION, FLAG_NO_REPLY_EXPECTED,
} from '../contract/dbus.js';
import { SpecInterface, type CallContext, type ObjectImpl } from './object.js';
import { polkitCheck, type Authorize } from './polkit.js';
import { inSignature, outSignature, type MethodSpec } from '../contract/dbus.js';
import { CallScheduler } from './scheduler.js';

export interface DbusLimits {
  /** Connections subscribed at once (TooManyClients beyond). */
  maxSubscribers: number;
  /** Of those, one user's (root's and the group's included). */
  maxSubscribersPerUid: number;
  /** Subscriber slots only root and the ebpfmon group may take. */
  reservedSubscribers: number;
  /** Calls of one connection waiting or in progress (Busy beyond). */
  maxQueuedPerCaller: number;
  /** Calls of one connection in progress at once (waiting for polkit, a rate sample...). */
  maxConcurrentPerCaller: number;
  /** ProcessStarted + ProcessStopped per subscriber per second (dropped and counted beyond). */
  processSignalsPerSec: number;
  /** How long per-process totals and monitor status are reused between reads (ms). */
  cacheMs: number;
  /** A process whose flows are quiet this long stops talking (ms). */
  talkerIdleMs: number;
}

export const DEFAULT_DBUS_LIMITS: DbusLimits = {
  maxSubscribers: 256,
  maxSubscribersPerUid: 16,
  reservedSubscribers: 16,
  maxQueuedPerCaller: 64,
  maxConcurrentPerCaller: 4,
  processSignalsPerSec: 100,
  cacheMs: 250,
  talkerIdleMs: 5000,
};

export interface DbusServiceOptions {
  /** The API the members call (flows.list, processes.list, status, lb.*). */
  methods: MethodTable;
  /** The daemon's event bus (process start/stop signals follow it). */
  bus: EventBus;
  /** The load balancer is configured; without it /org/ebpfmon1/lb answers NotAvailable. */
  lbAvailable: boolean;
  logger: Logger;
  version: string;
  /** Group names, as the socket's access settings (config `access`). */
  groups: AccessGroups;
  /** A bus address ("unix:path=..."); default the system bus. */
  address?: string;
  /** Polkit decision for a caller; default CheckAuthorization on the same bus (unreachable: denied). */
  authorize?: Authorize;
  limits?: Partial<DbusLimits>;
  /** The bus connection was lost (the bus daemon restarted or closed it). */
  onDisconnect?: (err: Error) => void;
}

export type DbusServiceStats = DbusStatus;

export interface DbusService {
  /** This connection's unique name on the bus. */
  readonly uniqueName: string;
  stats(): DbusServiceStats;
  stop(): Promise<void>;
}

/** Half the system bus's message limit (32 MiB): a larger reply is refused with MessageTooLarge. */
export const MAX_REPLY_BYTES = 16 << 20;

class Service implements DbusService {
  private readonly log: Logger;
  private readonly limits: DbusLimits;
  private readonly callers: Callers;
  private readonly signals: SignalHub;
  private readonly objects = new Map<string, ObjectImpl>();
  private readonly scheduler: CallScheduler;
  private readonly authorize: Authorize;
  private readonly startedAt = new Date();
  private stopped = false;
  private disconnected = false;
  private counters = { calls: 0, errors: 0 };
  private busyRefused = 0;

  constructor(private readonly bus: MessageBus, private readonly opts: DbusServiceOptions) {
    this.log = opts.logger.child({ component: 'dbus' });
    this.limits = { ...DEFAULT_DBUS_LIMITS, ...opts.limits };
    this.scheduler = new CallScheduler(this.limits);
    this.callers = new Callers(bus);
    this.authorize = opts.authorize ?? ((sender, action, o) => polkitCheck(this.bus, sender, action, o));
    this.signals = new SignalHub({
      bus, events: opts.bus, groups: opts.groups, log: this.log, limits: this.limits,
      totals: () => this.allTotals(),
      hasOwner: async (name) => (await this.busCall('NameHasOwner', 's', [name]))?.body[0] !== false,
    });
    const totals = this.cached(() => this.allTotals());
    const status = this.cached(async (): Promise<StatusResult> => opts.methods.status.run(undefined, SYSTEM_CALLER));
    const manager = managerObject({
      methods: opts.methods, version: opts.version, startedAt: this.startedAt, tracker: this.signals.tracker, totals, status,
      subscribe: (ctx) => this.signals.subscribe(ctx),
      unsubscribe: (ctx) => this.signals.unsubscribe(ctx),
      signalsDropped: () => this.signals.counters.signalsDropped,
    });
    const lb = lbObject(opts.methods, opts.lbAvailable);
    const capture = captureObject(opts.methods, async () => (await status()).capture?.available === true);
    for (const o of [manager, lb, capture] as ObjectImpl[]) this.objects.set(o.path, o);
  }

  /** Every process's totals with its top places (reads are filtered per caller from one shared walk). */
  private async allTotals(): Promise<ProcessTotals[]> {
    return (await this.opts.methods['processes.list'].run({ uid: undefined, limit: Number.MAX_SAFE_INTEGER, by: 'process', identity: undefined, places: DEFAULT_PLACES }, SYSTEM_CALLER)).processes;
  }

  get uniqueName(): string {
    return (this.bus as unknown as { name: string }).name;
  }

  async start(): Promise<void> {
    this.bus.on('error', (err: unknown) => this.log.error({ err }, 'D-Bus connection error'));
    // dbus-next reports a closed bus connection only on its internal connection object.
    (this.bus as unknown as { _connection: EventEmitter })._connection.once('end', () => {
      if (this.stopped) return;
      const err = new Error('the bus closed the connection');
      this.log.error({ err }, 'lost the D-Bus connection');
      this.shutdownLocal();
      this.opts.onDisconnect?.(err);
    });
    for (const o of this.objects.values()) this.bus.export(o.path, new SpecInterface(o.spec));
    this.bus.addMethodHandler(this.dispatch);
    this.bus.on('message', this.onMessage);
    // Disconnected callers: forget their credentials and subscription (arg2='' matches only departures).
    await this.busCall('AddMatch', 's', [`type='signal',sender='${FDO.name}',path='${FDO.path}',interface='${FDO.iface}',member='NameOwnerChanged',arg2=''`]);
    let reply: number;
    try {
      reply = await withTimeout(this.bus.requestName(BUS_NAME, dbus.NameFlag.DO_NOT_QUEUE), 10_000, 'RequestName');
    } catch (err) {
      throw new Error(`cannot own ${BUS_NAME}: ${(err as { text?: string }).text ?? (err as Error).message}`);
    }
    if (reply !== dbus.RequestNameReply.PRIMARY_OWNER && reply !== dbus.RequestNameReply.ALREADY_OWNER) {
      throw new Error(`cannot own ${BUS_NAME}: another process owns it (is a second daemon running?)`);
    }
    this.log.info({ name: BUS_NAME, unique: this.uniqueName, address: this.opts.address || 'system bus' }, 'D-Bus service ready');
  }

  stats(): DbusServiceStats {
    return {
      callers: this.callers.size, subscribers: this.signals.subscribers.size, inFlight: this.scheduler.size, ...this.counters,
      signalsSent: this.signals.counters.signalsSent, signalsDropped: this.signals.counters.signalsDropped,
      sampling: this.signals.tracker.running, talking: this.signals.talking.size,
      refused: { ...this.signals.refused, busy: this.busyRefused },
    };
  }

  async stop(): Promise<void> {
    if (this.disconnected) return;
    if (!this.stopped) {
      this.shutdownLocal();
      try {
        await withTimeout(this.bus.releaseName(BUS_NAME), 2000, 'ReleaseName');
      } catch {
        /* the bus is gone or slow: disconnecting releases the name anyway */
      }
    }
    this.disconnected = true;
    this.bus.disconnect();
  }

  /** Stops everything that runs on its own; the connection is the caller's to close. */
  private shutdownLocal(): void {
    this.stopped = true;
    this.bus.removeMethodHandler(this.dispatch);
    this.bus.off('message', this.onMessage);
    this.signals.stop();
    this.scheduler.close();
  }

  // --- dispatch ----------------------------------------------------------------------

  /** dbus-next method handler: true when the call is ours (answered asynchronously). */
  private readonly dispatch = (msg: Message): boolean => {
    if (this.stopped) return false;
    const obj = this.objects.get(msg.path);
    if (!obj) return false;
    const iface = msg.interface;
    // Introspect and Ping are dbus-next's (they need no caller).
    if (iface === FDO.introspectable || iface === FDO.peer) return false;
    if (iface === FDO.properties) {
      this.schedule(msg, `Properties.${msg.member}`, () => this.properties(msg, obj));
      return true;
    }
    if (iface && iface !== obj.spec.name) return false;
    const spec = Object.hasOwn(obj.spec.methods, msg.member) ? (obj.spec.methods as Record<string, MethodSpec>)[msg.member] : undefined;
    if (!spec) {
      this.replyError(msg, new dbus.DBusError(ERRORS.MethodNotFound.dbus, `${obj.spec.name} has no method ${msg.member}`));
      return true;
    }
    this.schedule(msg, msg.member, async () => {
      this.checkSignature(msg, inSignature(spec), `${msg.member}(${spec.in.map((a) => `${a.type} ${a.name}`).join(', ')})`);
      const ctx = await this.context(msg);
      const result = await obj.methods[msg.member]!(ctx, msg.body);
      return { signature: outSignature(spec), body: spec.out.length === 0 ? [] : spec.out.length === 1 ? [result] : (result as unknown[]) };
    });
    return true;
  };

  /** Queues a call behind the caller's earlier ones (scheduler.ts: round-robin across callers). */
  private schedule(msg: Message, what: string, fn: () => Promise<{ signature: string; body: unknown[] }>): void {
    if (!this.scheduler.add(msg.sender, () => this.run(msg, what, fn))) {
      this.busyRefused++;
      this.replyError(msg, new AppError('Busy', `${this.limits.maxQueuedPerCaller} calls of this connection are already waiting or in progress`));
    }
  }

  /** Runs one call and answers it. */
  private async run(msg: Message, what: string, fn: () => Promise<{ signature: string; body: unknown[] }>): Promise<void> {
    this.counters.calls++;
    const t0 = performance.now();
    try {
      const { signature, body } = await fn();
      if (this.stopped || msg.flags & FLAG_NO_REPLY_EXPECTED) return;
      if (approxSize(body) > MAX_REPLY_BYTES) {
        throw new AppError('MessageTooLarge', `the reply would exceed ${MAX_REPLY_BYTES >> 20} MiB, more than a bus message may carry: ask for less (a smaller limit or a narrower filter)`);
      }
      try {
        this.bus.send(dbus.Message.newMethodReturn(msg, signature, body));
      } catch (err) {
        // A reply dbus-next cannot marshal is a bug here, not the caller's: answer Internal.
        this.replyError(msg, err, what);
      }
    } catch (err) {
      this.replyError(msg, err, what);
    } finally {
      this.log.debug({ method: what, sender: msg.sender, durationMs: Math.round((performance.now() - t0) * 100) / 100 }, 'D-Bus call');
    }
  }

  private replyError(msg: Message, err: unknown, what?: string): void {
    const { error, internal } = toDBusError(err);
    this.counters.errors++;
    if (internal) this.log.error({ err, method: what, sender: msg.sender }, 'D-Bus method failed');
    if (this.stopped || msg.flags & FLAG_NO_REPLY_EXPECTED) return;
    try {
      // dbus-next's typings declare the first argument a string; it is the call being answered.
      this.bus.send(dbus.Message.newError(msg as unknown as string, error.type, error.text));
    } catch {
      /* the connection is gone */
    }
  }

  private checkSignature(msg: Message, expected: string, shape: string): void {
    const got = msg.signature || '';
    if (got !== expected) {
      throw new AppError('InvalidParams', `${shape} takes arguments of type (${expected}), got (${got})`, { field: 'signature', value: got, expected });
    }
  }

  private async context(msg: Message): Promise<CallContext> {
    let creds;
    try {
      creds = await this.callers.get(msg.sender);
    } catch (err) {
      // Who is calling decides what it may see: when the bus cannot say, the answer is no.
      this.log.warn({ err, sender: msg.sender }, 'cannot identify a D-Bus caller');
      throw new AppError('PermissionDenied', 'cannot identify the caller');
    }
    const scope = scopeOf(creds, this.opts.groups);
    const caller: Caller = { uid: creds.uid, gid: null, pid: creds.pid, seesAll: scope.seesAll, admin: scope.admin };
    return {
      sender: msg.sender, creds, scope, caller,
      uid: scope.seesAll ? undefined : creds.uid,
      requireAuthorization: (action) => this.requireAuthorization(msg, scope.admin, action),
    };
  }

  private async requireAuthorization(msg: Message, admin: boolean, action: string): Promise<void> {
    if (admin) return;
    let ok = false;
    try {
      ok = await this.authorize(msg.sender, action, { interactive: (msg.flags & FLAG_ALLOW_INTERACTIVE_AUTHORIZATION) !== 0 });
    } catch (err) {
      this.log.warn({ err, sender: msg.sender, action }, 'polkit check failed: denying');
    }
    if (!ok) {
      throw new AppError('PermissionDenied', `not authorized for ${action}: needs root, the ${this.opts.groups.adminGroup} group or polkit authorization`, { action });
    }
  }

  private async properties(msg: Message, obj: ObjectImpl): Promise<{ signature: string; body: unknown[] }> {
    const props = obj.spec.properties as Record<string, { type: string }>;
    const known = (name: unknown): name is string => typeof name === 'string' && Object.hasOwn(props, name);
    const ours = (iface: unknown) => iface === obj.spec.name || iface === '';
    switch (msg.member) {
      case 'Get': {
        this.checkSignature(msg, 'ss', 'Get(s interface, s property)');
        const [iface, name] = msg.body as [string, string];
        if (!ours(iface) || !known(name)) throw new dbus.DBusError(FDO_ERROR.UnknownProperty, `no property ${iface}.${name} on ${obj.path}`);
        const ctx = await this.context(msg);
        return { signature: 'v', body: [new dbus.Variant(props[name]!.type, await obj.properties[name]!(ctx))] };
      }
      case 'GetAll': {
        this.checkSignature(msg, 's', 'GetAll(s interface)');
        const [iface] = msg.body as [string];
        if (iface === FDO.properties || iface === FDO.introspectable || iface === FDO.peer) return { signature: 'a{sv}', body: [{}] };
        if (!ours(iface)) throw new dbus.DBusError(FDO_ERROR.UnknownInterface, `no interface ${iface} on ${obj.path}`);
        const ctx = await this.context(msg);
        const all: Record<string, unknown> = {};
        for (const [name, p] of Object.entries(props)) all[name] = new dbus.Variant(p.type, await obj.properties[name]!(ctx));
        return { signature: 'a{sv}', body: [all] };
      }
      case 'Set': {
        this.checkSignature(msg, 'ssv', 'Set(s interface, s property, v value)');
        const [iface, name] = msg.body as [string, string];
        if (ours(iface) && known(name)) throw new dbus.DBusError(FDO_ERROR.PropertyReadOnly, `${obj.spec.name}.${name} is read-only`);
        throw new dbus.DBusError(FDO_ERROR.UnknownProperty, `no property ${iface}.${name} on ${obj.path}`);
      }
      default:
        throw new dbus.DBusError(ERRORS.MethodNotFound.dbus, `${FDO.properties} has no method ${msg.member}`);
    }
  }

  private async busCall(member: string, signature: string, body: unknown[]): Promise<Message | null> {
    return withTimeout(this.bus.call(new dbus.Message({ destination: FDO.name, path: FDO.path, interface: FDO.iface, member, signature, body })), 10_000, member);
  }

  /** Reused briefly so that a burst of property reads costs one flow-table dump. */
  /** A read shared by every caller for cacheMs (concurrent callers share one table walk);
   * a failed read is not kept. */
  private cached<T>(fn: () => Promise<T>): () => Promise<T> {
    let value: Promise<T> | undefined;
    let at = -Infinity;
    return () => {
      const now = Date.now();
      if (value === undefined || now - at >= this.limits.cacheMs) {
        const p = fn();
        value = p;
        at = now;
        p.catch(() => {
          if (value === p) value = undefined;
        });
      }
      return value;
    };
  }

  // --- departures ----------------------------------------------------------------------

  private readonly onMessage = (msg: Message): void => {
    if (msg.type !== dbus.MessageType.SIGNAL || msg.sender !== FDO.name || msg.interface !== FDO.iface || msg.member !== 'NameOwnerChanged') return;
    const [name, , newOwner] = msg.body as [string, string, string];
    if (!name.startsWith(':') || newOwner !== '') return;
    this.callers.forget(name);
    this.signals.dropSubscriber(name);
    this.scheduler.drop(name);
  };
}

/**
 * Connects to the bus, exports both objects and owns org.ebpfmon1. Rejects when the bus
 * cannot be reached or the name cannot be owned (policy, or another daemon has it).
 */
export async function startDbusService(opts: DbusServiceOptions): Promise<DbusService> {
  const bus = await connectBus(opts.address);
  const service = new Service(bus, opts);
  try {
    await service.start();
  } catch (err) {
    await service.stop().catch(() => undefined);
    throw err;
  }
  return service;
}

export type { Authorize, AuthorizeOptions } from './polkit.js';
export type { AccessGroups } from './callers.js';
