// SPDX-License-Identifier: Apache-2.0
// Minimal rtnetlink over a raw AF_NETLINK socket: list interfaces, follow link changes,
// list TC filters, create and delete the tunnel devices mirror sessions use, and ask which
// route reaches an address; and one sock_diag question (does this TCP socket exist), all
// in the network namespace of the calling process. (sysfs
// would answer for the namespace sysfs was mounted in, which is wrong under `nsenter --net`.)
import koffi from 'koffi';
import * as C from '../sys/libc.js';
import { errnoName } from '../sys/errno.js';

const ENOENT = 2;

const NETLINK_ROUTE = 0;
const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const INET_DIAG_NOCOOKIE = 0xffffffff;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLM_F_DUMP = 0x300;
const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_NEWROUTE = 24;
const RTM_GETROUTE = 26;
const IFLA_MTU = 4;
const IFLA_MAX_MTU = 51;
const IFLA_STATS64 = 23;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PORT = 15;
const IFLA_VXLAN_COLLECT_METADATA = 25;
const IFLA_GRE_COLLECT_METADATA = 18;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_PREFSRC = 7;
const RTA_METRICS = 8;
const RTAX_MTU = 2;
const NLA_F_NESTED = 0x8000;
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
  mtu?: number;
  /** The largest MTU the device accepts (IFLA_MAX_MTU; kernels since 4.19 report it). */
  maxMtu?: number;
  /** Transmit errors and drops since the device was made (IFLA_STATS64). */
  txErrors?: number;
  txDropped?: number;
  /** IFLA_INFO_KIND: `veth`, `vxlan`, `gretap`... (absent for physical devices). */
  kind?: string;
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

function openSocket(groups: number, nonblock: boolean, protocol = NETLINK_ROUTE): number {
  const fd = C.socket(C.AF_NETLINK, C.SOCK_RAW | C.SOCK_CLOEXEC | (nonblock ? C.SOCK_NONBLOCK : 0), protocol);
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
  for (const a of attrs(buf, off + 16, end)) {
    if (a.type === IFLA_IFNAME) link.name = cstr(buf, a.off, a.len);
    else if (a.type === IFLA_MTU && a.len >= 4) link.mtu = buf.readUInt32LE(a.off);
    else if (a.type === IFLA_MAX_MTU && a.len >= 4) link.maxMtu = buf.readUInt32LE(a.off);
    else if (a.type === IFLA_STATS64 && a.len >= 64) {
      // struct rtnl_link_stats64: rx/tx packets, rx/tx bytes, rx/tx errors, rx/tx dropped...
      link.txErrors = Number(buf.readBigUInt64LE(a.off + 40));
      link.txDropped = Number(buf.readBigUInt64LE(a.off + 56));
    }
    else if (a.type === IFLA_LINKINFO) {
      for (const i of attrs(buf, a.off, a.off + a.len)) if (i.type === IFLA_INFO_KIND) link.kind = cstr(buf, i.off, i.len);
    }
  }
  return link;
}

/** One netlink attribute (nested ones: `value` is their concatenation). */
function attr(type: number, value: Buffer): Buffer {
  const b = Buffer.alloc(align4(4 + value.length));
  b.writeUInt16LE(4 + value.length, 0);
  b.writeUInt16LE(type, 2);
  value.copy(b, 4);
  return b;
}
const u8 = (v: number): Buffer => Buffer.of(v);
const u16be = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
};
const cstrBuf = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);

