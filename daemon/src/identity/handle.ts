// SPDX-License-Identifier: Apache-2.0
// cgroup id -> path with open_by_handle_at(2): a cgroup2 file handle is the 8-byte kernfs
// id with handle type FILEID_KERNFS, so the kernel finds the directory without a walk
// (what iproute2 does for `ss --cgroup`). Needs CAP_DAC_READ_SEARCH; without it every call
// fails with EPERM and the resolver uses /proc and walks instead (cgroupfs.ts).
// Declared here rather than in sys/libc.ts while it is only the identity resolver's.
import fs from 'node:fs';
import koffi from 'koffi';
import { lastErrno } from '../sys/libc.js';

const libc = koffi.load('libc.so.6');
const openByHandleAt = libc.func('int open_by_handle_at(int mount_fd, uint8_t *handle, int flags)') as (fd: number, handle: Uint8Array, flags: number) => number;
const closeFd = libc.func('int close(int fd)') as (fd: number) => number;

const FILEID_KERNFS = 0xfe;
const O_RDONLY = 0;
const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;
const EPERM = 1;
const ESTALE = 116;

export class HandleResolver {
  private mountFd: number;
  private readonly handle = Buffer.alloc(16);
  /** Set once a call failed for want of privilege: later calls return null at once. */
  denied = false;

  constructor(readonly root: string) {
    this.mountFd = fs.openSync(root, 'r');
    this.handle.writeUInt32LE(8, 0); // handle_bytes
    this.handle.writeInt32LE(FILEID_KERNFS, 4);
  }

  /** The path of `id` below the root; null when it does not exist (any more) or access is denied. */
  lookup(id: bigint): string | null {
    if (this.denied || this.mountFd < 0) return null;
    this.handle.writeBigUInt64LE(id, 8);
    const fd = openByHandleAt(this.mountFd, this.handle, O_RDONLY | O_PATH | O_CLOEXEC);
    if (fd < 0) {
      const e = lastErrno();
      if (e === EPERM) this.denied = true;
      else if (e !== ESTALE && e !== 2 /* ENOENT */) throw new Error(`open_by_handle_at(${this.root}, cgroup ${id}) failed: errno ${e}`);
      return null;
    }
    try {
      const abs = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (abs === this.root) return '/';
      return abs.startsWith(`${this.root}/`) ? abs.slice(this.root.length) : null;
    } finally {
      closeFd(fd);
    }
  }

  close(): void {
    if (this.mountFd >= 0) fs.closeSync(this.mountFd);
    this.mountFd = -1;
  }
}
