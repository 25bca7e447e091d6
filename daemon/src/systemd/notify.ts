// SPDX-License-Identifier: Apache-2.0
// sd_notify(3) through koffi (libsystemd.so.0), so systemd integration needs no build
// step and no npm package. Without libsystemd, or outside systemd (no NOTIFY_SOCKET),
// every call is a no-op: systemd is supported, never required.
import koffi from 'koffi';

type SdNotify = (unsetEnv: number, state: string) => number;
let sdNotify: SdNotify | null | undefined;

function fn(): SdNotify | null {
  if (sdNotify === undefined) {
    try {
      sdNotify = koffi.load('libsystemd.so.0').func('int sd_notify(int unset_environment, const char *state)') as SdNotify;
    } catch {
      sdNotify = null;
    }
  }
  return sdNotify;
}

/** Sends `state` (e.g. "READY=1\nSTATUS=...") to the service manager; returns false when nobody listens. */
export function notify(state: string): boolean {
  if (!process.env.NOTIFY_SOCKET) return false;
  const f = fn();
  return f !== null && f(0, state) > 0;
}

/**
 * Pings the watchdog at half of WatchdogSec while the event loop runs. A hung daemon
 * (a blocked event loop, a stopped process) misses pings and systemd restarts it.
 */
export function startWatchdog(): (() => void) | null {
  const usec = Number(process.env.WATCHDOG_USEC ?? 0);
  const pid = process.env.WATCHDOG_PID;
  if (!usec || (pid && Number(pid) !== process.pid)) return null;
  const t = setInterval(() => notify('WATCHDOG=1'), Math.max(100, usec / 2000));
  t.unref();
  return () => clearInterval(t);
}
