// SPDX-License-Identifier: Apache-2.0
// Between D-Bus values and the contract's JSON shapes. Incoming a{sv} dictionaries are
// checked key by key (unknown keys and wrong variant types are InvalidParams naming the
// key, as on the socket), then validated by the API's own validators. Outgoing objects
// become a{sv} with a fixed type per key, derived from the contract's types (a key the
// contract does not have is a compile error), so a client can rely on `txBytes` being 't';
// null fields are omitted.
import dbus, { type Variant } from 'dbus-next';
import { invalidParam } from '../errors.js';
import type { Flow, ProcessTotals } from '../contract/flows.js';
import type { GroupTotals, IdentityResult, OwnerIdentity } from '../contract/identity.js';
import type { ProcessPlace, RemoteGeo } from '../contract/geo.js';
import type { HttpFlowSummary, ProcessHttpSummary } from '../contract/l7.js';

export type Dict = Record<string, Variant>;

/** What a key of an incoming a{sv} may hold. */
/** `id`: an unsigned 64-bit integer (t, or any narrower width), passed on as a decimal string
 * as JSON carries cgroup ids (a Number would lose digits above 2^53). */
/** `int-list`, `string-list`: arrays of integers (au, or any integer width) and of strings (as). */
export type FieldKind = 'int' | 'id' | 'string' | 'bool' | 'int-or-string' | 'int-list' | 'string-list' | { dict: Record<string, FieldKind> };

/** Integers arrive in whatever width the client picked (python-dbus sends i, busctl what you type). */
const INT_SIGNATURES = new Set(['y', 'n', 'q', 'i', 'u', 'x', 't']);

function kindName(kind: FieldKind): string {
  if (kind === 'int') return 'an integer variant (u)';
  if (kind === 'id') return 'an unsigned integer variant (t)';
  if (kind === 'string') return 'a string variant (s)';
  if (kind === 'bool') return 'a boolean variant (b)';
  if (kind === 'int-or-string') return 'an integer (u) or string (s) variant';
  if (kind === 'int-list') return 'an array of integers variant (au)';
  if (kind === 'string-list') return 'an array of strings variant (as)';
  return 'a dictionary variant (a{sv})';
}

function unwrap(v: Variant, kind: FieldKind, field: string): unknown {
  const sig = v.signature;
  if (kind === 'int' && INT_SIGNATURES.has(sig)) return typeof v.value === 'bigint' ? Number(v.value) : v.value;
  if (kind === 'id' && INT_SIGNATURES.has(sig)) return String(v.value);
  if (kind === 'string' && sig === 's') return v.value;
  if (kind === 'bool' && sig === 'b') return v.value;
  if (kind === 'int-or-string' && INT_SIGNATURES.has(sig)) return typeof v.value === 'bigint' ? Number(v.value) : v.value;
  if (kind === 'int-or-string' && sig === 's') return v.value;
  if (kind === 'int-list' && sig.length === 2 && sig[0] === 'a' && INT_SIGNATURES.has(sig[1]!) && sig !== 'ay') {
    return (v.value as Array<number | bigint>).map((x) => (typeof x === 'bigint' ? Number(x) : x));
  }
  if (kind === 'string-list' && sig === 'as') return v.value;
  if (typeof kind === 'object' && sig === 'a{sv}') return readDict(v.value, field, kind.dict);
  throw invalidParam(field, v.value, `${kindName(kind)}, not type ${sig}`);
}

/**
 * An incoming a{sv} as a plain object: every key must be one of `spec` and hold the
 * variant type it declares. Validation of the values is the caller's (the JSON-RPC
 * helpers, through `asField`).
 */
export function readDict(raw: unknown, field: string, spec: Record<string, FieldKind>): Record<string, unknown> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalidParam(field, raw, 'a dictionary a{sv}');
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    const kind = Object.hasOwn(spec, k) ? spec[k] : undefined;
    if (kind === undefined) throw invalidParam(`${field}.${k}`, v instanceof dbus.Variant ? v.value : v, `one of the known keys (${Object.keys(spec).join(', ') || 'none'})`);
    if (!(v instanceof dbus.Variant)) throw invalidParam(`${field}.${k}`, v, 'a variant');
    out[k] = unwrap(v, kind, `${field}.${k}`);
  }
  return out;
}

