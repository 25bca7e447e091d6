// SPDX-License-Identifier: Apache-2.0
// Packet comments in the form ptcpdump writes (internal/writer/pcapng.go there): one
// comment per topic, `Key: value` lines, so that ptcpdump's reader (FromPacketComments,
// which reads every `Key: value` line of every comment) and anyone grepping for "PID:"
// read ebpfmon's files. ebpfmon adds `Unit:`, `Cgroup:` and `App:` lines, which that reader
// skips; the container and pod comments are ptcpdump's own keys.

export interface ProcessDetails {
  pid: number;
  tid?: number | null;
  /** The thread's command name (comm). */
  threadName?: string | null;
  /** The executable's path (ptcpdump's `Cmd`). */
  cmd?: string | null;
  args?: readonly string[];
  uid?: number | null;
  ppid?: number | null;
  parentCmd?: string | null;
  parentArgs?: readonly string[];
  /** The most specific systemd unit (a user manager's unit where there is one). */
  unit?: string | null;
  cgroup?: string | null;
  container?: { id: string; name?: string; image?: string; labels?: Record<string, string> } | null;
  /** The Kubernetes pod of the container. */
  pod?: { name?: string; namespace?: string; uid?: string } | null;
  /** The desktop app (Flatpak id, snap name, .desktop id). */
  app?: string | null;
}

/** Line values must stay on their line: newlines in arguments become spaces. */
const line = (s: string | null | undefined): string => (s ?? '').replace(/[\r\n]+/g, ' ');

export function ptcpdumpComments(p: ProcessDetails): string[] {
  const out = [`PID: ${p.pid}\nCmd: ${line(p.cmd)}\nArgs: ${line((p.args ?? []).join(' '))}`];
  if (p.tid) out.push(`ThreadId: ${p.tid}\nThreadName: ${line(p.threadName)}`);
  if (p.uid !== undefined && p.uid !== null) out.push(`UserId: ${p.uid}`);
  if (p.ppid) out.push(`ParentPID: ${p.ppid}\nParentCmd: ${line(p.parentCmd)}\nParentArgs: ${line((p.parentArgs ?? []).join(' '))}`);
  if (p.container?.id) {
    const labels = Object.entries(p.container.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
    out.push(`ContainerName: ${line(p.container.name)}\nContainerId: ${p.container.id}\nContainerImage: ${line(p.container.image)}\nContainerLabels: ${line(labels)}`);
  }
  if (p.pod && (p.pod.name || p.pod.uid)) {
    out.push(`PodName: ${line(p.pod.name)}\nPodNamespace: ${line(p.pod.namespace)}\nPodUID: ${line(p.pod.uid)}\nPodLabels: \nPodAnnotations: `);
  }
  const own = [p.unit ? `Unit: ${line(p.unit)}` : null, p.cgroup ? `Cgroup: ${line(p.cgroup)}` : null, p.app ? `App: ${line(p.app)}` : null].filter(Boolean);
  if (own.length) out.push(own.join('\n'));
  return out;
}
