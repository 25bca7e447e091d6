// SPDX-License-Identifier: Apache-2.0
// Validation of every LB input, without a kernel: each parser returns a normalized value
// or throws InvalidParams naming the field (`params.vip`, `params.weight`, ...), the value
// received and what was expected. The manager validates everything before it changes
// anything, so a bad input never leaves partial state.
import { invalidParam } from '../errors.js';
import {
  hostBitsZero, hostPort, ipText, isLinkLocal, isLoopback, isMulticastOrBroadcast, isUnspecified, parseIp,
  splitHostPort, type Family, type IpAddr,
} from '../net/ip.js';
import { HC, PK, type LbMode } from './wire.js';

export const IPPROTO = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58 } as const;
export const PROTO_NAME: Record<number, 'tcp' | 'udp'> = { 6: 'tcp', 17: 'udp' };

export const WEIGHT_MIN = 1;
export const WEIGHT_MAX = 1000;
export const DEFAULT_WEIGHT = 1;

export interface VipSpec {
  addr: IpAddr;
  port: number;
  proto: number;
  protoName: 'tcp' | 'udp';
  /** Canonical text: "198.19.10.10:80/tcp", "[fd00:198::ff:10]:80/tcp". */
  text: string;
}

export interface BackendSpec {
  addr: IpAddr;
  port: number;
  /** Canonical text: "198.18.2.2:8080", "[fd00:198::2:2]:8080". */
  text: string;
}

export interface HealthSpec {
  type: 'tcp' | 'http';
  /** 0: the backend's own port. */
  port: number;
  path: string;
  intervalMs: number;
  timeoutMs: number;
  rise: number;
  fall: number;
}

export type DropRule =
  | { kind: 'prefix'; addr: IpAddr; len: number; text: string }
  | { kind: 'proto'; families: Family[]; proto: number; match: number; value: number; text: string };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A method's params (or one declaration): an object, else InvalidParams on `params` showing the expected `shape`. */
export function objectParam(v: unknown, shape: string, field = 'params'): Record<string, unknown> {
  if (!isObj(v)) throw invalidParam(field, v, `an object ${shape}`);
  return v;
}

function str(field: string, v: unknown, expected: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 200) throw invalidParam(field, v, expected);
  return v.trim();
}

export function parsePort(field: string, v: unknown, expected = 'a port 1..65535'): number {
  const n = typeof v === 'string' && /^[0-9]{1,5}$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) throw invalidParam(field, v, expected);
  return n;
}

function usableAddr(field: string, raw: unknown, a: IpAddr | null, what: string): IpAddr {
  if (!a) throw invalidParam(field, raw, `${what}: an IPv4 or IPv6 address`);
  if (isUnspecified(a)) throw invalidParam(field, raw, `${what}: a unicast address (not 0.0.0.0 or ::)`);
  if (isMulticastOrBroadcast(a)) throw invalidParam(field, raw, `${what}: a unicast address (not multicast or broadcast)`);
  if (isLoopback(a)) throw invalidParam(field, raw, `${what}: an address reachable over a network interface (not loopback)`);
  if (isLinkLocal(a)) throw invalidParam(field, raw, `${what}: a routable address (not link-local)`);
  return a;
}

export function vipText(addr: IpAddr, port: number, protoName: string): string {
  return `${hostPort(addr, port)}/${protoName}`;
}

/** "ADDR:PORT/PROTO" (IPv6 in brackets), PROTO tcp or udp. */
export function parseVip(field: string, v: unknown): VipSpec {
  const expected = 'ADDR:PORT/PROTO, e.g. 198.19.10.10:80/tcp or [fd00:198::ff:10]:80/tcp';
  const s = str(field, v, expected);
  const slash = s.lastIndexOf('/');
  if (slash < 0) throw invalidParam(field, v, expected);
  const protoName = s.slice(slash + 1).toLowerCase();
  if (protoName !== 'tcp' && protoName !== 'udp') throw invalidParam(field, v, `${expected} (protocol tcp or udp)`);
  const hp = splitHostPort(s.slice(0, slash));
  if (!hp || hp.port === null) throw invalidParam(field, v, `${expected} (a port is required)`);
  const addr = usableAddr(field, v, parseIp(hp.host), 'VIP');
  const port = parsePort(field, hp.port, `${expected} (port 1..65535)`);
  return { addr, port, proto: IPPROTO[protoName], protoName, text: vipText(addr, port, protoName) };
}

