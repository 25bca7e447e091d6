// SPDX-License-Identifier: Apache-2.0
// The capabilities the daemon needs, checked before it touches anything: loading programs
// (CAP_BPF), tracing programs and iterators (CAP_PERFMON), TC, XDP and cgroup hooks
// (CAP_NET_ADMIN). CAP_SYS_ADMIN implies the first two on kernels before 5.8, which have
// neither.
import fs from 'node:fs';

const CAP = { NET_ADMIN: 12, SYS_ADMIN: 21, PERFMON: 38, BPF: 39 } as const;

/** Effective capability set of this process (from /proc/self/status CapEff). */
export function effectiveCapabilities(status = fs.readFileSync('/proc/self/status', 'utf8')): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/** Names of the needed capabilities this process lacks (empty: it may run). */
export function missingCapabilities(eff = effectiveCapabilities()): string[] {
  const has = (c: number) => (eff >> BigInt(c)) & 1n;
  const missing: string[] = [];
  if (!has(CAP.BPF) && !has(CAP.SYS_ADMIN)) missing.push('CAP_BPF');
  if (!has(CAP.PERFMON) && !has(CAP.SYS_ADMIN)) missing.push('CAP_PERFMON');
  if (!has(CAP.NET_ADMIN)) missing.push('CAP_NET_ADMIN');
  return missing;
}
