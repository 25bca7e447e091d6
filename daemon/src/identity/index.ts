// SPDX-License-Identifier: Apache-2.0
// Identity, the service every feature asks "who is this" (docs/identity.md): the cgroup v2
// path of an owner's cgroup id, its systemd unit and slice, container and desktop app,
// resolved once per cgroup and cached, and the process tree of a live pid on request.
//
//   identities.of(cgroupId, pid)   what flows, processes and events carry (OwnerIdentity);
//                                  a cache lookup for a cgroup seen before
//   identities.get({pid|cgroupId}) the same with the process tree (identity.get)
//   identityMatcher(filter)        --unit --container --app --cgroup, one rule for every query
//   groupProcesses(totals, by)     top --by unit|container|app
//
// It sits below the features (the architecture test's `services` layer): the monitor and
// capture (its packet comments) take an IdentitySource from app.ts and call of(); history
// and metrics get the names through the monitor's flows and totals.
import type { IdentityResult, IdentityStatus, OwnerIdentity } from '../contract/identity.js';
import { IdentityResolver, type IdentityResolverOptions } from './resolver.js';
import { toOwner } from './owner.js';
import { processUid } from './tree.js';

export { NO_IDENTITY } from './owner.js';
export { groupKey, groupProcesses, identityMatcher, matchesIdentity } from './filter.js';

/** What a feature needs to name the owner of its records. */
export interface IdentitySource {
  /** The identity of the owner with this cgroup id (decimal string, as flows carry it) and
   * pid (helps resolve a cgroup not seen before while the process lives). */
  of(cgroupId: string | null, pid: number | null): OwnerIdentity;
  /** Waits until cgroups of() did not find have been looked for (at most one walk of the
   * hierarchy, rate-limited); of() answers from what it found. */
  settle?(cgroupIds: Iterable<string>): Promise<void>;
  /** The cgroup id of a live process (records that name only a pid: DNS and HTTP). */
  cgroupIdOfPid?(pid: number): string | null;
}

export class Identities implements IdentitySource {
  private readonly resolver: IdentityResolver;
  private readonly procRoot: string | undefined;

  constructor(opts: IdentityResolverOptions = {}) {
    this.resolver = new IdentityResolver(opts);
    this.procRoot = opts.procRoot;
  }

  of(cgroupId: string | null, pid: number | null): OwnerIdentity {
    return this.resolver.owner(cgroupId, pid);
  }

  async settle(cgroupIds: Iterable<string>): Promise<void> {
    // Every id waits on the same walk (the index runs one at a time).
    await Promise.all([...new Set(cgroupIds)].map((cgroupId) => this.resolver.resolveAsync({ cgroupId })));
  }

  /**
   * A process's (or a cgroup's) identity and the process tree up to its unit's main
   * process. Waits for a walk of the hierarchy when the cgroup was never seen.
   * Throws RangeError/TypeError for a bad pid or id (the API validates first).
   */
  async get(q: { pid?: number; cgroupId?: string }): Promise<IdentityResult> {
    const r = await this.resolver.resolveAsync(q);
    return { pid: q.pid ?? null, cgroupId: r.cgroupId, ...toOwner(r), tree: r.tree };
  }

  /** The cgroup v2 id of a live process (decimal, as flows carry it), or null (gone, no cgroup2). */
  cgroupIdOfPid(pid: number): string | null {
    return this.resolver.cgroupIdOfPid(pid);
  }

  /** The real uid of a live process (null when it is gone), for scoping identity.get. */
  processUid(pid: number): number | null {
    return processUid(pid, this.procRoot);
  }

  stats(): IdentityStatus {
    return { cgroupRoot: this.resolver.root, ...this.resolver.stats() };
  }

  close(): void {
    this.resolver.close();
  }
}
