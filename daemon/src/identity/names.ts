// SPDX-License-Identifier: Apache-2.0
// Container names from the runtimes' own files on this machine, never over the network and
// without talking to the runtime's API (no daemon socket, no gRPC):
//
//   docker      /var/lib/docker/containers/<id>/config.v2.json: Name ("/web-1"); Kubernetes
//               labels io.kubernetes.{pod.name,pod.namespace,container.name} (dockershim, cri-dockerd)
//   podman      <storage>/overlay-containers/{containers,volatile-containers}.json: names[0]
//               (rootful /var/lib/containers/storage, rootless ~/.local/share/containers/storage;
//               --rm containers are in the volatile file)
//   containerd  /run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/config.json, the
//               OCI bundle of a running task: annotations io.kubernetes.cri.{container-name,
//               sandbox-name,sandbox-namespace,sandbox-uid}
//   CRI-O       /var/lib/containers/storage/overlay-containers/<id>/userdata/config.json (also under
//               /run/containers/storage): annotations io.kubernetes.{container.name,pod.name,
//               pod.namespace,pod.uid}
//
// That covers what the CRI's ListContainers/PodSandboxStatus would answer for names, without
// a gRPC client (measured: @grpc/grpc-js + proto-loader = 23 packages, 14 MB, ~220 ms to load).
// A Kubernetes container whose cgroup name does not say its runtime (`cri`, cgroupfs driver)
// gets it from whichever runtime's state holds its id.
import fs from 'node:fs';
import path from 'node:path';
import { Passwd } from './passwd.js';
import type { ContainerInfo } from './types.js';

export interface NameRoots {
  docker: string;
  podman: string;
  containerdState: string;
  crioStorage: string;
  crioRun: string;
}

export const DEFAULT_NAME_ROOTS: NameRoots = {
  docker: '/var/lib/docker',
  podman: '/var/lib/containers/storage',
  containerdState: '/run/containerd',
  crioStorage: '/var/lib/containers/storage',
  crioRun: '/run/containers/storage',
};

type Json = Record<string, unknown>;

