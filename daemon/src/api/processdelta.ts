// SPDX-License-Identifier: Apache-2.0
// Incremental processes.list replies (issue 17: `top` at 100k flows). A caller passes
// `since: null`, gets the whole list and a cursor; each later call with the last cursor gets
// only the rows that changed or came into the list since, and the keys of the rows that left
// it. At 1000 processes the full reply was 486 KB of JSON a second for one `top`; a quiet
// system now answers with a few rows.
//
// Per cursor the daemon keeps what that caller was sent (key -> row object). A row is
// unchanged when the monitor handed out the same object again (monitor/rowcache.ts), or
// failing that when it is deeply equal (node:util isDeepStrictEqual), so an answer never
// depends on how well the monitor's cache did. A cursor is single use (the next reply
// replaces it), bound to the caller (uid and scope) and to the params it was made with,
// and forgotten after CURSOR_IDLE_MS, when its caller's uid keeps more than
// MAX_CURSORS_PER_UID, or when more than MAX_CURSORS are kept in all (then the oldest of the
// uid keeping the most goes: one user's many streams cannot push out another user's `top`);
// any cursor it cannot answer from gets a full reply (`full: true`), which the client takes
// as a reset.
// Only a `since` that is not a cursor at all is refused (InvalidParams).
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { processKey, type ProcessesListResult, type ProcessKey, type ProcessTotals } from '../contract/flows.js';
import { invalidParam } from '../errors.js';
import type { Caller } from './caller.js';
import type { Params } from './validate.js';

/** Cursors kept at once (one per `top` running), over all callers. */
export const MAX_CURSORS = 256;
/** Cursors kept for one uid; its oldest goes first. */
export const MAX_CURSORS_PER_UID = 16;
/** A cursor not used for this long is forgotten (a `top --interval` is at most 3600 s). */
export const CURSOR_IDLE_MS = 3_700_000;
/** `<run>.<seq>`: 12 hex digits naming this daemon run, then a counter. */
const CURSOR_RE = /^[0-9a-f]{12}\.[0-9]{1,15}$/;

export { processKey };

/** `since` as validated: undefined (a plain reply), null (start), or a well-formed cursor. */
export function optSince(p: Params): string | null | undefined {
  const v = p.since;
  if (v === undefined || v === null) return v;
  if (typeof v !== 'string' || !CURSOR_RE.test(v)) throw invalidParam('params.since', v, 'null (start an incremental stream) or the cursor of a previous processes.list reply');
  return v;
}

interface Session {
  /** The params the rows were listed with (anything else: a full reply). */
  shape: string;
  uid: number;
  seesAll: boolean;
  /** What the caller holds: key -> the row last sent. */
  sent: Map<ProcessKey, ProcessTotals>;
  usedAt: number;
}

export interface CursorStats {
  kept: number;
  full: number;
  incremental: number;
  rowsSent: number;
  rowsUnchanged: number;
}

export class ProcessCursors {
  private readonly run = randomBytes(6).toString('hex');
  private seq = 0;
  private readonly sessions = new Map<string, Session>();
  /** Cursors kept per uid (the sessions' uids, counted). */
  private readonly perUid = new Map<number, number>();
  readonly stats: CursorStats = { kept: 0, full: 0, incremental: 0, rowsSent: 0, rowsUnchanged: 0 };

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * The reply to a call with `since`: `list` is the full reply's rows (after `limit`),
   * `shape` names every param that chose them. `incremental` false: always a full reply
   * (with a cursor that answers nothing: groups are not kept).
   */
  reply(since: string | null, shape: string, caller: Caller, list: ProcessTotals[], extra: Omit<ProcessesListResult, 'processes'>, incremental = true): ProcessesListResult {
    const now = this.now();
    this.expire(now);
    const prev = since !== null ? this.sessions.get(since) : undefined;
    // Single use, whatever happens next; but only its own caller uses it up (cursors are
    // counters: another user could guess one, and gets a full reply of their own rows).
    if (prev && prev.uid === caller.uid) this.forget(since!);
    // The same row objects in the same order as last time (a quiet system: the monitor
    // handed out its last answer again): the same keys, so the caller's Map serves again
    // (never written after it is built), instead of 1000 keys built each second.
    const again = prev !== undefined && prev.uid === caller.uid && sameObjects(list, prev.sent);
    const sent = again ? prev.sent : new Map<ProcessKey, ProcessTotals>();
    if (!again) for (const r of list) sent.set(processKey(r), r);
    const cursor = `${this.run}.${++this.seq}`;
    if (incremental) this.keep(cursor, { shape, uid: caller.uid, seesAll: caller.seesAll, sent, usedAt: now });
    this.stats.kept = this.sessions.size;
    if (!prev || !incremental || prev.shape !== shape || prev.uid !== caller.uid || prev.seesAll !== caller.seesAll) {
      this.stats.full++;
      this.stats.rowsSent += list.length;
      return { processes: list, ...extra, cursor, full: true };
    }
    const changed: ProcessTotals[] = [];
    if (sent === prev.sent) {
      this.stats.incremental++;
      this.stats.rowsUnchanged += list.length;
      return { processes: changed, ...extra, cursor, full: false, gone: [] };
    }
    for (const [k, r] of sent) {
      const before = prev.sent.get(k);
      if (before === r || (before !== undefined && isDeepStrictEqual(before, r))) {
        this.stats.rowsUnchanged++;
      } else changed.push(r);
    }
    const gone: ProcessKey[] = [];
    for (const k of prev.sent.keys()) if (!sent.has(k)) gone.push(k);
    this.stats.incremental++;
    this.stats.rowsSent += changed.length;
    return { processes: changed, ...extra, cursor, full: false, gone };
  }

  /** Cursors kept for `uid` (for status and tests). */
  keptFor(uid: number): number {
    return this.perUid.get(uid) ?? 0;
  }

  private keep(cursor: string, s: Session): void {
    this.sessions.set(cursor, s);
    const n = (this.perUid.get(s.uid) ?? 0) + 1;
    this.perUid.set(s.uid, n);
    if (n > MAX_CURSORS_PER_UID) this.forgetOldest(s.uid);
    else if (this.sessions.size > MAX_CURSORS) {
      let most = s.uid;
      for (const [uid, k] of this.perUid) if (k > this.perUid.get(most)!) most = uid;
      this.forgetOldest(most);
    }
  }

  /** The Map is in order of last use: the first of `uid`'s is its oldest. */
  private forgetOldest(uid: number): void {
    for (const [c, s] of this.sessions) {
      if (s.uid === uid) {
        this.forget(c);
        return;
      }
    }
  }

  private forget(cursor: string): void {
    const s = this.sessions.get(cursor);
    if (!s) return;
    this.sessions.delete(cursor);
    const n = this.perUid.get(s.uid)! - 1;
    if (n) this.perUid.set(s.uid, n);
    else this.perUid.delete(s.uid);
  }

  /** Drops cursors idle past CURSOR_IDLE_MS (the Map is in order of last use). */
  private expire(now: number): void {
    for (const [c, s] of this.sessions) {
      if (now - s.usedAt <= CURSOR_IDLE_MS) break;
      this.forget(c);
    }
  }
}

/** True when `list` holds exactly the row objects of `sent`, in its order. */
function sameObjects(list: readonly ProcessTotals[], sent: Map<ProcessKey, ProcessTotals>): boolean {
  if (list.length !== sent.size) return false;
  let i = 0;
  for (const r of sent.values()) if (list[i++] !== r) return false;
  return true;
}
