// SPDX-License-Identifier: Apache-2.0
// One compiled BPF object (build/bpf/<name>.bpf.o) through its libbpf lifecycle:
// open -> configure (map sizes, reused pinned maps, which programs load) -> load.
// Attachment and pinning live in component.ts; this file only knows libbpf objects.
import fs from 'node:fs';
import os from 'node:os';
import zlib from 'node:zlib';
import path from 'node:path';
import * as L from './libbpf.js';
import { BpfError } from './errors.js';
import { explainLoadFailure, withCapturedLog } from './log.js';
import { BpfMap } from './maps.js';
import { lastErrno } from '../sys/libc.js';
import { ERRNO } from '../sys/errno.js';

/** libbpf's own error numbers (libbpf.h, enum libbpf_errno), for messages. */
const LIBBPF_ERRNO: Record<number, string> = {
  4000: 'libelf error', 4001: 'not a valid BPF ELF object', 4002: 'kernel version mismatch',
  4003: 'endianness mismatch', 4004: 'libbpf internal error', 4005: 'relocation failed',
  4006: 'load failed', 4007: 'rejected by the verifier', 4008: 'program too big',
  4009: 'incorrect kernel version', 4010: 'kernel does not support this program type',
};

export interface ObjectProgram {
  name: string;
  section: string;
  ptr: L.Ptr;
}

export class BpfObject {
  private ptr: L.Ptr | null;
  readonly name: string;
  private readonly mapCache = new Map<string, BpfMap>();
  loaded = false;

  private constructor(ptr: L.Ptr, readonly file: string) {
    this.ptr = ptr;
    this.name = path.basename(file).replace(/\.bpf\.o$/, '');
  }

  /** Opens (parses) an object file. Missing and corrupt files fail with a clear BpfError. */
  /**
   * Opens an object. Its `__kconfig` externs (CONFIG_HZ...) are resolved from the values
   * kernelConfig() found, never by libbpf reading /boot/config-* or /proc/config.gz
   * itself: libbpf refuses an object with kconfig externs on a kernel that has neither
   * file, even when the externs are weak.
   */
  static open(file: string): BpfObject {
    const name = path.basename(file);
    if (!fs.existsSync(file)) {
      throw new BpfError('opening', name, ERRNO.ENOENT, { target: file, hint: 'build it with `npm run build` (or reinstall the package)' });
    }
    const { result, lines } = withCapturedLog(() => {
      const p = L.bpf_object__open_file_with(file, { sz: L.OPEN_OPTS_SIZE, kconfig: kernelConfig() });
      return { p, errno: p === null ? lastErrno() : 0 };
    });
    if (result.p === null) {
      const why = explainLoadFailure(lines).reason;
      throw new BpfError('opening', name, result.errno, {
        target: file,
        detail: LIBBPF_ERRNO[result.errno] ?? why ?? 'not a BPF object',
      });
    }
    return new BpfObject(result.p, file);
  }

  private get handle(): L.Ptr {
    if (this.ptr === null) throw new Error(`BPF object ${this.name} is closed`);
    return this.ptr;
  }

  programs(): ObjectProgram[] {
    const out: ObjectProgram[] = [];
    for (let p = L.bpf_object__next_program(this.handle, null); p !== null; p = L.bpf_object__next_program(this.handle, p)) {
      out.push({ name: L.bpf_program__name(p), section: L.bpf_program__section_name(p), ptr: p });
    }
    return out;
  }

  /** Names of the object's own maps (not libbpf's internal .rodata/.bss/.data maps). */
  mapNames(): string[] {
    const out: string[] = [];
    for (let m = L.bpf_object__next_map(this.handle, null); m !== null; m = L.bpf_object__next_map(this.handle, m)) {
      if (!L.bpf_map__is_internal(m)) out.push(L.bpf_map__name(m));
    }
    return out;
  }

  private mapPtr(name: string): L.Ptr {
    const m = L.bpf_object__find_map_by_name(this.handle, name);
    if (m === null) throw new BpfError('finding', `map ${name}`, ERRNO.ENOENT, { target: this.name });
    return m;
  }

  private progPtr(name: string): L.Ptr {
    const p = L.bpf_object__find_program_by_name(this.handle, name);
    if (p === null) throw new BpfError('finding', `program ${name}`, ERRNO.ENOENT, { target: this.name });
    return p;
  }

