// SPDX-License-Identifier: Apache-2.0
// errno numbers <-> names ("EPERM"), from Node's own table so there is one source.
import os from 'node:os';

const names = new Map<number, string>();
for (const [name, num] of Object.entries(os.constants.errno)) {
  // Aliases (EWOULDBLOCK = EAGAIN, EDEADLOCK = EDEADLK): keep the first, canonical name.
  if (!names.has(num)) names.set(num, name);
}

// libbpf's own error numbers (enum libbpf_errno), which it returns like errnos.
const LIBBPF = ['LIBELF', 'FORMAT', 'KVERSION', 'ENDIAN', 'INTERNAL', 'RELOC', 'LOAD', 'VERIFY', 'PROG2BIG', 'KVER', 'PROGTYPE', 'WRNGPID', 'INVSEQ', 'NLPARSE'];
LIBBPF.forEach((n, i) => names.set(4000 + i, `LIBBPF_E${n}`));

/** `1` or `-1` -> `EPERM`; unknown numbers -> `errno 1234`. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  return names.get(n) ?? `errno ${n}`;
}

export const ERRNO = os.constants.errno;