function readJson(file: string): Json | null {
  try {
    const v: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
    return v !== null && typeof v === 'object' ? (v as Json) : null;
  } catch {
    return null; // absent, unreadable, or being rewritten
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function annotations(cfg: Json | null): Record<string, unknown> {
  const a = cfg?.annotations;
  return a !== null && typeof a === 'object' ? (a as Record<string, unknown>) : {};
}

export class ContainerNames {
  private readonly roots: NameRoots;
  /** Podman's container lists, by file, kept while the file's mtime is unchanged. */
  private readonly podmanLists = new Map<string, { mtimeMs: number; names: Map<string, string> }>();

  constructor(roots: Partial<NameRoots> = {}, private readonly passwd = new Passwd()) {
    this.roots = { ...DEFAULT_NAME_ROOTS, ...roots };
  }

  /** `info` with what the runtime's files say (name, pod name and namespace, the runtime of a `cri` container). */
  enrich(info: ContainerInfo, ctx: { uid?: number; containerdNamespace?: string } = {}): ContainerInfo {
    const out = { ...info };
    if (out.runtime === 'cri') {
      const runtime = this.whichCri(out.id);
      if (runtime) out.runtime = runtime;
    }
    switch (out.runtime) {
      case 'docker':
        this.docker(out);
        break;
      case 'podman':
        this.podman(out, ctx.uid);
        break;
      case 'containerd':
        this.containerd(out, ctx.containerdNamespace);
        break;
      case 'cri-o':
        this.crio(out);
        break;
      default:
        break; // nspawn, libvirt, lxc: the cgroup already names them
    }
    return out;
  }

  private docker(c: ContainerInfo): void {
    const cfg = readJson(path.join(this.roots.docker, 'containers', c.id, 'config.v2.json'));
    if (!cfg) return;
    const labels = (cfg.Config as Json | undefined)?.Labels as Record<string, unknown> | undefined;
    const k8sName = str(labels?.['io.kubernetes.container.name']);
    const name = k8sName ?? str(cfg.Name)?.replace(/^\//, '');
    if (name) c.name = name;
    const podName = str(labels?.['io.kubernetes.pod.name']);
    const ns = str(labels?.['io.kubernetes.pod.namespace']);
    if (podName) c.podName = podName;
    if (ns) c.namespace = ns;
  }

  private podman(c: ContainerInfo, uid: number | undefined): void {
    const stores = [this.roots.podman];
    const home = uid !== undefined && uid !== 0 ? this.passwd.home(uid) : null;
    if (home) stores.unshift(path.join(home, '.local/share/containers/storage'));
    for (const store of stores) {
      for (const file of ['containers.json', 'volatile-containers.json']) {
        const name = this.podmanList(path.join(store, 'overlay-containers', file)).get(c.id);
        if (name) {
          c.name = name;
          return;
        }
      }
    }
  }

  private podmanList(file: string): Map<string, string> {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      return new Map();
    }
    const hit = this.podmanLists.get(file);
    if (hit && hit.mtimeMs === st.mtimeMs) return hit.names;
    const names = new Map<string, string>();
    try {
      const list: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (Array.isArray(list)) {
        for (const e of list as Json[]) {
          const id = str(e?.id);
          const first = Array.isArray(e?.names) ? str(e.names[0]) : undefined;
          if (id && first) names.set(id, first);
        }
      }
    } catch {
      return hit?.names ?? names; // being rewritten: keep what we had
    }
    this.podmanLists.set(file, { mtimeMs: st.mtimeMs, names });
    return names;
  }

  private containerdBundle(id: string, ns?: string): Json | null {
    const tasks = path.join(this.roots.containerdState, 'io.containerd.runtime.v2.task');
    const namespaces = ns ? [ns] : readdirOr(tasks);
    for (const n of namespaces) {
      const cfg = readJson(path.join(tasks, n, id, 'config.json'));
      if (cfg) return cfg;
    }
    return null;
  }

  private containerd(c: ContainerInfo, ns?: string): void {
    const a = annotations(this.containerdBundle(c.id, ns));
    const name = str(a['io.kubernetes.cri.container-name']);
    const podName = str(a['io.kubernetes.cri.sandbox-name']);
    const podNs = str(a['io.kubernetes.cri.sandbox-namespace']);
    if (name) c.name = name;
    else if (podName && a['io.kubernetes.cri.container-type'] === 'sandbox') c.name = 'POD';
    if (podName) c.podName = podName;
    if (podNs) c.namespace = podNs;
    c.podUid ??= str(a['io.kubernetes.cri.sandbox-uid']);
    if (c.podUid === undefined) delete c.podUid;
  }

  private crioConfig(id: string): Json | null {
    return readJson(path.join(this.roots.crioStorage, 'overlay-containers', id, 'userdata', 'config.json')) ??
      readJson(path.join(this.roots.crioRun, 'overlay-containers', id, 'userdata', 'config.json'));
  }

  private crio(c: ContainerInfo): void {
    const a = annotations(this.crioConfig(c.id));
    const name = str(a['io.kubernetes.container.name']);
    const podName = str(a['io.kubernetes.pod.name']);
    const podNs = str(a['io.kubernetes.pod.namespace']);
    if (name) c.name = name;
    if (podName) c.podName = podName;
    if (podNs) c.namespace = podNs;
    c.podUid ??= str(a['io.kubernetes.pod.uid']);
    if (c.podUid === undefined) delete c.podUid;
  }

  /** The runtime whose state holds `id` (a Kubernetes container under the cgroupfs driver). */
  private whichCri(id: string): ContainerInfo['runtime'] | null {
    if (this.containerdBundle(id)) return 'containerd';
    if (this.crioConfig(id)) return 'cri-o';
    if (fs.existsSync(path.join(this.roots.docker, 'containers', id, 'config.v2.json'))) return 'docker';
    return null;
  }
}

function readdirOr(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
