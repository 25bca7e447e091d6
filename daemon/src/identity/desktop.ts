// SPDX-License-Identifier: Apache-2.0
// The Name= of a desktop app from its .desktop file, found the way the XDG Desktop Entry
// spec finds it: <data dir>/applications/<desktop id>.desktop, where a `-` in the id may
// stand for a subdirectory (kde4-foo.desktop is applications/kde4/foo.desktop). Data dirs:
// the user's own (~/.local/share, ~/.local/share/flatpak/exports/share), then the system's
// (Flatpak's and snapd's exports, /usr/local/share, /usr/share). The daemon has no user
// session environment, so XDG_DATA_DIRS is the spec's default plus those exports.
// The parser reads only the [Desktop Entry] group's unlocalized Name (a full INI library
// would parse keys we never use).
import fs from 'node:fs';
import path from 'node:path';
import { Passwd } from './passwd.js';

export const SYSTEM_DATA_DIRS = ['/var/lib/flatpak/exports/share', '/var/lib/snapd/desktop', '/usr/local/share', '/usr/share'];

export function desktopEntryName(text: string): string | undefined {
  let inEntry = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) {
      if (inEntry) return undefined;
      inEntry = line === '[Desktop Entry]';
      continue;
    }
    if (!inEntry) continue;
    const m = /^Name\s*=\s*(.*)$/.exec(line);
    if (m) return m[1]!.replace(/\\s/g, ' ').replace(/\\n/g, ' ').replace(/\\t/g, ' ').replace(/\\\\/g, '\\') || undefined;
  }
  return undefined;
}

export class DesktopEntries {
  constructor(
    private readonly opts: { systemDataDirs?: string[]; passwd?: Passwd } = {},
  ) {}

  dataDirs(uid?: number): string[] {
    const home = uid !== undefined ? (this.opts.passwd ?? defaultPasswd).home(uid) : null;
    const user = home ? [path.join(home, '.local/share'), path.join(home, '.local/share/flatpak/exports/share')] : [];
    return [...user, ...(this.opts.systemDataDirs ?? SYSTEM_DATA_DIRS)];
  }

  /** `Name=` of the app, and the file it came from; undefined when no readable entry exists. */
  find(desktopId: string, uid?: number): { name: string; file: string } | undefined {
    if (!desktopId || desktopId.includes('/') || desktopId.startsWith('.')) return undefined;
    const candidates = [`${desktopId}.desktop`];
    if (desktopId.includes('-')) candidates.push(`${desktopId.replace(/-/g, '/')}.desktop`);
    for (const dir of this.dataDirs(uid)) {
      for (const c of candidates) {
        const file = path.join(dir, 'applications', c);
        let text: string;
        try {
          text = fs.readFileSync(file, 'utf8');
        } catch {
          continue;
        }
        const name = desktopEntryName(text);
        if (name) return { name, file };
      }
    }
    return undefined;
  }
}

const defaultPasswd = new Passwd();
