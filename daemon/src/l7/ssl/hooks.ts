// SPDX-License-Identifier: Apache-2.0
// Which OpenSSL copies get the uprobes, and which processes' TLS cannot be decrypted.
//
// A uprobe belongs to a file, so the work is to find the files:
//  - at start: the system's libssl (the dynamic linker's directories), then every running
//    process's mapped libssl (bundled copies, containers: each through /proc/<pid>/root);
//  - as processes start (exec events): their maps, read again after the dynamic linker
//    and early dlopen()s have run (scan delays), for copies not hooked yet;
//  - when the classifier sees a TLS ClientHello from a process none of whose files is
//    hooked: its executable is tried (OpenSSL linked statically, with symbols), and if that
//    fails the process is listed as not hooked, with what it uses instead (GnuTLS, NSS, Go's
//    crypto/tls, ...) when that can be told.
// Bounded: at most MAX_NOT_HOOKED processes listed, pids per library capped.
import fs from 'node:fs';
import type { L7Status, TlsLibraryStatus, TlsNotHooked, TlsStack } from '../../contract/l7.js';
import { elfSectionNames, executableOf, isGoBinary, libraryDirs, mappedFiles, resolveMapped, systemOpenSsl, tlsLibraryKind, type MappedFile } from './libs.js';
import type { SslAttacher } from './probes.js';

export const MAX_NOT_HOOKED = 256;
const MAX_PIDS_PER_LIBRARY = 32;
/** After an exec: when to read the new program's maps (ms). */
export const EXEC_SCAN_DELAYS_MS = [30, 300, 2000] as const;

export interface TlsHooksOptions {
  probes: SslAttacher;
  procRoot?: string;
  /** Library directories to look for the system's libssl in (default: the dynamic linker's). */
  libraryDirs?: string[];
  now?: () => number;
  /** Process name, when the daemon knows it. */
  comm?: (pid: number) => string | null;
}

interface Library extends TlsLibraryStatus {
  identity: string;
}

export class TlsHooks {
  private readonly libs = new Map<string, Library>();
  private readonly errors = new Map<string, { path: string; reason: string }>();
  private readonly notHooked = new Map<number, TlsNotHooked>();
  /** pid -> identities of the hooked files it maps (learned by scans). */
  private readonly covered = new Map<number, Set<string>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly procRoot: string;
  private readonly now: () => number;

