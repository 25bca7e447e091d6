// SPDX-License-Identifier: Apache-2.0
// A feature's handle on its stage of the classifier's hook chain (bpf/flows.bpf.c
// hooks_dispatch; DEVELOPERS.md "Packets after the classifier"): its slot in emon_hooks and
// its bit in the interfaces' emon_iface.hooks. app.ts takes one from the monitor and hands
// it to the feature, which knows nothing of the monitor.
import type { Deployment } from '../bpf/deployment.js';
import { MAP } from './components.js';
import type { InterfaceManager } from './interfaces.js';
import { HOOK, type HookName } from './wire.js';

export class HookPort {
  private onAll = false;

  constructor(private readonly deployment: Deployment, private readonly interfaces: InterfaceManager, readonly name: HookName) {}

  /** Puts the stage's program (pinned by the feature's component) in its slot; null empties
   * the slot, and the classifier then runs alone (a set bit costs a tail call that falls through). */
  setProgram(prog: string | null): void {
    this.deployment.setProgArrayEntry(MAP.hooks, HOOK[this.name].slot, prog);
  }

  /** The kernel id of the program in the slot (null: empty). */
  program(): number | null {
    return this.deployment.progArrayEntry(MAP.hooks, HOOK[this.name].slot);
  }

  /** Hands the packets of every monitored interface (those attached later too) to the stage, or stops. */
  setAll(on: boolean): void {
    this.onAll = on;
    this.interfaces.setHookBits('all', HOOK[this.name].bit, on);
  }

  /** One interface's packets (capture selects per interface). */
  setInterface(ifindex: number, on: boolean): void {
    this.interfaces.setHookBits(ifindex, HOOK[this.name].bit, on);
  }

  /** Monitored interfaces whose entry carries the stage's bit now. */
  active(): string[] {
    return this.interfaces.attached().filter((i) => this.interfaces.hookBits(i.ifindex) & HOOK[this.name].bit).map((i) => i.name);
  }

  get enabledOnAll(): boolean {
    return this.onAll;
  }
}