  /** Map definition as compiled (before load) or as created (after). */
  mapSpec(name: string): { type: number; keySize: number; valueSize: number; maxEntries: number; flags: number } {
    const m = this.mapPtr(name);
    return {
      type: L.bpf_map__type(m),
      keySize: L.bpf_map__key_size(m),
      valueSize: L.bpf_map__value_size(m),
      maxEntries: L.bpf_map__max_entries(m),
      flags: L.bpf_map__map_flags(m),
    };
  }

  setMaxEntries(name: string, n: number): void {
    const ret = L.bpf_map__set_max_entries(this.mapPtr(name), n);
    if (ret < 0) throw new BpfError('resizing', name, -ret, { detail: `to ${n} entries` });
  }

  /** Makes the object use an existing (pinned) map instead of creating its own. */
  reuseMap(name: string, fd: number): void {
    const ret = L.bpf_map__reuse_fd(this.mapPtr(name), fd);
    if (ret < 0) throw new BpfError('reopening', name, -ret, { detail: 'reusing pinned map' });
  }

  setAutoload(prog: string, on: boolean): void {
    const ret = L.bpf_program__set_autoload(this.progPtr(prog), on);
    if (ret < 0) throw new BpfError('loading', prog, -ret, { detail: 'set_autoload' });
  }

  autoload(prog: string): boolean {
    return L.bpf_program__autoload(this.progPtr(prog));
  }

  /** Loads every program marked for autoload; a verifier rejection names the program and the reason. */
  load(): void {
    const { result: ret, lines } = withCapturedLog(() => L.bpf_object__load(this.handle));
    if (ret < 0) {
      const why = explainLoadFailure(lines);
      const errno = -ret;
      throw new BpfError('loading', why.program ? `${this.name}/${why.program}` : this.name, errno, {
        detail: why.reason ?? LIBBPF_ERRNO[errno],
      });
    }
    this.loaded = true;
  }

  /** Tries to load; returns the failure instead of throwing (used to pick probe alternatives). */
  tryLoad(): { ok: true } | { ok: false; error: BpfError; program: string | undefined } {
    try {
      this.load();
      return { ok: true };
    } catch (err) {
      if (!(err instanceof BpfError)) throw err;
      const prog = err.object.includes('/') ? err.object.split('/')[1] : undefined;
      return { ok: false, error: err, program: prog };
    }
  }

  progFd(name: string): number {
    const fd = L.bpf_program__fd(this.progPtr(name));
    if (fd < 0) throw new BpfError('finding', `program ${name}`, -fd, { target: this.name, detail: 'not loaded' });
    return fd;
  }

  program(name: string): L.Ptr {
    return this.progPtr(name);
  }

  /** The loaded map (fd owned by the object: valid until close()). */
  map(name: string): BpfMap {
    let m = this.mapCache.get(name);
    if (!m) {
      const fd = L.bpf_map__fd(this.mapPtr(name));
      if (fd < 0) throw new BpfError('finding', `map ${name}`, -fd, { target: this.name, detail: 'not created' });
      m = new BpfMap(name, fd, false);
      this.mapCache.set(name, m);
    }
    return m;
  }

  mapPtrOf(name: string): L.Ptr {
    return this.mapPtr(name);
  }

  /** Frees the object. Pinned maps, pinned programs and attached links stay in the kernel. */
  close(): void {
    if (this.ptr === null) return;
    L.bpf_object__close(this.ptr);
    this.ptr = null;
    this.mapCache.clear();
  }
}

let kconfig: string | undefined;
/**
 * The kernel configuration values ebpfmon's objects read (CONFIG_HZ), as libbpf's kconfig
 * text: from /proc/config.gz or /boot/config-<release> when the kernel has them, else
 * `CONFIG_HZ=0` (the programs then fall back to a nanosecond clock).
 */
export function kernelConfig(): string {
  if (kconfig !== undefined) return kconfig;
  let text = '';
  try {
    text = zlib.gunzipSync(fs.readFileSync('/proc/config.gz')).toString('utf8');
  } catch {
    try {
      text = fs.readFileSync(`/boot/config-${os.release()}`, 'utf8');
    } catch {
      /* neither: defaults */
    }
  }
  const hz = /^CONFIG_HZ=(\d+)$/m.exec(text)?.[1] ?? '0';
  kconfig = `CONFIG_HZ=${hz}\n`;
  return kconfig;
}
