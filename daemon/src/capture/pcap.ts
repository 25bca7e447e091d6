// SPDX-License-Identifier: Apache-2.0
// libpcap (Debian's libpcap0.8: libpcap.so.0.8) through koffi, for one job: turning a
// tcpdump filter expression (pcap-filter(7)) into classic BPF, exactly as tcpdump would.
// pcap_open_dead() gives a handle with a link type and a snap length and no device, so
// compiling needs no privilege and touches no interface. The instructions are copied out
// of libpcap's memory at once; nothing returned here points into C.
//
// Why libpcap and not a parser of our own: the grammar (and its quirks: `tcp[tcpflags]`,
// `vlan`, `ip6 protochain`, the optimizer's output) is libpcap's; users expect an
// expression to select exactly what tcpdump selects, and only libpcap defines that.
import koffi from 'koffi';
import { CaptureError } from './errors.js';

/** Link types the classifier can hand over (see emon_ifaces.l2_len). */
export const DLT = {
  /** Ethernet: interfaces with a 14-byte link-layer header at TC (veth, ethernet). */
  EN10MB: 1,
  /** Raw IP: L3 interfaces (tun, wireguard), where TC sees the IP header first. DLT_RAW is
   * 12 on Linux; files say LINKTYPE_RAW (101), see pcapng.ts. */
  RAW: 12,
} as const;
export type LinkType = (typeof DLT)[keyof typeof DLT];

/** The link type of an interface from its link-layer header length at TC. */
export function linkTypeForL2Len(l2Len: number): LinkType | null {
  if (l2Len === 14) return DLT.EN10MB;
  if (l2Len === 0) return DLT.RAW;
  return null;
}

export const LINK_TYPE_NAMES: Record<LinkType, string> = { [DLT.EN10MB]: 'Ethernet', [DLT.RAW]: 'raw IP' };

/** PCAP_NETMASK_UNKNOWN: `ip broadcast` then fails with a clear message instead of guessing. */
const NETMASK_UNKNOWN = 0xffffffff;
/** sizeof(struct bpf_insn): u16 code, u8 jt, u8 jf, u32 k. */
export const CBPF_INSN_SIZE = 8;
/** The longest program the kernel accepts for classic BPF (BPF_MAXINSNS). */
export const CBPF_MAX_INSNS = 4096;

interface Lib {
  openDead: (linktype: number, snaplen: number) => bigint | null;
  compile: (p: bigint, prog: Buffer, str: string, optimize: number, netmask: number) => number;
  geterr: (p: bigint) => string;
  freecode: (prog: Buffer) => void;
  close: (p: bigint) => void;
  filter: (insns: Buffer, pkt: Uint8Array, wirelen: number, buflen: number) => number;
  version: () => string;
}

let lib: Lib | null = null;
function pcap(): Lib {
  if (lib) return lib;
  let l: ReturnType<typeof koffi.load>;
  try {
    l = koffi.load('libpcap.so.0.8');
  } catch (err) {
    throw new CaptureError('PCAP_MISSING', 'libpcap.so.0.8 cannot be loaded: install libpcap0.8 (capture filters are compiled with it)', { cause: err });
  }
  koffi.opaque('pcap_t');
  lib = {
    openDead: l.func('pcap_t *pcap_open_dead(int linktype, int snaplen)') as Lib['openDead'],
    // struct bpf_program { u_int bf_len; struct bpf_insn *bf_insns; }: 16 bytes, passed as a Buffer.
    compile: l.func('int pcap_compile(pcap_t *p, void *fp, const char *str, int optimize, uint32_t netmask)') as Lib['compile'],
    geterr: l.func('const char *pcap_geterr(pcap_t *p)') as Lib['geterr'],
    freecode: l.func('void pcap_freecode(void *fp)') as Lib['freecode'],
    close: l.func('void pcap_close(pcap_t *p)') as Lib['close'],
    filter: l.func('unsigned int bpf_filter(const void *pc, const uint8_t *p, unsigned int wirelen, unsigned int buflen)') as Lib['filter'],
    version: l.func('const char *pcap_lib_version(void)') as Lib['version'],
  };
  return lib;
}

/** A compiled filter: classic BPF instructions (struct bpf_insn, host byte order) and what they were made from. */
export interface CbpfProgram {
  expression: string;
  linkType: LinkType;
  snaplen: number;
  /** struct bpf_insn[count], 8 bytes each. */
  insns: Buffer;
  count: number;
}

export interface CompileOptions {
  linkType: LinkType;
  /** What a match returns (tcpdump's -s); 262144 like tcpdump by default. */
  snaplen?: number;
  /** libpcap's optimizer (tcpdump runs it unless -O). */
  optimize?: boolean;
}

export const DEFAULT_SNAPLEN = 262144;

/**
 * Compiles a pcap-filter expression. An empty expression matches every packet (as in
 * tcpdump). A bad one throws CaptureError BAD_FILTER with libpcap's reason and the
 * expression, e.g. `filter "tcp prot 80" (Ethernet): syntax error`.
 */
export function compileFilter(expression: string, opts: CompileOptions): CbpfProgram {
  const snaplen = opts.snaplen ?? DEFAULT_SNAPLEN;
  if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > DEFAULT_SNAPLEN) {
    throw new CaptureError('BAD_SNAPLEN', `snaplen ${snaplen} is out of range (1..${DEFAULT_SNAPLEN})`);
  }
  if (expression.includes('\0')) throw new CaptureError('BAD_FILTER', `filter ${JSON.stringify(expression)}: contains a NUL byte`);
  const L = pcap();
  const handle = L.openDead(opts.linkType, snaplen);
  if (handle === null) throw new CaptureError('PCAP_MISSING', `pcap_open_dead(${opts.linkType}) failed`);
  const prog = Buffer.alloc(16);
  try {
    if (L.compile(handle, prog, expression, opts.optimize === false ? 0 : 1, NETMASK_UNKNOWN) !== 0) {
      const why = L.geterr(handle).replace(/^can't parse filter expression: /, '');
      throw new CaptureError('BAD_FILTER', `filter ${JSON.stringify(expression)} (${LINK_TYPE_NAMES[opts.linkType]}): ${why}`, {
        detail: { expression, linkType: opts.linkType, reason: why },
      });
    }
    try {
      const count = prog.readUInt32LE(0);
      const ptr = prog.readBigUInt64LE(8);
      if (count === 0 || count > CBPF_MAX_INSNS || ptr === 0n) {
        throw new CaptureError('BAD_FILTER', `filter ${JSON.stringify(expression)}: ${count} instructions (the kernel takes 1..${CBPF_MAX_INSNS})`);
      }
      const insns = Buffer.from(koffi.view(ptr, count * CBPF_INSN_SIZE).slice(0));
      return { expression, linkType: opts.linkType, snaplen, insns, count };
    } finally {
      L.freecode(prog);
    }
  } finally {
    L.close(handle);
  }
}

/**
 * libpcap's own interpreter (bpf_filter): what tcpdump would return for `packet`, whose
 * first `packet.length` bytes were captured out of `wireLen`. 0 means no match. The
 * reference the in-kernel engine is tested against; also usable in user space.
 */
export function pcapFilter(prog: CbpfProgram, packet: Uint8Array, wireLen = packet.length): number {
  return pcap().filter(prog.insns, packet, wireLen, packet.length) >>> 0;
}

export function pcapVersion(): string {
  return pcap().version();
}
