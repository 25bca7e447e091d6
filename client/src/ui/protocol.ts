// SPDX-License-Identifier: Apache-2.0
// Messages between the server of `ebpfmonctl ui` and its page, over one WebSocket (JSON
// text frames). Types only: the page imports them with `import type`, as the CLI does the
// daemon's contract.
import type { GeoLabel, HomeLocation } from '../../../daemon/src/contract/geo.js';

export const WS_PATH = '/ws';

export interface ProcessRow {
  pid: number | null;
  comm: string | null;
  uid: number | null;
  user: string;
  txBytes: number;
  rxBytes: number;
  /** Bytes per second over the last poll interval. */
  txRate: number;
  rxRate: number;
  flows: number;
  openFlows: number;
}

/** A place on the map: coordinates from a database, or only a country (the page places it
 * at the country). */
export interface LocationRow {
  /** Stable id of the place ("c:48.86,2.35", "k:FR"). */
  key: string;
  lat: number | null;
  lon: number | null;
  country: string | null;
  city: string | null;
  txBytes: number;
  rxBytes: number;
  txRate: number;
  rxRate: number;
  flows: number;
}

/** One line on the map: one process's traffic to one place. */
export interface LineRow {
  key: string;
  location: string;
  pid: number | null;
  comm: string | null;
  txBytes: number;
  rxBytes: number;
  txRate: number;
  rxRate: number;
}

/** What hovering a place shows: who talks there, to which addresses, on which ports. Sent
 * only for the place the page hovers (not for every place every second). */
export interface LocationDetail {
  key: string;
  processes: Array<{ pid: number | null; comm: string | null; bytes: number }>;
  remotes: Array<{ addr: string; name: string | null; ports: number[]; bytes: number; asn: number | null; org: string | null }>;
}

export interface FlowRow {
  id: string;
  pid: number | null;
  comm: string | null;
  uid: number | null;
  protocol: string;
  localAddr: string;
  localPort: number | null;
  remoteAddr: string;
  remotePort: number | null;
  /** DNS name when the flow carries one (`remoteName`). */
  remoteName: string | null;
  state: string;
  closed: boolean;
  txBytes: number;
  rxBytes: number;
  txRate: number;
  rxRate: number;
  /** "Reykjavík, IS", a country code, a special range, or "-". */
  where: string;
  asn: number | null;
  org: string | null;
}

/** Traffic to addresses that have no place on the map (loopback, private, unknown...). */
export interface SpecialRow {
  label: GeoLabel | 'unknown';
  flows: number;
  txBytes: number;
  rxBytes: number;
}

export interface Snapshot {
  type: 'snapshot';
  at: string;
  totals: { txRate: number; rxRate: number; flows: number; processes: number };
  processes: ProcessRow[];
  locations: LocationRow[];
  lines: LineRow[];
  /** Lines left out to keep the map readable (the smallest ones). */
  linesOmitted: number;
  special: SpecialRow[];
  flows: { rows: FlowRow[]; matched: number; pool: number; total: number };
  /** The hovered place's details (PageMessage `hover`). */
  detail: LocationDetail | null;
}

export interface UiEvent {
  type: 'connect' | 'accept' | 'close' | 'exec';
  at: string;
  pid: number | null;
  comm: string | null;
  uid: number | null;
  text: string;
  where: string | null;
}

export interface Hello {
  type: 'hello';
  version: string;
  user: { uid: number; name: string };
  home: HomeLocation | null;
  /** Attribution the databases' licences ask a page showing their data to display. */
  attributions: Array<{ text: string; url: string }>;
  /** The daemon's geo databases (`status` geo), for the page's footer. */
  databases: Array<{ source: 'user' | 'default'; databaseType: string }>;
  /** Why the daemon gives no places (geo off, no database), else null. */
  geoOff: string | null;
}

export type ServerMessage =
  | Hello
  | Snapshot
  | { type: 'events'; events: UiEvent[]; skipped: number }
  | { type: 'lost'; lost: number }
  | { type: 'status'; ok: boolean; message: string };

export interface PageFilter {
  /** Map and flow table: only this process. */
  pid: number | null;
  /** Flow table: matches command, addresses, DNS name, country, city, organisation, AS. */
  text: string;
  port: number | null;
  protocol: string | null;
  /** Flow table: include closed flows. */
  closed: boolean;
}

export type PageMessage = { type: 'filter'; filter: PageFilter } | { type: 'hover'; key: string | null };
