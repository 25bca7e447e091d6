// SPDX-License-Identifier: Apache-2.0
// OldestFirst against a plain model of insertion order (an array of keys, a touched key moved
// to the end): random sets, touches, deletes by key, shifts and clears, thousands of steps,
// with the iterator kept across all of them; every shift must return the model's oldest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OldestFirst } from '../../../../daemon/src/util/oldest.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test('shift() takes out the oldest entry, as a model of insertion order does, across sets, touches, deletes and clears', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const r = rng(seed);
    const map = new Map<number, number>();
    const o = new OldestFirst(map);
    let model: number[] = [];
    for (let step = 0; step < 20_000; step++) {
      const x = r();
      const k = Math.floor(r() * 300);
      if (x < 0.4) {
        // set: a new key goes to the end; setting an existing key keeps its place (Map semantics)
        if (!map.has(k)) model.push(k);
        map.set(k, step);
      } else if (x < 0.55) {
        // touch: delete and set again, to the end
        if (map.has(k)) model.splice(model.indexOf(k), 1);
        map.delete(k);
        map.set(k, step);
        model.push(k);
      } else if (x < 0.65) {
        map.delete(k);
        const i = model.indexOf(k);
        if (i >= 0) model.splice(i, 1);
      } else if (x < 0.999) {
        const got = o.shift();
        const want = model.shift();
        assert.equal(got?.[0], want, `seed ${seed} step ${step}`);
        if (got) assert.equal(map.has(got[0]), false, 'the entry is out of the map');
      } else {
        map.clear();
        model = [];
      }
      assert.equal(map.size, model.length);
    }
    // Drained to the end, and used again after it ran out.
    while (model.length) assert.equal(o.shift()?.[0], model.shift());
    assert.equal(o.shift(), undefined);
    map.set(7, 1);
    map.set(8, 2);
    assert.deepEqual(o.shift(), [7, 1]);
    assert.deepEqual(o.shift(), [8, 2]);
    assert.equal(o.shift(), undefined);
  }
});
