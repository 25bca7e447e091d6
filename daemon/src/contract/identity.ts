// SPDX-License-Identifier: Apache-2.0
// Who a flow or a process belongs to in the words people use (docs/identity.md):
// its cgroup v2 path, systemd unit and slice, container and desktop app; the filters and
// groupings over them (`--unit --container --app --cgroup`, `top --by`); `identity.get`
// (D-Bus GetIdentity) with the process tree; and the sockets that change hands
// (`attributedBy: "user"`), whose counters are in `status`.

/** Container runtimes, by how their cgroups are named. `cri`: a Kubernetes container whose
 * cgroup name does not say which CRI runtime made it, and whose runtime state is not here. */
export const CONTAINER_RUNTIMES = ['docker', 'containerd', 'cri-o', 'podman', 'systemd-nspawn', 'libvirt', 'lxc', 'cri'] as const;
export type ContainerRuntime = (typeof CONTAINER_RUNTIMES)[number];

export const KUBERNETES_QOS = ['guaranteed', 'burstable', 'besteffort'] as const;
export type KubernetesQos = (typeof KUBERNETES_QOS)[number];

export interface ContainerIdentity {
  runtime: ContainerRuntime;
  /** 64 hex digits for OCI runtimes; the machine name for systemd-nspawn, libvirt, LXC. */
  id: string;
  /** The runtime's name for it (docker/podman name, Kubernetes container name), read locally. */
  name?: string;
  /** Kubernetes: the pod's UID (from the cgroup path), name and namespace (from local runtime state), QoS class. */
  podUid?: string;
  podName?: string;
  namespace?: string;
  qos?: KubernetesQos;
  /** Podman: the pod it belongs to. */
  podId?: string;
}

export const APP_KINDS = ['flatpak', 'snap', 'desktop'] as const;
export type AppKind = (typeof APP_KINDS)[number];

export interface AppIdentity {
  kind: AppKind;
  /** Flatpak application id, snap name, or the .desktop file id of an `app-*.scope` unit. */
  id: string;
  /** `Name=` of its .desktop file, when one is installed. */
  name?: string;
}

/**
 * The identity fields every flow and process total carries (null: not known, or
 * not that kind: a host process has no container). Resolved from the owner's cgroup id
 * once per cgroup and cached by the daemon.
 */
export interface OwnerIdentity {
  /** cgroup v2 path below the cgroup2 mount: `/system.slice/nginx.service`. */
  cgroupPath: string | null;
  /** The system unit (service or scope); `user@1000.service` for a user's session units. */
  unit: string | null;
  /** The unit inside a user manager (`user@UID.service`): `app-gnome-org.gnome.Evince-1234.scope`. */
  userUnit: string | null;
  /** The system unit's slice (`system.slice`, `user-1000.slice`). */
  slice: string | null;
  container: ContainerIdentity | null;
  app: AppIdentity | null;
}

/** Field names of OwnerIdentity, in the order they are listed. */
export const IDENTITY_FIELDS = ['cgroupPath', 'unit', 'userUnit', 'slice', 'container', 'app'] as const satisfies ReadonlyArray<keyof OwnerIdentity>;

/**
 * Who the event's process is, in people's words: the same fields and shapes as flows carry
 * (OwnerIdentity), with the cgroup id they were resolved from (null:
 * no process owns it, or the process predates the daemon and the start-up scan could not
 * read its cgroup).
 */
export interface EventOwner extends OwnerIdentity {
  cgroupId: string | null;
}

/** The owner fields of connect, accept, close, exec, exit, dns and http events, in `row` order. */
export const EVENT_OWNER_FIELDS = ['cgroupId', ...IDENTITY_FIELDS] as const satisfies ReadonlyArray<keyof EventOwner>;

