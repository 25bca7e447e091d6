// SPDX-License-Identifier: Apache-2.0
// The few libc calls Node does not offer, declared once. Every function returns the raw C
// result; callers read errno through `lastErrno()` immediately after a failing call.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');
koffi.alias('ssize_t', 'intptr_t');

export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x1;
export const MAP_FAILED = (1n << 64n) - 1n; // (void *)-1 as an unsigned BigInt

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const SOCK_NONBLOCK = 0o4000;
export const SOL_SOCKET = 1;
export const SO_PEERCRED = 17;
export const SO_PEERGROUPS = 59;
export const SO_NETNS_COOKIE = 71;
export const MSG_DONTWAIT = 0x40;
export const CLOCK_REALTIME = 0;
export const CLOCK_MONOTONIC = 1;
/** The tick clock the classifier stamps flows with (bpf_ktime_get_coarse_ns). */
export const CLOCK_MONOTONIC_COARSE = 6;
export const CLOCK_BOOTTIME = 7;

export const mmap = libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)') as
  (addr: null, length: number, prot: number, flags: number, fd: number, offset: number) => bigint | null;
export const munmap = libc.func('int munmap(void *addr, size_t length)') as (addr: bigint, length: number) => number;
export const close = libc.func('int close(int fd)') as (fd: number) => number;
export const read = libc.func('ssize_t read(int fd, _Out_ uint8_t *buf, size_t count)') as
  (fd: number, buf: Uint8Array, count: number) => number;
export const mount = libc.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)') as
  (source: string, target: string, fstype: string, flags: number, data: string | null) => number;
export const socket = libc.func('int socket(int domain, int type, int protocol)') as (d: number, t: number, p: number) => number;
export const bind = libc.func('int bind(int fd, const uint8_t *addr, uint32_t len)') as (fd: number, addr: Uint8Array, len: number) => number;
export const getsockopt = libc.func('int getsockopt(int fd, int level, int name, _Out_ uint8_t *val, _Inout_ uint32_t *len)') as
  (fd: number, level: number, name: number, val: Uint8Array, len: Uint32Array) => number;
export const setsockopt = libc.func('int setsockopt(int fd, int level, int name, const uint8_t *val, uint32_t len)') as
  (fd: number, level: number, name: number, val: Uint8Array, len: number) => number;
export const sendto = libc.func('ssize_t sendto(int fd, const uint8_t *buf, size_t len, int flags, const uint8_t *addr, uint32_t alen)') as
  (fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array | null, alen: number) => number;
export const recv = libc.func('ssize_t recv(int fd, _Out_ uint8_t *buf, size_t len, int flags)') as
  (fd: number, buf: Uint8Array, len: number, flags: number) => number;
const clockGettime = libc.func('int clock_gettime(int clk, _Out_ int64_t *ts)') as (clk: number, ts: BigInt64Array) => number;
const vsnprintfFn = libc.func('int vsnprintf(_Out_ uint8_t *buf, size_t n, const char *fmt, void *ap)') as
  (buf: Uint8Array, n: number, fmt: string, ap: unknown) => number;
const strerrorFn = libc.func('const char *strerror(int errnum)') as (e: number) => string;

export function lastErrno(): number {
  return koffi.errno();
}

export function strerror(errno: number): string {
  return strerrorFn(Math.abs(errno));
}

const tsBuf = new BigInt64Array(2);
/** A clock in nanoseconds (BigInt, exact). */
export function clockNs(clock: number): bigint {
  if (clockGettime(clock, tsBuf) !== 0) throw new Error(`clock_gettime(${clock}) failed: errno ${lastErrno()}`);
  return tsBuf[0]! * 1_000_000_000n + tsBuf[1]!;
}

/**
 * Formats a C `va_list` (received as an opaque pointer by a callback) into a string.
 * A va_list can be walked only once, so the buffer must be big enough the first time:
 * libbpf prints a whole verifier log (often hundreds of KiB) in one message.
 */
const fmtBuf = Buffer.alloc(4 << 20);
export function formatVaList(fmt: string, ap: unknown): string {
  const n = vsnprintfFn(fmtBuf, fmtBuf.length, fmt, ap);
  if (n < 0) return fmt;
  return fmtBuf.toString('utf8', 0, Math.min(n, fmtBuf.length - 1));
}

export const CLONE_NEWNET = 0x40000000;
export const setns = libc.func('int setns(int fd, int nstype)') as (fd: number, nstype: number) => number;

const getgrnamRaw = libc.func('int getgrnam_r(const char *name, _Out_ uint8_t *grp, _Out_ uint8_t *buf, size_t buflen, _Out_ void **result)') as
  (name: string, grp: Uint8Array, buf: Uint8Array, len: number, result: unknown[]) => number;
const ERANGE = 34;
/** struct group's gr_gid: after two pointers (gr_name, gr_passwd) on 64-bit Linux. */
const GR_GID_OFFSET = 16;

/** getgrnam_r: the gid of a group by name (any NSS source), or null if there is none. */
export function getgrnamR(name: string): number | null {
  const grp = Buffer.alloc(32);
  for (let size = 16 << 10; size <= 1 << 24; size *= 4) {
    const buf = Buffer.alloc(size);
    const result: unknown[] = [null];
    const ret = getgrnamRaw(name, grp, buf, buf.length, result);
    if (ret === ERANGE) continue; // a group with many members: a bigger buffer
    if (ret !== 0 || result[0] === null) return null;
    return grp.readUInt32LE(GR_GID_OFFSET);
  }
  return null;
}

const getpwnamRaw = libc.func('int getpwnam_r(const char *name, _Out_ uint8_t *pwd, _Out_ uint8_t *buf, size_t buflen, _Out_ void **result)') as
  (name: string, pwd: Uint8Array, buf: Uint8Array, len: number, result: unknown[]) => number;
/** struct passwd's pw_uid: after two pointers (pw_name, pw_passwd) on 64-bit Linux. */
const PW_UID_OFFSET = 16;

/** getpwnam_r: the uid of a user by name (any NSS source), or null if there is none. */
export function getpwnamR(name: string): number | null {
  const pwd = Buffer.alloc(48);
  for (let size = 16 << 10; size <= 1 << 20; size *= 4) {
    const buf = Buffer.alloc(size);
    const result: unknown[] = [null];
    const ret = getpwnamRaw(name, pwd, buf, buf.length, result);
    if (ret === ERANGE) continue;
    if (ret !== 0 || result[0] === null) return null;
    return pwd.readUInt32LE(PW_UID_OFFSET);
  }
  return null;
}

export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;
export const flock = libc.func('int flock(int fd, int op)') as (fd: number, op: number) => number;
