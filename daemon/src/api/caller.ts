// SPDX-License-Identifier: Apache-2.0
// Who is calling, as every transport establishes it (SO_PEERCRED on the socket, the bus's
// GetConnectionCredentials on D-Bus), and what that lets them see.
import { AppError } from '../errors.js';

export interface Caller {
  uid: number;
  /** Primary gid, when the transport knows it. */
  gid: number | null;
  /** The calling process, when the transport knows it. */
  pid: number | null;
  /** root or a member of the `ebpfmon` group (config access.group): sees every uid. */
  seesAll: boolean;
  /** root or a member of the `ebpfmon-admin` group (config access.adminGroup): may change the load balancer. */
  admin: boolean;
}

/** The daemon itself, reading for a transport that filters per caller afterwards. */
export const SYSTEM_CALLER: Caller = Object.freeze({ uid: 0, gid: 0, pid: null, seesAll: true, admin: false });

/**
 * The uid whose data a caller may see for a request naming `requested` (or none): its
 * own, unless it sees everything. Asking for another uid without the right is refused,
 * not silently narrowed.
 */
export function scopeUid(caller: Pick<Caller, 'uid' | 'seesAll'>, requested: number | undefined, field = 'params.uid'): number | undefined {
  if (caller.seesAll) return requested;
  if (requested !== undefined && requested !== caller.uid) {
    throw new AppError('PermissionDenied', `uid ${caller.uid} may only see its own flows (join the ebpfmon group to see all)`, { field, value: requested });
  }
  return caller.uid;
}
