// SPDX-License-Identifier: Apache-2.0
// Waiting for something the test can observe (a line on a pipe, a status field, a row in a
// server), bounded: the tests wait for the event itself, never for a fixed sleep.
import type { Host } from './lab.js';

/** Polls `ok` every `stepMs` until it holds; throws "timed out waiting for <what>" after `ms`. */
export async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 20_000, stepMs = 50): Promise<void> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Waits until the kernel says everything the established TCP socket on local port `lport`
 * in `host` sent (`sent` bytes) was acknowledged: no packet of it is still in flight (`ss`'s
 * bytes_acked counts the SYN too). */
export async function tcpAcked(host: Host, lport: number, sent: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const r = await host.exec('ss', ['-tinH', 'state', 'established', 'sport', '=', `:${lport}`]);
    const m = /bytes_acked:(\d+)/.exec(r.stdout);
    if (m && Number(m[1]) === sent + 1) return;
    await new Promise((res) => setTimeout(res, 10));
  }
  throw new Error(`socket :${lport} never had ${sent} bytes acknowledged`);
}
