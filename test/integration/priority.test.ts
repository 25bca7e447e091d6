// SPDX-License-Identifier: Apache-2.0
// Thread priorities (daemon/src/sys/priority.ts): the unit starts the daemon at Nice=-10;
// the daemon keeps the boost for its event loop alone and puts every other thread back at
// nice 0 (V8's helpers, libuv's pool, the history writer, which names itself for `top -H`).
// A daemon started at a positive nice (an admin's choice) is left there: nothing is raised
// above the process's own priority. Truth: the kernel's view of each thread in
// /proc/PID/task/TID/stat and comm, of a daemon this test started with nice(1). The unit's
// Nice= under a real systemd: test/e2e/systemd-deb.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { Host, Lab, LinkInfo } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { destroyMonitorLab, monitorLab, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { until } from '../helpers/wait.js';

interface Thread { tid: number; comm: string; nice: number }

/** Every thread of `pid` with its name and nice value, as the kernel reports them. */
function threads(pid: number): Thread[] {
  const out: Thread[] = [];
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const nice = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      out.push({ tid: Number(t), comm: fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim(), nice });
    } catch {
      /* the thread ended */
    }
  }
  return out;
}

const POOL = Number(process.env.UV_THREADPOOL_SIZE ?? 4);

describe('thread priorities: the event loop boosted, the background at nice 0', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let link: LinkInfo;
  let daemon: TestDaemon | undefined;

  before(async () => {
    ({ lab, mon, link } = await monitorLab());
  });
  after(() => destroyMonitorLab(daemon, lab));

  /** Starts a daemon at `nice` (after stopping the last one) and waits for its history writer's thread. */
  async function start(nice: number): Promise<Thread[]> {
    await daemon?.stop('SIGTERM');
    daemon = await startDaemon(mon, { nice, config: { interfaces: [link.a.ifname] } });
    const pid = daemon.pid;
    await until('the history writer thread', () => threads(pid).some((t) => t.comm === 'ebpfmon-history'));
    return threads(pid);
  }

  test('started at nice -10 (the unit): the event loop at -10, every other thread at 0', async () => {
    const ts = await start(-10);
    const pid = daemon!.pid;
    const shown = ts.map((t) => `${t.tid} ${t.comm} ${t.nice}`).join(', ');
    assert.equal(ts.find((t) => t.tid === pid)?.nice, -10, `the event loop keeps the boost (${shown})`);
    const others = ts.filter((t) => t.tid !== pid);
    // V8's platform threads and libuv's pool at least, and the history writer.
    assert.ok(others.length >= 1 + POOL + 1, shown);
    assert.deepEqual(others.filter((t) => t.nice !== 0), [], 'every other thread in the background');
    assert.ok(ts.some((t) => t.comm === 'ebpfmon-history' && t.nice === 0), 'the history writer, named');
    assert.match(daemon!.output, /event loop boosted; other threads in the background/);
  });

  test('started at nice 5 (an admin\'s Nice=5): every thread stays at 5, none raised', async () => {
    const ts = await start(5);
    assert.deepEqual(ts.filter((t) => t.nice !== 5), [], ts.map((t) => `${t.tid} ${t.comm} ${t.nice}`).join(', '));
    assert.ok(ts.some((t) => t.comm === 'ebpfmon-history'), 'the writer named all the same');
    assert.doesNotMatch(daemon!.output, /event loop boosted/);
  });
});