/** "ADDR" or "ADDR:PORT" ("[V6]:PORT"); the port defaults to the VIP's. Same family as the VIP. */
export function parseBackend(field: string, v: unknown, vip: VipSpec): BackendSpec {
  const expected = 'ADDR or ADDR:PORT, e.g. 198.18.2.2:8080 or [fd00:198::2:2]:8080';
  const s = str(field, v, expected);
  const hp = splitHostPort(s);
  if (!hp) throw invalidParam(field, v, expected);
  const addr = usableAddr(field, v, parseIp(hp.host), 'backend');
  if (addr.family !== vip.addr.family) {
    throw invalidParam(field, v, `an IPv${vip.addr.family} address, like the VIP ${vip.text} (the balancer does not translate between families)`);
  }
  const port = hp.port === null ? vip.port : parsePort(field, hp.port, `${expected} (port 1..65535)`);
  return { addr, port, text: hostPort(addr, port) };
}

export function parseWeight(field: string, v: unknown): number {
  if (v === undefined || v === null) return DEFAULT_WEIGHT;
  const n = typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < WEIGHT_MIN || n > WEIGHT_MAX) {
    throw invalidParam(field, v, `an integer weight ${WEIGHT_MIN}..${WEIGHT_MAX} (drain a backend instead of weight 0)`);
  }
  return n;
}

export function parseMode(field: string, v: unknown): LbMode {
  if (v === undefined || v === null) return 'nat';
  if (v !== 'nat' && v !== 'dsr') throw invalidParam(field, v, '"nat" or "dsr"');
  return v;
}

/** An interface name (existence is checked by the manager against the running system). */
export function parseIfname(field: string, v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || !/^[A-Za-z0-9_.@:+-]{1,15}$/.test(v) || v === '.' || v === '..') {
    throw invalidParam(field, v, 'an interface name (1-15 characters)');
  }
  return v;
}

function intIn(field: string, v: unknown, min: number, max: number, dflt: number): number {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalidParam(field, v, `an integer ${min}..${max}`);
  return v;
}

export const HEALTH_DEFAULTS = { intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 } as const;

export function parseHealth(field: string, v: unknown): HealthSpec | null {
  if (v === undefined || v === null) return null;
  if (!isObj(v)) throw invalidParam(field, v, 'an object { type: "tcp"|"http", port?, path?, intervalMs?, timeoutMs?, rise?, fall? }');
  const known = new Set(['type', 'port', 'path', 'intervalMs', 'timeoutMs', 'rise', 'fall']);
  for (const k of Object.keys(v)) if (!known.has(k)) throw invalidParam(`${field}.${k}`, v[k], `no such health check setting (known: ${[...known].join(', ')})`);
  if (v.type !== 'tcp' && v.type !== 'http') throw invalidParam(`${field}.type`, v.type, '"tcp" or "http"');
  const port = v.port === undefined || v.port === null ? 0 : parsePort(`${field}.port`, v.port);
  let path = '/';
  if (v.path !== undefined && v.path !== null) {
    if (v.type !== 'http') throw invalidParam(`${field}.path`, v.path, 'no path (only http checks have one)');
    if (typeof v.path !== 'string' || !/^\/[\x21-\x7e]{0,62}$/.test(v.path)) throw invalidParam(`${field}.path`, v.path, 'an absolute URL path, at most 63 printable characters');
    path = v.path;
  }
  const intervalMs = intIn(`${field}.intervalMs`, v.intervalMs, 100, 3_600_000, HEALTH_DEFAULTS.intervalMs);
  const timeoutMs = intIn(`${field}.timeoutMs`, v.timeoutMs, 50, 60_000, Math.min(HEALTH_DEFAULTS.timeoutMs, intervalMs));
  if (timeoutMs > intervalMs) throw invalidParam(`${field}.timeoutMs`, timeoutMs, `at most intervalMs (${intervalMs})`);
  return {
    type: v.type, port, path, intervalMs, timeoutMs,
    rise: intIn(`${field}.rise`, v.rise, 1, 10, HEALTH_DEFAULTS.rise),
    fall: intIn(`${field}.fall`, v.fall, 1, 10, HEALTH_DEFAULTS.fall),
  };
}

export function healthType(h: HealthSpec | null): number {
  return h ? HC[h.type] : HC.none;
}

// --- drop rules ---------------------------------------------------------------------------

const ICMP4_TYPES: Record<string, number> = {
  'echo-reply': 0, 'dest-unreach': 3, 'source-quench': 4, redirect: 5, 'echo-request': 8, echo: 8,
  'router-advertisement': 9, 'router-solicitation': 10, 'time-exceeded': 11, 'parameter-problem': 12,
  timestamp: 13, 'timestamp-reply': 14,
};
const ICMP6_TYPES: Record<string, number> = {
  'dest-unreach': 1, 'packet-too-big': 2, 'time-exceeded': 3, 'parameter-problem': 4, 'echo-request': 128, echo: 128,
  'echo-reply': 129, 'router-solicitation': 133, 'router-advertisement': 134, 'neighbor-solicitation': 135,
  'neighbor-advertisement': 136,
};

