// SPDX-License-Identifier: Apache-2.0
// processes()' rows kept per owner between calls (issue 17, `top` at 100k flows): a row is
// rebuilt (its ISO date, its object, and downstream its places and its JSON) only when
// something it shows changed; otherwise the caller gets the same object as last time, which
// the API's incremental replies (api/processdelta.ts) recognise by reference.
//
// What decides "changed" is the row's inputs compared field by field (the owner's sums,
// strings, the wall-clock ms of its last stamp, its HTTP counts, identity and remotes), not
// a record of which owners the dirty ring touched: totals also move through retired flows,
// HTTP summaries, the process table and the identity resolver, and a comparison cannot miss
// any of them. It costs a few compares per owner instead of building the row.
//
// Written here rather than taken from a library: a Map per query shape and a comparison
// specific to the row.
import type { OwnerIdentity } from '../contract/identity.js';
import type { ProcessHttpSummary } from '../contract/l7.js';
import { compareProcessRows, type ProcessTotals } from '../contract/flows.js';

/** The inputs of one row, as processes() accumulates them: the row's own fields before its
 * identity, places and stamp are added. */
export type RowInputs = Pick<ProcessTotals, 'pid' | 'comm' | 'uid' | 'exe' | 'cgroupId' | 'flows' | 'openFlows' | 'txBytes' | 'rxBytes' | 'txPackets' | 'rxPackets' | 'http'>;

interface RemoteLike {
  addr: string;
  flows: number;
  txBytes: number;
  rxBytes: number;
}

type Row = ProcessTotals & { remotes?: RemoteLike[] };

interface Kept<R extends Row> {
  row: R;
  /** lastSeenAt as wall-clock ms (null: none). */
  ms: number | null;
}

/** Query shapes kept (uid filter x remotes): `top`, the D-Bus totals, an export, a few users. */
const MAX_SHAPES = 8;

export class ProcessRowCache<R extends Row> {
  private readonly shapes = new Map<string, Map<number | null, Kept<R>>>();
  /** Rows handed out again, and rows built (tests and status read them). */
  readonly stats = { reused: 0, built: 0 };

  /** The rows of one query shape (created, and made the most recent). */
  shape(uid: number | undefined, remotes: boolean): Map<number | null, Kept<R>> {
    const k = `${uid ?? ''}/${remotes ? 1 : 0}`;
    let m = this.shapes.get(k);
    if (m) this.shapes.delete(k);
    else m = new Map();
    this.shapes.set(k, m);
    if (this.shapes.size > MAX_SHAPES) this.shapes.delete(this.shapes.keys().next().value!);
    return m;
  }

  /** The kept row of `key` when it shows exactly these inputs, else null. */
  reuse(m: Map<number | null, Kept<R>>, key: number | null, t: RowInputs, ms: number | null, id: OwnerIdentity, remotes: Iterable<RemoteLike> | null): R | null {
    const k = m.get(key);
    if (!k) return null;
    const r = k.row;
    const same = k.ms === ms && r.pid === t.pid && r.comm === t.comm && r.uid === t.uid && r.exe === t.exe && r.cgroupId === t.cgroupId
      && r.flows === t.flows && r.openFlows === t.openFlows && r.txBytes === t.txBytes && r.rxBytes === t.rxBytes
      && r.txPackets === t.txPackets && r.rxPackets === t.rxPackets && sameHttp(r.http, t.http)
      && r.cgroupPath === id.cgroupPath && r.unit === id.unit && r.userUnit === id.userUnit && r.slice === id.slice
      && r.container === id.container && r.app === id.app && (remotes === null ? r.remotes === undefined : sameRemotes(r.remotes, remotes));
    if (!same) return null;
    this.stats.reused++;
    return r;
  }

  keep(m: Map<number | null, Kept<R>>, key: number | null, row: R, ms: number | null): void {
    m.set(key, { row, ms });
    this.stats.built++;
  }

  /** Forgets the rows of owners no longer listed (`live`: every owner of this call, before filters). */
  prune(m: Map<number | null, Kept<R>>, live: Map<number | null, unknown>): void {
    if (m.size <= live.size) return;
    for (const k of m.keys()) if (!live.has(k)) m.delete(k);
  }
}

function sameHttp(a: ProcessHttpSummary | null, b: ProcessHttpSummary | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  return a.requests === b.requests && a.clientErrors === b.clientErrors && a.serverErrors === b.serverErrors
    && a.requestBytes === b.requestBytes && a.responseBytes === b.responseBytes;
}

function sameRemotes(kept: RemoteLike[] | undefined, now: Iterable<RemoteLike>): boolean {
  if (!kept) return false;
  let i = 0;
  for (const x of now) {
    const y = kept[i++];
    if (!y || y.addr !== x.addr || y.flows !== x.flows || y.txBytes !== x.txBytes || y.rxBytes !== x.rxBytes) return false;
  }
  return i === kept.length;
}

/** processes.list's order, from the contract (re-exported for the monitor's callers). */
export { compareProcessRows };
