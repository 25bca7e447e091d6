// SPDX-License-Identifier: Apache-2.0
// The JSON-RPC adapter: JSON-RPC 2.0 over a Unix socket, newline-delimited, serving the
// API (api/) and event subscriptions. The socket is 0666: access is decided per connection
// from the peer's credentials (SO_PEERCRED, SO_PEERGROUPS).
// Limits keep a hostile or slow client from hurting the daemon: message size, clients,
// requests in flight per connection (reading pauses beyond it), and a bounded event
// queue per connection (a slow subscriber loses events and is told how many).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { createJSONRPCErrorResponse, JSONRPCServer, type JSONRPCResponse } from 'json-rpc-2.0';
import { ERRORS } from '../contract/errors.js';
import { NOTIFICATIONS } from '../contract/methods.js';
import type { MonitorEvent } from '../contract/events.js';
import { eventJson } from '../events/bus.js';
import { toApiError, type Caller } from '../api/index.js';
import * as C from '../sys/libc.js';
import { groupGid } from '../sys/users.js';

export interface RpcLimits {
  maxClients: number;
  maxMessageBytes: number;
  maxSubscriptionsPerClient: number;
  subscriberQueue: number;
  /** JSON-RPC batch size limit. */
  maxBatch?: number;
  /** Requests processed at once per connection before reading pauses. */
  maxInFlight?: number;
}

export interface RpcContext {
  caller: Caller;
  conn: Connection;
}

const MAX_BATCH = 64;
const MAX_IN_FLIGHT = 16;
/** Above this many unsent bytes, a connection stops being read (its own replies back up). */
const WRITE_HIGH_WATER = 4 << 20;

let nextConnId = 1;

export class Connection {
  readonly id = nextConnId++;
  readonly subscriptions = new Map<string, () => void>();
  private queue: string[] = [];
  private readonly lost = new Map<string, number>();
  private inFlight = 0;
  private buffered = '';
  private closed = false;

  constructor(readonly socket: net.Socket, readonly caller: Caller, private readonly server: RpcServer) {}

  /** Replies are never dropped: the client asked for them. */
  reply(msg: JSONRPCResponse | JSONRPCResponse[]): void {
    if (this.closed) return;
    this.socket.write(`${JSON.stringify(msg)}\n`);
    this.updateFlow();
  }

