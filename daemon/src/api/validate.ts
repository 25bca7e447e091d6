// SPDX-License-Identifier: Apache-2.0
// Parameter validation at the API boundary (every transport: JSON-RPC params, D-Bus
// dictionaries converted to objects): every field is checked before use, unknown fields are
// refused (a typo must not silently widen a query), and each failure is an InvalidParams
// error naming the field (`params.pid`), the value and what was expected.
import { invalidParam } from '../errors.js';
import { parseCidr, type Cidr } from '../net/ip.js';

export type Params = Record<string, unknown>;

/** params must be an object (by-name parameters) or absent. */
export function paramsObject(raw: unknown, allowed: readonly string[]): Params {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalidParam('params', raw, 'an object with named parameters');
  const p = raw as Params;
  for (const k of Object.keys(p)) {
    if (!allowed.includes(k)) throw invalidParam(`params.${k}`, p[k], `one of the known parameters (${allowed.join(', ') || 'none'})`);
  }
  return p;
}

export function optInt(p: Params, name: string, min: number, max: number): number | undefined {
  const v = p[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalidParam(`params.${name}`, v, `an integer from ${min} to ${max}`);
  return v;
}

export function optString(p: Params, name: string, maxLen: number, pattern?: RegExp, expected?: string): string | undefined {
  const v = p[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > maxLen || (pattern && !pattern.test(v))) {
    throw invalidParam(`params.${name}`, v, expected ?? `a string of 1 to ${maxLen} characters`);
  }
  return v;
}

export function reqString(p: Params, name: string, maxLen: number, pattern?: RegExp, expected?: string): string {
  const v = optString(p, name, maxLen, pattern, expected);
  if (v === undefined) throw invalidParam(`params.${name}`, undefined, expected ?? 'a string (required)');
  return v;
}

export function optBool(p: Params, name: string): boolean | undefined {
  const v = p[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw invalidParam(`params.${name}`, v, 'true or false');
  return v;
}

export function optEnum<T extends string>(p: Params, name: string, values: readonly T[]): T | undefined {
  const v = p[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !values.includes(v as T)) throw invalidParam(`params.${name}`, v, `one of ${values.join(', ')}`);
  return v as T;
}

export function optEnumList<T extends string>(p: Params, name: string, values: readonly T[]): T[] | undefined {
  const v = p[name];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length === 0 || v.length > values.length * 2 || v.some((x) => typeof x !== 'string' || !values.includes(x as T))) {
    throw invalidParam(`params.${name}`, v, `a non-empty array of ${values.join(', ')}`);
  }
  return [...new Set(v as T[])];
}

export function optCidr(p: Params, name: string): Cidr | undefined {
  const v = p[name];
  if (v === undefined) return undefined;
  const c = typeof v === 'string' && v.length <= 64 ? parseCidr(v) : null;
  if (!c) throw invalidParam(`params.${name}`, v, 'an IPv4 or IPv6 address, optionally with a /prefix');
  return c;
}
