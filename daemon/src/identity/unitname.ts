// SPDX-License-Identifier: Apache-2.0
// systemd unit name escaping (systemd.unit(5), "String Escaping"): bytes outside
// [A-Za-z0-9:_.] become \xNN, so a `-` inside a name part is `\x2d` and the `-` left
// separate the parts. Written here because it is four lines; no npm package does only this.

/** `\x2d` -> `-` and so on; other text unchanged. */
export function unescapeUnitName(s: string): string {
  if (!s.includes('\\x')) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && s[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 2, i + 4))) {
      bytes.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      for (const b of Buffer.from(s[i]!, 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Splits an escaped unit name part on its separators (`-`); each piece unescaped. */
export function splitUnitName(s: string): string[] {
  return s.split('-').map(unescapeUnitName);
}

export function isUnit(name: string): boolean {
  return name.endsWith('.service') || name.endsWith('.scope');
}
