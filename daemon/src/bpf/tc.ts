// SPDX-License-Identifier: Apache-2.0
// TC attachment through libbpf's netlink API (bpf_tc_*). A TC filter holds its program
// by itself, so it survives the process; ebpfmon finds its own filters again by a fixed
// (handle, priority) pair and by program id.
import * as L from './libbpf.js';
import { BpfError } from './errors.js';
import { ERRNO } from '../sys/errno.js';
import { explainLoadFailure, withCapturedLog } from './log.js';

/** Runs a tc call with libbpf's netlink warnings captured: absent qdiscs and filters are
 * normal answers here, not warnings; on a real failure they become the error's detail. */
function quiet(call: () => number): { ret: number; why: string | undefined } {
  const { result, lines } = withCapturedLog(call);
  return { ret: result, why: result < 0 ? explainLoadFailure(lines).reason ?? lines.at(-1)?.replace(/^libbpf: /, '') : undefined };
}

export type TcDirection = 'ingress' | 'egress';
const ATTACH_POINT: Record<TcDirection, number> = { ingress: 1, egress: 2 };
const BPF_TC_F_REPLACE = 1;

/** struct bpf_tc_hook { size_t sz; int ifindex; enum attach_point; u32 parent; } = 24 bytes */
function hookBuf(ifindex: number, dir: TcDirection): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(24n, 0);
  b.writeInt32LE(ifindex, 8);
  b.writeUInt32LE(ATTACH_POINT[dir], 12);
  return b;
}

/** struct bpf_tc_opts { size_t sz; int prog_fd; u32 flags, prog_id, handle, priority; } = 32 bytes */
function optsBuf(o: { progFd?: number; flags?: number; handle: number; priority: number }): Buffer {
  const b = Buffer.alloc(32);
  b.writeBigUInt64LE(32n, 0);
  b.writeInt32LE(o.progFd ?? 0, 8);
  b.writeUInt32LE(o.flags ?? 0, 12);
  b.writeUInt32LE(o.handle, 20);
  b.writeUInt32LE(o.priority, 24);
  return b;
}

export interface TcFilterId {
  handle: number;
  priority: number;
}

/**
 * Creates the clsact qdisc on `ifindex` if it is missing. Returns true when this call
 * created it (so that teardown removes only what ebpfmon added).
 */
export function ensureClsact(ifindex: number, ifname: string): boolean {
  const { ret, why } = quiet(() => L.bpf_tc_hook_create(hookBuf(ifindex, 'ingress')));
  if (ret === 0) return true;
  if (ret === -ERRNO.EEXIST) return false;
  throw new BpfError('creating', 'clsact qdisc', -ret, { target: ifname, detail: why });
}

/** Removes the whole clsact qdisc (and so every filter on it). Only for qdiscs ebpfmon created. */
export function destroyClsact(ifindex: number): void {
  const b = hookBuf(ifindex, 'ingress');
  b.writeUInt32LE(ATTACH_POINT.ingress | ATTACH_POINT.egress, 12);
  quiet(() => L.bpf_tc_hook_destroy(b));
}

/** Program id of the filter at (handle, priority), or 0 when there is none. */
export function queryTc(ifindex: number, dir: TcDirection, id: TcFilterId): number {
  const opts = optsBuf(id);
  const { ret, why } = quiet(() => L.bpf_tc_query(hookBuf(ifindex, dir), opts));
  if (ret === -ERRNO.ENOENT || ret === -ERRNO.EINVAL || ret === -ERRNO.ENODEV) return 0;
  if (ret < 0) throw new BpfError('querying', `tc ${dir} filter`, -ret, { target: `ifindex ${ifindex}`, detail: why });
  return opts.readUInt32LE(16);
}

/**
 * Attaches (or atomically replaces) the filter at (handle, priority) with `progFd`.
 * Returns the attached program id.
 */
export function attachTc(ifindex: number, ifname: string, dir: TcDirection, progName: string, progFd: number, id: TcFilterId): number {
  const opts = optsBuf({ progFd, flags: BPF_TC_F_REPLACE, ...id });
  const { ret, why } = quiet(() => L.bpf_tc_attach(hookBuf(ifindex, dir), opts));
  if (ret < 0) throw new BpfError('attaching', progName, -ret, { target: `${ifname} ${dir}`, detail: why });
  return opts.readUInt32LE(16);
}

/** Removes the filter at (handle, priority); false when it was not there. */
export function detachTc(ifindex: number, dir: TcDirection, id: TcFilterId): boolean {
  const { ret, why } = quiet(() => L.bpf_tc_detach(hookBuf(ifindex, dir), optsBuf(id)));
  if (ret === 0) return true;
  if (ret === -ERRNO.ENOENT || ret === -ERRNO.EINVAL || ret === -ERRNO.ENODEV) return false;
  throw new BpfError('detaching', `tc ${dir} filter`, -ret, { target: `ifindex ${ifindex}`, detail: why });
}
