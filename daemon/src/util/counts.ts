// SPDX-License-Identifier: Apache-2.0
// The five counters every per-process and per-series traffic total carries, and adding one
// total into another (the monitor's process rows and retired totals, the Prometheus top N).

export interface Counts {
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  flows: number;
}

/** Adds `from`'s counters to `to`. */
export function addCounts(to: Counts, from: Counts): void {
  to.txBytes += from.txBytes;
  to.rxBytes += from.rxBytes;
  to.txPackets += from.txPackets;
  to.rxPackets += from.rxPackets;
  to.flows += from.flows;
}
