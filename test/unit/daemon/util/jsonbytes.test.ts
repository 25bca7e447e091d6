// SPDX-License-Identifier: Apache-2.0
// The byte writers behind encodeRowInto: every number comes out as JSON.stringify writes it
// (the truth), over random values in every range the writers treat differently.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { putAscii, putNsAsMs, putUint } from '../../../../daemon/src/util/jsonbytes.js';

function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

const d = Buffer.alloc(64);
const written = (f: (d: Uint8Array, p: number) => number): string => {
  d.fill(0x78);
  const end = f(d, 3);
  assert.equal(d[2], 0x78, 'nothing written before the position');
  assert.equal(d[end], 0x78, 'nothing written after the end');
  return d.toString('latin1', 3, end);
};

test('putUint writes u64 values (read as numbers) as JSON does', () => {
  const r = rng(17);
  const edges = [0, 1, 9, 10, 99, 100, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 1e15, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 60 + 12345, 2 ** 64 - 1, 18446744073709552000];
  const xs = [...edges];
  for (let i = 0; i < 20_000; i++) xs.push(Math.floor(r() * 10 ** Math.floor(r() * 20)));
  for (const n of xs) assert.equal(written((b, p) => putUint(b, p, n)), JSON.stringify(n), String(n));
});

test('putNsAsMs writes ns / 1e6 as JSON does (durations)', () => {
  const r = rng(29);
  const xs = [0, 1, 10, 999_999, 1_000_000, 1_000_001, 1_500_000, 123_456_789_012_345, 999_999_999_999_999, 1e15, 1e15 + 1, 2 ** 53 + 2, 2 ** 63];
  for (let i = 0; i < 50_000; i++) xs.push(Math.floor(r() * 10 ** Math.floor(r() * 19)));
  for (const ns of xs) assert.equal(written((b, p) => putNsAsMs(b, p, ns)), JSON.stringify(ns / 1e6), String(ns));
});

test('putAscii writes one byte per character', () => {
  assert.equal(written((b, p) => putAscii(b, p, '2026-12-04T17:13:44.123Z')), '2026-12-04T17:13:44.123Z');
  assert.equal(written((b, p) => putAscii(b, p, '')), '');
});
