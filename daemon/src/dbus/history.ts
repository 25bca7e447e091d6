// SPDX-License-Identifier: Apache-2.0
// GetHistory: JSON-RPC history.query on D-Bus, over the API (the same validation, naming
// `filter.X`, and the same uid scoping). The result splits into a summary a{sv} (window,
// totals, source) and the rows (flows, or groups with `by`), with the JSON-RPC field names.
import type { HistoryFlow, HistoryGroup, HistoryQueryParams, HistoryQueryResult, HistoryTotals } from '../contract/history.js';
import { withFieldPrefix, type Caller, type MethodTable } from '../api/index.js';
import { dictOf, readDict, type Dict, type FieldKind, type ValueSig } from './convert.js';

/** GetHistory filter keys: the params of history.query, with their variant types. */
export const HISTORY_FILTER: { readonly [K in keyof HistoryQueryParams]-?: FieldKind } = {
  since: 'string', until: 'string', pid: 'int', comm: 'string', user: 'int-or-string', unit: 'string',
  remote: 'string', name: 'string', by: 'string', limit: 'int',
};

const COUNTS: { readonly [K in keyof HistoryTotals]-?: ValueSig } = { txBytes: 't', rxBytes: 't', txPackets: 't', rxPackets: 't', connections: 't' };

export const HISTORY_FLOW_TYPES: { readonly [K in keyof HistoryFlow]-?: ValueSig } = {
  ...COUNTS, state: 's', protocol: 's', family: 's', localAddr: 's', localPort: 'u', remoteAddr: 's', remotePort: 'u', remoteName: 's',
  interface: 's', direction: 's', attributedBy: 's', pid: 'u', comm: 's', uid: 'u', exe: 's', cgroupId: 't', unit: 's',
  firstSeenAt: 's', lastRecordAt: 's', closedAt: 's',
};

export const HISTORY_GROUP_TYPES: { readonly [K in keyof HistoryGroup]-?: ValueSig } = {
  ...COUNTS, pid: 'u', comm: 's', uid: 'u', exe: 's', unit: 's', remoteAddr: 's', remotePort: 'u', protocol: 's', name: 's',
  startsAt: 's', firstRecordAt: 's', lastRecordAt: 's',
};

type Summary = Omit<HistoryQueryResult, 'flows' | 'groups' | 'totals'> & HistoryTotals;
export const HISTORY_SUMMARY_TYPES: { readonly [K in keyof Summary]-?: ValueSig } = {
  ...COUNTS, since: 's', until: 's', by: 's', source: 's', recordsSince: 's', matched: 'u', truncated: 'b',
};

export async function getHistory(methods: MethodTable, raw: unknown, caller: Caller): Promise<[Dict, Dict[]]> {
  const m = methods['history.query'];
  const q = withFieldPrefix('filter', () => m.validate(readDict(raw, 'filter', HISTORY_FILTER), caller));
  const r = await m.run(q, caller);
  const summary = dictOf({ ...r, ...r.totals, by: r.by ?? '', recordsSince: r.recordsSince ?? '' }, HISTORY_SUMMARY_TYPES);
  const rows = r.flows ? r.flows.map((f) => dictOf(f, HISTORY_FLOW_TYPES)) : (r.groups ?? []).map((g) => dictOf(g, HISTORY_GROUP_TYPES));
  return [summary, rows];
}