/** Signatures a value of an outgoing dictionary may take. */
export type ValueSig = 's' | 'u' | 't' | 'x' | 'd' | 'b' | 'as' | 'au' | 'at' | 'a{sv}' | 'aa{sv}' | 'av';

const U32_MAX = 0xffffffff;

/** D-Bus strings may not contain NUL (the bus would drop the connection that sent one). */
function safe(s: string): string {
  return s.includes('\0') ? s.replaceAll('\0', '\uFFFD') : s;
}

/** One value as a variant of `sig`, or null when it cannot be one (never sent malformed). */
export function variantOf(sig: ValueSig, v: unknown): Variant | null {
  if (v === null || v === undefined) return null;
  switch (sig) {
    case 's':
      return typeof v === 'string' ? new dbus.Variant('s', safe(v)) : null;
    case 'b':
      return typeof v === 'boolean' ? new dbus.Variant('b', v) : null;
    case 'u':
      return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= U32_MAX ? new dbus.Variant('u', v) : null;
    case 't':
    case 'x': {
      // cgroup ids travel as decimal strings in JSON (they exceed 2^53).
      let n: bigint | null = null;
      if (typeof v === 'bigint') n = v;
      else if (typeof v === 'number' && Number.isInteger(v)) n = BigInt(v);
      else if (typeof v === 'string' && /^\d{1,20}$/.test(v)) n = BigInt(v);
      if (n === null || (sig === 't' && (n < 0n || n > 0xffffffffffffffffn))) return null;
      if (sig === 'x' && (n < -(2n ** 63n) || n >= 2n ** 63n)) return null;
      return new dbus.Variant(sig, n);
    }
    case 'd':
      return typeof v === 'number' && Number.isFinite(v) ? new dbus.Variant('d', v) : null;
    case 'as':
      return Array.isArray(v) && v.every((s) => typeof s === 'string') ? new dbus.Variant('as', v.map(safe)) : null;
    case 'au':
      return Array.isArray(v) && v.every((s) => typeof s === 'number' && Number.isInteger(s) && s >= 0 && s <= U32_MAX) ? new dbus.Variant('au', v) : null;
    case 'at':
      return Array.isArray(v) && v.every((s) => typeof s === 'number' && Number.isInteger(s) && s >= 0) ? new dbus.Variant('at', v.map((s) => BigInt(s as number))) : null;
    case 'a{sv}':
      return typeof v === 'object' && !Array.isArray(v) ? new dbus.Variant('a{sv}', jsonDict(v as Record<string, unknown>)) : null;
    case 'aa{sv}':
      return Array.isArray(v) && v.every((o) => typeof o === 'object' && o !== null && !Array.isArray(o))
        ? new dbus.Variant('aa{sv}', v.map((o) => jsonDict(o as Record<string, unknown>)))
        : null;
    case 'av':
      return Array.isArray(v) ? new dbus.Variant('av', v.map((x) => jsonVariant(x, undefined)).filter((x): x is Variant => x !== null)) : null;
  }
}

/** An object as a{sv} with the given type per key; keys without a type are not sent. */
export function dictOf(obj: object, types: Record<string, ValueSig>): Dict {
  const out: Dict = {};
  const o = obj as Record<string, unknown>;
  for (const [k, sig] of Object.entries(types)) {
    const v = variantOf(sig, o[k]);
    if (v) out[k] = v;
  }
  return out;
}

/**
 * Keys whose type a generic JSON object cannot tell by its value (a share that happens to
 * be 1, an empty list). Everything else: strings s, booleans b, non-negative integers t,
 * negative integers x, fractions d, lists of strings as, lists of objects aa{sv},
 * objects a{sv}.
 */
const JSON_HINTS: Record<string, ValueSig> = {
  tableShare: 'd',
  port: 'u',
  weight: 'u',
  id: 'u',
  backendId: 'u',
  ifindex: 'u',
  interfaces: 'as',
  backends: 'aa{sv}',
  vips: 'aa{sv}',
  rules: 'aa{sv}',
  // dns.list / http.list objects (GetDnsQueries, GetHttpRequests)
  pid: 'u',
  uid: 'u',
  localPort: 'u',
  remotePort: 'u',
  answers: 'aa{sv}',
  flags: 'as',
};

