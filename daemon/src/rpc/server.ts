// SPDX-License-Identifier: Apache-2.0
// The JSON-RPC adapter's transport: JSON-RPC 2.0 over a Unix socket, newline-delimited,
// serving the API (api/, registered by register.ts) and event subscriptions. The socket is
// 0666: access is decided per connection from the peer's credentials (SO_PEERCRED,
// SO_PEERGROUPS).
//
// Any local user may connect, so every resource a connection can make the daemon spend is
// bounded, and nobody can take what root and the ebpfmon group need:
//  - admission: connections per uid, and a share of the connection slots reserved for root
//    and the `ebpfmon` group; an idle connection (no request, no subscription) is closed;
//  - one request line at a time per connection, the items of a batch one after the other:
//    a connection never has more than one call in progress, and the lines it sent ahead wait
//    in a bounded queue (reading pauses beyond it), so memory follows the work a client may
//    have, not what it asks for;
//  - replies: a batch's reply is bounded in bytes (later items get an error instead), and
//    reading pauses while the client does not read its replies;
//  - a client that goes away cancels what it queued;
//  - events: a bounded queue per connection (a slow subscriber loses events and is told);
//  - logs: client mistakes are counted, never logged one by one; daemon faults are logged
//    at a bounded rate.
// Every refusal is counted and reported in `status` (`transports.rpc.refused`).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { createJSONRPCErrorResponse, JSONRPCServer, type JSONRPCResponse } from 'json-rpc-2.0';
import { ERRORS, type ErrorName } from '../contract/errors.js';
import type { RpcStatus } from '../contract/status.js';
import type { BusEvent } from '../events/bus.js';
import { EventQueue, lostLine, type Subscription } from './events.js';
import { toApiError, type Caller } from '../api/index.js';
import * as C from '../sys/libc.js';
import { groupGid } from '../sys/users.js';
import { RateLimitedLog } from '../util/ratelog.js';
import { AppError } from '../errors.js';

export interface RpcLimits {
  maxClients: number;
  maxMessageBytes: number;
  maxSubscriptionsPerClient: number;
  subscriberQueue: number;
  /** The bound for connections of root and the ebpfmon group (default: subscriberQueue). */
  subscriberQueueSeesAll?: number;
  /** Connections one uid may hold at once (root's and the group's included). */
  maxClientsPerUid?: number;
  /** Of maxClients, slots only root and the ebpfmon group may take. */
  reservedClients?: number;
  /** A connection with no request and no subscription for this long is closed (ms). */
  idleTimeoutMs?: number;
  /** JSON-RPC batch size limit. */
  maxBatch?: number;
  /** Request lines received and waiting per connection before reading pauses. */
  maxQueuedLines?: number;
  /** Bytes of one reply (a batch's, all items together) before later items get an error. */
  maxReplyBytes?: number;
}

export interface RpcContext {
  caller: Caller;
  conn: Connection;
}

/** What owns a connection once it carries a stream (capture.start): told when the client
 * sends anything (a request to stop) and when the connection closes. */
export interface StreamOwner {
  onInput(): void;
  onClose(): void;
}

const DEFAULTS = {
  maxClientsPerUid: 16,
  reservedClients: 8,
  idleTimeoutMs: 300_000,
  maxBatch: 64,
  maxQueuedLines: 16,
  maxReplyBytes: 64 << 20,
} as const;

/** Above this many unsent bytes, a connection stops being read (its own replies back up). */
const WRITE_HIGH_WATER = 4 << 20;
/** Notifications wait while this many bytes are unsent to the client (resumed on 'drain'). */
const WRITE_PAUSE = 256 * 1024;
/** Bytes of notifications handed to the socket in one write. */
const WRITE_CHUNK = 64 * 1024;
/** A refused connection is given this long to read why, then closed. */
const REFUSED_LINGER_MS = 1000;

type Refusal = 'tooManyClients' | 'uidLimit' | 'idle' | 'messageTooLarge' | 'invalidRequest' | 'batchTooLarge' | 'replyTooLarge';

let nextConnId = 1;

/** A JSON-RPC 2.0 id: a string, an integer or null. */
function validId(id: unknown): id is string | number | null {
  return id === null || typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id));
}

/**
 * Checks the envelope of one request before the library sees it (it would answer some
 * malformed ones with an internal error, and echo any id). Returns the error to answer
 * with, or null when the request is well-formed.
 */
