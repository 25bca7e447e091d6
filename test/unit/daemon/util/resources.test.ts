// SPDX-License-Identifier: Apache-2.0
// ResourceMeter's CPU share against a clock the test drives: the share is taken over the
// oldest sample within the window, the window slides, and the process's own figures (memory,
// CPU) are what Node reports for this process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ResourceMeter } from '../../../../daemon/src/util/resources.js';

function fake() {
  const c = { t: 1000, cpu: 0 };
  return { c, clock: { now: () => c.t, cpuMs: () => c.cpu } };
}

test('the CPU share is over the oldest sample within the window, and the window slides', () => {
  const { c, clock } = fake();
  const m = new ResourceMeter(clock, 60_000, 10_000); // a sample at t=1000
  assert.equal(m.cpu().percent, null, 'no time has passed');
  // 10 s at 20% of a core, then a sample.
  c.t += 10_000;
  c.cpu += 2_000;
  assert.deepEqual(m.cpu(), { cpuMs: 2_000, percent: 20, windowMs: 10_000 });
  m.sample();
  // Six more samples 10 s apart at 5%: 70 s in all, the window holds the last 60.
  for (let i = 0; i < 6; i++) {
    c.t += 10_000;
    c.cpu += 500;
    m.sample();
  }
  const w = m.cpu();
  assert.equal(w.windowMs, 60_000);
  assert.equal(w.percent, 5, 'the 20% stretch left the window');
  // Between samples: from the oldest sample still inside the window.
  c.t += 5_000;
  c.cpu += 5_000; // a busy 5 s at 100%
  const b = m.cpu();
  assert.equal(b.windowMs, 55_000);
  assert.ok(Math.abs(b.percent! - (100 * (5 * 500 + 5_000)) / 55_000) < 1e-9, `${b.percent}`);
});

test('a meter sampled only when asked reports from its first sample', () => {
  const { c, clock } = fake();
  const m = new ResourceMeter(clock);
  c.t += 200_000;
  c.cpu += 1_000;
  assert.deepEqual(m.cpu(), { cpuMs: 1_000, percent: 0.5, windowMs: 200_000 });
});

test('status() reports this process: RSS and CPU as Node measures them', () => {
  const m = new ResourceMeter();
  const before = process.cpuUsage();
  const rss0 = process.memoryUsage.rss();
  const s = m.status();
  const after = process.cpuUsage();
  const rss1 = process.memoryUsage.rss();
  assert.ok(s.rssBytes >= Math.min(rss0, rss1) * 0.9 && s.rssBytes <= Math.max(rss0, rss1) * 1.1, `${s.rssBytes} vs ${rss0}..${rss1}`);
  assert.ok(s.cpuMs >= Math.floor((before.user + before.system) / 1000) && s.cpuMs <= Math.ceil((after.user + after.system) / 1000));
  assert.ok(s.heapUsedBytes > 0 && s.heapUsedBytes <= s.heapTotalBytes);
});
