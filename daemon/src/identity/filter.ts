// SPDX-License-Identifier: Apache-2.0
// Filters and grouping by identity (contract/identity.ts IdentityFilter, GroupTotals), over
// the identity fields flows and processes carry, so every query (flows.list,
// processes.list, and later events, captures and history) matches the same way.
import type { GroupTotals, IdentityFilter, OwnerIdentity, ProcessGrouping } from '../contract/identity.js';
import type { ProcessTotals } from '../contract/flows.js';

type Ident = Pick<OwnerIdentity, 'cgroupPath' | 'unit' | 'userUnit' | 'container' | 'app'>;

function unitMatches(pattern: string, unit: string | null): boolean {
  if (!unit) return false;
  return pattern.endsWith('*') ? unit.startsWith(pattern.slice(0, -1)) : unit === pattern;
}

/** True when every filter given matches; no filter given matches everything. */
export function matchesIdentity(id: Ident, f: IdentityFilter): boolean {
  if (f.unit !== undefined && !unitMatches(f.unit, id.unit) && !unitMatches(f.unit, id.userUnit)) return false;
  if (f.container !== undefined) {
    const c = id.container;
    const q = f.container;
    if (!c) return false;
    const byId = c.id === q || (/^[0-9a-f]{12,64}$/.test(q) && c.id.startsWith(q));
    const byName = c.name === q || c.podName === q || c.podUid === q || (c.namespace !== undefined && `${c.namespace}/${c.podName}` === q);
    if (!byId && !byName) return false;
  }
  if (f.app !== undefined) {
    const a = id.app;
    if (!a || (a.id !== f.app && a.name?.toLowerCase() !== f.app.toLowerCase())) return false;
  }
  if (f.cgroup !== undefined) {
    const p = id.cgroupPath;
    const base = f.cgroup === '/' ? '/' : f.cgroup.replace(/\/+$/, '');
    if (p === null || (base !== '/' && p !== base && !p.startsWith(`${base}/`))) return false;
  }
  return true;
}

/** A filter as a predicate, or undefined when it filters nothing (so callers skip the lookup). */
export function identityMatcher(f: IdentityFilter): ((id: Ident) => boolean) | undefined {
  if (f.unit === undefined && f.container === undefined && f.app === undefined && f.cgroup === undefined) return undefined;
  return (id) => matchesIdentity(id, f);
}

/** The group of an identity for `top --by`: its key (null: not of that kind) and how it is shown. */
export function groupKey(id: Ident, by: Exclude<ProcessGrouping, 'process'>): { key: string | null; label: string } {
  switch (by) {
    case 'unit':
      if (id.unit === null) return { key: null, label: '(other)' };
      return id.userUnit ? { key: `${id.unit}/${id.userUnit}`, label: id.userUnit } : { key: id.unit, label: id.unit };
    case 'container': {
      const c = id.container;
      return c ? { key: `${c.runtime}:${c.id}`, label: `${c.runtime}:${c.name ?? c.id.slice(0, 12)}` } : { key: null, label: '(other)' };
    }
    case 'app': {
      const a = id.app;
      return a ? { key: `${a.kind}:${a.id}`, label: a.name ?? a.id } : { key: null, label: '(other)' };
    }
  }
}

/**
 * Per-process totals summed per unit, container or app: each group's totals are the sum of
 * its processes' (which are the sum of their flows), so nothing is counted twice or lost;
 * processes of no such group make one row with `key: null`. Busiest first.
 */
export function groupProcesses(processes: readonly ProcessTotals[], by: Exclude<ProcessGrouping, 'process'>): GroupTotals[] {
  const rows = new Map<string | null, GroupTotals>();
  for (const p of processes) {
    const { key, label } = groupKey(p, by);
    let r = rows.get(key);
    if (!r) {
      r = {
        by, key, label,
        unit: by === 'unit' && key !== null ? p.unit : null,
        userUnit: by === 'unit' && key !== null ? p.userUnit : null,
        container: by === 'container' ? p.container : null,
        app: by === 'app' ? p.app : null,
        pids: [], flows: 0, openFlows: 0, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, lastSeenAt: null,
      };
      rows.set(key, r);
    }
    if (p.pid !== null) r.pids.push(p.pid);
    r.flows += p.flows;
    r.openFlows += p.openFlows;
    r.txBytes += p.txBytes;
    r.rxBytes += p.rxBytes;
    r.txPackets += p.txPackets;
    r.rxPackets += p.rxPackets;
    if (p.lastSeenAt !== null && (r.lastSeenAt === null || p.lastSeenAt > r.lastSeenAt)) r.lastSeenAt = p.lastSeenAt;
  }
  return [...rows.values()].sort((a, b) => b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes));
}
