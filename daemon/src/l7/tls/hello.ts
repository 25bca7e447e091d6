// SPDX-License-Identifier: Apache-2.0
// TLS ClientHello and ServerHello from the first bytes of a connection (RFC 8446 4.1.2,
// 4.1.3; RFC 6066 3 for server_name): the server name the client asked for, the versions
// it offered, the ALPN protocols, and the version the server chose. Handshake messages can
// span several TLS records and a record several TCP segments: the bytes of each direction
// are gathered (at most MAX_HELLO_BYTES) until the hello is whole. Never throws: a
// malformed hello ends in a reason. Only the hellos are read: everything after them is
// encrypted (TLS 1.3) or of no interest here.
import type { StreamSink } from '../stream.js';

/** Bytes of a direction kept to find its hello (a ClientHello with post-quantum key shares
 * is about 1.8 KiB; 16 KiB is the largest record). */
export const MAX_HELLO_BYTES = 16 * 1024 + 5;

export const TLS_VERSION_NAMES: Record<number, string> = {
  0x0300: 'SSL 3.0', 0x0301: 'TLS 1.0', 0x0302: 'TLS 1.1', 0x0303: 'TLS 1.2', 0x0304: 'TLS 1.3',
};

export function tlsVersionName(v: number): string {
  return TLS_VERSION_NAMES[v] ?? `0x${v.toString(16).padStart(4, '0')}`;
}

/** GREASE values (RFC 8701) are noise by design. */
const isGrease = (v: number): boolean => (v & 0x0f0f) === 0x0a0a && (v >> 8) === (v & 0xff);

export interface ClientHello {
  serverName?: string;
  /** Versions offered: supported_versions if present, else the legacy version. */
  versions: number[];
  alpn: string[];
}

export interface ServerHello {
  /** Version the server chose (supported_versions if present, else the legacy version). */
  version: number;
  alpn?: string;
  helloRetry: boolean;
}

export type HelloError = 'not-tls' | 'not-hello' | 'malformed' | 'too-long' | 'incomplete';

export type HelloResult<T> = { ok: true; hello: T } | { ok: false; error: HelloError } | { ok: false; error: 'need-more' };

const HELLO_RETRY_RANDOM = 'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c';

/**
 * The first handshake message in `b` (TLS records from the start of a direction). Returns
 * 'need-more' while the message is not complete yet.
 */
export function handshakeMessage(b: Uint8Array): { ok: true; type: number; body: Uint8Array } | { ok: false; error: HelloError | 'need-more' } {
  const parts: Uint8Array[] = [];
  let have = 0;
  let off = 0;
  let want = -1;
  while (want < 0 || have < want) {
    if (off + 5 > b.length) return { ok: false, error: 'need-more' };
    if (b[off] !== 22) return { ok: false, error: off === 0 ? 'not-tls' : 'malformed' };
    if (b[off + 1] !== 3 || b[off + 2]! > 4) return { ok: false, error: 'not-tls' };
    const len = (b[off + 3]! << 8) | b[off + 4]!;
    if (len === 0 || len > 16384 + 2048) return { ok: false, error: 'malformed' };
    const end = off + 5 + len;
    const frag = b.subarray(off + 5, Math.min(end, b.length));
    parts.push(frag);
    have += frag.length;
    if (want < 0 && have >= 4) {
      const all = concat(parts, 4);
      want = 4 + ((all[1]! << 16) | (all[2]! << 8) | all[3]!);
      if (want > 64 * 1024) return { ok: false, error: 'too-long' };
    }
    if (end > b.length) {
      if (want >= 0 && have >= want) break;
      return { ok: false, error: 'need-more' };
    }
    off = end;
  }
  const msg = concat(parts, want);
  return { ok: true, type: msg[0]!, body: msg.subarray(4, want) };
}

function concat(parts: Uint8Array[], n: number): Uint8Array {
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    if (o >= n) break;
    const take = Math.min(p.length, n - o);
    out.set(p.subarray(0, take), o);
    o += take;
  }
  return out;
}

/** A bounds-checked reader: any read past the end throws Short, turned into 'malformed'. */
class Short {}
class Reader {
  constructor(private readonly b: Uint8Array, public off = 0, private readonly end = b.length) {}
  u8(): number {
    if (this.off + 1 > this.end) throw new Short();
    return this.b[this.off++]!;
  }
  u16(): number {
    return (this.u8() << 8) | this.u8();
  }
  u24(): number {
    return (this.u8() << 16) | this.u16();
  }
  bytes(n: number): Uint8Array {
    if (this.off + n > this.end) throw new Short();
    const s = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return s;
  }
  sub(n: number): Reader {
    if (this.off + n > this.end) throw new Short();
    const r = new Reader(this.b, this.off, this.off + n);
    this.off += n;
    return r;
  }
  get left(): number {
    return this.end - this.off;
  }
}

function extensions(r: Reader, each: (type: number, body: Reader) => void): void {
  if (r.left === 0) return; // no extensions at all (TLS 1.0-era hellos)
  const ext = r.sub(r.u16());
  while (ext.left > 0) {
    const type = ext.u16();
    each(type, ext.sub(ext.u16()));
  }
}