export function envelopeError(msg: unknown): { id: string | number | null; message: string } | null {
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return { id: null, message: 'a request is an object' };
  const m = msg as Record<string, unknown>;
  const id = 'id' in m && validId(m.id) ? m.id : null;
  if ('id' in m && !validId(m.id)) return { id: null, message: 'id must be a string, an integer or null' };
  if (m.jsonrpc !== '2.0') return { id, message: 'jsonrpc must be "2.0"' };
  if (typeof m.method !== 'string' || m.method.length === 0 || m.method.length > 128) return { id, message: 'method must be a string of 1 to 128 characters' };
  if ('params' in m && (typeof m.params !== 'object' || m.params === null)) return { id, message: 'params must be an object or an array' };
  return null;
}

export class Connection {
  readonly id = nextConnId++;
  readonly subscriptions = new Map<string, () => void>();
  private readonly lines: string[] = [];
  /** Bytes of the lines waiting in `lines`. */
  private queuedBytes = 0;
  private processing = false;
  private buffered = '';
  private closed = false;
  private idleTimer: NodeJS.Timeout | null = null;
  /** Aborted when the client goes away: work it queued is not started. */
  readonly abort = new AbortController();
  /** Set by a method during its request (capture.start): called once the reply is written. */
  private upgradeTo: ((socket: net.Socket | null) => StreamOwner | null) | null = null;
  private inBatch = false;
  /** The connection carries a stream: no more JSON-RPC on it. */
  private stream: StreamOwner | null = null;

  /** Entries this connection's event queue may hold (see notify()). */
  private readonly queueBound: number;

  constructor(readonly socket: net.Socket, readonly caller: Caller, private readonly server: RpcServer) {
    const l = server.limits;
    this.queueBound = caller.seesAll ? (l.subscriberQueueSeesAll ?? l.subscriberQueue) : l.subscriberQueue;
    this.touch();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get streaming(): boolean {
    return this.stream !== null;
  }

  /**
   * Turns the connection into a byte stream after the reply to the current request: every
   * byte after the reply's line is the method's (capture.start: pcapng). `take` gets the
   * socket (null when no reply goes out: an error, or a notification) and returns who owns
   * the stream. Not in a batch: the stream would cut the batch's reply.
   */
  upgradeAfterReply(take: (socket: net.Socket | null) => StreamOwner | null): void {
    if (this.inBatch) throw new AppError('InvalidRequest', 'a streaming method cannot be called in a batch');
    this.upgradeTo = take;
  }

  /** Replies are never dropped: the client asked for them. */
  reply(msg: JSONRPCResponse | JSONRPCResponse[]): void {
    this.write(`${JSON.stringify(msg)}\n`);
  }

  private write(line: string): void {
    if (this.closed) return;
    this.socket.write(line);
    this.updateFlow();
  }

  /**
   * Queues an event for a subscription. The queue is bounded (`subscriberQueue` entries per
   * connection, `subscriberQueueSeesAll` for root and the ebpfmon group): an event that does not fit is counted as lost for its subscription, and
   * the count goes into the stream, as an `events.lost` notification, where the events are
   * missing (before the next event that fits).
   */
  notify(sub: Subscription, e: BusEvent): void {
    if (this.closed) return;
    const q = this.events;
    // A pending loss report takes a place in the queue too, so the bound holds with it.
    if (q.length + (sub.lost > 0 ? 1 : 0) >= this.queueBound) {
      sub.lost++;
      this.server.droppedTotal++;
      return;
    }
    if (sub.lost > 0) {
      q.pushLost(sub); // the gap goes in before this event, where the events are missing
      sub.lost = 0;
    }
    // Each form is built once per event, however many subscriptions take it (a row written
    // as bytes is copied from the first queue that took it).
    q.pushEvent(sub, e);
    // One write per event-loop turn, not one per event: a ring-buffer drain can publish
    // thousands of events at once.
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      setImmediate(() => {
        this.pumpScheduled = false;
        this.pump();
      });
    }
  }

  private pumpScheduled = false;

  /** Writes queued notifications while the socket accepts them (resumed on 'drain'). */
  pump(): void {
    const q = this.events;
    while (!q.empty && !this.closed) {
      if (this.socket.writableLength > WRITE_PAUSE) return;
      const chunk = q.take(WRITE_CHUNK);
      // Once written, the chunk's buffer serves a later take() (see EventQueue.recycle).
      this.socket.write(chunk, () => q.recycle(chunk));
    }
    if (q.empty && !this.closed) {
      // Losses after the last event that fitted: report them now that the queue is empty.
      let tail = '';
      for (const sub of this.subs.values()) {
        if (sub.lost === 0) continue;
        tail += lostLine(sub.id, sub.lost);
        sub.lost = 0;
      }
      if (tail) this.socket.write(tail);
    }
  }

