// SPDX-License-Identifier: Apache-2.0
// Owner map entries for driving the classifier with BPF_PROG_TEST_RUN (bench/classifier and
// the owner-retry test): what the socket probes would have written for a listener.
import type { BpfObject } from '../../daemon/src/bpf/object.js';
import { ENDPOINT, OWNER } from '../../daemon/src/monitor/wire.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { writeUint } from '../../daemon/src/bpf/layout.js';
import { markOwnerPorts } from '../../daemon/src/monitor/ownerports.js';

/** A wildcard IPv4 TCP bind on `port` in emon_binds: flows with that local port get an owner
 * (tgid `tgid`, attributed by bind). */
export function bindWildcard(o: BpfObject, port: number, tgid = 4242): void {
  const k = Buffer.alloc(ENDPOINT.size);
  writeUint(k, ENDPOINT.fields.family, 2);
  writeUint(k, ENDPOINT.fields.proto, 6);
  writeUint(k, ENDPOINT.fields.port, port);
  const v = Buffer.alloc(OWNER.size);
  writeUint(v, OWNER.fields.tgid, tgid);
  writeUint(v, OWNER.fields.how, 4); // EMON_HOW_BIND
  // Builds before emon_owner_ports (a --compare-obj baseline) have no such map.
  if (o.mapNames().includes(MAP.ownerPorts)) markOwnerPorts(o.map(MAP.ownerPorts), [port]);
  o.map(MAP.binds).update(k, v);
}