function jsonVariant(v: unknown, key: string | undefined): Variant | null {
  if (v === null || v === undefined) return null;
  const hint = key !== undefined && Object.hasOwn(JSON_HINTS, key) ? JSON_HINTS[key] : undefined;
  if (hint) {
    const hinted = variantOf(hint, v);
    if (hinted) return hinted;
  }
  if (typeof v === 'string') return variantOf('s', v);
  if (typeof v === 'boolean') return variantOf('b', v);
  if (typeof v === 'number') return Number.isInteger(v) ? variantOf(v >= 0 ? 't' : 'x', v) : variantOf('d', v);
  if (typeof v === 'bigint') return variantOf(v >= 0n ? 't' : 'x', v);
  if (Array.isArray(v)) {
    if (v.length > 0 && v.every((x) => typeof x === 'string')) return variantOf('as', v);
    if (v.length > 0 && v.every((x) => typeof x === 'object' && x !== null && !Array.isArray(x))) return variantOf('aa{sv}', v);
    return variantOf('av', v);
  }
  if (typeof v === 'object') return variantOf('a{sv}', v);
  return null;
}

/** A JSON-able object (the load balancer's results) as a{sv}. */
export function jsonDict(obj: Record<string, unknown>): Dict {
  const out: Dict = {};
  for (const [k, v] of Object.entries(obj)) {
    const variant = jsonVariant(v, k);
    if (variant) out[k] = variant;
  }
  return out;
}

/** The identity keys (contract/identity.ts): container and app travel as a{sv} of strings. */
export const IDENTITY_TYPES: { readonly [K in keyof OwnerIdentity]-?: ValueSig } = {
  cgroupPath: 's', unit: 's', userUnit: 's', slice: 's', container: 'a{sv}', app: 'a{sv}',
};

/** Where an address is, as a{sv} with the keys it knows (coordinates d, asn u, the rest s). */
export const GEO_TYPES: { readonly [K in keyof RemoteGeo]-?: ValueSig } = {
  country: 's', city: 's', lat: 'd', lon: 'd', asn: 'u', org: 's', label: 's',
};

export function geoDict(g: RemoteGeo): Dict {
  return dictOf(g, GEO_TYPES);
}

export const PLACE_TYPES: { readonly [K in keyof ProcessPlace]-?: ValueSig } = {
  ...GEO_TYPES, remoteAddr: 's', flows: 'u', txBytes: 't', rxBytes: 't',
};

/** A flow's HTTP summary (L7), as an a{sv} with these types (null fields left out). */
export const HTTP_SUMMARY_TYPES: { readonly [K in keyof HttpFlowSummary]-?: ValueSig } = {
  requests: 'u', clientErrors: 'u', serverErrors: 'u', unanswered: 'u', requestBytes: 't', responseBytes: 't',
  lastMethod: 's', lastHost: 's', lastPath: 's', lastStatus: 'u', lastAt: 's', tls: 'b',
};

/** Every key of a flow with its D-Bus type; tcpFlags (an object) travels as tcpFlagsTx and
 * tcpFlagsRx, remoteGeo as an a{sv} of GEO_TYPES, http as an a{sv} of HTTP_SUMMARY_TYPES. */
export const FLOW_TYPES: { readonly [K in Exclude<keyof Flow, 'tcpFlags' | 'remoteGeo' | 'http'>]-?: ValueSig } = {
  ...IDENTITY_TYPES,
  protocol: 's', family: 's', localAddr: 's', localPort: 'u', remoteAddr: 's', remotePort: 'u', icmpType: 'u', icmpId: 'u',
  direction: 's', interface: 's', pid: 'u', tid: 'u', comm: 's', uid: 'u', gid: 'u', cgroupId: 't', attributedBy: 's',
  ppid: 'u', exe: 's', state: 's', txBytes: 't', rxBytes: 't', txPackets: 't', rxPackets: 't', fragments: 'u',
  ipOptions: 'b', ipv6ExtHeaders: 'b', firstSeenAt: 's', lastSeenAt: 's', closedAt: 's',
  remoteName: 's', serverName: 's', tlsVersion: 's',
};
/** Keys a D-Bus flow dictionary has instead of `tcpFlags`. */
export const FLOW_TCP_FLAG_KEYS = ['tcpFlagsTx', 'tcpFlagsRx'] as const;

