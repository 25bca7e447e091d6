// SPDX-License-Identifier: Apache-2.0
// Group lookups through the system's name service (getgrnam_r: /etc/group, LDAP, SSSD...,
// as nsswitch.conf says), cached for a few seconds: admins add groups while the daemon
// runs, and a lookup may cost a network round trip on a directory-backed machine.
import { getgrnamR, getpwnamR } from './libc.js';

const TTL_MS = 2000;
const cache = new Map<string, { gid: number | null; at: number }>();

/** The gid of group `name`, or null when the name service has no such group. */
export function groupGid(name: string, now = Date.now()): number | null {
  const hit = cache.get(name);
  if (hit && now - hit.at < TTL_MS) return hit.gid;
  const gid = getgrnamR(name);
  cache.set(name, { gid, at: now });
  return gid;
}

/** The uid of user `name` through the name service, or null when there is no such user. */
export function userUid(name: string): number | null {
  return getpwnamR(name);
}
