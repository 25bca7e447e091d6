// SPDX-License-Identifier: Apache-2.0
// The OpenSSL uprobes (bpf/ssl.bpf.c) in the kernel: the object loaded once, its two socket
// tracepoints attached once, and the eight uprobes (entry and return of SSL_write, SSL_read
// and their _ex variants) attached once per library FILE, for every process: a uprobe
// belongs to the file's inode, so one attachment covers the processes that map that file
// now and those that will (libbpf resolves each symbol in the file: func_name).
import { BpfError } from '../../bpf/errors.js';
import * as L from '../../bpf/libbpf.js';
import { BpfObject } from '../../bpf/object.js';
import { lastErrno } from '../../sys/libc.js';
import type { MappedFile } from './libs.js';

export const SSL_MAP = { events: 'emon_ssl_events', stats: 'emon_ssl_stats', calls: 'emon_ssl_calls', conns: 'emon_ssl_conns', busy: 'emon_ssl_busy' } as const;

/** Each hooked function with its entry and return programs. SSL_write and SSL_read are
 * required; the _ex variants exist from OpenSSL 1.1.1 on. */
export const SSL_FUNCTIONS = [
  { name: 'SSL_write', entry: 'uprobe_ssl_write', ret: 'uretprobe_ssl_write', required: true },
  { name: 'SSL_read', entry: 'uprobe_ssl_read', ret: 'uretprobe_ssl_read', required: true },
  { name: 'SSL_write_ex', entry: 'uprobe_ssl_write_ex', ret: 'uretprobe_ssl_write_ex', required: false },
  { name: 'SSL_read_ex', entry: 'uprobe_ssl_read_ex', ret: 'uretprobe_ssl_read_ex', required: false },
] as const;

/** sock:sock_send_length / sock_recv_length tell which socket a call uses (6.3+). */
export const SSL_SOCKET_TPS = [
  { prog: 'tp_sock_send_length', category: 'sock', name: 'sock_send_length' },
  { prog: 'tp_sock_recv_length', category: 'sock', name: 'sock_recv_length' },
] as const;

export type HookResult = { ok: true; functions: string[] } | { ok: false; reason: string };

/** What TlsHooks needs of the kernel side (a fake in unit tests). */
export interface SslAttacher {
  hook(file: MappedFile): HookResult;
}

export class SslProbes implements SslAttacher {
  private readonly links = new Map<string, L.Ptr[]>();
  /** Why the socket tracepoints are not there (records then carry no flow key), or null. */
  readonly socketsUnavailable: string | null;

  private constructor(readonly obj: BpfObject, private readonly tpLinks: L.Ptr[], socketsUnavailable: string | null) {
    this.socketsUnavailable = socketsUnavailable;
  }

  /**
   * Loads bpf/ssl.bpf.o. `shareFrom`: an object whose maps of the same name this one uses
   * (the monitor's emon_config...). Without the socket tracepoints (a kernel before 6.3,
   * or one that refuses them) the uprobes still load: plaintext without its socket.
   */
  static load(opts: { objectFile: string; shareFrom?: BpfObject }): SslProbes {
    const open = (withSockets: boolean): BpfObject => {
      const obj = BpfObject.open(opts.objectFile);
      try {
        if (opts.shareFrom) {
          const shared = new Set(opts.shareFrom.mapNames());
          for (const m of obj.mapNames()) if (shared.has(m) && !m.startsWith('emon_ssl_') && !m.startsWith('.')) obj.reuseMap(m, opts.shareFrom.map(m).fd);
        }
        if (!withSockets) for (const t of SSL_SOCKET_TPS) obj.setAutoload(t.prog, false);
        obj.load();
        return obj;
      } catch (err) {
        obj.close();
        throw err;
      }
    };
    let obj: BpfObject;
    let unavailable: string | null = null;
    try {
      obj = open(true);
    } catch (err) {
      obj = open(false);
      unavailable = `socket tracepoints refused: ${(err as Error).message}`;
    }
    const tpLinks: L.Ptr[] = [];
    if (!unavailable) {
      for (const t of SSL_SOCKET_TPS) {
        const link = L.bpf_program__attach_tracepoint(obj.program(t.prog), t.category, t.name);
        if (link === null) {
          unavailable = new BpfError('attaching', t.prog, lastErrno(), { target: `${t.category}:${t.name}` }).message;
          break;
        }
        tpLinks.push(link);
      }
      if (unavailable) for (const l of tpLinks.splice(0)) L.bpf_link__destroy(l);
    }
    return new SslProbes(obj, tpLinks, unavailable);
  }

  /** Attaches the uprobes to one library file (once per identity). */
  hook(file: MappedFile): HookResult {
    if (this.links.has(file.identity)) return { ok: true, functions: [] };
    const links: L.Ptr[] = [];
    const functions: string[] = [];
    for (const f of SSL_FUNCTIONS) {
      const pair: L.Ptr[] = [];
      let failed: string | null = null;
      for (const [prog, retprobe] of [[f.entry, false], [f.ret, true]] as const) {
        const opts: L.UprobeOpts = { sz: L.UPROBE_OPTS_SIZE, ref_ctr_offset: 0, bpf_cookie: 0n, retprobe, func_name: f.name };
        const link = L.bpf_program__attach_uprobe_opts(this.obj.program(prog), -1, file.hostPath, 0, opts);
        if (link === null) {
          failed = new BpfError('attaching', prog, lastErrno(), { target: `${file.path} ${f.name}` }).message;
          break;
        }
        pair.push(link);
      }
      if (failed) {
        for (const l of pair) L.bpf_link__destroy(l);
        if (f.required) {
          for (const l of links) L.bpf_link__destroy(l);
          return { ok: false, reason: failed };
        }
        continue;
      }
      links.push(...pair);
      functions.push(f.name);
    }
    this.links.set(file.identity, links);
    return { ok: true, functions };
  }

  /** Detaches every library (bench/l7 alternates hooked and unhooked runs). */
  unhookAll(): void {
    for (const ls of this.links.values()) for (const l of ls) L.bpf_link__destroy(l);
    this.links.clear();
  }

  hookedCount(): number {
    return this.links.size;
  }

  close(): void {
    for (const ls of this.links.values()) for (const l of ls) L.bpf_link__destroy(l);
    this.links.clear();
    for (const l of this.tpLinks.splice(0)) L.bpf_link__destroy(l);
    this.obj.close();
  }
}
