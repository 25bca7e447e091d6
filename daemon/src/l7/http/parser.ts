// SPDX-License-Identifier: Apache-2.0
// HTTP/1.x exchanges of one connection, from the two directions' captured bytes.
//
// Written here rather than with a library (llhttp is internal to Node; http-parser-js and
// the like parse one message stream that is whole): the input has holes (bytes the kernel
// did not copy, segments lost), one direction carries requests and the other responses,
// and every request must be paired with its response across keep-alive and pipelining.
// What is kept per connection is bounded: one line buffer per direction (a line over
// MAX_LINE bytes is counted as too long and dropped, never kept) and at most MAX_PENDING
// requests waiting for their response.
//
// Pairing: responses come back in request order (RFC 9112 9.3.2), so FIFO. Where the
// transport gives acknowledgment numbers (TCP) they keep pairing right after a loss: a
// response is sent only once its request has been received, so it acknowledges the
// request's last byte. After a lost stretch of the response direction the response that
// follows belongs to the latest request its acknowledgment covers; the earlier ones are
// reported unanswered (their responses were in the lost bytes). A lost request is never
// paired with the next request's response: the response does not acknowledge a request
// sent after it. So a loss costs the exchanges it touched, never the pairing of later ones.
import { seqDiff, Stream, type Piece, type StreamCounters, type StreamLimits, type StreamSink, DEFAULT_STREAM_LIMITS } from '../stream.js';

/** Longest request line, status line, header line or chunk-size line kept. */
export const MAX_LINE = 8 * 1024;
/** Requests waiting for a response per connection (pipelining depth). */
export const MAX_PENDING = 16;
const MAX_HEADERS_BYTES = 64 * 1024;

export type ExchangeFlag =
  | 'request-line-too-long' // over MAX_LINE: method kept, target not
  | 'request-incomplete'    // part of the request head or body was not seen
  | 'response-incomplete'   // part of the response head or body was not seen
  | 'unanswered'            // no response: lost, or the connection ended first
  | 'upgraded';             // 101 Switching Protocols or CONNECT: HTTP stopped here

export interface HttpExchange {
  method: string;
  /** Host header (or the authority of an absolute-form target), lower case. */
  host?: string;
  /** Request target's path; the query string only with keepQuery. Absent when too long. */
  path?: string;
  /** HTTP version of the request ("1.0" or "1.1"). */
  version?: string;
  status?: number;
  /** Request head + body bytes as sent (captured or not). */
  requestBytes: number;
  /** Response head + body bytes. */
  responseBytes: number;
  requestStartNs: number;
  requestEndNs: number;
  responseStartNs?: number;
  responseEndNs?: number;
  /** Time from the request's last byte to the response's first byte. */
  ttfbNs?: number;
  tls: boolean;
  flags: ExchangeFlag[];
}

export interface HttpCounters extends StreamCounters {
  requests: number;
  responses: number;
  exchanges: number;
  linesTooLong: number;
  /** Times a direction lost its place and searched for the next message start. */
  desyncs: number;
  /** Responses with no request to pair with (request not seen or lost). */
  orphanResponses: number;
  /** Requests given up on: no response, or the pending queue was full. */
  unanswered: number;
  pendingOverflow: number;
  /** Interim (1xx) responses skipped. */
  interim: number;
}

export function newHttpCounters(): HttpCounters {
  return {
    duplicates: 0, reordered: 0, holesLost: 0, bytesLost: 0, bytesUncaptured: 0,
    requests: 0, responses: 0, exchanges: 0, linesTooLong: 0, desyncs: 0, orphanResponses: 0,
    unanswered: 0, pendingOverflow: 0, interim: 0,
  };
}

export interface HttpParserOptions {
  keepQuery?: boolean;
  tls?: boolean;
  onExchange: (e: HttpExchange) => void;
  counters: HttpCounters;
  streamLimits?: StreamLimits;
}

