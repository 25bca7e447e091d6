// SPDX-License-Identifier: Apache-2.0
// IP protocol numbers <-> the names the contract uses (contract/common.ts PROTOCOLS).
import { PROTOCOL_NUMBERS, PROTOCOLS, type ProtocolName } from '../contract/common.js';

export const IPPROTO = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58, sctp: 132, udplite: 136 } as const satisfies Record<ProtocolName, number>;

const NAMES: Record<number, ProtocolName> = Object.fromEntries(PROTOCOLS.map((p) => [PROTOCOL_NUMBERS[p], p]));

/** The protocol's name, or its number as a string for protocols without one ("47"). */
export function protocolName(n: number): ProtocolName | string {
  return NAMES[n] ?? String(n);
}

export function protocolNumber(name: ProtocolName): number {
  return PROTOCOL_NUMBERS[name];
}
