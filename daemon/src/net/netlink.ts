// SPDX-License-Identifier: Apache-2.0
// Minimal rtnetlink over a raw AF_NETLINK socket: list interfaces, follow link changes
// and list TC filters, all in the network namespace of the calling process. (sysfs would
// answer for the namespace sysfs was mounted in, which is wrong under `nsenter --net`.)
import koffi from 'koffi';
import * as C from '../sys/libc.js';
import { errnoName } from '../sys/errno.js';

const NETLINK_ROUTE = 0;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_NEWTFILTER = 44;
const RTM_GETTFILTER = 46;
const IFLA_IFNAME = 3;
const TCA_KIND = 1;
const TCA_OPTIONS = 2;
const TCA_BPF_NAME = 7;
const TCA_BPF_ID = 11;
const RTMGRP_LINK = 1;

export const IFF_UP = 0x1;
export const IFF_LOOPBACK = 0x8;
export const IFF_RUNNING = 0x40;
export const IFF_LOWER_UP = 0x10000;

export const TC_PARENT_INGRESS = 0xfffffff2;
export const TC_PARENT_EGRESS = 0xfffffff3;

export interface Link {
  ifindex: number;
  name: string;
  flags: number;
  /** ARPHRD_* (1 ethernet, 772 loopback, 65534 none...) */
  type: number;
}

export interface TcFilter {
  handle: number;
  priority: number;
  kind: string;
  /** cls_bpf only */
  progId?: number;
  progName?: string;
}

export class NetlinkError extends Error {
  override readonly name = 'NetlinkError';
  constructor(readonly op: string, readonly errno: number) {
    super(`${op}: ${errnoName(errno)}`);
  }
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function* attrs(buf: Buffer, start: number, end: number): Generator<{ type: number; off: number; len: number }> {
  let off = start;
  while (off + 4 <= end) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > end) return;
    yield { type, off: off + 4, len: len - 4 };
    off += align4(len);
  }
}

function cstr(buf: Buffer, off: number, len: number): string {
  const end = buf.indexOf(0, off);
  return buf.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

function sockaddrNl(groups: number): Buffer {
  const a = Buffer.alloc(12);
  a.writeUInt16LE(C.AF_NETLINK, 0);
  a.writeUInt32LE(groups, 8);
  return a;
}

function openSocket(groups: number, nonblock: boolean): number {
  const fd = C.socket(C.AF_NETLINK, C.SOCK_RAW | C.SOCK_CLOEXEC | (nonblock ? C.SOCK_NONBLOCK : 0), NETLINK_ROUTE);
  if (fd < 0) throw new NetlinkError('opening netlink socket', C.lastErrno());
  const sa = sockaddrNl(groups);
  if (C.bind(fd, sa, sa.length) < 0) {
    const e = C.lastErrno();
    C.close(fd);
    throw new NetlinkError('binding netlink socket', e);
  }
  return fd;
}

let seq = 1;

/** Sends one dump request and collects every reply message of `wantType`. */
function dump(type: number, body: Buffer, wantType: number): Array<{ buf: Buffer; off: number; end: number }> {
  const fd = openSocket(0, false);
  try {
    const msg = Buffer.alloc(16 + body.length);
    msg.writeUInt32LE(msg.length, 0);
    msg.writeUInt16LE(type, 4);
    msg.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6);
    msg.writeUInt32LE(seq++, 8);
    body.copy(msg, 16);
    if (C.sendto(fd, msg, msg.length, 0, null, 0) < 0) throw new NetlinkError('netlink request', C.lastErrno());
    const out: Array<{ buf: Buffer; off: number; end: number }> = [];
    const rbuf = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = C.recv(fd, rbuf, rbuf.length, 0);
      if (n < 0) throw new NetlinkError('netlink receive', C.lastErrno());
      const buf = Buffer.from(rbuf.subarray(0, n));
      for (let off = 0; off + 16 <= n; ) {
        const len = buf.readUInt32LE(off);
        const t = buf.readUInt16LE(off + 4);
        if (len < 16) return out;
        if (t === NLMSG_DONE) return out;
        if (t === NLMSG_ERROR) {
          const err = -buf.readInt32LE(off + 16);
          if (err === 0) return out;
          throw new NetlinkError('netlink dump', err);
        }
        if (t === wantType) out.push({ buf, off: off + 16, end: off + len });
        off += align4(len);
      }
    }
  } finally {
    C.close(fd);
  }
}

