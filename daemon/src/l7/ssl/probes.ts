// SPDX-License-Identifier: Apache-2.0
// The OpenSSL uprobes (bpf/ssl.bpf.c, the `ssl` component) on library files: the eight
// programs (entry and return of SSL_write, SSL_read and their _ex variants) attached once
// per library FILE, for every process: a uprobe belongs to the file's inode, so one
// attachment covers the processes that map that file now and those that will. Each link
// is pinned under the file's identity (st_dev, st_ino) and the program: a restarted
// daemon finds them and attaches nothing twice; an upgraded ssl.bpf.o drops them all (they
// run the old programs) and attaches again.
import type { Logger } from 'pino';
import type { Deployment } from '../../bpf/deployment.js';
import { attachUprobe } from '../../bpf/uprobe.js';
import { elfFunctionOffsets } from '../../sys/elf.js';
import { SSL_FUNCTIONS } from '../components.js';
import type { MappedFile } from './libs.js';

export { SSL_FUNCTIONS };

export type HookResult = { ok: true; functions: string[]; adopted: boolean } | { ok: false; reason: string };

/** What TlsHooks needs of the kernel side (a fake in unit tests). */
export interface SslAttacher {
  hook(file: MappedFile): HookResult;
}

const PREFIX = 'ssl_';
/** Pin name of one uprobe link: `ssl_<dev>_<ino>_<program>`. */
export function sslLinkName(identity: string, prog: string): string {
  return `${PREFIX}${identity.replace(':', '_')}_${prog}`;
}

export class SslProbes implements SslAttacher {
  private readonly hooked = new Set<string>();

  constructor(private readonly dep: Deployment, private readonly log: Logger) {}

  /** Attaches the uprobes to one library file, or adopts the links a previous run pinned. */
  hook(file: MappedFile): HookResult {
    const pinned = new Set(this.dep.linkPins(sslLinkName(file.identity, '')));
    const adopted = SSL_FUNCTIONS.filter((f) => pinned.has(sslLinkName(file.identity, f.entry)) && pinned.has(sslLinkName(file.identity, f.ret)));
    if (SSL_FUNCTIONS.every((f) => !f.required || adopted.includes(f))) {
      this.hooked.add(file.identity);
      return { ok: true, functions: adopted.map((f) => f.name), adopted: true };
    }
    for (const p of pinned) this.dep.unpinLink(p); // a partial set: start over
    const offsets = elfFunctionOffsets(file.hostPath, SSL_FUNCTIONS.map((f) => f.name));
    if (!offsets) return { ok: false, reason: `${file.path} is not a 64-bit ELF file` };
    const functions: string[] = [];
    for (const f of SSL_FUNCTIONS) {
      const off = offsets.get(f.name);
      let failed: string | null = off === undefined ? `no ${f.name} symbol` : null;
      const done: string[] = [];
      for (const [prog, ret] of [[f.entry, false], [f.ret, true]] as const) {
        if (failed) break;
        try {
          const fd = attachUprobe(this.dep.progFd(prog), prog, file.hostPath, off!, ret);
          this.dep.pinLink(sslLinkName(file.identity, prog), fd);
          done.push(prog);
        } catch (err) {
          failed = (err as Error).message;
        }
      }
      if (failed) {
        for (const prog of done) this.dep.unpinLink(sslLinkName(file.identity, prog));
        if (f.required) {
          for (const g of SSL_FUNCTIONS) for (const prog of [g.entry, g.ret]) this.dep.unpinLink(sslLinkName(file.identity, prog));
          return { ok: false, reason: `${file.path}: ${failed}` };
        }
        continue;
      }
      functions.push(f.name);
    }
    this.hooked.add(file.identity);
    this.log.info({ path: file.path, identity: file.identity, functions }, 'OpenSSL uprobes attached');
    return { ok: true, functions, adopted: false };
  }

  /** Detaches every library's uprobes (TLS switched off, or ssl.bpf.o upgraded). */
  unhookAll(): number {
    const names = this.dep.linkPins(PREFIX);
    for (const n of names) this.dep.unpinLink(n);
    this.hooked.clear();
    return names.length;
  }

  /** Detaches the uprobes of files no longer found (a replaced library, a container gone):
   * their pins would otherwise hold the old inodes forever. */
  prune(keep: ReadonlySet<string>): number {
    let n = 0;
    const ids = new Set(this.dep.linkPins(PREFIX).map((l) => /^ssl_(\d+)_(\d+)_/.exec(l)).filter((m) => m !== null).map((m) => `${m![1]}:${m![2]}`));
    for (const id of ids) {
      if (keep.has(id)) continue;
      for (const l of this.dep.linkPins(sslLinkName(id, ''))) this.dep.unpinLink(l);
      this.hooked.delete(id);
      n++;
    }
    return n;
  }

  hookedCount(): number {
    return this.hooked.size;
  }
}