  constructor(private readonly opts: TlsHooksOptions) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.now = opts.now ?? Date.now;
  }

  /** The system's libssl, then every running process. */
  start(): void {
    for (const p of systemOpenSsl(this.opts.libraryDirs ?? libraryDirs())) {
      const f = resolveMapped(process.pid, p, this.procRoot);
      if (f) this.hookFile(f, 'openssl', null);
    }
    for (const pid of this.pids()) this.scanPid(pid);
  }

  /** A process started (exec): its maps are read after each of EXEC_SCAN_DELAYS_MS. */
  onExec(pid: number): void {
    for (const ms of EXEC_SCAN_DELAYS_MS) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        this.scanPid(pid);
      }, ms);
      t.unref();
      this.timers.add(t);
    }
  }

  onExit(pid: number): void {
    this.covered.delete(pid);
    this.notHooked.delete(pid);
  }

  /** The classifier saw a ClientHello from `pid`: is its TLS decrypted? */
  onTlsFlow(pid: number, comm: string | null): void {
    if (!pid || this.notHooked.has(pid)) return;
    if (this.covered.get(pid)?.size) return;
    this.scanPid(pid);
    if (this.covered.get(pid)?.size) return;
    const verdict = this.classify(pid);
    if (!verdict) return; // gone, or hooked its executable now
    if (this.notHooked.size >= MAX_NOT_HOOKED) this.notHooked.delete(this.notHooked.keys().next().value!);
    this.notHooked.set(pid, { pid, comm: comm ?? this.opts.comm?.(pid) ?? null, ...verdict });
  }

  /** Reads one process's maps and hooks every OpenSSL copy in them. */
  scanPid(pid: number): void {
    for (const file of mappedFiles(pid, this.procRoot)) {
      if (tlsLibraryKind(file) !== 'openssl') continue;
      const f = resolveMapped(pid, file, this.procRoot);
      if (f) this.hookFile(f, 'openssl', pid);
    }
  }

  /** Identities (st_dev:st_ino) of the files hooked in this run. */
  hookedIdentities(): Set<string> {
    return new Set(this.libs.keys());
  }

  /** Whether `pid` maps a hooked file (as far as the scans saw). */
  isCovered(pid: number): boolean {
    return (this.covered.get(pid)?.size ?? 0) > 0;
  }

  status(): Pick<L7Status, 'tlsLibraries' | 'tlsLibraryErrors' | 'tlsNotHooked'> {
    for (const pid of this.notHooked.keys()) if (!this.alive(pid)) this.notHooked.delete(pid);
    return {
      tlsLibraries: [...this.libs.values()].map(({ identity: _id, ...l }) => ({ ...l, functions: [...l.functions], pids: [...l.pids] })),
      tlsLibraryErrors: [...this.errors.values()],
      tlsNotHooked: [...this.notHooked.values()],
    };
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private hookFile(f: MappedFile, stack: 'openssl' | 'openssl-static', pid: number | null): boolean {
    let lib = this.libs.get(f.identity);
    if (!lib) {
      if (this.errors.has(f.identity)) return false;
      const r = this.opts.probes.hook(f);
      if (!r.ok) {
        if (stack === 'openssl') this.errors.set(f.identity, { path: f.path, reason: r.reason });
        return false;
      }
      lib = { identity: f.identity, path: f.path, stack, functions: r.functions, hookedAt: new Date(this.now()).toISOString(), pids: [] };
      this.libs.set(f.identity, lib);
    }
    if (pid !== null) {
      if (!lib.pids.includes(pid) && lib.pids.length < MAX_PIDS_PER_LIBRARY) lib.pids.push(pid);
      let s = this.covered.get(pid);
      if (!s) this.covered.set(pid, (s = new Set()));
      s.add(f.identity);
      this.notHooked.delete(pid);
    }
    return true;
  }

  /** Why a process with TLS flows maps no hooked OpenSSL; null when that changed (or it is gone). */
  private classify(pid: number): { stack: TlsStack; reason: string } | null {
    const files = mappedFiles(pid, this.procRoot);
    if (files.length === 0) return null;
    for (const file of files) {
      const kind = tlsLibraryKind(file);
      if (kind === 'openssl') {
        const f = resolveMapped(pid, file, this.procRoot);
        const err = f ? this.errors.get(f.identity) : undefined;
        return { stack: 'openssl', reason: `its OpenSSL (${file}) could not be hooked: ${err?.reason ?? 'not readable'}` };
      }
      if (kind) return { stack: kind, reason: `uses ${kind} (${file}): only OpenSSL's libssl is hooked` };
    }
    const exe = executableOf(pid, this.procRoot);
    if (!exe) return null;
    const sections = elfSectionNames(exe.hostPath) ?? [];
    if (isGoBinary(sections)) return { stack: 'go', reason: `Go program (${exe.path}): crypto/tls is compiled in, not OpenSSL` };
    // OpenSSL linked in statically, with its symbols: hook the executable itself.
    if (this.hookFile(exe, 'openssl-static', pid)) return null;
    const stripped = !sections.includes('.symtab');
    return {
      stack: 'unknown',
      reason: stripped
        ? `no OpenSSL library mapped and ${exe.path} has no symbol table: TLS statically linked and stripped, or another library`
        : `no OpenSSL library mapped and no SSL_write in ${exe.path}: another TLS library, linked statically`,
    };
  }

  private *pids(): Generator<number> {
    let names: string[];
    try {
      names = fs.readdirSync(this.procRoot);
    } catch {
      return;
    }
    for (const n of names) if (/^\d+$/.test(n)) yield Number(n);
  }

  private alive(pid: number): boolean {
    return mappedFiles(pid, this.procRoot).length > 0;
  }
}
