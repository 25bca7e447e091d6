// SPDX-License-Identifier: Apache-2.0
// Uprobes attached to a loaded program by its fd, as pinnable BPF links: a perf event of
// the kernel's `uprobe` PMU on (file, offset), then BPF_LINK_CREATE with BPF_PERF_EVENT.
// libbpf 1.1's bpf_program__attach_uprobe_opts does the same but needs the bpf_program of
// an object this process loaded; a restarted daemon adopts the pinned programs and has
// only their fds, so the few syscalls are made here (what libbpf's perf_event_open_probe
// does). The link holds the perf event: its pin keeps the probe after this process exits.
import fs from 'node:fs';
import koffi from 'koffi';
import * as L from './libbpf.js';
import { BpfError } from './errors.js';
import { close, lastErrno } from '../sys/libc.js';
import { ERRNO } from '../sys/errno.js';

const libc = koffi.load('libc.so.6');
const syscall = libc.func('long syscall(long number, ...)') as (n: number, ...typed: unknown[]) => number;
const SYS_PERF_EVENT_OPEN = process.arch === 'arm64' ? 241 : 298;
const PERF_FLAG_FD_CLOEXEC = 1 << 3;
const BPF_PERF_EVENT = 41;
/** struct perf_event_attr (PERF_ATTR_SIZE_VER5 and later are larger; the kernel takes any
 * size it knows): type @0, size @4, config @8, flags @40, config1 (the path) @56,
 * config2 (the offset) @64. */
const ATTR_SIZE = 112;

let pmu: { type: number; retprobeBit: number } | null = null;
/** The uprobe PMU's type number and the config bit that makes it a return probe (sysfs). */
function uprobePmu(): { type: number; retprobeBit: number } {
  if (pmu) return pmu;
  const base = '/sys/bus/event_source/devices/uprobe';
  let type: number;
  let fmt: string;
  try {
    type = Number(fs.readFileSync(`${base}/type`, 'utf8').trim());
    fmt = fs.readFileSync(`${base}/format/retprobe`, 'utf8').trim();
  } catch {
    throw new BpfError('attaching', 'uprobe', ERRNO.ENOENT, { target: base, detail: 'this kernel has no uprobe PMU (CONFIG_UPROBES, 4.17+)' });
  }
  const bit = /^config:(\d+)$/.exec(fmt);
  if (!bit) throw new BpfError('attaching', 'uprobe', ERRNO.EINVAL, { target: `${base}/format/retprobe`, detail: `unexpected format ${fmt}` });
  pmu = { type, retprobeBit: Number(bit[1]) };
  return pmu;
}

/**
 * Attaches program `progFd` (named `prog` for errors) to `file` at `offset` (a function's
 * file offset: sys/elf.ts), for every process (pid -1), entry or return. Returns the
 * link's fd: pin it (the caller's Deployment) or close it to detach.
 */
export function attachUprobe(progFd: number, prog: string, file: string, offset: number, retprobe: boolean): number {
  const { type, retprobeBit } = uprobePmu();
  // Explicit ArrayBuffers: koffi takes their addresses and V8 must not move them.
  const path = Buffer.from(new ArrayBuffer(Buffer.byteLength(file) + 1));
  path.write(file, 'utf8');
  const attr = Buffer.from(new ArrayBuffer(ATTR_SIZE));
  attr.writeUInt32LE(type, 0);
  attr.writeUInt32LE(ATTR_SIZE, 4);
  attr.writeBigUInt64LE(retprobe ? 1n << BigInt(retprobeBit) : 0n, 8);
  attr.writeBigUInt64LE(BigInt(koffi.address(path)), 56);
  attr.writeBigUInt64LE(BigInt(offset), 64);
  // pid -1 and cpu 0: a probe for every process (the program runs on whatever CPU hits it).
  const pfd = syscall(SYS_PERF_EVENT_OPEN, 'void *', attr, 'int', -1, 'int', 0, 'int', -1, 'unsigned long', PERF_FLAG_FD_CLOEXEC);
  if (pfd < 0) throw new BpfError('attaching', prog, lastErrno(), { target: `${file}+0x${offset.toString(16)} (perf_event_open uprobe)` });
  try {
    const lfd = L.bpf_link_create(progFd, pfd, BPF_PERF_EVENT, null);
    if (lfd < 0) throw new BpfError('attaching', prog, -lfd, { target: `${file}+0x${offset.toString(16)} (bpf_link_create)` });
    return lfd;
  } finally {
    close(pfd); // the link holds the event now
  }
}