/**
 * Filters on identity, taken by flows.list and processes.list (D-Bus
 * GetFlows and GetProcessTotals; CLI --unit --container --app --cgroup). All must match:
 *   unit       the unit or the user unit; a trailing `*` matches a prefix (`echo@*`)
 *   container  its id or a prefix of 12+ hex digits, its name, pod name, `namespace/pod`, or pod UID
 *   app        the app id, or its .desktop Name (any case)
 *   cgroup     the cgroup path or any ancestor (`/system.slice` selects every service)
 */
export interface IdentityFilter {
  unit?: string;
  container?: string;
  app?: string;
  cgroup?: string;
}

export const IDENTITY_FILTERS = ['unit', 'container', 'app', 'cgroup'] as const satisfies ReadonlyArray<keyof IdentityFilter>;

/** How processes.list groups its totals (`top --by`). */
export const PROCESS_GROUPINGS = ['process', 'unit', 'container', 'app'] as const;
export type ProcessGrouping = (typeof PROCESS_GROUPINGS)[number];

/**
 * One row of processes.list `by: unit|container|app`: the totals of every process of the
 * group, which equal the sum of those processes' flows. Processes of no such group (a host
 * process `by: container`) are one row with `key: null`.
 */
export interface GroupTotals {
  by: Exclude<ProcessGrouping, 'process'>;
  /** The unit (`user@1000.service/<user unit>` for user units), `<runtime>:<id>`, `<kind>:<id>`; null for the rest. */
  key: string | null;
  /** Shown by `ebpfmonctl top --by`: the unit, `<runtime>:<name or short id>`, the app's Name or id, or `(other)`. */
  label: string;
  unit: string | null;
  userUnit: string | null;
  container: ContainerIdentity | null;
  app: AppIdentity | null;
  /** The processes in the group (traffic of no known process is counted in the `key: null` row, without a pid). */
  pids: number[];
  flows: number;
  openFlows: number;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  lastSeenAt: string | null;
}

export interface ProcessTreeEntry {
  pid: number;
  comm: string;
}

/** `identity.get` (D-Bus GetIdentity): by pid (the tree needs a live process) or by cgroup id. */
export interface IdentityGetParams {
  pid?: number;
  /** Decimal string, as flows carry it. */
  cgroupId?: string;
}

export interface IdentityResult extends OwnerIdentity {
  pid: number | null;
  cgroupId: string | null;
  /** The process, its parent, ... up to the unit's (or container's) main process. Empty without a pid. */
  tree: ProcessTreeEntry[];
}

/** The resolver's cache and how it found paths (`status.identity`). */
export interface IdentityStatus {
  /** Where cgroup v2 is mounted (null: none; identities stay empty). */
  cgroupRoot: string | null;
  /** Cgroups cached, and lookups answered from the cache, resolved, or not found. */
  entries: number;
  hits: number;
  resolved: number;
  misses: number;
  /** How paths were found: from a live pid, open_by_handle_at, or a walk of the hierarchy. */
  byPid: number;
  byHandle: number;
  byWalk: number;
  walks: number;
  lastWalkDirs: number;
  lastWalkMs: number;
  /** open_by_handle_at refused (no CAP_DAC_READ_SEARCH): unknown ids need a walk. */
  handlesDenied: boolean;
}

/**
 * Counters of the sockets-that-change-hands probes (bpf/handoff.h enum emon_ho_stat, in
 * order; the name is the enumerator's in camelCase, checked against BTF).
 */
export const HANDOFF_COUNTERS = ['slowPath', 'handoffs', 'shared', 'ownersFilled', 'flowsPatched', 'updateFailed'] as const;
export type HandoffCounterName = (typeof HANDOFF_COUNTERS)[number];

/** `status.handoff`: whether traffic goes to the process that uses a socket. */
export interface HandoffStatus {
  /** The alternative in use (as `probes` labels it, capability `socket-user`), or null: owners keep the creator/connector rule. */
  active: string | null;
  /** Sockets recorded as having changed hands (emon_handoffs). */
  sockets: number;
  /** updateFailed: map updates the kernel refused (a handoff not recorded). */
  counters: Record<HandoffCounterName, number>;
}
