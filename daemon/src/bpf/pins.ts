// SPDX-License-Identifier: Apache-2.0
// The pin directory: everything ebpfmon keeps alive between daemon runs, and nothing else.
//   <root>/meta           the manifest (an array map ebpfmon creates; see manifest.ts)
//   <root>/maps/<name>    maps
//   <root>/progs/<name>   programs (to attach to interfaces that appear later)
//   <root>/links/<name>   links (tracepoints, cgroup hooks, XDP)
import fs from 'node:fs';
import path from 'node:path';

export type PinKind = 'maps' | 'progs' | 'links';

export class PinDir {
  constructor(readonly root: string) {}

  path(kind: PinKind, name: string): string {
    return path.join(this.root, kind, name);
  }

  get metaPath(): string {
    return path.join(this.root, 'meta');
  }

  exists(): boolean {
    return fs.existsSync(this.root);
  }

  has(kind: PinKind, name: string): boolean {
    return fs.existsSync(this.path(kind, name));
  }

  ensure(): void {
    for (const kind of ['maps', 'progs', 'links'] as const) fs.mkdirSync(path.join(this.root, kind), { recursive: true, mode: 0o700 });
  }

  list(kind: PinKind): string[] {
    try {
      return fs.readdirSync(path.join(this.root, kind)).sort();
    } catch {
      return [];
    }
  }

  /** Removes one pin; the object lives on while anything else holds it. */
  unpin(kind: PinKind, name: string): boolean {
    try {
      fs.unlinkSync(this.path(kind, name));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /** Removes the whole directory tree (bpffs allows unlink and rmdir, not rm -r in one
   * call); with `keepRoot`, everything in it (a daemon holds its lock on the root). */
  removeAll(keepRoot = false): void {
    if (!keepRoot) return void fs.rmSync(this.root, { recursive: true, force: true });
    for (const e of fs.readdirSync(this.root)) fs.rmSync(`${this.root}/${e}`, { recursive: true, force: true });
  }
}
