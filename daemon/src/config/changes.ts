// SPDX-License-Identifier: Apache-2.0
// What a reload (SIGHUP) cannot apply: the keys under given sections whose value differs
// between the running configuration and the one re-read. The daemon logs them, so that a
// change that waits for the next start is never silent.
import { isDeepStrictEqual } from 'node:util';

/** Dotted keys (`history.retentionDays`) under `sections` whose values differ in `next`. */
export function changedKeys(running: object, next: object, sections: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (a: unknown, b: unknown, at: string): void => {
    const plain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (plain(a) && plain(b)) {
      for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[k], b[k], `${at}.${k}`);
    } else if (!isDeepStrictEqual(a, b)) {
      out.push(at);
    }
  };
  for (const s of sections) walk((running as Record<string, unknown>)[s], (next as Record<string, unknown>)[s], s);
  return out;
}

/** Sections a reload does not apply (their keys take effect at the next start). */
export const RESTART_SECTIONS = ['history', 'export', 'metrics'] as const;
