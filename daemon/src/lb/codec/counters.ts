// SPDX-License-Identifier: Apache-2.0
// Per-CPU counter values, summed over the CPUs: emon_lb_vstats / emon_lb_bstats
// (emon_lb_ctr) and emon_lb_dcnt (emon_lb_rule_ctr). The global counters are __u64
// (fields.ts: sumU64).
import { readU64 } from '../../bpf/layout.js';
import { CTR, RULE_CTR } from '../wire.js';

export interface Counters {
  packets: number;
  bytes: number;
  rpackets: number;
  rbytes: number;
  flows: number;
}

/** Sums one per-CPU emon_lb_ctr value (all CPUs' slots back to back, 8-byte aligned). */
export function sumCtr(b: Buffer, stride: number = CTR.size): Counters {
  const F = CTR.fields;
  const c = { packets: 0, bytes: 0, rpackets: 0, rbytes: 0, flows: 0 };
  for (let off = 0; off + CTR.size <= b.length; off += stride) {
    c.packets += Number(readU64(b, F.packets, off));
    c.bytes += Number(readU64(b, F.bytes, off));
    c.rpackets += Number(readU64(b, F.rpackets, off));
    c.rbytes += Number(readU64(b, F.rbytes, off));
    c.flows += Number(readU64(b, F.flows, off));
  }
  return c;
}

export function sumRuleCtr(b: Buffer, stride: number = RULE_CTR.size): { packets: number; bytes: number } {
  const F = RULE_CTR.fields;
  let packets = 0;
  let bytes = 0;
  for (let off = 0; off + RULE_CTR.size <= b.length; off += stride) {
    packets += Number(readU64(b, F.packets, off));
    bytes += Number(readU64(b, F.bytes, off));
  }
  return { packets, bytes };
}
