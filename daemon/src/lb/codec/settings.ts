// SPDX-License-Identifier: Apache-2.0
// The balancer-wide maps user space fills: emon_lb_cfg (runtime settings) and
// emon_lb_ifaddr (the balancer's own address per interface and family, the nat source).
import { readU64, readUint, writeU64, writeUint } from '../../bpf/layout.js';
import { familyOfAf, type Family, type IpAddr } from '../../net/ip.js';
import { ADDR, CONFIG, IF_KEY } from '../wire.js';
import { afOf, writeAddr } from './fields.js';

export interface LbConfigValue {
  promoteNs: bigint;
  natPortMin: number;
  natPortMax: number;
  flags: number;
  layout: number;
  /** Next-hop cache generation: bumping it makes the data path look routes up again. */
  nhGen: number;
}

export function encodeConfig(c: LbConfigValue): Buffer {
  const F = CONFIG.fields;
  const b = Buffer.alloc(CONFIG.size);
  writeU64(b, F.promote_ns, c.promoteNs);
  writeUint(b, F.nat_port_min, c.natPortMin);
  writeUint(b, F.nat_port_max, c.natPortMax);
  writeUint(b, F.flags, c.flags);
  writeUint(b, F.layout, c.layout);
  writeUint(b, F.nh_gen, c.nhGen);
  return b;
}

export function decodeConfig(b: Buffer): LbConfigValue {
  const F = CONFIG.fields;
  return {
    promoteNs: readU64(b, F.promote_ns), natPortMin: readUint(b, F.nat_port_min), natPortMax: readUint(b, F.nat_port_max),
    flags: readUint(b, F.flags), layout: readUint(b, F.layout), nhGen: readUint(b, F.nh_gen),
  };
}

export function encodeIfKey(ifindex: number, family: Family): Buffer {
  const F = IF_KEY.fields;
  const b = Buffer.alloc(IF_KEY.size);
  writeUint(b, F.ifindex, ifindex);
  writeUint(b, F.family, afOf(family));
  return b;
}

export function decodeIfKey(b: Buffer, base = 0): { ifindex: number; family: Family | null } {
  const F = IF_KEY.fields;
  return { ifindex: readUint(b, F.ifindex, base), family: familyOfAf(readUint(b, F.family, base)) };
}

/** emon_lb_ifaddr value: the address in 16 bytes (IPv4 in the first 4). */
export function encodeAddr(a: IpAddr): Buffer {
  const b = Buffer.alloc(ADDR.size);
  writeAddr(b, ADDR.fields.addr, a);
  return b;
}