function parseLink(buf: Buffer, off: number, end: number): Link {
  const link: Link = { type: buf.readUInt16LE(off + 2), ifindex: buf.readInt32LE(off + 4), flags: buf.readUInt32LE(off + 8), name: '' };
  for (const a of attrs(buf, off + 16, end)) if (a.type === IFLA_IFNAME) link.name = cstr(buf, a.off, a.len);
  return link;
}

/** Every interface of the current network namespace. */
export function listLinks(): Link[] {
  return dump(RTM_GETLINK, Buffer.alloc(16), RTM_NEWLINK).map((m) => parseLink(m.buf, m.off, m.end));
}

/** TC filters on one clsact hook (`parent`: TC_PARENT_INGRESS or TC_PARENT_EGRESS). */
export function listTcFilters(ifindex: number, parent: number): TcFilter[] {
  const body = Buffer.alloc(20);
  body.writeInt32LE(ifindex, 4);
  body.writeUInt32LE(parent, 12);
  let msgs: Array<{ buf: Buffer; off: number; end: number }>;
  try {
    msgs = dump(RTM_GETTFILTER, body, RTM_NEWTFILTER);
  } catch (err) {
    // No clsact qdisc (EINVAL/ENOENT) or the interface is gone (ENODEV): no filters.
    if (err instanceof NetlinkError) return [];
    throw err;
  }
  const out: TcFilter[] = [];
  for (const { buf, off, end } of msgs) {
    const handle = buf.readUInt32LE(off + 8);
    if (handle === 0) continue; // the per-priority header message, not a filter
    const info = buf.readUInt32LE(off + 16);
    const f: TcFilter = { handle, priority: info >>> 16, kind: '' };
    for (const a of attrs(buf, off + 20, end)) {
      if (a.type === TCA_KIND) f.kind = cstr(buf, a.off, a.len);
      if (a.type === TCA_OPTIONS) {
        for (const o of attrs(buf, a.off, a.off + a.len)) {
          if (o.type === TCA_BPF_ID) f.progId = buf.readUInt32LE(o.off);
          if (o.type === TCA_BPF_NAME) f.progName = cstr(buf, o.off, o.len);
        }
      }
    }
    out.push(f);
  }
  return out;
}

export interface LinkWatcher {
  close(): void;
}

/**
 * Calls `onChange` (debounced to one call per event-loop turn) whenever an interface
 * appears, disappears or changes flags. Event-driven: a libuv poll on the netlink socket.
 */
export function watchLinks(onChange: () => void): LinkWatcher {
  const fd = openSocket(RTMGRP_LINK, true);
  const buf = Buffer.alloc(64 * 1024);
  let scheduled = false;
  const poll = koffi.node.poll(fd, { readable: true }, () => {
    let saw = false;
    for (;;) {
      const n = C.recv(fd, buf, buf.length, C.MSG_DONTWAIT);
      if (n <= 0) break; // EAGAIN: drained (ENOBUFS: overflow - a full rescan follows anyway)
      for (let off = 0; off + 16 <= n; ) {
        const len = buf.readUInt32LE(off);
        const t = buf.readUInt16LE(off + 4);
        if (t === RTM_NEWLINK || t === RTM_DELLINK) saw = true;
        if (len < 16) break;
        off += align4(len);
      }
      if (!saw) saw = n > 0;
    }
    if (saw && !scheduled) {
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        onChange();
      });
    }
  });
  return {
    close() {
      poll.close();
      C.close(fd);
    },
  };
}
