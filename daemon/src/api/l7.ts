// SPDX-License-Identifier: Apache-2.0
// dns.list and http.list (issue 14), one declaration for JSON-RPC and D-Bus, as monitor.ts
// declares flows.list. A caller outside the `ebpfmon` group sees only its own uid's queries
// and requests (names and paths say as much about a user as the flows do). Without the
// application layer (every l7.* switch off, or a daemon built without it) they answer
// NotAvailable.
import { HTTP_STATUS_PATTERN } from '../contract/l7.js';
import { AppError } from '../errors.js';
import type { L7Api } from '../l7/api.js';
import type { DnsFilter, HttpFilter } from '../l7/store.js';
import { globRegExp } from '../l7/store.js';
import { scopeUid, type Caller } from './caller.js';
import { method } from './method.js';
import { optBool, optInt, optString, paramsObject } from './validate.js';

export type { L7Api };

const MAX_UID = 0xffffffff - 1;
const MAX_PID = 0x7fffffff;
export const MAX_L7_LIMIT = 100_000;
export const DNS_LIST_PARAMS = ['pid', 'uid', 'name', 'limit'] as const;
export const HTTP_LIST_PARAMS = ['pid', 'uid', 'host', 'status', 'method', 'tls', 'limit'] as const;
/** Names and globs: DNS names are at most 253 characters. */
const GLOB_RE = /^[A-Za-z0-9*?._:\-[\]]+$/;

export function dnsFilter(raw: unknown, caller: Caller): DnsFilter {
  const p = paramsObject(raw, DNS_LIST_PARAMS);
  const name = optString(p, 'name', 255, GLOB_RE, 'a DNS name or glob (letters, digits, . - _ * ?), at most 255 characters');
  const f: DnsFilter = { limit: optInt(p, 'limit', 1, MAX_L7_LIMIT) ?? 1000 };
  const pid = optInt(p, 'pid', 0, MAX_PID);
  const uid = scopeUid(caller, optInt(p, 'uid', 0, MAX_UID));
  if (pid !== undefined) f.pid = pid;
  if (uid !== undefined) f.uid = uid;
  if (name !== undefined) f.name = globRegExp(name);
  return f;
}

export function httpFilter(raw: unknown, caller: Caller): HttpFilter {
  const p = paramsObject(raw, HTTP_LIST_PARAMS);
  const host = optString(p, 'host', 255, GLOB_RE, 'a host name, address or glob (letters, digits, . - _ : [ ] * ?), at most 255 characters');
  const status = optString(p, 'status', 3, HTTP_STATUS_PATTERN, 'an HTTP status (404) or class (5xx)');
  const method = optString(p, 'method', 16, /^[A-Z]+$/, 'an HTTP method in upper case (GET)');
  const f: HttpFilter = { limit: optInt(p, 'limit', 1, MAX_L7_LIMIT) ?? 1000 };
  const pid = optInt(p, 'pid', 0, MAX_PID);
  const uid = scopeUid(caller, optInt(p, 'uid', 0, MAX_UID));
  const tls = optBool(p, 'tls');
  if (pid !== undefined) f.pid = pid;
  if (uid !== undefined) f.uid = uid;
  if (host !== undefined) f.host = globRegExp(host);
  if (status !== undefined) f.status = status.endsWith('xx') ? [Number(status[0]) * 100, Number(status[0]) * 100 + 99] : [Number(status), Number(status)];
  if (method !== undefined) f.method = method;
  if (tls !== undefined) f.tls = tls;
  return f;
}

export function l7Methods(l7: L7Api | null) {
  const need = (): L7Api => {
    if (!l7) throw new AppError('NotAvailable', 'the application layer is off (set l7.dns, l7.http or l7.tls in the configuration)');
    return l7;
  };
  return {
    'dns.list': method<'dns.list', DnsFilter>({
      access: 'read',
      validate: (raw, caller) => dnsFilter(raw, caller),
      run: (f) => need().dnsList(f),
    }),
    'http.list': method<'http.list', HttpFilter>({
      access: 'read',
      validate: (raw, caller) => httpFilter(raw, caller),
      run: (f) => need().httpList(f),
    }),
  };
}