/** Sends one request and waits for its acknowledgement (or the first reply of `wantType`). */
function request(type: number, flags: number, body: Buffer, what: string, wantType?: number, protocol = NETLINK_ROUTE): { buf: Buffer; off: number; end: number } | null {
  const fd = openSocket(0, false, protocol);
  try {
    const msg = Buffer.alloc(16 + body.length);
    msg.writeUInt32LE(msg.length, 0);
    msg.writeUInt16LE(type, 4);
    msg.writeUInt16LE(NLM_F_REQUEST | flags, 6);
    msg.writeUInt32LE(seq++, 8);
    body.copy(msg, 16);
    if (C.sendto(fd, msg, msg.length, 0, null, 0) < 0) throw new NetlinkError(what, C.lastErrno());
    const rbuf = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = C.recv(fd, rbuf, rbuf.length, 0);
      if (n < 0) throw new NetlinkError(what, C.lastErrno());
      const buf = Buffer.from(rbuf.subarray(0, n));
      for (let off = 0; off + 16 <= n; ) {
        const len = buf.readUInt32LE(off);
        const t = buf.readUInt16LE(off + 4);
        if (len < 16) return null;
        if (t === NLMSG_ERROR) {
          const err = -buf.readInt32LE(off + 16);
          if (err !== 0) throw new NetlinkError(what, err);
          if (wantType === undefined) return null;
        } else if (t === wantType) {
          return { buf, off: off + 16, end: off + len };
        }
        off += align4(len);
      }
    }
  } finally {
    C.close(fd);
  }
}

/** The tunnel devices mirror sessions send through, all in external (collect-metadata)
 * mode: the program that hands them a copy sets its destination per packet. */
export type TunnelKind = 'vxlan' | 'gretap' | 'ip6gretap';

/**
 * Creates a tunnel device, down (`ip link add NAME type vxlan external dstport PORT
 * nolearning`, `... type gretap external`, `... type ip6gretap external`). Throws
 * NetlinkError: EOPNOTSUPP when the kernel has no such device type, EEXIST when the name is
 * taken, EADDRINUSE when another vxlan device owns the port.
 */
export function createTunnel(name: string, kind: TunnelKind, opts: { port?: number } = {}): void {
  let data: Buffer;
  if (kind === 'vxlan') {
    data = Buffer.concat([attr(IFLA_VXLAN_COLLECT_METADATA, u8(1)), attr(IFLA_VXLAN_LEARNING, u8(0)), attr(IFLA_VXLAN_PORT, u16be(opts.port ?? 4789))]);
  } else {
    data = attr(IFLA_GRE_COLLECT_METADATA, Buffer.alloc(0));
  }
  const linkinfo = attr(IFLA_LINKINFO | NLA_F_NESTED, Buffer.concat([attr(IFLA_INFO_KIND, cstrBuf(kind)), attr(IFLA_INFO_DATA | NLA_F_NESTED, data)]));
  const body = Buffer.concat([Buffer.alloc(16), attr(IFLA_IFNAME, cstrBuf(name)), linkinfo]);
  request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body, `creating ${kind} device ${name}`);
}

/** Sets an interface up (IFF_UP). */
export function setLinkUp(ifindex: number, up = true): void {
  const body = Buffer.alloc(16);
  body.writeInt32LE(ifindex, 4);
  body.writeUInt32LE(up ? IFF_UP : 0, 8); // ifi_flags
  body.writeUInt32LE(IFF_UP, 12); // ifi_change
  request(RTM_NEWLINK, NLM_F_ACK, body, `setting interface ${ifindex} ${up ? 'up' : 'down'}`);
}

/** One interface by ifindex (RTM_GETLINK); null when it is gone. */
export function getLink(ifindex: number): Link | null {
  const body = Buffer.alloc(16);
  body.writeInt32LE(ifindex, 4);
  try {
    const r = request(RTM_GETLINK, 0, body, `reading interface ${ifindex}`, RTM_NEWLINK);
    return r ? parseLink(r.buf, r.off, r.end) : null;
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === 19 /* ENODEV */) return null;
    throw err;
  }
}

/** Sets an interface's MTU. */
export function setLinkMtu(ifindex: number, mtu: number): void {
  const body = Buffer.alloc(16);
  body.writeInt32LE(ifindex, 4);
  const v = Buffer.alloc(4);
  v.writeUInt32LE(mtu, 0);
  request(RTM_NEWLINK, NLM_F_ACK, Buffer.concat([body, attr(IFLA_MTU, v)]), `setting the MTU of interface ${ifindex} to ${mtu}`);
}

/** Deletes an interface by ifindex (ENODEV when it is gone already). */
export function deleteLink(ifindex: number): void {
  const body = Buffer.alloc(16);
  body.writeInt32LE(ifindex, 4);
  request(RTM_DELLINK, NLM_F_ACK, body, `deleting interface ${ifindex}`);
}

