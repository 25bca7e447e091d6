// SPDX-License-Identifier: Apache-2.0
// bench/rpc: what one JSON-RPC request costs the daemon (CPU of all its threads, schedstat)
// and the client (round trip), one request at a time on one connection, next to the
// floor measured in the same run: a method that does not exist (parsed, refused, answered).
// Why it matters: every poller (bench/attribution's loop probe, `top`, widgets) pays it,
// and bench/attribution's CPU per connection includes its loop probe's 100 requests/s.
//
//   sudo node build/js/bench/rpc/main.js [--calls 2000] [--reps 3]
//
// Setup: a Lab host with the real daemon (production defaults apart from the socket, pin
// path and D-Bus) on a veth of its own, no traffic. Each kind is warmed up (200 calls)
// before it is timed; kinds are interleaved within a repetition.
import fs from 'node:fs';
import Table from 'cli-table3';
import { startDaemon } from '../../test/helpers/daemon.js';
import { DaemonClient } from '../../client/src/rpc.js';
import { machine, median, numArg } from '../lib/harness.js';
import { runMs } from '../lib/proc.js';
import { withLab } from '../lib/lab.js';

const CALLS = numArg('calls', 2000);
const REPS = numArg('reps', 3);

await withLab('bench/rpc', async (lab) => {
  console.log(`bench/rpc - ${machine()}`);
  const h = await lab.host('rpc');
  const peer = await lab.host('peer');
  const link = await lab.link(peer, h);
  const d = await startDaemon(h, { config: { interfaces: [link.b.ifname] } });
  const c = await DaemonClient.connect(d.socketPath);
  const refused = () => undefined;
  const kinds: Array<[string, () => Promise<unknown>]> = [
    ['no such method (the floor)', () => c.call('no.such.method' as 'status', undefined).catch(refused)],
    ['flows.list {pid: -1}: invalid, refused (bench/attribution\'s loop probe)', () => c.call('flows.list', { pid: -1 }).catch(refused)],
    ['geo.lookup {addrs: [1 address]}', () => c.call('geo.lookup', { addrs: ['198.18.0.1'] })],
    ['flows.list {pid: N}: no flows (refresh: waits for the next tick)', () => c.call('flows.list', { pid: 999_999 })],
  ];
  const cpu = new Map<string, number[]>();
  const rtt = new Map<string, number[]>();
  for (let rep = 0; rep < REPS; rep++) {
    for (const [name, call] of kinds) {
      for (let i = 0; i < 200; i++) await call();
      const c0 = runMs(d.pid);
      const t0 = performance.now();
      for (let i = 0; i < CALLS; i++) await call();
      const wall = performance.now() - t0;
      const used = runMs(d.pid) - c0;
      (cpu.get(name) ?? cpu.set(name, []).get(name)!).push((used * 1000) / CALLS);
      (rtt.get(name) ?? rtt.set(name, []).get(name)!).push((wall * 1000) / CALLS);
    }
    console.error(`rpc: rep ${rep + 1} done`);
  }
  c.close();
  await d.stop();
  const floor = median(cpu.get(kinds[0]![0])!);
  const t = new Table({ head: ['request', 'daemon CPU us per call, median (min..max)', 'vs the floor', 'round trip us, median'], style: { head: [], border: [] } });
  for (const [name] of kinds) {
    const xs = cpu.get(name)!;
    t.push([name, `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}..${Math.max(...xs).toFixed(1)})`, (median(xs) / floor).toFixed(2), median(rtt.get(name)!).toFixed(0)]);
  }
  console.log(`\n${CALLS} calls per kind and repetition, ${REPS} repetitions, one at a time on one connection; daemon CPU: all its threads (schedstat). load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  console.log(t.toString());
});
