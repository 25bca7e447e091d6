// SPDX-License-Identifier: Apache-2.0
// The cookie of the calling process's network namespace (SO_NETNS_COOKIE, Linux 5.14+):
// the socket probes use it to track only sockets of the namespace the daemon monitors.
import fs from 'node:fs';
import * as C from './libc.js';

export function currentNetnsCookie(): bigint | null {
  const fd = C.socket(C.AF_INET, C.SOCK_DGRAM | C.SOCK_CLOEXEC, 0);
  if (fd < 0) return null;
  try {
    const val = Buffer.alloc(8);
    const len = new Uint32Array(new ArrayBuffer(4));
    len[0] = 8;
    if (C.getsockopt(fd, C.SOL_SOCKET, C.SO_NETNS_COOKIE, val, len) !== 0) return null;
    return val.readBigUInt64LE(0);
  } finally {
    C.close(fd);
  }
}

/**
 * Runs `fn` with this thread in the network namespace of `nsPath` (e.g. /proc/PID/ns/net),
 * then returns to its own. A namespace is a per-thread property: only the calling thread
 * (Node's main thread) moves, and only while `fn` runs, synchronously. For calls whose
 * result depends on the caller's namespace (a BPF socket iterator walks the namespace it
 * was created in). Throws when the namespace cannot be entered or left.
 */
export function inNetns<T>(nsPath: string, fn: () => T): T {
  const own = fs.openSync('/proc/thread-self/ns/net', 'r');
  try {
    const target = fs.openSync(nsPath, 'r');
    try {
      if (C.setns(target, C.CLONE_NEWNET) !== 0) throw new Error(`cannot enter the network namespace ${nsPath}: ${C.strerror(C.lastErrno())}`);
    } finally {
      fs.closeSync(target);
    }
    try {
      return fn();
    } finally {
      // Not returning would leave the daemon's sockets in a foreign namespace: fatal.
      if (C.setns(own, C.CLONE_NEWNET) !== 0) {
        process.stderr.write(`ebpfmon: cannot return to its own network namespace: ${C.strerror(C.lastErrno())}\n`);
        process.abort();
      }
    }
  } finally {
    fs.closeSync(own);
  }
}
