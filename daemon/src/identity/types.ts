// SPDX-License-Identifier: Apache-2.0
// What a cgroup (and a process in it) is, in the words people use: the systemd unit, the
// container, the desktop app, and the process chain up to the unit's main process. The
// resolver's own shape; identity.ts projects it onto the contract's (OwnerIdentity).
import type { AppKind, ContainerIdentity, ContainerRuntime, KubernetesQos } from '../contract/identity.js';

export type { AppKind, ContainerRuntime, KubernetesQos };

/** As the contract shows it (contract/identity.ts ContainerIdentity). */
export type ContainerInfo = ContainerIdentity;

export interface AppInfo {
  kind: AppKind;
  /** Flatpak application id, snap name, or the desktop file id (without `.desktop`). */
  id: string;
  /** The .desktop file id the name is looked up under (snap: `<snap>_<app>`). */
  desktopId: string;
  /** `Name=` of the .desktop file, when one is found in the XDG data dirs. */
  name?: string;
  /** The launcher part of `app-<launcher>-<id>-<random>.scope` (gnome, KDE, flatpak...). */
  launcher?: string;
}

export interface UserUnit {
  uid: number;
  /** The unit inside the user manager (`user@UID.service`), e.g. app-gnome-org.gnome.Terminal-4321.scope. */
  unit: string | null;
  slice: string | null;
}

export interface TreeEntry {
  pid: number;
  comm: string;
}

export interface Identity {
  /** cgroup v2 id (what bpf_get_current_cgroup_id returns), as flows carry it. */
  cgroupId: string | null;
  /** Path below the cgroup2 root, `/system.slice/nginx.service`; null when the id is unknown (the cgroup is gone). */
  cgroup: string | null;
  /** System-level unit (service or scope); user units are under `userUnit`. */
  unit: string | null;
  slice: string | null;
  userUnit?: UserUnit;
  container?: ContainerInfo;
  app?: AppInfo;
  /** The process, its parent, ... up to the unit's main process (empty without a live pid). */
  tree: TreeEntry[];
}
