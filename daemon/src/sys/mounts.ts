// SPDX-License-Identifier: Apache-2.0
// The filesystems BPF needs: bpffs for pins, tracefs for tracepoint ids (libbpf reads
// them there), and the cgroup v2 hierarchy for socket hooks. Some machines mount none
// of them at boot; the daemon mounts what is missing.
import fs from 'node:fs';
import path from 'node:path';
import { SystemError } from './errors.js';
import { lastErrno, mount } from './libc.js';

const BPF_FS_MAGIC = 0xcafe4a11;
const TRACEFS_MAGIC = 0x74726163;

interface MountEntry {
  source: string;
  target: string;
  fstype: string;
}

export function readMounts(): MountEntry[] {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [source, target, fstype] = l.split(' ');
      return { source: source!, target: target!.replace(/\\040/g, ' '), fstype: fstype! };
    });
}

function fsMagic(p: string): number | null {
  try {
    return Number(fs.statfsSync(p).type);
  } catch {
    return null;
  }
}

function doMount(fstype: string, target: string): void {
  fs.mkdirSync(target, { recursive: true });
  if (mount(fstype, target, fstype, 0, null) !== 0) {
    throw new SystemError('mounting', fstype, lastErrno(), { target });
  }
}

/**
 * Makes sure `pinPath` lies on a bpffs, mounting one at /sys/fs/bpf when nothing is
 * mounted there. Returns true when this call mounted it.
 */
export function ensureBpffs(pinPath: string): boolean {
  let dir = path.resolve(pinPath);
  while (!fs.existsSync(dir)) dir = path.dirname(dir);
  if (fsMagic(dir) === BPF_FS_MAGIC) return false;
  if (path.resolve(pinPath).startsWith('/sys/fs/bpf') && fsMagic('/sys/fs/bpf') !== BPF_FS_MAGIC) {
    doMount('bpf', '/sys/fs/bpf');
    return true;
  }
  throw new SystemError('mounting', 'bpffs', 22, {
    target: pinPath,
    detail: 'pin path is not on a bpf filesystem',
    hint: 'use a pinPath under /sys/fs/bpf or mount a bpffs there',
  });
}

/** Mounts tracefs at /sys/kernel/tracing when no tracefs is reachable. Returns true if it mounted. */
export function ensureTracefs(): boolean {
  if (fsMagic('/sys/kernel/tracing') === TRACEFS_MAGIC) return false;
  if (fsMagic('/sys/kernel/debug/tracing') === TRACEFS_MAGIC) return false;
  doMount('tracefs', '/sys/kernel/tracing');
  return true;
}

/** Mount point of the cgroup v2 hierarchy (/sys/fs/cgroup or, on hybrid systems, /sys/fs/cgroup/unified). */
export function cgroup2Root(): string | null {
  const m = readMounts().filter((e) => e.fstype === 'cgroup2');
  if (m.length === 0) return null;
  return (m.find((e) => e.target === '/sys/fs/cgroup') ?? m.find((e) => e.target === '/sys/fs/cgroup/unified') ?? m[0]!).target;
}
