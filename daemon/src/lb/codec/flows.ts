// SPDX-License-Identifier: Apache-2.0
// The flow tables the data path fills: emon_lb_conns and emon_lb_long (flow key -> the
// backend a flow is pinned to) and emon_lb_nat (a nat-mode reply's key -> the client side).
import { readU64, readUint, readUintBE, writeU64, writeUint, writeUintBE } from '../../bpf/layout.js';
import { familyOfAf, type Family, type IpAddr } from '../../net/ip.js';
import { CONN, FLOW_KEY, NAT } from '../wire.js';
import { afOf, readAddr, writeAddr } from './fields.js';

export interface FlowKey {
  saddr: IpAddr;
  daddr: IpAddr;
  sport: number;
  dport: number;
  proto: number;
}

export function encodeFlowKey(k: FlowKey, out = Buffer.alloc(FLOW_KEY.size)): Buffer {
  const F = FLOW_KEY.fields;
  out.fill(0, 0, FLOW_KEY.size);
  writeAddr(out, F.saddr, k.saddr);
  // Both addresses are of the key's family (the source's).
  writeAddr(out, F.daddr, { family: k.saddr.family, bytes: k.daddr.bytes });
  writeUintBE(out, F.sport, k.sport);
  writeUintBE(out, F.dport, k.dport);
  writeUint(out, F.proto, k.proto);
  writeUint(out, F.family, afOf(k.saddr.family));
  return out;
}

export function decodeFlowKey(b: Buffer, base = 0): FlowKey | null {
  const F = FLOW_KEY.fields;
  const family = familyOfAf(readUint(b, F.family, base));
  if (!family) return null;
  return {
    saddr: readAddr(b, F.saddr, family, base), daddr: readAddr(b, F.daddr, family, base),
    sport: readUintBE(b, F.sport, base), dport: readUintBE(b, F.dport, base), proto: readUint(b, F.proto, base),
  };
}

/** The IP protocol of an encoded flow key (without decoding the rest). */
export function flowKeyProto(b: Buffer, base = 0): number {
  return readUint(b, FLOW_KEY.fields.proto, base);
}

export interface ConnValue {
  backend: number;
  gen: number;
  createdNs: bigint;
  lastNs: bigint;
  natPort: number;
  how: number;
  flags: number;
  /** VIP slot. */
  vip: number;
}

export function decodeConn(b: Buffer, base = 0): ConnValue {
  const F = CONN.fields;
  return {
    backend: readUint(b, F.backend, base), gen: readUint(b, F.gen, base), createdNs: readU64(b, F.created_ns, base),
    lastNs: readU64(b, F.last_ns, base), natPort: readUintBE(b, F.nat_port, base), how: readUint(b, F.how, base),
    flags: readUint(b, F.flags, base), vip: readUint(b, F.vip, base),
  };
}

export function encodeConn(v: ConnValue): Buffer {
  const F = CONN.fields;
  const b = Buffer.alloc(CONN.size);
  writeUint(b, F.backend, v.backend);
  writeUint(b, F.gen, v.gen);
  writeU64(b, F.created_ns, v.createdNs);
  writeU64(b, F.last_ns, v.lastNs);
  writeUintBE(b, F.nat_port, v.natPort);
  writeUint(b, F.how, v.how);
  writeUint(b, F.flags, v.flags);
  writeUint(b, F.vip, v.vip);
  return b;
}

/** The backend id of a conn or long-lived value (without decoding the rest). */
export function connBackend(b: Buffer, base = 0): number {
  return readUint(b, CONN.fields.backend, base);
}

export interface NatValue {
  caddr: IpAddr;
  vaddr: IpAddr;
  cport: number;
  vport: number;
  backend: number;
  vip: number;
  flags: number;
  lastNs: bigint;
}

/** The family comes from the key (a NAT value does not carry it). */
export function decodeNat(b: Buffer, base: number, family: Family): NatValue {
  const F = NAT.fields;
  return {
    caddr: readAddr(b, F.caddr, family, base), vaddr: readAddr(b, F.vaddr, family, base), cport: readUintBE(b, F.cport, base),
    vport: readUintBE(b, F.vport, base), backend: readUint(b, F.backend, base), vip: readUint(b, F.vip, base),
    flags: readUint(b, F.flags, base), lastNs: readU64(b, F.last_ns, base),
  };
}

/** The backend id of a NAT value (without decoding the rest). */
export function natBackend(b: Buffer, base = 0): number {
  return readUint(b, NAT.fields.backend, base);
}