  /** This connection's subscriptions to the event bus, by id. */
  readonly subs = new Map<string, Subscription>();
  private readonly events = new EventQueue();

  /** Pauses reading while this client has too much waiting or unsent. */
  updateFlow(): void {
    if (this.closed || this.stream) return; // a stream's client must always be heard (a stop)
    const busy = this.lines.length >= (this.server.limits.maxQueuedLines ?? DEFAULTS.maxQueuedLines)
      || this.queuedBytes > this.server.limits.maxMessageBytes || this.socket.writableLength > WRITE_HIGH_WATER;
    if (busy) this.socket.pause();
    else this.socket.resume();
  }

  onData(chunk: string): void {
    if (this.stream) return this.stream.onInput();
    this.touch();
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      if (Buffer.byteLength(line) > this.server.limits.maxMessageBytes) return this.tooLarge();
      if (line.trim() === '') continue;
      this.lines.push(line);
      this.queuedBytes += line.length;
    }
    if (Buffer.byteLength(this.buffered) > this.server.limits.maxMessageBytes) return this.tooLarge();
    this.updateFlow();
    void this.process();
  }

  /** Restarts the idle clock (any request; subscriptions keep a connection alive). */
  private touch(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const ms = this.server.limits.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs;
    this.idleTimer = setTimeout(() => {
      if (this.stream) return;
      if (this.subscriptions.size > 0 || this.processing) return this.touch();
      this.server.refuse('idle');
      this.end();
    }, ms);
    this.idleTimer.unref();
  }

  private tooLarge(): void {
    const e = ERRORS.MessageTooLarge;
    this.server.refuse('messageTooLarge');
    this.reply(createJSONRPCErrorResponse(null, e.code, `${e.message}: limit ${this.server.limits.maxMessageBytes} bytes per line`, { limit: this.server.limits.maxMessageBytes }));
    this.end();
  }

  /** Handles the queued lines, one at a time. */
  private async process(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.lines.length > 0 && !this.closed) {
        // A client that does not read its replies gets no more work done for it.
        if (this.socket.writableLength > WRITE_HIGH_WATER) {
          await new Promise<void>((resolve) => {
            const done = () => {
              this.socket.off('drain', done);
              this.socket.off('close', done);
              resolve();
            };
            this.socket.on('drain', done);
            this.socket.on('close', done);
          });
          continue;
        }
        const line = this.lines.shift()!;
        this.queuedBytes -= line.length;
        this.updateFlow();
        await this.handle(line);
        this.touch();
      }
    } finally {
      this.processing = false;
    }
  }

  private error(id: string | number | null, name: ErrorName, message: string = ERRORS[name].message, data?: object): JSONRPCResponse {
    return createJSONRPCErrorResponse(id, ERRORS[name].code, message, data ? { name, ...data } : { name });
  }

  private async handle(line: string): Promise<void> {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.server.refuse('invalidRequest');
      return this.reply(this.error(null, 'ParseError'));
    }
    if (!Array.isArray(msg)) {
      const r = await this.one(msg);
      if (r) this.reply(r);
      const take = this.upgradeTo;
      this.upgradeTo = null;
      if (take) {
        const owner = take(r && 'result' in r && !this.closed ? this.socket : null);
        if (owner) this.startStream(owner);
      }
      return;
    }
    const max = this.server.limits.maxBatch ?? DEFAULTS.maxBatch;
    if (msg.length === 0 || msg.length > max) {
      this.server.refuse('batchTooLarge');
      return this.reply(this.error(null, 'InvalidRequest', `batches hold 1 to ${max} requests`));
    }
    const replies: JSONRPCResponse[] = [];
    this.inBatch = true;
    try {
      await this.batch(msg, replies);
    } finally {
      this.inBatch = false;
    }
    if (replies.length > 0) this.reply(replies);
  }

  private startStream(owner: StreamOwner): void {
    this.stream = owner;
    this.lines.length = 0;
    this.queuedBytes = 0;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.socket.resume();
  }

  private async batch(msg: unknown[], replies: JSONRPCResponse[]): Promise<void> {
    const maxBytes = this.server.limits.maxReplyBytes ?? DEFAULTS.maxReplyBytes;
    let bytes = 0;
    for (const item of msg) {
      if (this.closed) return;
      const id = typeof item === 'object' && item !== null && 'id' in item && validId((item as { id: unknown }).id) ? (item as { id: string | number | null }).id : null;
      let r: JSONRPCResponse | null;
      if (bytes > maxBytes) {
        this.server.refuse('replyTooLarge');
        r = this.error(id, 'MessageTooLarge', `this batch's replies already exceed ${maxBytes} bytes: send the rest in another batch`);
      } else {
        r = await this.one(item);
      }
      if (r) {
        bytes += JSON.stringify(r).length;
        replies.push(r);
      }
    }
  }

  /** One request (or notification): the envelope, then the method. */
  private async one(msg: unknown): Promise<JSONRPCResponse | null> {
    const bad = envelopeError(msg);
    if (bad) {
      this.server.refuse('invalidRequest');
      return this.error(bad.id, 'InvalidRequest', `${ERRORS.InvalidRequest.message}: ${bad.message}`);
    }
    if (this.abort.signal.aborted) return null;
    try {
      return await this.server.rpc.receive(msg as never, { caller: this.caller, conn: this });
    } catch (err) {
      this.server.logFault(err, 'request handling failed');
      return this.error((msg as { id?: string | number | null }).id ?? null, 'Internal');
    }
  }

  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    const stream = this.stream;
    this.stream = null;
    stream?.onClose();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    for (const unsub of this.subscriptions.values()) unsub();
    this.subscriptions.clear();
    this.subs.clear();
    this.events.clear();
    this.lines.length = 0;
    this.queuedBytes = 0;
    this.socket.end();
    // A client that does not read would keep the socket (and its fd) forever.
    setTimeout(() => this.socket.destroy(), REFUSED_LINGER_MS).unref();
  }
}

