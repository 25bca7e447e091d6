// SPDX-License-Identifier: Apache-2.0
// Who owns an event, memoised per cgroup id: connect/accept/close/exec/exit events carry
// their owner's identity (contract/events.ts EventOwner, the fields flows carry), in both
// of the decoder's forms and for the events filter. The identity service already caches
// per cgroup, but asking it costs a decimal string of the id, a clock read and a map
// lookup; at tens of thousands of events a second from a few cgroups this memo answers
// with one Map lookup by the id as a number, and keeps the row's JSON of the owner ready.
//
// An entry is asked again after `recheckMs` (the service re-reads container and app names
// after identity.namesTtlSec, and a cgroup it did not find yet may be found by a walk);
// that also bounds how often an id that cannot be resolved reaches the service: /proc and
// cgroupfs are never read per event.
import type { EventOwner } from '../contract/events.js';
import type { OwnerIdentity } from '../contract/identity.js';
import { NO_IDENTITY } from '../identity/index.js';

export interface OwnerEntry {
  readonly owner: EventOwner;
  /** The owner's values in EVENT_OWNER_FIELDS order, as JSON, each preceded by a comma
   * (appended to a row as it is). */
  readonly row: string;
  /** `row` as UTF-8 (what encodeRowInto copies). */
  readonly rowBytes: Uint8Array;
  identity: OwnerIdentity;
  checkedMs: number;
}

const ownerRow = (o: EventOwner): string => {
  const a = JSON.stringify([o.cgroupId, o.cgroupPath, o.unit, o.userUnit, o.slice, o.container, o.app]);
  return `,${a.slice(1, -1)}`;
};

function entry(cgroupId: string | null, id: OwnerIdentity, now: number): OwnerEntry {
  // Written out rather than spread: one object shape for every event.
  const owner: EventOwner = { cgroupId, cgroupPath: id.cgroupPath, unit: id.unit, userUnit: id.userUnit, slice: id.slice, container: id.container, app: id.app };
  const row = ownerRow(owner);
  return { owner, row, rowBytes: Buffer.from(row), identity: id, checkedMs: now };
}

/** The owner of events no process owns (and of exits whose exec was not seen). */
export const NO_OWNER: OwnerEntry = Object.freeze(entry(null, NO_IDENTITY, Infinity));

export interface OwnerMemoOptions {
  /** Ask the identity service again after this (default 1000 ms). */
  recheckMs?: number;
  /** Cgroups remembered (default 4096; all forgotten at once beyond, as the decoder's caches). */
  maxEntries?: number;
  now?: () => number;
}

export class OwnerMemo {
  private readonly byId = new Map<number, OwnerEntry>();
  private readonly recheckMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** Times the identity service was asked (the rest were answered here). */
  asked = 0;

  /** `source`: the identity service's of() (null: identity fields stay null, the id is still given). */
  constructor(private readonly source: ((cgroupId: string, pid: number | null) => OwnerIdentity) | null, opts: OwnerMemoOptions = {}) {
    this.recheckMs = opts.recheckMs ?? 1000;
    this.maxEntries = opts.maxEntries ?? 4096;
    this.now = opts.now ?? Date.now;
  }

  /**
   * The owner with cgroup id `cg` (the u64 as a number: cgroup ids are kernfs node ids,
   * far below 2^53; 0: none) and, when known, its pid (lets the service resolve a cgroup it
   * has not seen while the process lives).
   */
  of(cg: number, pid: number | null): OwnerEntry {
    if (cg === 0) return NO_OWNER;
    let e = this.byId.get(cg);
    if (e !== undefined) {
      const now = this.now();
      if (now - e.checkedMs < this.recheckMs) return e;
      if (this.source === null) {
        e.checkedMs = now;
        return e;
      }
      const id = this.ask(e.owner.cgroupId!, pid);
      if (id === e.identity) {
        e.checkedMs = now;
        return e;
      }
      e = entry(e.owner.cgroupId, id, now);
    } else {
      const cgroupId = String(cg);
      const now = this.now();
      e = entry(cgroupId, this.ask(cgroupId, pid), now);
      if (this.byId.size >= this.maxEntries) this.byId.clear();
    }
    this.byId.set(cg, e);
    return e;
  }

  private ask(cgroupId: string, pid: number | null): OwnerIdentity {
    if (this.source === null) return NO_IDENTITY;
    this.asked++;
    try {
      return this.source(cgroupId, pid);
    } catch {
      // An event without its owner's names beats losing the rest of the ring's drain.
      return NO_IDENTITY;
    }
  }

  /** The same for an id given as a decimal string (as the process table keeps it), or null. */
  ofString(cgroupId: string | null, pid: number | null): OwnerEntry {
    return cgroupId === null ? NO_OWNER : this.of(Number(cgroupId), pid);
  }
}
