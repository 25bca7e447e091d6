// SPDX-License-Identifier: Apache-2.0
// Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted as in Katran's
// MaglevHashV2. Each backend owns a permutation of the table's slots, given by an offset
// and a skip derived from its identity (address and port, never its position in a list or
// its id, so the table depends only on the set of backends and their weights). Backends
// take turns claiming their next free preferred slot; a backend with weight w takes a turn
// w/maxWeight as often as the heaviest one. The table size is prime, so every skip in
// [1, size-1] is coprime with it and each permutation visits every slot.
//
// Properties (test/unit/daemon/lb/maglev.test.ts): every slot is filled; each backend's share is
// close to weight/sum(weights); the same set gives the same table in any order; adding or
// removing one backend moves close to the minimum share of slots (1/(N+1) on an add to N
// equal backends).
import crypto from 'node:crypto';
import { RING_SIZE } from './wire.js';

export interface MaglevBackend {
  /** Value stored in the table for this backend (the LB's backend id, >= 1). */
  id: number;
  /** Stable identity, e.g. "198.18.2.2:8080". */
  key: string;
  weight: number;
}

/** offset in [0, size), skip in [1, size): two independent 32-bit words of sha256(key). */
export function permutation(key: string, size = RING_SIZE): { offset: number; skip: number } {
  const h = crypto.createHash('sha256').update(key).digest();
  // eslint-disable-next-line no-restricted-syntax -- words of a digest, not a kernel struct
  return { offset: h.readUInt32LE(0) % size, skip: (h.readUInt32LE(4) % (size - 1)) + 1 };
}

/** Builds the lookup table. 0 marks an empty slot (only when there is no backend). */
export function maglevTable(backends: readonly MaglevBackend[], size = RING_SIZE): Uint32Array {
  const table = new Uint32Array(size);
  const list = backends.filter((b) => b.weight > 0).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const n = list.length;
  if (n === 0) return table;
  for (const b of list) if (b.id <= 0) throw new RangeError(`backend id must be >= 1 (got ${b.id} for ${b.key})`);
  const cur = new Uint32Array(n);
  const skip = new Uint32Array(n);
  const credit = new Float64Array(n);
  let maxWeight = 0;
  list.forEach((b, i) => {
    const p = permutation(b.key, size);
    cur[i] = p.offset;
    skip[i] = p.skip;
    maxWeight = Math.max(maxWeight, b.weight);
  });
  let filled = 0;
  // Each round gives the heaviest backend one slot, so at most size rounds are needed.
  for (let round = 0; round < size && filled < size; round++) {
    for (let i = 0; i < n && filled < size; i++) {
      credit[i]! += list[i]!.weight;
      if (credit[i]! < maxWeight) continue;
      credit[i]! -= maxWeight;
      let c = cur[i]!;
      // A permutation visits every slot, and one is still free: this loop ends within `size` steps.
      for (let step = 0; table[c] !== 0 && step < size; step++) c = (c + skip[i]!) % size;
      table[c] = list[i]!.id;
      cur[i] = (c + skip[i]!) % size;
      filled++;
    }
  }
  return table;
}

/** Share of the table each backend id owns. */
export function tableShares(table: Uint32Array): Map<number, number> {
  const counts = new Map<number, number>();
  for (const id of table) counts.set(id, (counts.get(id) ?? 0) + 1);
  const shares = new Map<number, number>();
  for (const [id, c] of counts) if (id !== 0) shares.set(id, c / table.length);
  return shares;
}

/** Fraction of slots whose backend differs between two tables. */
export function tableDisruption(before: Uint32Array, after: Uint32Array): number {
  if (before.length !== after.length) throw new RangeError('tables differ in size');
  let moved = 0;
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) moved++;
  return moved / before.length;
}

/**
 * The least any consistent hash can move when the weight set changes from `before` to
 * `after`: the total share that changes owner. For an add of one backend with weight w to
 * a set with total weight W, that is w / (W + w).
 */
export function minimalDisruption(before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>): number {
  const total = (m: ReadonlyMap<string, number>) => [...m.values()].reduce((s, w) => s + w, 0);
  const tb = total(before);
  const ta = total(after);
  let grown = 0;
  for (const k of new Set([...before.keys(), ...after.keys()])) {
    const sb = tb ? (before.get(k) ?? 0) / tb : 0;
    const sa = ta ? (after.get(k) ?? 0) / ta : 0;
    if (sa > sb) grown += sa - sb;
  }
  return grown;
}
