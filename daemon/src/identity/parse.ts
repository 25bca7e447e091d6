// SPDX-License-Identifier: Apache-2.0
// What a cgroup v2 path says about its processes, from the names systemd, the container
// runtimes and the desktop launchers give their cgroups. Pure functions over the path; the
// names the runtimes keep elsewhere are read by names.ts and desktop.ts.
//
// Naming, by who creates the cgroup (examples in test/unit/daemon/identity/parse.test.ts):
//   systemd           /system.slice/nginx.service, /user.slice/user-1000.slice/session-2.scope,
//                     /user.slice/user-1000.slice/user@1000.service/app.slice/<user unit>
//   docker            /system.slice/docker-<id>.scope (systemd driver), /docker/<id> (cgroupfs)
//   containerd        cri-containerd-<id>.scope, nerdctl-<id>.scope; /<namespace>/<id> (cgroupfs)
//   CRI-O             crio-<id>.scope (crio-conmon-<id>.scope is its monitor, not a container)
//   podman            /machine.slice/libpod-<id>.scope[/container], machine-libpod_pod_<pod>.slice,
//                     /libpod_parent/libpod-<id> (cgroupfs); libpod-conmon-<id>.scope is conmon
//   Kubernetes        /kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/<runtime scope>
//                     /kubepods/<qos>/pod<uid>/<id> (cgroupfs); Guaranteed pods have no <qos> level
//   systemd-nspawn    /machine.slice/systemd-nspawn@<name>.service/payload/..., machine-<name>.scope
//   libvirt, LXC      machine-qemu\x2d<n>\x2d<domain>.scope; /lxc.payload.<name>
//   Flatpak           .../user@1000.service/app.slice/app-flatpak-<appid>-<pid>.scope
//   Snap              snap.<snap>.<app>-<uuid>.scope (apps), snap.<snap>.<app>.service (daemons)
//   desktop launchers app-<launcher>-<appid>-<random>.scope, app-<launcher>-<appid>@<random>.service,
//                     app-<appid>@autostart.service (systemd.io/DESKTOP_ENVIRONMENTS)
import { isUnit, splitUnitName, unescapeUnitName } from './unitname.js';
import type { AppInfo, ContainerInfo, KubernetesQos, UserUnit } from './types.js';

export interface ParsedCgroup {
  unit: string | null;
  slice: string | null;
  userUnit?: UserUnit;
  container?: ContainerInfo;
  app?: AppInfo;
  /** Where the runtime keeps its state, for names.ts: containerd's namespace (cgroupfs driver). */
  containerdNamespace?: string;
}

const HEX64 = /^[0-9a-f]{64}$/;
/** Scope names of OCI runtimes: prefix -> runtime (the rest must be a 64-hex id, which rules
 * out the runtimes' monitors: crio-conmon-<id>, libpod-conmon-<id>). */
const SCOPE_PREFIXES: Array<[string, ContainerInfo['runtime']]> = [
  ['docker-', 'docker'],
  ['cri-containerd-', 'containerd'],
  ['nerdctl-', 'containerd'],
  ['crio-', 'cri-o'],
  ['libpod-', 'podman'],
];
const POD = /^(?:kubepods-(?:burstable-|besteffort-)?)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$/;
const PODMAN_POD = /^(?:machine|user)-libpod_pod_([0-9a-f]{64})\.slice$/;
const UUID = /-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Components that are cgroupfs parents, never a containerd namespace. */
const NOT_A_NAMESPACE = new Set(['docker', 'kubepods', 'burstable', 'besteffort', 'libpod_parent', 'lxc', 'payload', 'container', 'supervisor']);

/** The cgroup v2 path of a process from the text of /proc/<pid>/cgroup (the `0::` line); null if it has none. */
export function v2PathFromProcCgroup(text: string): string | null {
  const m = /^0::(\/.*)$/m.exec(text);
  return m ? m[1]!.replace(/ \(deleted\)$/, '') : null;
}

export function parseCgroupPath(path: string): ParsedCgroup {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new TypeError(`cgroup path must be absolute below the cgroup2 root (like /system.slice/foo.service), got ${JSON.stringify(path)}`);
  }
  const parts = path.split('/').filter((p) => p !== '');
  const out: ParsedCgroup = { unit: null, slice: null };

  // systemd: the first unit from the root is the system unit (everything below it is its
  // delegated subtree); the slice is the last one above it.
  const sys = unitAndSlice(parts);
  out.unit = sys.unit;
  out.slice = sys.slice;
  const userMgr = out.unit ? /^user@(\d+)\.service$/.exec(out.unit) : null;
  if (userMgr) {
    const inner = unitAndSlice(parts.slice(sys.index + 1));
    out.userUnit = { uid: Number(userMgr[1]), unit: inner.unit, slice: inner.slice };
  }

  const container = findContainer(parts);
  if (container) {
    out.container = container.info;
    if (container.containerdNamespace) out.containerdNamespace = container.containerdNamespace;
  }

  const app = (out.userUnit?.unit ? parseAppUnit(out.userUnit.unit) : undefined) ?? (out.unit ? parseAppUnit(out.unit) : undefined);
  if (app) out.app = app;
  return out;
}

function unitAndSlice(parts: string[]): { unit: string | null; slice: string | null; index: number } {
  let slice: string | null = null;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (isUnit(p)) return { unit: p, slice: slice ?? '-.slice', index: i };
    if (p.endsWith('.slice')) slice = p;
  }
  return { unit: null, slice, index: -1 };
}

