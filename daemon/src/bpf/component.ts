// SPDX-License-Identifier: Apache-2.0
// The vocabulary of a BPF component: one object file, its probes grouped by the capability
// they give ebpfmon, each with alternatives tried in order (the first the kernel accepts
// wins). Features declare their components with these types (monitor/components.ts,
// lb/components.ts); the deployment loads them (deployment.ts, probes.ts).
import type { ProbeStatus } from './manifest.js';

/** How a program is attached when its component is deployed. Per-interface hooks (tc,
 * xdp), on-demand ones (iter) and per-file ones (uprobe: attachUprobe in uprobe.ts) are
 * attached later by the feature that owns them. */
export type AttachSpec =
  | { prog: string; kind: 'tracepoint'; category: string; name: string }
  | { prog: string; kind: 'cgroup' }
  | { prog: string; kind: 'auto' }
  | { prog: string; kind: 'tc' | 'xdp' | 'iter' | 'uprobe' }
  /** Attached nowhere: run by the daemon with BPF_PROG_TEST_RUN (syscall programs). */
  | { prog: string; kind: 'run' };

export interface ProbeAlternative {
  /** Stable short name, unique in its group: `probes.disable` names it as `capability/id`. */
  id: string;
  /** Shown in status, e.g. `tracepoint syscalls:sys_exit_accept4`. */
  label: string;
  /** Programs to load (and attach at deploy, by kind). Empty for an alternative done in
   * user space: it needs nothing from the verifier, so it is always available. */
  attach: AttachSpec[];
  /**
   * Kernel facts the program's signature depends on. A program that reads a function's
   * arguments can load on a kernel where they mean something else, so such variants are
   * chosen by the kernel's BTF, never by trial.
   */
  requires?: { struct?: string; noStruct?: string };
}

export interface ProbeGroup {
  capability: string;
  /** A required probe that cannot be loaded stops the daemon; an optional one is reported inactive. */
  required: boolean;
  /** Tried in order; the first that loads and attaches wins. */
  alternatives: ProbeAlternative[];
}

export interface ComponentDef {
  name: string;
  /** Object file name inside the object directory, e.g. `flows.bpf.o`. */
  file: string;
  groups: ProbeGroup[];
}

export interface DeployResult {
  component: string;
  adopted: boolean;
  /** Why it was (re)loaded when it was not adopted. */
  reason?: string;
  probes: ProbeStatus[];
}

/** How `probes.disable` names an alternative. */
export function probeId(g: Pick<ProbeGroup, 'capability'>, a: Pick<ProbeAlternative, 'id'>): string {
  return `${g.capability}/${a.id}`;
}
