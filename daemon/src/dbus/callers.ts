// SPDX-License-Identifier: Apache-2.0
// Who is calling: the uid and supplementary groups the bus daemon recorded for a unique
// connection name (org.freedesktop.DBus.GetConnectionCredentials: UnixUserID, and
// UnixGroupIDs from SO_PEERGROUPS on dbus-daemon >= 1.14 / Linux >= 4.13). Credentials of a
// connection never change and unique names are never reused, so they are looked up once
// per connection and forgotten when it disconnects (NameOwnerChanged). Whether a caller
// sees everything is decided per call: the groups' gids are read from /etc/group, which
// admins edit while the daemon runs.
import dbus, { type MessageBus, type Variant } from 'dbus-next';
import { groupGid } from '../sys/users.js';
import { FDO } from '../contract/dbus.js';
import { withTimeout } from './bus.js';

export interface Credentials {
  uid: number;
  pid: number | null;
  /** Supplementary groups (and the primary one); null when the bus does not report them. */
  gids: number[] | null;
}

export interface Scope {
  /** root or a member of the `ebpfmon` group: sees every uid. */
  seesAll: boolean;
  /** root or a member of the `ebpfmon-admin` group: may change the load balancer without polkit. */
  admin: boolean;
}

export interface AccessGroups {
  group: string;
  adminGroup: string;
}

export function scopeOf(c: Credentials, groups: AccessGroups): Scope {
  const root = c.uid === 0;
  const member = (name: string) => {
    const gid = groupGid(name);
    return gid !== null && c.gids !== null && c.gids.includes(gid);
  };
  return { seesAll: root || member(groups.group), admin: root || member(groups.adminGroup) };
}

const LOOKUP_TIMEOUT_MS = 5000;
/** Far above what a bus allows (2048 connections by default): a backstop, not a policy. */
const MAX_CACHED = 8192;

export class Callers {
  private readonly known = new Map<string, Credentials>();
  private readonly pending = new Map<string, Promise<Credentials>>();
  /** The bus did not report groups (old dbus-daemon): such callers are treated as non-members. */
  groupsUnavailable = 0;

  constructor(private readonly bus: MessageBus) {}

  get size(): number {
    return this.known.size;
  }

  get(sender: string): Promise<Credentials> {
    const c = this.known.get(sender);
    if (c) return Promise.resolve(c);
    let p = this.pending.get(sender);
    if (!p) {
      p = this.lookup(sender).finally(() => this.pending.delete(sender));
      this.pending.set(sender, p);
    }
    return p;
  }

  /** The connection is gone. */
  forget(sender: string): void {
    this.known.delete(sender);
  }

  private async lookup(sender: string): Promise<Credentials> {
    const reply = await withTimeout(
      this.bus.call(new dbus.Message({ destination: FDO.name, path: FDO.path, interface: FDO.iface, member: 'GetConnectionCredentials', signature: 's', body: [sender] })),
      LOOKUP_TIMEOUT_MS, 'GetConnectionCredentials',
    );
    const creds = (reply?.body[0] ?? {}) as Record<string, Variant>;
    let uid = creds.UnixUserID?.value as number | undefined;
    if (uid === undefined) {
      const r = await withTimeout(
        this.bus.call(new dbus.Message({ destination: FDO.name, path: FDO.path, interface: FDO.iface, member: 'GetConnectionUnixUser', signature: 's', body: [sender] })),
        LOOKUP_TIMEOUT_MS, 'GetConnectionUnixUser',
      );
      uid = r?.body[0] as number;
    }
    const gids = Array.isArray(creds.UnixGroupIDs?.value) ? (creds.UnixGroupIDs.value as number[]) : null;
    if (gids === null) this.groupsUnavailable++;
    const c: Credentials = { uid, pid: (creds.ProcessID?.value as number | undefined) ?? null, gids };
    if (this.known.size >= MAX_CACHED) this.known.delete(this.known.keys().next().value as string);
    this.known.set(sender, c);
    return c;
  }
}
