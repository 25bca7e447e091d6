// SPDX-License-Identifier: Apache-2.0
// history.query: flows and per-process totals from the embedded store, one declaration for
// JSON-RPC and D-Bus (GetHistory). Scoped like flows.list: a caller outside the `ebpfmon`
// group sees its own uid only, and naming another `user` is PermissionDenied. Every failure
// of the store reaches the client as a contract error (NotAvailable, Busy), never Internal.
import fs from 'node:fs';
import type { HistoryStatus } from '../contract/history.js';
import { AppError, describeValue } from '../errors.js';
import type { History } from '../history/history.js';
import { HistoryError } from '../history/history.js';
import { HistoryParamError, parseHistoryQuery, uidFromPasswd, type HistoryQueryInput } from '../history/query.js';
import type { HistoryQuery, HistoryScope } from '../history/types.js';
import { scopeUid } from './caller.js';
import { method } from './method.js';
import { paramsObject } from './validate.js';

/** What the API uses of the store (a fake can stand in for tests). */
export type HistoryApi = Pick<History, 'query' | 'status'>;

export const HISTORY_PARAMS = ['since', 'until', 'pid', 'comm', 'user', 'unit', 'remote', 'name', 'by', 'limit'] as const;

/** A user name -> uid. Local accounts (/etc/passwd) only: numeric uids work for every user. */
function uidOfName(name: string): number | null {
  try {
    return uidFromPasswd(name, fs.readFileSync('/etc/passwd', 'utf8'));
  } catch {
    return null;
  }
}

interface ScopedQuery {
  q: HistoryQuery;
  scope: HistoryScope;
}

/** history.query params as a validated query and the caller's scope. */
export function historyQuery(raw: unknown, caller: { uid: number; seesAll: boolean }, now = Date.now()): ScopedQuery {
  const p = paramsObject(raw, HISTORY_PARAMS);
  let q: HistoryQuery;
  try {
    q = parseHistoryQuery(p as HistoryQueryInput, now, uidOfName);
  } catch (err) {
    if (err instanceof HistoryParamError) {
      // The store's parser says what was wrong in its own words ("must be ...", "no user named ...").
      const field = err.field === 'params' ? 'params' : `params.${err.field}`;
      const said = err.message.slice(err.field.length + 2);
      const { text, echo } = describeValue(err.field === 'params' ? raw : p[err.field]);
      throw new AppError('InvalidParams', `${field}: ${said} (got ${text})`, { field, value: echo, expected: said.replace(/^must be /, '') });
    }
    throw err;
  }
  const uid = scopeUid(caller, q.uid, 'params.user');
  if (uid !== undefined) q.uid = uid;
  return { q, scope: caller.seesAll ? 'all' : { uid: caller.uid } };
}

export function historyMethods(history: HistoryApi | null) {
  const available = (): HistoryApi => {
    if (!history) throw new AppError('NotAvailable', 'history is disabled (set history.enabled in the configuration)');
    return history;
  };
  return {
    'history.query': method<'history.query', ScopedQuery>({
      access: 'read',
      validate: (raw, caller) => {
        available();
        return historyQuery(raw, caller);
      },
      run: async ({ q, scope }) => {
        try {
          return await available().query(q, scope);
        } catch (err) {
          // The store's own failures (no writer thread, a corrupt block met by this query,
          // a full disk while opening): the client sees what happened, status has the detail.
          if (err instanceof HistoryError) {
            throw new AppError(err.code === 'worker' ? 'Busy' : 'NotAvailable', `history: ${err.message}`, { code: err.code });
          }
          throw new AppError('NotAvailable', `history: ${(err as Error).message}`);
        }
      },
    }),
  };
}

/** `status.history`. */
export function historyStatus(history: HistoryApi): HistoryStatus {
  return history.status();
}
