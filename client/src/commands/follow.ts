// SPDX-License-Identifier: Apache-2.0
// Commands that run until interrupted (`events`, `top`, `flows --watch`) survive the daemon
// going away: they say so on stderr at once, reconnect when it comes back (a restart, an
// upgrade) and say how long they saw nothing. If it does not come back within
// `--reconnect` seconds (0: do not wait), they exit 2 (daemon unreachable), never 0.
import { Option, type Command } from 'commander';
import { CliError, EXIT } from '../exit.js';
import { ConnectionLost, DaemonClient } from '../rpc.js';
import { intArg, socketPath } from './common.js';

export const DEFAULT_RECONNECT_SEC = 60;

export function reconnectOption(): Option {
  return new Option('--reconnect <s>', 'when the daemon goes away, wait this long for it to come back (0: exit at once)')
    .argParser(intArg(0, 86_400))
    .default(DEFAULT_RECONNECT_SEC);
}

/** What a session is told about the connection it runs on. */
export interface Session {
  client: DaemonClient;
  /** Aborted on Ctrl-C or SIGTERM: the session ends normally. */
  signal: AbortSignal;
  /** 0 for the first connection, then one more per reconnection. */
  reconnects: number;
}

/** A gap in what the command saw: the daemon was away from `since` to `until`. */
export interface Gap {
  since: Date;
  until: Date;
  reason: string;
}

export interface FollowOptions {
  reconnectSec: number;
  /** Called after a reconnection, before the session restarts (e.g. a JSON line for scripts). */
  onGap?: (gap: Gap) => void;
}

/**
 * Runs `session` on a connection to the daemon; when it ends with ConnectionLost, reconnects
 * and runs it again. Returns when a session returns (its work is done, or the user stopped it).
 */
export async function follow(cmd: Command, opts: FollowOptions, session: (s: Session) => Promise<void>): Promise<void> {
  const path = socketPath(cmd);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    let client = await DaemonClient.connect(path);
    for (let reconnects = 0; ; reconnects++) {
      try {
        await session({ client, signal: stop.signal, reconnects });
        client.close();
        return;
      } catch (err) {
        if (!(err instanceof ConnectionLost) || stop.signal.aborted) throw err;
        const since = err.at;
        process.stderr.write(`ebpfmonctl: ${err.message} at ${since.toLocaleTimeString()}\n`);
        if (opts.reconnectSec === 0) throw new CliError('the daemon went away (--reconnect 0: not waiting for it)', EXIT.UNREACHABLE);
        process.stderr.write(`ebpfmonctl: waiting up to ${opts.reconnectSec} s for it to come back (Ctrl-C to stop)\n`);
        const next = await reconnect(path, since.getTime() + opts.reconnectSec * 1000, stop.signal);
        if (!next) {
          if (stop.signal.aborted) return;
          throw new CliError(`the daemon did not come back within ${opts.reconnectSec} s (${path})`, EXIT.UNREACHABLE);
        }
        client = next;
        const until = new Date();
        opts.onGap?.({ since, until, reason: err.reason });
        process.stderr.write(`ebpfmonctl: reconnected after ${((until.getTime() - since.getTime()) / 1000).toFixed(1)} s; what happened in between was not seen\n`);
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Tries to connect every 250 ms until `deadline` (ms since the epoch); null when it passed or `signal` fired. */
async function reconnect(path: string, deadline: number, signal: AbortSignal): Promise<DaemonClient | null> {
  while (!signal.aborted && Date.now() < deadline) {
    try {
      const c = await DaemonClient.connect(path);
      // The socket answers before the daemon is ready only if a stale socket file exists:
      // a status call proves it serves.
      try {
        await c.call('status');
        return c;
      } catch (err) {
        c.close();
        if (!(err instanceof ConnectionLost)) throw err;
      }
    } catch (err) {
      if (!(err instanceof CliError) || err.exitCode !== EXIT.UNREACHABLE) throw err;
    }
    await sleepUnless(250, signal);
  }
  return null;
}

/** Resolves after `ms`, or at once when `signal` fires. */
export function sleepUnless(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

/** Resolves when the connection ends: rejects with ConnectionLost unless the client closed it. */
export function untilClosed(client: DaemonClient): Promise<void> {
  return new Promise((resolve, reject) => client.onClose(() => (client.lost ? reject(client.lost) : resolve())));
}
