// SPDX-License-Identifier: Apache-2.0
// What the API layer (api/l7.ts) needs from the application layer. L7Service implements
// it; unit tests implement it over an L7Store.
import type { L7Methods, L7Status } from '../contract/l7.js';
import type { DnsFilter, HttpFilter } from './store.js';

export interface L7Api {
  dnsList(f: DnsFilter): L7Methods['dns.list']['result'];
  httpList(f: HttpFilter): L7Methods['http.list']['result'];
  status(): L7Status;
}
