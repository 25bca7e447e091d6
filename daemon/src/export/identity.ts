// SPDX-License-Identifier: Apache-2.0
// Who is talking, in terms a fleet can aggregate on: this host (name and machine id, on
// every exported record) and a process's systemd unit or container, read from its cgroup
// path. Pids and ports are never labels: they are unbounded.
import fs from 'node:fs';
import os from 'node:os';

export interface HostIdentity {
  hostName: string;
  /** /etc/machine-id (32 hex digits), or "" when the host has none. */
  machineId: string;
}

/**
 * The host name and machine id. In a container the id must be the node's: the DaemonSet
 * mounts the node's /etc/machine-id (packaging/kubernetes/ebpfmon-daemonset.yaml).
 */
export function hostIdentity(files = ['/etc/machine-id', '/var/lib/dbus/machine-id']): HostIdentity {
  let machineId = '';
  for (const f of files) {
    try {
      const id = fs.readFileSync(f, 'utf8').trim();
      if (/^[0-9a-f]{32}$/.test(id)) {
        machineId = id;
        break;
      }
    } catch {
      // next candidate
    }
  }
  return { hostName: os.hostname(), machineId };
}

export interface ProcessIdentity {
  /** The systemd unit (`nginx.service`, `user@1000.service`), or "". */
  unit: string;
  /** A container id (12 hex digits, as `docker ps` shows it) or name, or "". */
  container: string;
}

// Container runtimes' cgroup leaf names (systemd and cgroupfs drivers): docker, containerd
// (cri-containerd), CRI-O, podman (libpod) and bare ids under docker/ or kubepods/.
const CONTAINER_SCOPE = /^(?:docker|cri-containerd|crio|libpod|containerd)-([0-9a-f]{64})\.scope$/;
const BARE_ID = /^[0-9a-f]{64}$/;
const BARE_PARENTS = /^(?:docker|kubepods|besteffort|burstable|guaranteed|pod[0-9a-f_-]+|system\.slice)$/;

/**
 * A process's unit and container from its cgroup v2 path (`/proc/PID/cgroup`, line `0::`).
 * The unit is the deepest `.service`: scopes (`session-3.scope`, `app-gnome-firefox-4242.scope`,
 * `docker-<id>.scope`) are numbered per login, launch or container and would make the label
 * unbounded, so a login session is named by its user slice (`user-1000.slice`) and an app
 * by the service it runs under (`user@1000.service`).
 */
export function identityFromCgroupPath(path: string): ProcessIdentity {
  const parts = path.split('/').filter(Boolean);
  let container = '';
  let unit = '';
  for (let i = parts.length - 1; i >= 0; i--) {
    const p = parts[i]!;
    const scope = CONTAINER_SCOPE.exec(p);
    if (scope && !container) {
      container = scope[1]!.slice(0, 12);
      continue;
    }
    if (BARE_ID.test(p) && !container && i > 0 && BARE_PARENTS.test(parts[i - 1]!)) {
      container = p.slice(0, 12);
      continue;
    }
    const lxc = /^lxc\.payload\.(.+)$/.exec(p);
    if (lxc && !container) {
      container = lxc[1]!;
      continue;
    }
    const machine = /^machine-(.+)\.scope$/.exec(p); // systemd-nspawn, libvirt
    if (machine && !container) {
      container = machine[1]!.replace(/\\x2d/g, '-');
      continue;
    }
    if (!unit && (p.endsWith('.service') || /^user-\d+\.slice$/.test(p))) unit = p;
  }
  return { unit, container };
}

/** The cgroup v2 path of a live process ("" when it is gone or has none). */
export function cgroupPathOf(pid: number, procRoot = '/proc'): string {
  try {
    const text = fs.readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8');
    // cgroup v2 line "0::/path"; on hybrid hosts systemd's v1 hierarchy names units the same way.
    return /^0::(.*)$/m.exec(text)?.[1] ?? /^\d+:name=systemd:(.*)$/m.exec(text)?.[1] ?? '';
  } catch {
    return '';
  }
}
