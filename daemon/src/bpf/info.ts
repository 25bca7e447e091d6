// SPDX-License-Identifier: Apache-2.0
// bpf_obj_get_info_by_fd() for programs, maps and links, decoded at the UAPI offsets
// (struct bpf_prog_info / bpf_map_info / bpf_link_info). test/unit checks these offsets
// against the running kernel's BTF.
import koffi from 'koffi';
import * as L from './libbpf.js';
import { BpfError } from './errors.js';

export interface ProgInfo {
  id: number;
  type: number;
  name: string;
  tag: string;
  loadTimeNs: bigint;
  createdByUid: number;
  mapIds: number[];
  runTimeNs: bigint;
  runCount: bigint;
  /** Runs the kernel skipped because a BPF program was already running on the CPU (5.12+). */
  recursionMisses: bigint;
  verifiedInsns: number;
}

export interface MapInfo {
  id: number;
  type: number;
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export interface LinkInfo {
  id: number;
  type: number;
  progId: number;
  /** xdp: ifindex; cgroup: cgroup id; other types: undefined. */
  ifindex?: number;
  cgroupId?: bigint;
}

export const PROG_INFO = {
  type: 0, id: 4, tag: 8, load_time: 40, created_by_uid: 48, nr_map_ids: 52, map_ids: 56, name: 64,
  run_time_ns: 192, run_cnt: 200, recursion_misses: 208, verified_insns: 216,
} as const;
export const MAP_INFO = { type: 0, id: 4, key_size: 8, value_size: 12, max_entries: 16, map_flags: 20, name: 24 } as const;
export const LINK_INFO = { type: 0, id: 4, prog_id: 8, union: 16 } as const;

function cstr(buf: Buffer, off: number, len: number): string {
  const end = buf.indexOf(0, off);
  return buf.toString('latin1', off, end < 0 || end > off + len ? off + len : end);
}

function getInfo(fd: number, what: string, buf: Buffer): Buffer {
  const len = new Uint32Array([buf.length]);
  const ret = L.bpf_obj_get_info_by_fd(fd, buf, len);
  if (ret < 0) throw new BpfError('querying', what, -ret);
  return buf;
}

export function progInfo(fd: number, what = 'program'): ProgInfo {
  const buf = Buffer.alloc(256);
  // Ask for up to 16 map ids through a buffer the kernel fills.
  // An explicit ArrayBuffer is always off the V8 heap, so its address cannot move.
  const ids = new Uint32Array(new ArrayBuffer(64));
  buf.writeUInt32LE(ids.length, PROG_INFO.nr_map_ids);
  buf.writeBigUInt64LE(BigInt(ptrOf(ids)), PROG_INFO.map_ids);
  getInfo(fd, what, buf);
  const nMaps = Math.min(buf.readUInt32LE(PROG_INFO.nr_map_ids), ids.length);
  return {
    type: buf.readUInt32LE(PROG_INFO.type),
    id: buf.readUInt32LE(PROG_INFO.id),
    tag: buf.subarray(PROG_INFO.tag, PROG_INFO.tag + 8).toString('hex'),
    loadTimeNs: buf.readBigUInt64LE(PROG_INFO.load_time),
    createdByUid: buf.readUInt32LE(PROG_INFO.created_by_uid),
    name: cstr(buf, PROG_INFO.name, 16),
    mapIds: Array.from(ids.subarray(0, nMaps)),
    runTimeNs: buf.readBigUInt64LE(PROG_INFO.run_time_ns),
    runCount: buf.readBigUInt64LE(PROG_INFO.run_cnt),
    recursionMisses: buf.readBigUInt64LE(PROG_INFO.recursion_misses),
    verifiedInsns: buf.readUInt32LE(PROG_INFO.verified_insns),
  };
}

export function mapInfo(fd: number, what = 'map'): MapInfo {
  const buf = getInfo(fd, what, Buffer.alloc(128));
  return {
    type: buf.readUInt32LE(MAP_INFO.type),
    id: buf.readUInt32LE(MAP_INFO.id),
    keySize: buf.readUInt32LE(MAP_INFO.key_size),
    valueSize: buf.readUInt32LE(MAP_INFO.value_size),
    maxEntries: buf.readUInt32LE(MAP_INFO.max_entries),
    flags: buf.readUInt32LE(MAP_INFO.map_flags),
    name: cstr(buf, MAP_INFO.name, 16),
  };
}

const LINK_TYPE_CGROUP = 3;
const LINK_TYPE_XDP = 6;
export function linkInfo(fd: number, what = 'link'): LinkInfo {
  const buf = getInfo(fd, what, Buffer.alloc(128));
  const info: LinkInfo = {
    type: buf.readUInt32LE(LINK_INFO.type),
    id: buf.readUInt32LE(LINK_INFO.id),
    progId: buf.readUInt32LE(LINK_INFO.prog_id),
  };
  if (info.type === LINK_TYPE_XDP) info.ifindex = buf.readUInt32LE(LINK_INFO.union);
  if (info.type === LINK_TYPE_CGROUP) info.cgroupId = buf.readBigUInt64LE(LINK_INFO.union);
  return info;
}

function ptrOf(arr: Uint32Array): bigint {
  return koffi.address(arr);
}
