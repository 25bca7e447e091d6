// SPDX-License-Identifier: Apache-2.0
// Group lookups in /etc/group (re-read when it changes: admins add members while the
// daemon runs).
import fs from 'node:fs';

let cache: { mtimeMs: number; byName: Map<string, number> } | null = null;

export function groupGid(name: string, file = '/etc/group'): number | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return null;
  }
  if (!cache || cache.mtimeMs !== st.mtimeMs) {
    const byName = new Map<string, number>();
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const [n, , gid] = line.split(':');
      if (n && gid && /^\d+$/.test(gid)) byName.set(n, Number(gid));
    }
    cache = { mtimeMs: st.mtimeMs, byName };
  }
  return cache.byName.get(name) ?? null;
}
