// SPDX-License-Identifier: Apache-2.0
// identity.get, and the identity filters every owner query takes (flows.list,
// processes.list: `unit`, `container`, `app`, `cgroup`), validated once
// here for every transport. The resolving is the identity service's (identity/).
import type { IdentityFilter, IdentityGetParams, IdentityStatus, OwnerIdentity } from '../contract/identity.js';
import { AppError, invalidParam } from '../errors.js';
import { identityMatcher, type Identities } from '../identity/index.js';
import type { Caller } from './caller.js';
import { method } from './method.js';
import { optInt, optString, paramsObject, type Params } from './validate.js';

/** What the API uses of the identity service (a fake can stand in for tests). */
export type IdentityApi = Pick<Identities, 'get' | 'stats' | 'processUid'>;

export const IDENTITY_FILTER_PARAMS = ['unit', 'container', 'app', 'cgroup'] as const;

const MAX_PID = 0x7fffffff;
const MAX_CGROUP_ID = 2n ** 64n - 1n;

/** The identity filters among `p` (already checked for unknown keys), or undefined when none is given. */
export function identityFilterOf(p: Params): IdentityFilter | undefined {
  const f: IdentityFilter = {
    unit: optString(p, 'unit', 256, /^[^/\s]+$/, 'a unit name (`nginx.service`, `app-*.scope`; a trailing * matches a prefix)'),
    container: optString(p, 'container', 256, /^\S+$/, 'a container id (12+ hex digits), name, pod name, namespace/pod or pod UID'),
    app: optString(p, 'app', 256),
    cgroup: optString(p, 'cgroup', 4096, /^\/(?!(.*\/)?\.\.?(\/|$))/, 'an absolute cgroup path like /system.slice (below the cgroup2 mount)'),
  };
  for (const k of IDENTITY_FILTER_PARAMS) if (f[k] === undefined) delete f[k];
  return Object.keys(f).length ? f : undefined;
}

/** The filters as a predicate over an owner's identity (undefined: no filter). */
export function identityPredicate(p: Params): ((id: OwnerIdentity) => boolean) | undefined {
  const f = identityFilterOf(p);
  return f ? identityMatcher(f) : undefined;
}

/** identity.get: a caller outside the ebpfmon group asks about its own processes only. */
export function identityMethods(identity: IdentityApi | null) {
  const available = (): IdentityApi => {
    if (!identity) throw new AppError('NotAvailable', 'identity is not available in this daemon');
    return identity;
  };
  return {
    'identity.get': method<'identity.get', IdentityGetParams>({
      access: 'read',
      validate: (raw, caller: Caller) => {
        const p = paramsObject(raw, ['pid', 'cgroupId']);
        const pid = optInt(p, 'pid', 1, MAX_PID);
        const cgroupId = optString(p, 'cgroupId', 20, /^[1-9]\d{0,19}$/, 'a cgroup id as a decimal string, as flows carry it');
        if (pid === undefined && cgroupId === undefined) throw invalidParam('params.pid', undefined, 'pid or cgroupId (one is required)');
        // Twenty digits may exceed a u64, which no cgroup id does.
        if (cgroupId !== undefined && BigInt(cgroupId) > MAX_CGROUP_ID) throw invalidParam('params.cgroupId', cgroupId, 'a cgroup id (at most 2^64-1)');
        if (!caller.seesAll) {
          if (cgroupId !== undefined) throw new AppError('PermissionDenied', 'only root and the ebpfmon group may look up a cgroup id; ask by pid', { field: 'params.cgroupId', value: cgroupId });
          const uid = available().processUid(pid!);
          if (uid !== null && uid !== caller.uid) throw new AppError('PermissionDenied', `process ${pid} belongs to uid ${uid}: uid ${caller.uid} may only look up its own (join the ebpfmon group to see all)`, { field: 'params.pid', value: pid });
        }
        return { ...(pid !== undefined ? { pid } : {}), ...(cgroupId !== undefined ? { cgroupId } : {}) };
      },
      run: (p) => available().get(p),
    }),
  };
}

/** The identity section of `status` (empty figures when the daemon has no resolver). */
export function identityStatus(identity: IdentityApi | null): IdentityStatus {
  return identity?.stats() ?? { cgroupRoot: null, entries: 0, hits: 0, resolved: 0, misses: 0, byPid: 0, byHandle: 0, byWalk: 0, walks: 0, lastWalkDirs: 0, lastWalkMs: 0, handlesDenied: true };
}