export function peerCaller(socket: net.Socket, groups: { seeAll: number | null; admin: number | null }): Caller | null {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) return null;
  const cred = Buffer.alloc(12);
  const len = new Uint32Array(new ArrayBuffer(4));
  len[0] = 12;
  if (C.getsockopt(fd, C.SOL_SOCKET, C.SO_PEERCRED, cred, len) !== 0) return null;
  const pid = cred.readInt32LE(0);
  const uid = cred.readUInt32LE(4);
  const gid = cred.readUInt32LE(8);
  const gids = new Set<number>([gid]);
  const gbuf = Buffer.alloc(4 * 1024);
  len[0] = gbuf.length;
  if (C.getsockopt(fd, C.SOL_SOCKET, C.SO_PEERGROUPS, gbuf, len) === 0) {
    for (let i = 0; i + 4 <= len[0]!; i += 4) gids.add(gbuf.readUInt32LE(i));
  }
  const root = uid === 0;
  return {
    uid, gid, pid,
    seesAll: root || (groups.seeAll !== null && gids.has(groups.seeAll)),
    admin: root || (groups.admin !== null && gids.has(groups.admin)),
  };
}

export class RpcServer {
  // The library would print every client mistake to stderr; real faults are logged below.
  readonly rpc = new JSONRPCServer<RpcContext>({ errorListener: () => undefined });
  readonly connections = new Set<Connection>();
  /** Sockets refused at admission, until they close. */
  private readonly refusedSockets = new Set<net.Socket>();
  private readonly perUid = new Map<number, number>();
  readonly refused: Record<Refusal, number> = { tooManyClients: 0, uidLimit: 0, idle: 0, messageTooLarge: 0, invalidRequest: 0, batchTooLarge: 0, replyTooLarge: 0 };
  droppedTotal = 0;
  private server: net.Server | null = null;
  readonly log: Logger;
  private readonly faults: RateLimitedLog;

  constructor(
    readonly socketPath: string,
    readonly limits: RpcLimits,
    private readonly groups: { group: string; adminGroup: string },
    logger: Logger,
    /** Who is calling; tests substitute it, the daemon reads SO_PEERCRED. */
    private readonly identify: (socket: net.Socket, groups: { seeAll: number | null; admin: number | null }) => Caller | null = peerCaller,
  ) {
    this.log = logger.child({ component: 'rpc' });
    this.faults = new RateLimitedLog(this.log, { perIntervalMs: 10_000, burst: 10 });
    this.rpc.mapErrorToJSONRPCErrorResponse = (id, err: unknown) => {
      const { error, internal } = toApiError(err);
      if (internal) this.logFault(err, 'method failed');
      return createJSONRPCErrorResponse(id, error.code, error.message, { name: error.kind, ...error.data });
    };
  }

  /** A daemon-side failure while serving a client: logged, at a bounded rate. */
  logFault(err: unknown, msg: string): void {
    this.faults.error({ err }, msg);
  }

