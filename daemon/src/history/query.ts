// SPDX-License-Identifier: Apache-2.0
// `history.query` params -> a validated HistoryQuery. Every bad field is refused with an
// error naming it (the API layer maps HistoryParamError to InvalidParams). Filters combine
// (AND). Times: an ISO 8601 date-time, epoch milliseconds, or a duration back from now
// ("90s", "15m", "24h", "7d", "2w").
import type { HistoryQueryParams } from '../contract/history.js';
import { parseCidr } from '../net/ip.js';
import { HISTORY_GROUP_BY, type Cidr, type HistoryGroupBy, type HistoryQuery } from './types.js';

export const DEFAULT_SINCE = '24h';
export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 10_000;

export class HistoryParamError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'HistoryParamError';
  }
}

/** history.query's params (contract/history.ts), `by` not yet checked. */
export type HistoryQueryInput = Omit<HistoryQueryParams, 'by'> & { by?: string };

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** Latest time a query may name (9999-12-31T23:59:59.999Z): record ids (ms * 1024) stay
 * far inside DuckDB's BIGINT. */
const MAX_TIME = 253_402_300_799_999;

/** A time parameter: ISO date-time, epoch ms, or a duration back from `now`; from 1970 to 9999. */
export function parseTime(field: string, v: unknown, now: number): number {
  const t = parseTimeUnchecked(field, v, now);
  if (!(t >= 0 && t <= MAX_TIME)) throw new HistoryParamError(field, 'must be a time from 1970 to 9999');
  return t;
}

function parseTimeUnchecked(field: string, v: unknown, now: number): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) throw new HistoryParamError(field, 'must be a time (epoch ms, an ISO 8601 date-time, or a duration back from now such as "24h")');
    return Math.floor(v);
  }
  if (typeof v !== 'string' || v.trim() === '') throw new HistoryParamError(field, 'must be an ISO 8601 date-time (2026-11-30T14:00:00Z), epoch ms, or a duration back from now ("90m", "24h", "7d")');
  const d = /^(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(v.trim());
  if (d) return Math.floor(now - Number(d[1]) * UNITS[d[2]!]!);
  // Date-times only (Date.parse accepts far more: "1", "March"...).
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(v.trim())) {
    throw new HistoryParamError(field, `"${v}" is not an ISO 8601 date-time (2026-11-30T14:00:00Z) nor a duration ("90m", "24h", "7d")`);
  }
  const t = Date.parse(v.trim());
  if (Number.isNaN(t)) throw new HistoryParamError(field, `"${v}" is not a valid date-time`);
  return t;
}

function cidr(v: unknown): Cidr {
  if (typeof v !== 'string') throw new HistoryParamError('remote', 'must be an address or a CIDR prefix (203.0.113.7, 198.18.0.0/15, 2001:db8::/32)');
  const c = parseCidr(v.trim());
  if (!c) throw new HistoryParamError('remote', `"${v}" is not an address or a CIDR prefix (203.0.113.7, 198.18.0.0/15, 2001:db8::/32)`);
  const len = c.family === 'ipv4' ? 4 : 16;
  const bytes = Buffer.from(c.bytes.subarray(0, len));
  // Host bits cleared: the prefix is a range [bytes, bytes | ~mask].
  for (let i = 0; i < len; i++) {
    const bits = Math.max(0, Math.min(8, c.prefix - i * 8));
    bytes[i]! &= (0xff << (8 - bits)) & 0xff;
  }
  return { family: c.family === 'ipv4' ? 4 : 6, bytes, prefix: c.prefix };
}

function str(field: string, v: unknown, max: number, what: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw new HistoryParamError(field, `must be ${what} (1-${max} characters)`);
  return v;
}

export function parseHistoryQuery(p: HistoryQueryInput | undefined, now: number, resolveUser: (name: string) => number | null): HistoryQuery {
  const params = p ?? {};
  if (typeof params !== 'object' || Array.isArray(params)) throw new HistoryParamError('params', 'must be an object');
  const known = new Set(['since', 'until', 'pid', 'comm', 'user', 'unit', 'remote', 'name', 'by', 'limit']);
  for (const k of Object.keys(params)) if (!known.has(k)) throw new HistoryParamError(k, `unknown parameter (known: ${[...known].join(', ')})`);
  const since = parseTime('since', params.since ?? DEFAULT_SINCE, now);
  const until = params.until === undefined ? now : parseTime('until', params.until, now);
  if (until <= since) throw new HistoryParamError('until', 'must be later than since');
  const q: HistoryQuery = { since, until, limit: DEFAULT_LIMIT };
  if (params.pid !== undefined) {
    if (!Number.isInteger(params.pid) || params.pid < 0 || params.pid > 0xffffffff) throw new HistoryParamError('pid', 'must be a process id (a non-negative integer)');
    q.pid = params.pid;
  }
  if (params.comm !== undefined) q.comm = str('comm', params.comm, 64, 'a command name');
  if (params.user !== undefined) {
    if (typeof params.user === 'number') {
      if (!Number.isInteger(params.user) || params.user < 0 || params.user > 0xffffffff) throw new HistoryParamError('user', 'must be a uid or a user name');
      q.uid = params.user;
    } else if (typeof params.user === 'string' && /^\d+$/.test(params.user)) {
      q.uid = Number(params.user);
    } else {
      const name = str('user', params.user, 64, 'a uid or a user name');
      const uid = resolveUser(name);
      if (uid === null) throw new HistoryParamError('user', `no user named "${name}"`);
      q.uid = uid;
    }
  }
  if (params.unit !== undefined) q.unit = str('unit', params.unit, 256, 'a systemd unit name or glob');
  if (params.remote !== undefined) q.remote = cidr(params.remote);
  if (params.name !== undefined) q.name = str('name', params.name, 256, 'a name or glob');
  if (params.by !== undefined) {
    if (!HISTORY_GROUP_BY.includes(params.by as HistoryGroupBy)) throw new HistoryParamError('by', `must be one of ${HISTORY_GROUP_BY.join(', ')}`);
    q.by = params.by as HistoryGroupBy;
  }
  if (params.limit !== undefined) {
    if (!Number.isInteger(params.limit) || params.limit < 1 || params.limit > MAX_LIMIT) throw new HistoryParamError('limit', `must be an integer from 1 to ${MAX_LIMIT}`);
    q.limit = params.limit;
  }
  return q;
}

/** A user name -> uid from /etc/passwd (the API layer may pass its own resolver). */
export function uidFromPasswd(name: string, passwd: string): number | null {
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] && /^\d+$/.test(f[2])) return Number(f[2]);
  }
  return null;
}