/** A flow as a{sv}: the JSON-RPC field names, tcpFlags split into tcpFlagsTx/tcpFlagsRx (as). */
export function flowDict(f: Flow): Dict {
  const d = dictOf(f, FLOW_TYPES);
  d.tcpFlagsTx = new dbus.Variant('as', f.tcpFlags.tx);
  d.tcpFlagsRx = new dbus.Variant('as', f.tcpFlags.rx);
  if (f.remoteGeo) d.remoteGeo = new dbus.Variant('a{sv}', geoDict(f.remoteGeo));
  if (f.http) d.http = new dbus.Variant('a{sv}', dictOf(f.http, HTTP_SUMMARY_TYPES));
  return d;
}

/** A process's HTTP summary (L7), as an a{sv} with these types. */
export const PROCESS_HTTP_TYPES: { readonly [K in keyof ProcessHttpSummary]-?: ValueSig } = {
  requests: 'u', clientErrors: 'u', serverErrors: 'u', requestBytes: 't', responseBytes: 't',
};

/** A process's keys with their D-Bus types; places travel as aa{sv} of PLACE_TYPES (always, maybe empty),
 * http as an a{sv} of PROCESS_HTTP_TYPES (left out when null). */
export const PROCESS_TYPES: { readonly [K in Exclude<keyof ProcessTotals, 'places' | 'http'>]-?: ValueSig } = {
  ...IDENTITY_TYPES,
  pid: 'u', comm: 's', uid: 'u', exe: 's', cgroupId: 't', flows: 'u', openFlows: 'u',
  txBytes: 't', rxBytes: 't', txPackets: 't', rxPackets: 't', lastSeenAt: 's',
};

export function processDict(p: ProcessTotals): Dict {
  const d = dictOf(p, PROCESS_TYPES);
  d.places = new dbus.Variant('aa{sv}', (p.places ?? []).map((x) => dictOf(x, PLACE_TYPES)));
  if (p.http) d.http = new dbus.Variant('a{sv}', dictOf(p.http, PROCESS_HTTP_TYPES));
  return d;
}

export const GROUP_TYPES: { readonly [K in keyof GroupTotals]-?: ValueSig } = {
  by: 's', key: 's', label: 's', unit: 's', userUnit: 's', container: 'a{sv}', app: 'a{sv}', pids: 'at', flows: 'u', openFlows: 'u',
  txBytes: 't', rxBytes: 't', txPackets: 't', rxPackets: 't', lastSeenAt: 's',
};

export function groupDict(g: GroupTotals): Dict {
  return dictOf(g, GROUP_TYPES);
}

export const IDENTITY_RESULT_TYPES: { readonly [K in keyof IdentityResult]-?: ValueSig } = {
  ...IDENTITY_TYPES, pid: 'u', cgroupId: 't', tree: 'aa{sv}',
};

export function identityDict(r: IdentityResult): Dict {
  return dictOf(r, IDENTITY_RESULT_TYPES);
}

export const TALKER_TYPES: Record<string, ValueSig> = {
  txBytesPerSec: 't', rxBytesPerSec: 't', bytesPerSec: 't',
};

/**
 * An upper bound of the marshalled size of a message body (strings, variants, arrays and
 * dictionaries with their length words and worst-case padding). A reply larger than the
 * bus allows would make the bus drop the daemon's connection, not just the reply.
 */
export function approxSize(v: unknown): number {
  if (typeof v === 'string') return Buffer.byteLength(v) + 8;
  if (v instanceof dbus.Variant) return v.signature.length + 10 + approxSize(v.value);
  if (Array.isArray(v)) {
    let n = 12;
    for (const x of v) n += approxSize(x);
    return n;
  }
  if (v !== null && typeof v === 'object') {
    let n = 12;
    for (const [k, x] of Object.entries(v)) n += 8 + approxSize(k) + approxSize(x);
    return n;
  }
  return 8;
}
