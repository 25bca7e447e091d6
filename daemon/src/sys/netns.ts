// SPDX-License-Identifier: Apache-2.0
// The cookie of the calling process's network namespace (SO_NETNS_COOKIE, Linux 5.14+):
// the socket probes use it to track only sockets of the namespace the daemon monitors.
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