function icmpTypeName(v6: boolean, type: number): string {
  const table = v6 ? ICMP6_TYPES : ICMP4_TYPES;
  const name = Object.entries(table).find(([n, t]) => t === type && n !== 'echo');
  return name ? name[0] : String(type);
}

export const DROP_RULE_HELP =
  'a source ADDR or ADDR/LEN, or a protocol: tcp, udp, tcp:PORT, udp:PORT, icmp, icmp:TYPE, icmpv6, icmpv6:TYPE, proto:NUMBER ' +
  '(TYPE a number or a name such as echo-request)';

/** Parses a drop-list rule and returns it with its canonical text. */
export function parseDropRule(field: string, v: unknown): DropRule {
  const s = str(field, v, DROP_RULE_HELP).toLowerCase();
  const [head, arg, ...extra] = s.split(/[:\s]+/).filter(Boolean) as [string, string | undefined];
  // Addresses first: an IPv6 address contains colons.
  const slash = s.indexOf('/');
  const addrPart = slash >= 0 ? s.slice(0, slash) : s;
  const addr = parseIp(addrPart);
  if (addr) {
    const total = addr.family === 'ipv4' ? 32 : 128;
    let len = total;
    if (slash >= 0) {
      const l = s.slice(slash + 1);
      if (!/^[0-9]{1,3}$/.test(l) || Number(l) > total) throw invalidParam(field, v, `a prefix length 0..${total}`);
      len = Number(l);
    }
    if (!hostBitsZero(addr, len)) throw invalidParam(field, v, `a prefix without host bits (e.g. the network address of the /${len})`);
    return { kind: 'prefix', addr, len, text: `${ipText(addr)}/${len}` };
  }
  if (extra.length > 0) throw invalidParam(field, v, DROP_RULE_HELP);
  switch (head) {
    case 'tcp':
    case 'udp': {
      const proto = IPPROTO[head];
      if (arg === undefined) return { kind: 'proto', families: ['ipv4', 'ipv6'], proto, match: PK.any, value: 0, text: head };
      const port = parsePort(field, arg, `${head}:PORT with PORT 1..65535`);
      return { kind: 'proto', families: ['ipv4', 'ipv6'], proto, match: PK.port, value: port, text: `${head}:${port}` };
    }
    case 'icmp':
    case 'icmpv6': {
      const v6 = head === 'icmpv6';
      const proto = v6 ? IPPROTO.icmpv6 : IPPROTO.icmp;
      const families: Family[] = [v6 ? 'ipv6' : 'ipv4'];
      if (arg === undefined) return { kind: 'proto', families, proto, match: PK.any, value: 0, text: head };
      const table = v6 ? ICMP6_TYPES : ICMP4_TYPES;
      const type = /^[0-9]{1,3}$/.test(arg) && Number(arg) <= 255 ? Number(arg) : table[arg];
      if (type === undefined) throw invalidParam(field, v, `${head}:TYPE with TYPE 0..255 or one of ${Object.keys(table).join(', ')}`);
      return { kind: 'proto', families, proto, match: PK.type, value: type, text: `${head}:${icmpTypeName(v6, type)}` };
    }
    case 'proto': {
      if (arg === undefined || !/^[0-9]{1,3}$/.test(arg) || Number(arg) > 255) throw invalidParam(field, v, 'proto:NUMBER with NUMBER 0..255');
      const proto = Number(arg);
      const named = Object.entries(IPPROTO).find(([, n]) => n === proto);
      if (named) return parseDropRule(field, named[0]);
      return { kind: 'proto', families: ['ipv4', 'ipv6'], proto, match: PK.any, value: 0, text: `proto:${proto}` };
    }
    default:
      throw invalidParam(field, v, DROP_RULE_HELP);
  }
}

/** The canonical text of a protocol rule stored in the kernel (for restores). */
export function protoRuleText(proto: number, match: number, value: number, family: Family): string {
  const name = proto === IPPROTO.tcp ? 'tcp' : proto === IPPROTO.udp ? 'udp' : proto === IPPROTO.icmp ? 'icmp' : proto === IPPROTO.icmpv6 ? 'icmpv6' : null;
  if (!name) return `proto:${proto}`;
  if (match === PK.any) return name;
  if (match === PK.port) return `${name}:${value}`;
  return `${name}:${icmpTypeName(family === 'ipv6', value)}`;
}
