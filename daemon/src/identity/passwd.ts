// SPDX-License-Identifier: Apache-2.0
// uid -> home directory from /etc/passwd (re-read when it changes), for per-user data:
// rootless podman storage and ~/.local/share/applications.
import fs from 'node:fs';

export class Passwd {
  private cache: { mtimeMs: number; homes: Map<number, string> } | null = null;

  constructor(private readonly file = '/etc/passwd') {}

  home(uid: number): string | null {
    let st: fs.Stats;
    try {
      st = fs.statSync(this.file);
    } catch {
      return null;
    }
    if (!this.cache || this.cache.mtimeMs !== st.mtimeMs) {
      const homes = new Map<number, string>();
      for (const line of fs.readFileSync(this.file, 'utf8').split('\n')) {
        const f = line.split(':');
        if (f.length >= 7 && /^\d+$/.test(f[2]!)) homes.set(Number(f[2]), f[5]!);
      }
      this.cache = { mtimeMs: st.mtimeMs, homes };
    }
    return this.cache.homes.get(uid) ?? null;
  }
}
