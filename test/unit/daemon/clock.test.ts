// SPDX-License-Identifier: Apache-2.0
// BPF timestamps -> wall-clock ms must be stable: the same flow shows the same firstSeen in
// every query and across daemon restarts, although each measurement of the clock offset
// jitters; a stepped wall clock is still followed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_REALTIME, clockNs } from '../../../daemon/src/sys/libc.js';
import { measureOffsetNs, WallClock } from '../../../daemon/src/sys/clock.js';

test('the measured offset is realtime - clock, to well under a millisecond', () => {
  for (const clock of [CLOCK_MONOTONIC, CLOCK_BOOTTIME]) {
    const off = measureOffsetNs(clock);
    const direct = clockNs(CLOCK_REALTIME) - clockNs(clock);
    const d = off - direct;
    assert.ok(d > -1_000_000n && d < 1_000_000n, `clock ${clock}: ${off} vs ${direct}`);
  }
});

test('jitter between measurements does not move a timestamp; a step of the wall clock does', () => {
  // A timestamp whose wall time lies 50 us before a millisecond boundary, and measurements
  // that jitter by up to 100 us around the true offset: converting with the raw measurement
  // would flip the millisecond; WallClock keeps the first offset.
  const base = 1_700_000_000_000_000_000n;
  const ts = 5_000_000_950_000n; // + base -> ...950 us: 50 us before the next ms
  const jitter = [0n, 100_000n, -100_000n, 60_000n, -20_000n];
  let i = 0;
  let step = 0n;
  const wall = new WallClock(CLOCK_MONOTONIC, 200_000n, () => base + step + jitter[i++ % jitter.length]!);
  const first = wall.toMs(ts);
  assert.equal(Number((ts + base + 100_000n) / 1_000_000n), first + 1, 'the raw measurement would have flipped the ms');
  for (let k = 0; k < 20; k++) {
    wall.refresh();
    assert.equal(wall.toMs(ts), first, `refresh ${k}`);
  }
  step = 2_000_000_000n; // the wall clock stepped 2 s forward (NTP, an admin)
  wall.refresh();
  assert.equal(wall.toMs(ts), Number((ts + base + step + jitter[(i - 1) % jitter.length]!) / 1_000_000n));
  assert.ok(wall.toMs(ts) - first >= 1999 && wall.toMs(ts) - first <= 2001);
});

test('toMsAt (no BigInt) converts exactly as toMs, at whole milliseconds, above 2^53 and for any offset', () => {
  const b = Buffer.alloc(8);
  const v = new DataView(b.buffer, b.byteOffset, 8);
  let x = 12345;
  const rnd = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
  const offsets = [1_700_000_000_123_456_789n, 999_999n, 0n, 1_000_000n, -5_000_000_000_000_000_001n];
  for (const off of offsets) {
    const wall = new WallClock(CLOCK_MONOTONIC, 200_000n, () => off);
    const samples: bigint[] = [0n, 999_999n, 1_000_000n, 2n ** 53n - 2n ** 33n, 2n ** 53n, 2n ** 63n + 7n];
    for (let i = 0; i < 20_000; i++) {
      const ms = BigInt(rnd()) * BigInt(1 + (rnd() % 4)); // up to 8.6e9 ms: the top of the fast range, where the rounding bites
      samples.push(ms * 1_000_000n - BigInt(off % 1_000_000n) + BigInt((rnd() % 3) - 1)); // around a ms boundary
      samples.push(BigInt(rnd()) * BigInt(rnd()) * BigInt(rnd() % 3000));
    }
    for (const ns of samples) {
      if (ns < 0n || ns >= 2n ** 64n) continue;
      b.writeBigUInt64LE(ns);
      assert.equal(wall.toMsAt(v, 0), wall.toMs(ns), `offset ${off}, ns ${ns}`);
    }
  }
});