function findContainer(parts: string[]): { info: ContainerInfo; containerdNamespace?: string } | undefined {
  let found: { info: ContainerInfo; containerdNamespace?: string; at: number } | undefined;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    const prev = i > 0 ? parts[i - 1]! : '';
    const hit = containerAt(p, prev);
    if (hit) found = { ...hit, at: i }; // innermost wins (docker in docker, kind nodes)
  }
  if (!found) return undefined;
  // Kubernetes pod and QoS class, and the podman pod, from the components above the container.
  let kube = false;
  for (let i = 0; i < found.at; i++) {
    const p = parts[i]!;
    if (p === 'kubepods' || p === 'kubepods.slice') kube = true;
    const qos = /^(?:kubepods-)?(burstable|besteffort)(?:\.slice)?$/.exec(p);
    if (qos && kube) found.info.qos = qos[1] as KubernetesQos;
    const pod = POD.exec(p);
    if (pod && (kube || p.startsWith('pod'))) {
      found.info.podUid = pod[1]!.replace(/_/g, '-');
      if (!found.info.qos) found.info.qos = 'guaranteed';
    }
    const podman = PODMAN_POD.exec(p);
    if (podman) found.info.podId = podman[1]!;
  }
  if (found.info.podUid && found.info.runtime === 'containerd' && found.containerdNamespace) delete found.containerdNamespace;
  return found.containerdNamespace ? { info: found.info, containerdNamespace: found.containerdNamespace } : { info: found.info };
}

function containerAt(p: string, prev: string): { info: ContainerInfo; containerdNamespace?: string } | undefined {
  const base = p.endsWith('.scope') ? p.slice(0, -'.scope'.length) : p;
  for (const [prefix, runtime] of SCOPE_PREFIXES) {
    if (base.startsWith(prefix) && HEX64.test(base.slice(prefix.length))) {
      // cgroupfs drivers name the cgroup without .scope: podman /libpod_parent/libpod-<id>, CRI-O .../crio-<id>
      if (!p.endsWith('.scope') && runtime !== 'podman' && runtime !== 'cri-o') return undefined;
      return { info: { runtime, id: base.slice(prefix.length) } };
    }
  }
  if (HEX64.test(p)) {
    if (prev === 'docker') return { info: { runtime: 'docker', id: p } };
    if (POD.test(prev)) return { info: { runtime: 'cri', id: p } };
    if (prev && !NOT_A_NAMESPACE.has(prev) && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(prev) && !prev.endsWith('.slice')) {
      return { info: { runtime: 'containerd', id: p }, containerdNamespace: prev };
    }
    return undefined;
  }
  const nspawn = /^systemd-nspawn@(.+)\.service$/.exec(p);
  if (nspawn) {
    const name = unescapeUnitName(nspawn[1]!);
    return { info: { runtime: 'systemd-nspawn', id: name, name } };
  }
  const machine = /^machine-(.+)\.scope$/.exec(p);
  if (machine) {
    const name = unescapeUnitName(machine[1]!);
    // libvirt registers its guests as machine-qemu-<n>-<domain> / machine-lxc-<n>-<domain>
    const libvirt = /^(?:qemu|lxc)-\d+-(.+)$/.exec(name);
    return libvirt ? { info: { runtime: 'libvirt', id: name, name: libvirt[1]! } } : { info: { runtime: 'systemd-nspawn', id: name, name } };
  }
  const lxc = /^lxc\.payload\.(.+)$/.exec(p) ?? (prev === 'lxc' ? /^(.+)$/.exec(p) : null);
  if (lxc) return { info: { runtime: 'lxc', id: lxc[1]!, name: lxc[1]! } };
  return undefined;
}

/** Flatpak, Snap and XDG desktop-launcher unit names -> the app; undefined for other units. */
export function parseAppUnit(unit: string): AppInfo | undefined {
  const suffix = unit.endsWith('.scope') ? '.scope' : unit.endsWith('.service') ? '.service' : null;
  if (!suffix) return undefined;
  const name = unit.slice(0, -suffix.length);

  if (name.startsWith('snap.')) {
    // snap.<snap>.<app>[-<uuid>]: the security tag is escaped as a whole, the uuid appended
    const tag = unescapeUnitName(name.replace(UUID, ''));
    const [, snap, ...rest] = tag.split('.');
    if (!snap || rest.length === 0) return undefined;
    const app = rest.join('.');
    return { kind: 'snap', id: snap, desktopId: `${snap}_${app}` };
  }

  if (!name.startsWith('app-')) return undefined;
  const at = name.indexOf('@');
  const head = at >= 0 ? name.slice(0, at) : name;
  const pieces = splitUnitName(head).slice(1); // drop "app"
  let launcher: string | undefined;
  let id: string | undefined;
  if (at >= 0) {
    // app-[<launcher>-]<appid>@<random>.service, app-<appid>@autostart.service
    if (pieces.length === 2) [launcher, id] = pieces;
    else if (pieces.length === 1) [id] = pieces;
  } else if (pieces.length === 3) {
    [launcher, id] = pieces; // app-<launcher>-<appid>-<random>
  } else if (pieces.length === 2) {
    [id] = pieces; // app-<appid>-<random>
  }
  if (!id) return undefined;
  if (launcher === 'flatpak') return { kind: 'flatpak', id, desktopId: id, launcher };
  return { kind: 'desktop', id, desktopId: id, ...(launcher ? { launcher } : {}) };
}
