// SPDX-License-Identifier: Apache-2.0
// How an owner's identity (unit, container, app: contract/identity.ts) is shown in tables:
// one short label per kind, and columns only for the kinds some row has (a host with no
// containers gets no CONTAINER column).
import type { AppIdentity, ContainerIdentity, OwnerIdentity } from '../../../daemon/src/contract/identity.js';
import type { Column } from './table.js';

/** `nginx.service`; a user's unit as `user@1000.service/app-...scope` shortened to the unit itself. */
export function unitLabel(id: Pick<OwnerIdentity, 'unit' | 'userUnit'>): string {
  return id.userUnit ?? id.unit ?? '-';
}

/** `docker:web`, `containerd:app (prod/shop-7d9f)`, `docker:0123456789ab` without a name. */
export function containerLabel(c: ContainerIdentity | null): string {
  if (!c) return '-';
  const name = c.name ?? c.id.slice(0, 12);
  const pod = c.podName ? ` (${c.namespace ? `${c.namespace}/` : ''}${c.podName})` : c.podUid ? ` (pod ${c.podUid})` : '';
  return `${c.runtime}:${name}${pod}`;
}

/** The .desktop Name, else the app id. */
export function appLabel(a: AppIdentity | null): string {
  return a ? (a.name ?? a.id) : '-';
}

/** UNIT, CONTAINER and APP columns, each only when some row has one. */
export function identityColumns<T extends Pick<OwnerIdentity, 'unit' | 'userUnit' | 'container' | 'app'>>(rows: readonly T[]): Column<T>[] {
  const cols: Column<T>[] = [];
  if (rows.some((r) => r.unit !== null)) cols.push({ header: 'UNIT', value: (r) => unitLabel(r), flex: true });
  if (rows.some((r) => r.container !== null)) cols.push({ header: 'CONTAINER', value: (r) => containerLabel(r.container), flex: true });
  if (rows.some((r) => r.app !== null)) cols.push({ header: 'APP', value: (r) => appLabel(r.app), flex: true });
  return cols;
}