  /** Event notifications go through the bounded queue, written in batches. */
  notify(subscription: string, event: MonitorEvent): void {
    if (this.closed) return;
    if (this.queue.length >= this.server.limits.subscriberQueue) {
      this.lost.set(subscription, (this.lost.get(subscription) ?? 0) + 1);
      this.server.droppedTotal++;
      return;
    }
    // The event's JSON is built once for every subscriber (eventJson caches it).
    this.queue.push(`{"jsonrpc":"2.0","method":"${NOTIFICATIONS.event}","params":{"subscription":"${subscription}","event":${eventJson(event)}}}\n`);
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

  /** Writes queued notifications while the socket accepts them. */
  pump(): void {
    while (this.queue.length > 0 && !this.closed) {
      if (this.socket.writableLength > 256 * 1024) return; // resume on 'drain'
      let n = 0;
      let bytes = 0;
      while (n < this.queue.length && bytes < 64 * 1024) bytes += this.queue[n++]!.length;
      this.socket.write(n === 1 ? this.queue[0]! : this.queue.slice(0, n).join(''));
      this.queue.splice(0, n);
    }
    if (this.queue.length === 0 && this.lost.size > 0) {
      for (const [subscription, lost] of this.lost) {
        this.socket.write(`${JSON.stringify({ jsonrpc: '2.0', method: NOTIFICATIONS.lost, params: { subscription, lost } })}\n`);
      }
      this.lost.clear();
    }
  }

  /** Pauses reading while this client has too much in flight or unsent. */
  updateFlow(): void {
    const busy = this.inFlight >= (this.server.limits.maxInFlight ?? MAX_IN_FLIGHT) || this.socket.writableLength > WRITE_HIGH_WATER;
    if (busy) this.socket.pause();
    else if (!this.closed) this.socket.resume();
  }

  onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      if (Buffer.byteLength(line) > this.server.limits.maxMessageBytes) return this.tooLarge();
      if (line.trim() === '') continue;
      void this.handle(line);
    }
    if (Buffer.byteLength(this.buffered) > this.server.limits.maxMessageBytes) this.tooLarge();
  }

  private tooLarge(): void {
    const e = ERRORS.MessageTooLarge;
    this.reply(createJSONRPCErrorResponse(null, e.code, `${e.message}: limit ${this.server.limits.maxMessageBytes} bytes per line`, { limit: this.server.limits.maxMessageBytes }));
    this.end();
  }

  private async handle(line: string): Promise<void> {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      return this.reply(createJSONRPCErrorResponse(null, ERRORS.ParseError.code, ERRORS.ParseError.message));
    }
    if (Array.isArray(msg) && (msg.length === 0 || msg.length > (this.server.limits.maxBatch ?? MAX_BATCH))) {
      return this.reply(createJSONRPCErrorResponse(null, ERRORS.InvalidRequest.code, `batches hold 1 to ${this.server.limits.maxBatch ?? MAX_BATCH} requests`));
    }
    this.inFlight++;
    this.updateFlow();
    try {
      const res = await this.server.rpc.receive(msg as never, { caller: this.caller, conn: this });
      if (res !== null && !(Array.isArray(res) && res.length === 0)) this.reply(res);
    } catch (err) {
      this.server.log.error({ err }, 'request handling failed');
      this.reply(createJSONRPCErrorResponse(null, ERRORS.Internal.code, ERRORS.Internal.message));
    } finally {
      this.inFlight--;
      this.updateFlow();
    }
  }

  end(): void {
    if (this.closed) return;
    this.closed = true;
    for (const unsub of this.subscriptions.values()) unsub();
    this.subscriptions.clear();
    this.queue = [];
    this.socket.end();
    this.socket.destroySoon?.();
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
  // The library would print every client mistake to stderr; real faults are logged in the error mapping below.
  readonly rpc = new JSONRPCServer<RpcContext>({ errorListener: () => undefined });
  readonly connections = new Set<Connection>();
  droppedTotal = 0;
  private server: net.Server | null = null;
  readonly log: Logger;

  constructor(
    readonly socketPath: string,
    readonly limits: RpcLimits,
    private readonly groups: { group: string; adminGroup: string },
    logger: Logger,
    /** Who is calling; tests substitute it, the daemon reads SO_PEERCRED. */
    private readonly identify: (socket: net.Socket, groups: { seeAll: number | null; admin: number | null }) => Caller | null = peerCaller,
  ) {
    this.log = logger.child({ component: 'rpc' });
    this.rpc.mapErrorToJSONRPCErrorResponse = (id, err: unknown) => {
      const { error, internal } = toApiError(err);
      if (internal) this.log.error({ err }, 'method failed');
      return createJSONRPCErrorResponse(id, error.code, error.message, { name: error.kind, ...error.data });
    };
  }

  get subscriptionCount(): number {
    let n = 0;
    for (const c of this.connections) n += c.subscriptions.size;
    return n;
  }

  async listen(): Promise<void> {
    fs.mkdirSync(path.dirname(this.socketPath), { recursive: true, mode: 0o755 });
    await removeStaleSocket(this.socketPath);
    const server = net.createServer({ allowHalfOpen: false, pauseOnConnect: false }, (s) => this.accept(s));
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

  private accept(socket: net.Socket): void {
    socket.setEncoding('utf8');
    socket.on('error', () => undefined);
    if (this.connections.size >= this.limits.maxClients) {
      const e = ERRORS.TooManyClients;
      socket.end(`${JSON.stringify(createJSONRPCErrorResponse(null, e.code, `${e.message} (limit ${this.limits.maxClients})`))}\n`);
      return;
    }
    const caller = this.identify(socket, { seeAll: groupGid(this.groups.group), admin: groupGid(this.groups.adminGroup) });
    if (!caller) {
      socket.destroy();
      return;
    }
    const conn = new Connection(socket, caller, this);
    this.connections.add(conn);
    socket.on('data', (d: string) => conn.onData(d));
    socket.on('drain', () => {
      conn.pump();
      conn.updateFlow();
    });
    socket.on('close', () => {
      conn.end();
      this.connections.delete(conn);
    });
  }

  async close(): Promise<void> {
    for (const c of this.connections) {
      c.end();
      c.socket.destroy();
    }
    this.connections.clear();
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
    this.server = null;
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
