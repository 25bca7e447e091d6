// SPDX-License-Identifier: Apache-2.0
// DNS message parser (RFC 1035 wire format) for captured payload.
//
// Written here rather than taken from npm (dns-packet): captured messages are often cut
// short (the kernel copies a bounded prefix, a datagram is truncated) and what came before
// the cut is still worth having, which a parser that throws on the first bad byte cannot
// give; every error here is a value with a reason, never an exception, and the work done per
// message is bounded (names <= 255 bytes, at most MAX_POINTER_JUMPS compression jumps, at
// most MAX_RECORDS records kept) whatever the bytes say.
import { AF_INET, AF_INET6, formatIpAt } from '../../net/ip.js';
import type { Family } from '../../contract/common.js';

export const DNS_TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, HTTPS: 65 } as const;
const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(DNS_TYPE).map(([k, v]) => [v, k]));

/** RFC 1035 / 6895 response codes by number. */
export const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED',
  6: 'YXDOMAIN', 7: 'YXRRSET', 8: 'NXRRSET', 9: 'NOTAUTH', 10: 'NOTZONE',
};

export function typeName(t: number): string {
  return TYPE_NAMES[t] ?? `TYPE${t}`;
}

export function rcodeName(r: number): string {
  return RCODE_NAMES[r] ?? `RCODE${r}`;
}

/** Compression pointers followed in one name before it is called a loop. */
const MAX_POINTER_JUMPS = 32;
/** Records kept per section: a 64 KiB message cannot hold many more, and we need few. */
export const MAX_RECORDS = 256;
const MAX_QUESTIONS = 8;

export interface DnsQuestion {
  name: string;
  type: number;
  class: number;
}

export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  /** A/AAAA: the address as text; CNAME/NS/PTR: the target name; other types: undefined. */
  data?: string;
}

export interface DnsMessage {
  id: number;
  response: boolean;
  opcode: number;
  rcode: number;
  authoritative: boolean;
  /** TC bit: the server cut the message (the client retries over TCP). */
  truncated: boolean;
  questions: DnsQuestion[];
  answers: DnsRecord[];
}

/** Why a message could not be read in full. */
export type DnsError =
  | 'short-header'     // fewer than 12 bytes
  | 'truncated'        // ends inside a question or record (a cut capture or datagram)
  | 'bad-name'         // label type 0x40/0x80, name over 255 bytes, pointer out of range
  | 'pointer-loop'     // compression pointers that never end
  | 'bad-rdata'        // rdlength that does not fit the type (A != 4, AAAA != 16)
  | 'too-many-records';

export interface DnsParseResult {
  /** What could be read; present unless even the header is missing. */
  message?: DnsMessage;
  /** Set when the message was not read in full; `message` then holds what came before. */
  error?: DnsError;
}

class ParseError {
  constructor(readonly code: DnsError) {}
}

/** Reads a (possibly compressed) name at `off`; returns it and the offset after it in the original position. */
function readName(b: Uint8Array, off: number): { name: string; next: number } {
  const labels: string[] = [];
  let len = 0;
  let jumps = 0;
  let next = -1;
  let p = off;
  for (;;) {
    if (p >= b.length) throw new ParseError('truncated');
    const c = b[p]!;
    if (c === 0) {
      p++;
      break;
    }
    const kind = c & 0xc0;
    if (kind === 0xc0) {
      if (p + 1 >= b.length) throw new ParseError('truncated');
      const target = ((c & 0x3f) << 8) | b[p + 1]!;
      if (next < 0) next = p + 2;
      if (++jumps > MAX_POINTER_JUMPS) throw new ParseError('pointer-loop');
      if (target >= b.length) throw new ParseError('bad-name');
      p = target;
      continue;
    }
    if (kind !== 0) throw new ParseError('bad-name'); // 0x40 extended / 0x80 reserved label types
    if (p + 1 + c > b.length) throw new ParseError('truncated');
    len += c + 1;
    if (len > 255) throw new ParseError('bad-name');
    labels.push(labelText(b, p + 1, c));
    p += 1 + c;
  }
  return { name: labels.length ? labels.join('.').toLowerCase() : '.', next: next >= 0 ? next : p };
}

/** Label bytes as text: printable ASCII as is, everything else (and dots inside a label) escaped as \DDD. */
function labelText(b: Uint8Array, off: number, len: number): string {
  let s = '';
  for (let i = off; i < off + len; i++) {
    const c = b[i]!;
    if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) s += String.fromCharCode(c);
    else s += `\\${c.toString().padStart(3, '0')}`;
  }
  return s;
}

