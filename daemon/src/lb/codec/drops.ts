// SPDX-License-Identifier: Apache-2.0
// The drop list's keys: emon_lb_drop4 / emon_lb_drop6 (LPM tries on the source address)
// and emon_lb_dproto (protocol, with a destination port or ICMP type). Values are rule ids
// (__u32, fields.ts).
import { readUint, writeUint } from '../../bpf/layout.js';
import { familyOfAf, type Family, type IpAddr } from '../../net/ip.js';
import { LPM4, LPM6, PROTO_KEY } from '../wire.js';
import { afOf, readAddr, writeAddr } from './fields.js';

export interface ProtoKey {
  family: Family;
  proto: number;
  kind: number;
  value: number;
}

export function encodeProtoKey(k: ProtoKey): Buffer {
  const F = PROTO_KEY.fields;
  const b = Buffer.alloc(PROTO_KEY.size);
  writeUint(b, F.family, afOf(k.family));
  writeUint(b, F.proto, k.proto);
  writeUint(b, F.kind, k.kind);
  writeUint(b, F.value, k.value);
  return b;
}

export function decodeProtoKey(b: Buffer, base = 0): ProtoKey | null {
  const F = PROTO_KEY.fields;
  const family = familyOfAf(readUint(b, F.family, base));
  if (!family) return null;
  return { family, proto: readUint(b, F.proto, base), kind: readUint(b, F.kind, base), value: readUint(b, F.value, base) };
}

const lpmOf = (family: Family) => (family === 'ipv4' ? LPM4 : LPM6);

/** An LPM trie key (emon_lb_lpm4 or emon_lb_lpm6, by the address's family). */
export function encodeLpm(addr: IpAddr, len: number): Buffer {
  const S = lpmOf(addr.family);
  const b = Buffer.alloc(S.size);
  writeUint(b, S.fields.prefixlen, len);
  writeAddr(b, S.fields.addr, addr);
  return b;
}

export function decodeLpm(b: Buffer, base: number, family: Family): { addr: IpAddr; len: number } {
  const S = lpmOf(family);
  return { addr: readAddr(b, S.fields.addr, family, base), len: readUint(b, S.fields.prefixlen, base) };
}