  refuse(why: Refusal): void {
    this.refused[why]++;
  }

  get subscriptionCount(): number {
    let n = 0;
    for (const c of this.connections) n += c.subscriptions.size;
    return n;
  }

  status(): RpcStatus {
    return {
      clients: this.connections.size,
      subscriptions: this.subscriptionCount,
      subscriberDropped: this.droppedTotal,
      refused: { ...this.refused },
      limits: {
        maxClients: this.limits.maxClients,
        maxClientsPerUid: this.limits.maxClientsPerUid ?? DEFAULTS.maxClientsPerUid,
        reservedClients: this.limits.reservedClients ?? DEFAULTS.reservedClients,
      },
    };
  }

  async listen(): Promise<void> {
    fs.mkdirSync(path.dirname(this.socketPath), { recursive: true, mode: 0o755 });
    await removeStaleSocket(this.socketPath);
    const server = net.createServer({ allowHalfOpen: false, pauseOnConnect: true }, (s) => this.accept(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    fs.chmodSync(this.socketPath, 0o666);
    server.on('error', (err) => this.log.error({ err }, 'socket server error'));
  }

  /** Why `caller` may not open another connection now, or null when it may. */
  private admission(caller: Caller): { why: Refusal; name: ErrorName; message: string } | null {
    const privileged = caller.uid === 0 || caller.seesAll;
    const reserved = Math.min(this.limits.reservedClients ?? DEFAULTS.reservedClients, this.limits.maxClients - 1);
    const cap = privileged ? this.limits.maxClients : this.limits.maxClients - reserved;
    if (this.connections.size >= cap) {
      const e = ERRORS.TooManyClients;
      return { why: 'tooManyClients', name: 'TooManyClients', message: `${e.message} (limit ${this.limits.maxClients}${privileged ? '' : `, of which ${reserved} are kept for root and the ${this.groups.group} group`})` };
    }
    const perUid = this.limits.maxClientsPerUid ?? DEFAULTS.maxClientsPerUid;
    if ((this.perUid.get(caller.uid) ?? 0) >= perUid) {
      return { why: 'uidLimit', name: 'TooManyClients', message: `uid ${caller.uid} already has ${perUid} connections open (the most one user may have)` };
    }
    return null;
  }

  private accept(socket: net.Socket): void {
    socket.setEncoding('utf8');
    socket.on('error', () => undefined);
    const caller = this.identify(socket, { seeAll: groupGid(this.groups.group), admin: groupGid(this.groups.adminGroup) });
    if (!caller) {
      socket.destroy();
      return;
    }
    const refusal = this.admission(caller);
    if (refusal) {
      this.refuse(refusal.why);
      // Say why, read nothing, and close soon whatever the client does.
      this.refusedSockets.add(socket);
      socket.once('close', () => this.refusedSockets.delete(socket));
      socket.end(`${JSON.stringify(createJSONRPCErrorResponse(null, ERRORS[refusal.name].code, refusal.message, { name: refusal.name }))}\n`);
      setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref();
      return;
    }
    const conn = new Connection(socket, caller, this);
    this.connections.add(conn);
    this.perUid.set(caller.uid, (this.perUid.get(caller.uid) ?? 0) + 1);
    socket.on('data', (d: string) => conn.onData(d));
    socket.on('drain', () => {
      conn.pump();
      conn.updateFlow();
    });
    socket.once('close', () => {
      conn.end();
      if (this.connections.delete(conn)) {
        const n = (this.perUid.get(caller.uid) ?? 1) - 1;
        if (n > 0) this.perUid.set(caller.uid, n);
        else this.perUid.delete(caller.uid);
      }
    });
    socket.resume();
  }

  /** Stops serving: every connection is closed at once; bounded in time. */
  async close(timeoutMs = 3000): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const c of this.connections) {
      c.end();
      c.socket.destroy();
    }
    for (const s of this.refusedSockets) s.destroy();
    this.connections.clear();
    this.perUid.clear();
    if (server) {
      await Promise.race([
        new Promise<void>((r) => server.close(() => r())),
        new Promise<void>((r) => setTimeout(r, timeoutMs).unref()),
      ]);
    }
    try {
      fs.unlinkSync(this.socketPath);
    } catch {
      /* already gone */
    }
  }
}

/** A socket file left by a dead daemon is removed; one a live daemon answers on is an error. */
async function removeStaleSocket(p: string): Promise<void> {
  if (!fs.existsSync(p)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const s = net.connect(p);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another daemon is listening on ${p}`);
  fs.unlinkSync(p);
}