/** Parses one DNS message. Never throws. */
export function parseDnsMessage(b: Uint8Array): DnsParseResult {
  if (b.length < 12) return { error: 'short-header' };
  const flags = (b[2]! << 8) | b[3]!;
  const msg: DnsMessage = {
    id: (b[0]! << 8) | b[1]!,
    response: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    authoritative: (flags & 0x0400) !== 0,
    truncated: (flags & 0x0200) !== 0,
    rcode: flags & 0xf,
    questions: [],
    answers: [],
  };
  const qd = (b[4]! << 8) | b[5]!;
  const an = (b[6]! << 8) | b[7]!;
  let off = 12;
  try {
    if (qd > MAX_QUESTIONS) throw new ParseError('too-many-records');
    for (let i = 0; i < qd; i++) {
      const n = readName(b, off);
      if (n.next + 4 > b.length) throw new ParseError('truncated');
      msg.questions.push({ name: n.name, type: (b[n.next]! << 8) | b[n.next + 1]!, class: (b[n.next + 2]! << 8) | b[n.next + 3]! });
      off = n.next + 4;
    }
    // Only the answer section is read: authority and additional records never name what
    // the client asked for.
    for (let i = 0; i < an; i++) {
      if (i >= MAX_RECORDS) throw new ParseError('too-many-records');
      const n = readName(b, off);
      const p = n.next;
      if (p + 10 > b.length) throw new ParseError('truncated');
      const type = (b[p]! << 8) | b[p + 1]!;
      const cls = (b[p + 2]! << 8) | b[p + 3]!;
      const ttl = ((b[p + 4]! << 24) | (b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!) >>> 0;
      const rdlen = (b[p + 8]! << 8) | b[p + 9]!;
      const rd = p + 10;
      if (rd + rdlen > b.length) throw new ParseError('truncated');
      const rec: DnsRecord = { name: n.name, type, class: cls, ttl: ttl > 0x7fffffff ? 0 : ttl }; // RFC 2181 8: top bit set means 0
      if (type === DNS_TYPE.A) {
        if (rdlen !== 4) throw new ParseError('bad-rdata');
        rec.data = formatIpAt(b, rd, AF_INET);
      } else if (type === DNS_TYPE.AAAA) {
        if (rdlen !== 16) throw new ParseError('bad-rdata');
        rec.data = formatIpAt(b, rd, AF_INET6);
      } else if (type === DNS_TYPE.CNAME || type === DNS_TYPE.NS || type === DNS_TYPE.PTR) {
        const t = readName(b, rd);
        if (t.next > rd + rdlen) throw new ParseError('bad-rdata');
        rec.data = t.name;
      }
      msg.answers.push(rec);
      off = rd + rdlen;
    }
  } catch (err) {
    if (err instanceof ParseError) return { message: msg, error: err.code };
    throw err;
  }
  return { message: msg };
}

/** The addresses a response gives for the name asked, following CNAME chains from the question. */
export interface ResolvedAddress {
  address: string;
  family: Family;
  /** The name the client asked for (the question). */
  name: string;
  /** CNAMEs followed from `name` to the address record's owner, in order. */
  chain: string[];
  /** Smallest TTL along the chain and the address record (seconds). */
  ttl: number;
}

/** Longest CNAME chain followed (resolvers stop at 8-16 too). */
const MAX_CHAIN = 16;

/**
 * Addresses that answer the question, and only those: an address record whose owner is not
 * the question's name or reachable from it through the answer's CNAMEs is ignored (a
 * response cannot make a client's flows carry a name it did not ask for).
 */
export function resolvedAddresses(msg: DnsMessage): ResolvedAddress[] {
  const q = msg.questions[0];
  if (!q || !msg.response || msg.rcode !== 0) return [];
  const cname = new Map<string, DnsRecord>();
  for (const r of msg.answers) if (r.type === DNS_TYPE.CNAME && r.data && !cname.has(r.name)) cname.set(r.name, r);
  // Owner names reachable from the question, with the chain and its TTL.
  const reach = new Map<string, { chain: string[]; ttl: number }>();
  let cur = q.name;
  let chain: string[] = [];
  let ttl = Number.MAX_SAFE_INTEGER;
  for (let i = 0; i <= MAX_CHAIN; i++) {
    if (reach.has(cur)) break; // CNAME loop
    reach.set(cur, { chain, ttl });
    const c = cname.get(cur);
    if (!c) break;
    ttl = Math.min(ttl, c.ttl);
    cur = c.data!;
    chain = [...chain, cur];
  }
  const out: ResolvedAddress[] = [];
  for (const r of msg.answers) {
    if ((r.type !== DNS_TYPE.A && r.type !== DNS_TYPE.AAAA) || !r.data) continue;
    const via = reach.get(r.name);
    if (!via) continue;
    out.push({ address: r.data, family: r.type === DNS_TYPE.A ? 'ipv4' : 'ipv6', name: q.name, chain: via.chain, ttl: Math.min(via.ttl, r.ttl) });
  }
  return out;
}