const METHODS = new Set(['GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE', 'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'REPORT', 'SEARCH', 'PURGE']);
const LF = 10;

/** Whether `b` (the first bytes at a line start) can begin a request or response line. */
export function looksLikeStart(b: Uint8Array, off = 0): 'request' | 'response' | 'maybe' | null {
  const n = Math.min(b.length - off, 8);
  const s = latin1(b, off, off + n);
  if ('HTTP/1.'.startsWith(s.slice(0, 7))) return n >= 7 ? 'response' : 'maybe';
  const sp = s.indexOf(' ');
  if (sp > 0) return METHODS.has(s.slice(0, sp)) ? 'request' : null;
  for (const m of METHODS) if (m.startsWith(s)) return n >= m.length + 1 ? null : 'maybe';
  return null;
}

type Role = 'request' | 'response';
type Mode = 'start' | 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailer' | 'eof-body' | 'desync' | 'tunnel';

interface Pending {
  ex: HttpExchange;
  /** Sequence number after the request's last byte (for acknowledgment matching). */
  endSeq: number | undefined;
  startSeq: number | undefined;
  done: boolean;
}

/** Message being read in one direction. */
interface Msg {
  startNs: number;
  startSeq: number;
  ack: number | undefined;
  bytes: number;
  incomplete: boolean;
  tooLong: boolean;
  // start line
  method?: string;
  target?: string;
  version?: string;
  status?: number;
  // headers we act on
  host?: string;
  contentLength?: number;
  badLength?: boolean;
  chunked?: boolean;
  headerBytes: number;
  pending?: Pending; // requests: their queue entry; responses: the request paired
}

class Direction implements StreamSink {
  role: Role | undefined;
  mode: Mode = 'start';
  private line: Uint8Array = new Uint8Array(256);
  private lineLen = 0;
  private lineTooLong = false;
  /** Bytes left in a body or chunk. */
  private remaining = 0;
  msg: Msg | undefined;
  /** This direction lost its place (desync) since its last paired response: messages
   * may be missing, so FIFO pairing cannot be trusted for the next response. */
  lostSince = false;
  /** Desync: true when the next byte is at a line start. */
  private atLineStart = true;
  readonly stream: Stream;
  lastTsNs = 0;

  constructor(private readonly conn: HttpFlowParser, counters: StreamCounters, limits: StreamLimits) {
    this.stream = new Stream(this, counters, limits);
  }

  // --- StreamSink -------------------------------------------------------------------------

  data(bytes: Uint8Array, seq: number, tsNs: number, ack: number | undefined): void {
    this.lastTsNs = tsNs;
    let i = 0;
    while (i < bytes.length && this.mode !== 'tunnel') {
      i = this.step(bytes, i, (seq + i) >>> 0, tsNs, ack);
    }
  }

  hole(n: number, _why: 'uncaptured' | 'lost', seq: number, tsNs: number): void {
    this.lastTsNs = tsNs;
    switch (this.mode) {
      case 'body':
      case 'chunk-data': {
        const take = Math.min(n, this.remaining);
        this.msg!.bytes += take;
        this.remaining -= take;
        if (take === n) {
          if (this.remaining === 0) this.afterBodyPart(tsNs, seq + n);
          return;
        }
        // The hole runs past the body: the message ends in it (its length was known, so it
        // is complete), and whatever follows starts unseen.
        this.finishMessage(tsNs, (seq + take) >>> 0);
        this.enterDesync();
        return;
      }
      case 'eof-body':
        this.msg!.bytes += n;
        return;
      case 'tunnel':
      case 'desync':
        this.atLineStart = true;
        return;
      default:
        if (this.mode === 'start' && this.lineLen === 0 && !this.lineTooLong) {
          // Between messages: whole messages may be in the hole.
          this.enterDesync();
          return;
        }
        // Inside a head, a chunk-size line or trailers: the message's framing is gone.
        if (this.msg) {
          this.msg.bytes += n;
          this.msg.incomplete = true;
          this.finishMessage(tsNs, (seq + n) >>> 0);
        }
        this.enterDesync();
    }
  }

  // --- parsing ----------------------------------------------------------------------------

  private enterDesync(): void {
    if (this.mode !== 'desync') this.conn.counters.desyncs++;
    this.lostSince = true;
    this.mode = 'desync';
    this.msg = undefined;
    this.lineLen = 0;
    this.lineTooLong = false;
    this.atLineStart = true;
  }

  /** Consumes bytes from `i`; returns the index after what it used. */
  private step(b: Uint8Array, i: number, seq: number, tsNs: number, ack: number | undefined): number {
    switch (this.mode) {
      case 'body':
      case 'chunk-data': {
        const take = Math.min(b.length - i, this.remaining);
        this.msg!.bytes += take;
        this.remaining -= take;
        if (this.remaining === 0) this.afterBodyPart(tsNs, (seq + take) >>> 0);
        return i + take;
      }
      case 'eof-body':
        this.msg!.bytes += b.length - i;
        return b.length;
      case 'desync':
        return this.scan(b, i, seq, tsNs, ack);
      default:
        return this.readLine(b, i, seq, tsNs, ack);
    }
  }

  /** Desync: looks for a message start at a line start. */
  private scan(b: Uint8Array, i: number, seq: number, tsNs: number, ack: number | undefined): number {
    while (i < b.length) {
      if (this.atLineStart) {
        // Gather up to 8 bytes to decide (they may straddle pieces).
        const need = 8 - this.lineLen;
        const take = Math.min(need, b.length - i);
        this.line.set(b.subarray(i, i + take), this.lineLen);
        this.lineLen += take;
        const kind = looksLikeStart(this.line.subarray(0, this.lineLen));
        if (kind === 'maybe' && this.lineLen < 8 && i + take === b.length) return b.length; // wait for more
        if ((kind === 'request' || kind === 'response') && (this.role === undefined || this.role === kind)) {
          // Resynchronised: re-read the gathered bytes as the start of a line.
          const got = this.line.slice(0, this.lineLen);
          const startSeq = (seq - (this.lineLen - take)) >>> 0;
          this.lineLen = 0;
          this.mode = 'start';
          this.readLine(got, 0, startSeq, tsNs, ack);
          return i + take;
        }
        this.lineLen = 0;
        this.atLineStart = false;
      }
      const nl = indexOfLf(b, i);
      if (nl < 0) return b.length;
      i = nl + 1;
      this.atLineStart = true;
    }
    return i;
  }

  /** Accumulates a line (start line, header, chunk size, trailer); handles it at LF. */
  private readLine(b: Uint8Array, i: number, seq: number, tsNs: number, ack: number | undefined): number {
    if (this.mode === 'start' && this.lineLen === 0 && !this.lineTooLong) {
      // A new message begins with this byte (empty lines before a request are allowed).
      if (b[i] === 13 || b[i] === LF) return i + 1;
      this.msg = { startNs: tsNs, startSeq: seq, ack, bytes: 0, incomplete: false, tooLong: false, headerBytes: 0 };
    }
    const nl = indexOfLf(b, i);
    const end = nl < 0 ? b.length : nl + 1;
    const chunk = end - i;
    if (this.msg) this.msg.bytes += chunk;
    if (!this.lineTooLong) {
      if (this.lineLen + chunk > MAX_LINE + 2) {
        // Too long: keep just enough to know the method, drop the rest.
        this.lineTooLong = true;
        this.conn.counters.linesTooLong++;
        if (this.mode === 'start') this.noteTooLongStart(b.subarray(i, end));
      } else {
        this.append(b.subarray(i, end));
      }
    }
    if (nl < 0) return end;
    const line = this.lineTooLong ? null : trimCrlf(this.line.subarray(0, this.lineLen));
    this.lineLen = 0;
    const tooLong = this.lineTooLong;
    this.lineTooLong = false;
    this.onLine(line, tooLong, (seq + chunk) >>> 0, tsNs, ack);
    return end;
  }

  private append(part: Uint8Array): void {
    if (this.lineLen + part.length > this.line.length) {
      const grown = new Uint8Array(Math.min(MAX_LINE + 2, Math.max(this.line.length * 2, this.lineLen + part.length)));
      grown.set(this.line.subarray(0, this.lineLen));
      this.line = grown;
    }
    this.line.set(part, this.lineLen);
    this.lineLen += part.length;
  }

  private noteTooLongStart(tail: Uint8Array): void {
    const head = new Uint8Array(Math.min(16, this.lineLen + tail.length));
    head.set(this.line.subarray(0, Math.min(this.lineLen, head.length)));
    if (this.lineLen < head.length) head.set(tail.subarray(0, head.length - this.lineLen), this.lineLen);
    const text = String.fromCharCode(...head);
    const sp = text.indexOf(' ');
    if (this.msg) {
      this.msg.tooLong = true;
      this.msg.method = sp > 0 && METHODS.has(text.slice(0, sp)) ? text.slice(0, sp) : undefined;
    }
    if (this.role === undefined && this.msg?.method) this.conn.assignRoles(this, 'request');
    // Shrink the buffer back: nothing of this line is kept.
    this.line = new Uint8Array(256);
  }

  private onLine(line: Uint8Array | null, tooLong: boolean, seqAfter: number, tsNs: number, ack: number | undefined): void {
    switch (this.mode) {
      case 'start':
        return this.onStartLine(line, tooLong, seqAfter, tsNs);
      case 'head':
        if (line === null) return; // an over-long header: dropped (counted)
        if (line.length === 0) return this.onHeadEnd(seqAfter, tsNs, ack);
        this.msg!.headerBytes += line.length;
        if (this.msg!.headerBytes > MAX_HEADERS_BYTES) {
          this.msg!.incomplete = true;
          this.finishMessage(tsNs, seqAfter);
          return this.enterDesync();
        }
        return this.onHeader(line);
      case 'chunk-size': {
        if (line === null) return this.enterDesync();
        const text = latin1(line, 0, line.length);
        const m = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(text);
        if (!m) {
          this.msg!.incomplete = true;
          this.finishMessage(tsNs, seqAfter);
          return this.enterDesync();
        }
        const size = parseInt(m[1]!, 16);
        if (size === 0) {
          this.mode = 'trailer';
          return;
        }
        this.remaining = size;
        this.mode = 'chunk-data';
        return;
      }
      case 'chunk-crlf':
        if (line === null || line.length !== 0) {
          this.msg!.incomplete = true;
          this.finishMessage(tsNs, seqAfter);
          return this.enterDesync();
        }
        this.mode = 'chunk-size';
        return;
      case 'trailer':
        if (line !== null && line.length === 0) this.finishMessage(tsNs, seqAfter);
        return;
      default:
    }
  }

  private onStartLine(line: Uint8Array | null, tooLong: boolean, seqAfter: number, tsNs: number): void {
    const msg = this.msg!;
    if (tooLong) {
      if (this.role === 'request' && msg.method) {
        this.mode = 'head';
        return;
      }
      return this.enterDesync();
    }
    const text = latin1(line!, 0, line!.length);
    const req = /^([A-Z]{1,16}) (\S+) HTTP\/1\.([01])$/.exec(text);
    const res = req ? null : /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(text);
    const kind: Role | null = req ? 'request' : res ? 'response' : null;
    if (!kind || (this.role !== undefined && this.role !== kind)) return this.enterDesync();
    if (this.role === undefined) this.conn.assignRoles(this, kind);
    if (req) {
      msg.method = req[1];
      msg.target = req[2];
      msg.version = `1.${req[3]}`;
    } else {
      msg.version = `1.${res![1]}`;
      msg.status = Number(res![2]);
    }
    this.mode = 'head';
    void seqAfter;
    void tsNs;
  }

  private onHeader(line: Uint8Array): void {
    const colon = line.indexOf(58);
    // Only three headers matter: tell them by length first (no string for the others).
    if (colon !== 4 && colon !== 14 && colon !== 17) return;
    const name = latin1(line, 0, colon).toLowerCase();
    if (name !== 'host' && name !== 'content-length' && name !== 'transfer-encoding') return;
    const value = latin1(line, colon + 1, line.length).trim();
    const msg = this.msg!;
    if (name === 'host') msg.host ??= value.toLowerCase();
    else if (name === 'content-length') {
      const n = /^\d{1,15}$/.test(value) ? Number(value) : NaN;
      if (Number.isNaN(n) || (msg.contentLength !== undefined && msg.contentLength !== n)) msg.badLength = true;
      else msg.contentLength = n;
    } else if (value.toLowerCase().split(',').map((s) => s.trim()).at(-1) === 'chunked') msg.chunked = true;
  }

  private onHeadEnd(seqAfter: number, tsNs: number, ack: number | undefined): void {
    const msg = this.msg!;
    if (this.role === 'request') {
      this.conn.requestHead(msg, tsNs);
      if (msg.chunked) return this.enterBody('chunk-size', 0, tsNs, seqAfter);
      if (msg.badLength) {
        msg.incomplete = true;
        this.finishMessage(tsNs, seqAfter);
        return this.enterDesync();
      }
      return this.enterBody('body', msg.contentLength ?? 0, tsNs, seqAfter);
    }
    const st = msg.status!;
    if (st >= 100 && st < 200 && st !== 101) {
      this.conn.counters.interim++;
      this.conn.interimBytes(msg.bytes);
      this.msg = undefined;
      this.mode = 'start';
      return;
    }
    const req = this.conn.pairResponse(msg, this, msg.ack ?? ack);
    const method = req?.ex.method;
    if (st === 101 || (method === 'CONNECT' && st >= 200 && st < 300)) {
      req?.ex.flags.push('upgraded');
      this.finishMessage(tsNs, seqAfter);
      return this.conn.upgrade();
    }
    if (method === 'HEAD' || st === 204 || st === 304) return this.enterBody('body', 0, tsNs, seqAfter);
    if (msg.chunked) return this.enterBody('chunk-size', 0, tsNs, seqAfter);
    if (msg.contentLength !== undefined && !msg.badLength) return this.enterBody('body', msg.contentLength, tsNs, seqAfter);
    this.mode = 'eof-body'; // ends with the connection
  }

  private enterBody(mode: 'body' | 'chunk-size', n: number, tsNs: number, seqAfter: number): void {
    this.mode = mode;
    this.remaining = n;
    if (mode === 'body' && n === 0) this.finishMessage(tsNs, seqAfter);
  }

  private afterBodyPart(tsNs: number, seqAfter: number): void {
    if (this.mode === 'chunk-data') this.mode = 'chunk-crlf';
    else this.finishMessage(tsNs, seqAfter);
  }

  /** The message in this direction is over (complete or not). */
  finishMessage(tsNs: number, seqAfter: number | undefined): void {
    const msg = this.msg;
    this.msg = undefined;
    this.mode = 'start';
    if (!msg) return;
    if (this.role === 'request') this.conn.requestDone(msg, tsNs, seqAfter);
    else if (this.role === 'response') this.conn.responseDone(msg, tsNs);
  }

  /** The connection ended: a body that runs to the end is complete; anything else is not. */
  end(tsNs: number): void {
    this.stream.flush();
    if (this.msg) {
      if (this.mode !== 'eof-body') this.msg.incomplete = true;
      this.finishMessage(tsNs, undefined);
    }
  }

  stop(): void {
    this.mode = 'tunnel';
    this.msg = undefined;
  }
}

/** One connection: two directions, whichever carries the requests. */
export class HttpFlowParser {
  readonly counters: HttpCounters;
  private readonly dirs: [Direction, Direction];
  private pending: Pending[] = [];
  private upgraded = false;
  private respDir: Direction | undefined;
  private reqDir: Direction | undefined;

  constructor(private readonly opts: HttpParserOptions) {
    this.counters = opts.counters;
    const limits = opts.streamLimits ?? DEFAULT_STREAM_LIMITS;
    this.dirs = [new Direction(this, opts.counters, limits), new Direction(this, opts.counters, limits)];
  }

  /** A captured piece of direction 0 or 1 (which one carries requests is found out). */
  piece(dir: 0 | 1, p: Piece): void {
    if (this.upgraded) return;
    this.dirs[dir].stream.push(p);
  }

  /** Bytes of direction `dir` before `seq` were deliberately not captured (kernel budget). */
  skipTo(dir: 0 | 1, seq: number, tsNs: number): void {
    if (!this.upgraded) this.dirs[dir].stream.skipTo(seq, tsNs);
  }

  /** The connection is over (FIN/RST both ways, or idle): flushes and reports what is left. */
  end(tsNs: number): void {
    if (!this.upgraded) {
      // Requests first, so that a request completed by the end is there for its response.
      const order = this.reqDir ? [this.reqDir, this.respDir!] : this.dirs;
      for (const d of order) d.end(tsNs);
    }
    for (const p of this.pending.splice(0)) this.emitUnanswered(p);
  }

  /** Requests waiting for their response (for tests and memory accounting). */
  get pendingCount(): number {
    return this.pending.length;
  }

  /** Bytes this connection holds (line buffers are at most MAX_LINE each). */
  get heldBytes(): number {
    return this.dirs[0].stream.heldByteCount + this.dirs[1].stream.heldByteCount;
  }

  // --- called by the directions -------------------------------------------------------------

  assignRoles(d: Direction, role: Role): void {
    const other = d === this.dirs[0] ? this.dirs[1] : this.dirs[0];
    d.role = role;
    other.role = role === 'request' ? 'response' : 'request';
    this.reqDir = role === 'request' ? d : other;
    this.respDir = role === 'request' ? other : d;
  }

  requestHead(msg: Msg, tsNs: number): void {
    this.counters.requests++;
    const ex: HttpExchange = {
      method: msg.method ?? '?',
      requestBytes: msg.bytes,
      responseBytes: 0,
      requestStartNs: msg.startNs,
      requestEndNs: tsNs,
      tls: this.opts.tls ?? false,
      flags: [],
    };
    if (msg.version) ex.version = msg.version;
    if (msg.tooLong) ex.flags.push('request-line-too-long');
    const t = msg.target !== undefined ? splitTarget(msg.target, this.opts.keepQuery ?? false) : undefined;
    if (t?.path !== undefined) ex.path = t.path;
    const host = t?.host ?? msg.host;
    if (host !== undefined) ex.host = host;
    const p: Pending = { ex, startSeq: msg.startSeq, endSeq: undefined, done: false };
    msg.pending = p;
    if (this.pending.length >= MAX_PENDING) {
      this.counters.pendingOverflow++;
      this.emitUnanswered(this.pending.shift()!);
    }
    this.pending.push(p);
  }

  requestDone(msg: Msg, tsNs: number, seqAfter: number | undefined): void {
    const p = msg.pending;
    if (!p) return; // the head was never complete
    p.ex.requestBytes = msg.bytes;
    p.ex.requestEndNs = tsNs;
    p.endSeq = seqAfter;
    p.done = true;
    if (msg.incomplete) p.ex.flags.push('request-incomplete');
  }

  interimBytes(n: number): void {
    // 1xx responses count toward the next final response's bytes.
    this.interim += n;
  }
  private interim = 0;

  /** Picks the request a response answers (see the header comment). */
  pairResponse(msg: Msg, d: Direction, ack: number | undefined): Pending | undefined {
    this.counters.responses++;
    let idx = -1;
    if (ack !== undefined) {
      // Requests the server had received in full when it sent this.
      let lastCovered = -1;
      for (let i = 0; i < this.pending.length; i++) {
        const e = this.pending[i]!.endSeq;
        if (e !== undefined && this.pending[i]!.done && seqDiff(ack, e) >= 0) lastCovered = i;
      }
      if (lastCovered >= 0) idx = d.lostSince ? lastCovered : 0;
      else if (this.pending.length && this.pending[0]!.startSeq !== undefined && seqDiff(ack, this.pending[0]!.startSeq!) > 0) idx = 0; // answered before the request was over
    } else if (this.pending.length) {
      // No acknowledgments (a TLS library's plaintext): FIFO; after a loss, the latest
      // request sent before this response began (a client that waits for each response).
      idx = 0;
      if (d.lostSince) {
        for (let i = 0; i < this.pending.length; i++) if (this.pending[i]!.ex.requestEndNs <= msg.startNs) idx = i;
      }
    }
    if (idx < 0) {
      this.counters.orphanResponses++;
      return undefined;
    }
    for (const p of this.pending.splice(0, idx)) this.emitUnanswered(p);
    const p = this.pending.shift()!;
    msg.pending = p;
    p.ex.status = msg.status!;
    p.ex.responseStartNs = msg.startNs;
    p.ex.ttfbNs = Math.max(0, msg.startNs - p.ex.requestEndNs);
    d.lostSince = false;
    return p;
  }

  responseDone(msg: Msg, tsNs: number): void {
    const p = msg.pending;
    if (!p) return;
    p.ex.responseBytes = msg.bytes + this.interim;
    this.interim = 0;
    p.ex.responseEndNs = tsNs;
    if (msg.incomplete) p.ex.flags.push('response-incomplete');
    this.emit(p.ex);
  }

  upgrade(): void {
    this.upgraded = true;
    for (const d of this.dirs) d.stop();
  }

  private emitUnanswered(p: Pending): void {
    this.counters.unanswered++;
    p.ex.flags.push('unanswered');
    this.emit(p.ex);
  }

  private emit(ex: HttpExchange): void {
    this.counters.exchanges++;
    this.opts.onExchange(ex);
  }
}

/** Bytes as a latin1 string (no copy of the bytes). */
function latin1(b: Uint8Array, from: number, to: number): string {
  return Buffer.from(b.buffer, b.byteOffset + from, to - from).toString('latin1');
}

function indexOfLf(b: Uint8Array, from: number): number {
  return b.indexOf(LF, from);
}

function trimCrlf(b: Uint8Array): Uint8Array {
  let n = b.length;
  if (n && b[n - 1] === LF) n--;
  if (n && b[n - 1] === 13) n--;
  return b.subarray(0, n);
}

/** Path (query dropped unless keepQuery) and, for absolute-form targets, the host. */
export function splitTarget(target: string, keepQuery: boolean): { path?: string; host?: string } {
  let path = target;
  let host: string | undefined;
  const abs = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)(.*)$/.exec(target);
  if (abs) {
    host = abs[1]!.replace(/^[^@]*@/, '').toLowerCase();
    path = abs[2] || '/';
  } else if (!target.startsWith('/')) {
    // authority-form (CONNECT host:port) or asterisk-form (OPTIONS *)
    return target === '*' ? { path: '*' } : { host: target.toLowerCase() };
  }
  const hash = path.indexOf('#');
  if (hash >= 0) path = path.slice(0, hash);
  if (!keepQuery) {
    const q = path.indexOf('?');
    if (q >= 0) path = path.slice(0, q);
  }
  return host !== undefined ? { path, host } : { path };
}
