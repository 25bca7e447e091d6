// SPDX-License-Identifier: Apache-2.0
// A stand-in for the daemon's systemd side, run as a Type=notify unit inside the test
// container (the harness test proves the harness with it before the real daemon exists).
// It talks to systemd the way the daemon will: sd_notify from libsystemd.so.0 via koffi.
//   READY=1 + STATUS=...   at start (not with --no-ready: then systemd's start times out)
//   WATCHDOG=1             every WATCHDOG_USEC/4, counted in $RUNTIME_DIRECTORY/pings
//   SIGUSR1                stop pinging (a hung event loop), so the watchdog fires
//   SIGTERM                STOPPING=1, exit 0
import fs from 'node:fs';
import koffi from 'koffi';

const libsystemd = koffi.load('libsystemd.so.0');
const sdNotify = libsystemd.func('int sd_notify(int unset_environment, const char *state)') as (unset: number, state: string) => number;

function notify(state: string): void {
  const r = sdNotify(0, state);
  if (r < 0) console.error(`standin: sd_notify(${state.split('\n')[0]}) failed: errno ${-r}`);
  if (r === 0) console.error('standin: NOTIFY_SOCKET is not set: not started by systemd as Type=notify?');
}

const noReady = process.argv.includes('--no-ready');
const usec = Number(process.env.WATCHDOG_USEC ?? 0);
const watchdogForMe = usec > 0 && (!process.env.WATCHDOG_PID || Number(process.env.WATCHDOG_PID) === process.pid);
let pings = 0;
let hung = false;

console.log(`standin: pid ${process.pid}, watchdog ${watchdogForMe ? `${usec} usec` : 'off'}`);
if (!noReady) {
  notify(`READY=1\nSTATUS=stand-in serving (pid ${process.pid})`);
  console.log('standin: sent READY=1');
}
if (watchdogForMe) {
  setInterval(() => {
    if (hung) return;
    notify('WATCHDOG=1');
    pings++;
    try {
      if (process.env.RUNTIME_DIRECTORY) fs.writeFileSync(`${process.env.RUNTIME_DIRECTORY}/pings`, `${pings}\n`);
    } catch (e) {
      console.error(`standin: recording pings: ${(e as Error).message}`); // the count is for tests; pinging matters more
    }
  }, Math.max(50, usec / 1000 / 4));
}
process.on('SIGUSR1', () => {
  hung = true;
  notify('STATUS=not answering the watchdog (on purpose)');
  console.log('standin: SIGUSR1: no more watchdog pings');
});
process.on('SIGTERM', () => {
  notify('STOPPING=1');
  console.log('standin: SIGTERM: stopping');
  process.exit(0);
});
setInterval(() => {}, 1 << 30); // stay alive when the watchdog is off
