// SPDX-License-Identifier: Apache-2.0
// PROPOSED API types for issue 14 (not wired: the lead adds them to the contract module).
import type { DnsQueryRecord } from './dns/tracker.js';
import type { HttpEvent } from './pipeline.js';

/** `dns.list` params: own processes for a user; all for root/ebpfmon group. */
export interface DnsListParams { pid?: number; name?: string /* glob */; limit?: number }
export interface DnsListResult { queries: DnsQueryRecord[] }
/** `http.list` params. */
export interface HttpListParams { pid?: number; host?: string /* glob */; status?: string /* "5xx" | "404" */; limit?: number }
export interface HttpListResult { requests: HttpEvent[] }
/** Event types added to `events`: `dns` (a DnsQueryRecord), `http` (an HttpEvent). */
export type L7EventType = 'dns' | 'http';
/** New flow fields. */
export interface L7FlowFields { remoteName?: string; serverName?: string; tlsVersion?: string }
/** Config keys: l7.dns, l7.http, l7.tls (booleans, default false), l7.keepQuery (default false). */
export interface L7Config { dns: boolean; http: boolean; tls: boolean; keepQuery: boolean }
/** `status.l7.tls`: libraries hooked and not hooked. */
export interface TlsHookStatus { hooked: Array<{ path: string; pids: number[] }>; notHooked: Array<{ pid: number; comm: string; reason: string }> }
