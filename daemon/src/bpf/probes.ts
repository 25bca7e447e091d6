// SPDX-License-Identifier: Apache-2.0
// Which alternative of each probe group to load: the planning half of a deploy. Starts at
// each group's first alternative, skips the ones the configuration disables or whose
// kernel preconditions do not hold (without trying them), and moves a group to its next
// alternative when the kernel refuses the current one (the deployment reports the
// refusals here). A required group with nothing left stops the deploy; an optional one is
// reported inactive.
import type { Logger } from 'pino';
import { kernelHasStruct } from './btf.js';
import { BpfError } from './errors.js';
import { probeId, type ComponentDef, type ProbeAlternative } from './component.js';
import type { ProbeStatus } from './manifest.js';
import { ERRNO } from '../sys/errno.js';

export class ProbePlan {
  /** Per group: the alternative being tried, -1 when none is left. */
  private readonly choice: number[];
  private readonly failures: Array<Array<{ label: string; reason: string }>>;
  private readonly groupOfProg = new Map<string, number>();
  /** Each alternative is tried at most once: the loop that loads has this many rounds. */
  readonly maxAttempts: number;

  constructor(private readonly def: ComponentDef, private readonly disabled: readonly string[], private readonly log: Logger) {
    this.choice = def.groups.map(() => 0);
    this.failures = def.groups.map(() => []);
    def.groups.forEach((g, gi) => g.alternatives.forEach((a) => a.attach.forEach((s) => this.groupOfProg.set(s.prog, gi))));
    this.maxAttempts = 1 + def.groups.reduce((n, g) => n + g.alternatives.length, 0);
  }

  /** The alternative group `gi` tries now, if any. */
  current(gi: number): ProbeAlternative | undefined {
    const c = this.choice[gi]!;
    return c >= 0 ? this.def.groups[gi]!.alternatives[c] : undefined;
  }

  /** Skips alternatives that are disabled or whose kernel preconditions do not hold. */
  skipUnavailable(): void {
    for (let changed = true; changed; ) {
      changed = false;
      this.def.groups.forEach((g, gi) => {
        const alt = this.current(gi);
        if (!alt) return;
        const unmet = this.disabled.includes(probeId(g, alt)) ? 'disabled by configuration (probes.disable)' : unmetRequirement(alt);
        if (unmet) {
          this.refuse(gi, unmet);
          changed = true;
        }
      });
    }
  }

  /** Programs of the chosen alternatives (the ones to load). */
  activePrograms(): Set<string> {
    const active = new Set<string>();
    this.def.groups.forEach((_, gi) => {
      for (const s of this.current(gi)?.attach ?? []) active.add(s.prog);
    });
    return active;
  }

  /** The group whose current alternative loads `prog`, or undefined (a program of no chosen alternative). */
  groupLoading(prog: string): number | undefined {
    const gi = this.groupOfProg.get(prog);
    return gi !== undefined && this.current(gi) !== undefined ? gi : undefined;
  }

  /**
   * The kernel (or a precondition) refused group `gi`'s current alternative: move on. Throws
   * when a required group has nothing left (`cause` when it had a single way to do it).
   */
  refuse(gi: number, reason: string, cause?: BpfError): void {
    const g = this.def.groups[gi]!;
    const label = this.current(gi)!.label;
    this.failures[gi]!.push({ label, reason });
    this.choice[gi]!++;
    if (this.choice[gi]! < g.alternatives.length) {
      this.log.info({ capability: g.capability, probe: label, reason }, 'probe unavailable, trying the next one');
      return;
    }
    if (g.required) {
      // One way to do it, and it failed: that error says it best.
      if (g.alternatives.length === 1 && cause) throw cause;
      throw new BpfError('loading', `${this.def.name}: ${g.capability} probe`, ERRNO.ENOTSUP, {
        detail: this.failures[gi]!.map((f) => `${f.label}: ${f.reason}`).join('; '),
      });
    }
    this.log.warn({ capability: g.capability, probe: label, reason }, 'probe unavailable, no alternative left');
    this.choice[gi] = -1;
  }

  status(): ProbeStatus[] {
    return this.def.groups.map((g, gi) => ({ capability: g.capability, active: this.current(gi)?.label ?? null, inactive: this.failures[gi]! }));
  }
}

/**
 * A program that reads a function's arguments can load on a kernel where they mean
 * something else, so such variants are chosen by the kernel's BTF, never by trial.
 */
function unmetRequirement(alt: ProbeAlternative): string | null {
  if (alt.requires?.struct && !kernelHasStruct(alt.requires.struct)) return `kernel has no struct ${alt.requires.struct}`;
  if (alt.requires?.noStruct && kernelHasStruct(alt.requires.noStruct)) return `kernel has struct ${alt.requires.noStruct} (newer signature)`;
  return null;
}
