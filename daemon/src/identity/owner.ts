// SPDX-License-Identifier: Apache-2.0
// The resolver's identity (types.ts) as the contract shows it on flows, processes and
// events (contract/identity.ts OwnerIdentity): flat, every field present, null when not
// known or not that kind.
import type { AppIdentity, OwnerIdentity } from '../contract/identity.js';
import type { Identity } from './types.js';

/** The identity of an owner nobody knows (no process, no cgroup). Frozen: shared by every such flow. */
export const NO_IDENTITY: OwnerIdentity = Object.freeze({ cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null });

export function toOwner(id: Omit<Identity, 'tree'>): OwnerIdentity {
  if (id.cgroup === null) return NO_IDENTITY;
  let app: AppIdentity | null = null;
  if (id.app) app = id.app.name !== undefined ? { kind: id.app.kind, id: id.app.id, name: id.app.name } : { kind: id.app.kind, id: id.app.id };
  return Object.freeze({
    cgroupPath: id.cgroup,
    unit: id.unit,
    userUnit: id.userUnit?.unit ?? null,
    slice: id.slice,
    container: id.container ? Object.freeze({ ...id.container }) : null,
    app: app ? Object.freeze(app) : null,
  });
}