export function parseClientHello(body: Uint8Array): HelloResult<ClientHello> {
  try {
    const r = new Reader(body);
    const legacy = r.u16();
    r.bytes(32); // random
    r.bytes(r.u8()); // session id
    r.bytes(r.u16()); // cipher suites
    r.bytes(r.u8()); // compression methods
    const hello: ClientHello = { versions: [], alpn: [] };
    let supported: number[] | undefined;
    extensions(r, (type, e) => {
      if (type === 0) {
        const list = e.sub(e.u16());
        while (list.left > 0) {
          const kind = list.u8();
          const name = list.bytes(list.u16());
          if (kind === 0 && hello.serverName === undefined) hello.serverName = Buffer.from(name).toString('latin1').toLowerCase();
        }
      } else if (type === 43) {
        const list = e.sub(e.u8());
        supported = [];
        while (list.left > 0) {
          const v = list.u16();
          if (!isGrease(v)) supported.push(v);
        }
      } else if (type === 16) {
        const list = e.sub(e.u16());
        while (list.left > 0) hello.alpn.push(Buffer.from(list.bytes(list.u8())).toString('latin1'));
      }
    });
    hello.versions = supported ?? [legacy];
    return { ok: true, hello };
  } catch (err) {
    if (err instanceof Short) return { ok: false, error: 'malformed' };
    throw err;
  }
}

export function parseServerHello(body: Uint8Array): HelloResult<ServerHello> {
  try {
    const r = new Reader(body);
    let version = r.u16();
    const random = Buffer.from(r.bytes(32)).toString('hex');
    r.bytes(r.u8()); // session id
    r.u16(); // cipher suite
    r.u8(); // compression
    const hello: ServerHello = { version, helloRetry: random === HELLO_RETRY_RANDOM };
    extensions(r, (type, e) => {
      if (type === 43) version = e.u16();
      else if (type === 16) {
        const list = e.sub(e.u16());
        if (list.left > 0) hello.alpn = Buffer.from(list.bytes(list.u8())).toString('latin1');
      }
    });
    hello.version = version;
    return { ok: true, hello };
  } catch (err) {
    if (err instanceof Short) return { ok: false, error: 'malformed' };
    throw err;
  }
}

export interface TlsInfo {
  serverName?: string;
  offeredVersions: number[];
  alpn: string[];
  /** Negotiated version, once the ServerHello was seen. */
  version?: number;
  alpnSelected?: string;
}

export interface TlsCounters {
  clientHellos: number;
  serverHellos: number;
  malformed: number;
  /** Directions whose hello did not fit in MAX_HELLO_BYTES or had a hole before it was whole. */
  incomplete: number;
}

export function newTlsCounters(): TlsCounters {
  return { clientHellos: 0, serverHellos: 0, malformed: 0, incomplete: 0 };
}

/** Gathers one direction's first bytes (a StreamSink) until its hello is whole. */
class HelloGatherer implements StreamSink {
  private buf = new Uint8Array(0);
  done = false;
  constructor(private readonly onBytes: (b: Uint8Array) => 'done' | 'more', private readonly onGiveUp: () => void) {}
  data(bytes: Uint8Array): void {
    if (this.done) return;
    const n = Math.min(bytes.length, MAX_HELLO_BYTES - this.buf.length);
    const next = new Uint8Array(this.buf.length + n);
    next.set(this.buf);
    next.set(bytes.subarray(0, n), this.buf.length);
    this.buf = next;
    if (this.onBytes(this.buf) === 'done') this.finish();
    else if (this.buf.length >= MAX_HELLO_BYTES) this.giveUp();
  }
  hole(): void {
    if (!this.done) this.giveUp();
  }
  private giveUp(): void {
    this.finish();
    this.onGiveUp();
  }
  private finish(): void {
    this.done = true;
    this.buf = new Uint8Array(0);
  }
}

/**
 * One TLS connection's hellos. `client` and `server` are the sinks for the two directions
 * (feed them through a Stream); `onInfo` is called when the ClientHello is read and again
 * when the ServerHello is.
 */
export class TlsHelloParser {
  readonly info: TlsInfo = { offeredVersions: [], alpn: [] };
  readonly client: HelloGatherer;
  readonly server: HelloGatherer;
  sawClientHello = false;

  constructor(counters: TlsCounters, onInfo: (info: TlsInfo, which: 'client' | 'server') => void) {
    const step = (which: 'client' | 'server') => (b: Uint8Array): 'done' | 'more' => {
      const m = handshakeMessage(b);
      if (!m.ok) {
        if (m.error === 'need-more') return 'more';
        counters.malformed++;
        return 'done';
      }
      if (which === 'client') {
        const h = m.type === 1 ? parseClientHello(m.body) : { ok: false as const, error: 'not-hello' as const };
        if (!h.ok) {
          counters.malformed++;
          return 'done';
        }
        counters.clientHellos++;
        this.sawClientHello = true;
        if (h.hello.serverName !== undefined) this.info.serverName = h.hello.serverName;
        this.info.offeredVersions = h.hello.versions;
        this.info.alpn = h.hello.alpn;
      } else {
        const h = m.type === 2 ? parseServerHello(m.body) : { ok: false as const, error: 'not-hello' as const };
        if (!h.ok) {
          counters.malformed++;
          return 'done';
        }
        counters.serverHellos++;
        this.info.version = h.hello.version;
        if (h.hello.alpn !== undefined) this.info.alpnSelected = h.hello.alpn;
      }
      onInfo(this.info, which);
      return 'done';
    };
    this.client = new HelloGatherer(step('client'), () => counters.incomplete++);
    this.server = new HelloGatherer(step('server'), () => counters.incomplete++);
  }

  get done(): boolean {
    return this.client.done && this.server.done;
  }
}