export interface RouteInfo {
  /** Output interface. */
  ifindex: number;
  /** The source address the kernel picks, when it says. */
  prefsrc: string | null;
  /** The route's own MTU metric (a PMTU exception or `mtu` on the route), when set. */
  mtu: number | null;
}

/** The route this host would use to reach `addr` (4 or 16 bytes), as `ip route get`; null when there is none. */
export function routeTo(addr: Uint8Array): RouteInfo | null {
  const v6 = addr.length === 16;
  const body = Buffer.alloc(12);
  body.writeUInt8(v6 ? C.AF_INET6 : C.AF_INET, 0);
  body.writeUInt8(v6 ? 128 : 32, 1); // rtm_dst_len
  let m: { buf: Buffer; off: number; end: number } | null;
  try {
    m = request(RTM_GETROUTE, 0, Buffer.concat([body, attr(RTA_DST, Buffer.from(addr))]), 'route lookup', RTM_NEWROUTE);
  } catch (err) {
    if (err instanceof NetlinkError) return null; // ENETUNREACH, EHOSTUNREACH...
    throw err;
  }
  if (!m) return null;
  const r: RouteInfo = { ifindex: 0, prefsrc: null, mtu: null };
  for (const a of attrs(m.buf, m.off + 12, m.end)) {
    if (a.type === RTA_OIF) r.ifindex = m.buf.readUInt32LE(a.off);
    else if (a.type === RTA_PREFSRC) r.prefsrc = a.len === 4 ? [...m.buf.subarray(a.off, a.off + 4)].join('.') : m.buf.subarray(a.off, a.off + a.len).toString('hex');
    else if (a.type === RTA_METRICS) {
      for (const x of attrs(m.buf, a.off, a.off + a.len)) if (x.type === RTAX_MTU && x.len >= 4) r.mtu = m.buf.readUInt32LE(x.off) || null;
    }
  }
  return r.ifindex ? r : null;
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

/**
 * The state of the TCP socket with this 4-tuple (local first, as the socket sees it) in
 * the caller's network namespace (include/net/tcp_states.h numbering), or null when there
 * is none: sock_diag's exact lookup (SOCK_DIAG_BY_FAMILY without NLM_F_DUMP). The kernel
 * answers from its connection table (TIME_WAIT entries included) and then its listeners:
 * a listener on the local port answers a tuple with no connection (LISTEN, 10). `addr`s
 * are 4 (IPv4) or 16 bytes; an IPv4 tuple also finds an IPv6 socket's v4-mapped one.
 */
export function tcpSocketState(family: 4 | 6, laddr: Uint8Array, lport: number, raddr: Uint8Array, rport: number): number | null {
  // struct inet_diag_req_v2: family, protocol, ext, pad, states; struct inet_diag_sockid:
  // sport, dport (network order), src[4], dst[4] (network order), if, cookie[2].
  const req = Buffer.alloc(56);
  req.writeUInt8(family === 4 ? C.AF_INET : C.AF_INET6, 0);
  req.writeUInt8(6, 1);
  req.writeUInt32LE(0xffffffff, 4);
  req.writeUInt16BE(lport, 8);
  req.writeUInt16BE(rport, 10);
  Buffer.from(laddr.buffer, laddr.byteOffset, laddr.length).copy(req, 12);
  Buffer.from(raddr.buffer, raddr.byteOffset, raddr.length).copy(req, 28);
  req.writeUInt32LE(INET_DIAG_NOCOOKIE, 48);
  req.writeUInt32LE(INET_DIAG_NOCOOKIE, 52);
  try {
    const r = request(SOCK_DIAG_BY_FAMILY, 0, req, 'sock_diag lookup', SOCK_DIAG_BY_FAMILY, NETLINK_SOCK_DIAG);
    // struct inet_diag_msg: family, state, ...
    return r ? r.buf.readUInt8(r.off + 1) : null;
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === ENOENT) return null;
    throw err;
  }
}
