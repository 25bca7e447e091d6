// SPDX-License-Identifier: Apache-2.0
// capture.start on the socket: the reply is the session's description, and every byte after
// the reply's line is the pcapng stream (no JSON, no base64: the client copies bytes to its
// file or stdout; bench/capture --part transport measured both ways). The client ends the
// session by sending anything (a `capture.stop` notification line: the daemon writes the
// last packets and statistics, then closes), or at once by closing the connection (dying
// does the same).
//
// With `params.fd` (and pidfd_getfd allowed here) the daemon writes the pcapng into the
// client's own descriptor instead (`delivery: "fd"`, api/capture.ts); the connection then
// carries a `capture.progress` line now and then and a `capture.ended` line once the daemon
// closed its duplicate (the file is complete), then closes. The client stops and goes
// away as in the stream (a line; closing the connection, which here also ends gracefully:
// the file gets its last statistics).
import type net from 'node:net';
import { CAPTURE_NOTIFICATIONS, type CaptureCounters } from '../contract/capture.js';
import { METHODS } from '../contract/methods.js';
import { captureStart, type CaptureApiDeps, type CaptureSink } from '../api/index.js';
import type { RpcServer } from './server.js';
import { invalidParam } from '../errors.js';

/** `capture.progress` lines at most this often. */
const PROGRESS_MS = 250;

/** capture.start's params without the socket's own `stream` acknowledgement. A client must
 * say it knows that the connection turns into pcapng after the reply: a generic JSON-RPC
 * client (or a fuzzer) would otherwise read binary where it expects lines. */
function streamParams(raw: unknown): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || (raw as { stream?: unknown }).stream !== true) {
    throw invalidParam('params.stream', (raw as { stream?: unknown } | null)?.stream, 'true: after its reply, capture.start turns this connection into the pcapng stream (docs/api.md)');
  }
  const { stream: _stream, ...rest } = raw as Record<string, unknown>;
  void _stream;
  return rest;
}

export function registerCaptureStream(server: RpcServer, deps: CaptureApiDeps): void {
  server.rpc.addMethod(METHODS.captureStart, (raw, ctx) => {
    // What the session writes before the reply went out (the section header) waits here.
    let socket: net.Socket | null = null;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let ended = false;
    const sink: CaptureSink = {
      write: (chunk) => {
        if (socket) socket.write(chunk);
        else {
          pending.push(chunk);
          pendingBytes += chunk.length;
        }
      },
      backlog: () => (socket ? socket.writableLength : pendingBytes),
      end: () => {
        ended = true;
        socket?.end();
      },
    };
    // fd delivery: the lines the connection carries, once it is handed over.
    let fdError: string | null = null;
    let fdClosed = false;
    let onFdClosed: (() => void) | null = null;
    const handle = captureStart(deps, streamParams(raw), ctx.caller, sink, {
      onError: (m) => (fdError = m),
      onClosed: () => {
        fdClosed = true;
        onFdClosed?.();
      },
    });
    if (handle.result.delivery === 'fd') {
      ctx.conn.upgradeAfterReply((s) => {
        if (!s) {
          handle.finish();
          return null;
        }
        const line = (method: string, params: object): void => {
          if (!s.destroyed) s.write(`${JSON.stringify({ jsonrpc: '2.0', method, params })}\n`);
        };
        // A line when the count changed, at most every PROGRESS_MS, sent from the reader's
        // drains and timer runs (the count only changes in a drain): no wakeup of its own.
        // A count not sent for that rule goes with the reader's next run, at most the
        // session's latency bound later.
        // Unless the client asked for none (progress: false, a client writing a regular file:
        // it counts its packets there itself).
        const wanted = (raw as { progress?: boolean }).progress !== false;
        let reported = -1;
        let lastAt = -Infinity;
        const progress = (force: boolean): void => {
          const n = handle.written();
          if (n === reported) return;
          const now = performance.now();
          if (!force && now - lastAt < PROGRESS_MS) return;
          lastAt = now;
          line(CAPTURE_NOTIFICATIONS.progress, { session: handle.id, written: (reported = n) });
        };
        if (wanted) handle.onFlushed(() => progress(false));
        const closed = new Promise<void>((r) => (fdClosed ? r() : (onFdClosed = r)));
        void Promise.all([handle.done, closed]).then(([counters]: [CaptureCounters, void]) => {
          handle.onFlushed(null);
          if (wanted) progress(true);
          // Detached (the daemon stops under the session): the client resumes with the next daemon.
          if (!handle.detached) line(CAPTURE_NOTIFICATIONS.ended, { session: handle.id, counters, ...(fdError ? { error: fdError } : {}) });
          s.end();
        });
        return { onInput: () => handle.finish(), onClose: () => handle.finish() };
      });
      return handle.result;
    }
    ctx.conn.upgradeAfterReply((s) => {
      if (!s) {
        handle.abort();
        return null;
      }
      socket = s;
      for (const c of pending) s.write(c);
      pending = [];
      pendingBytes = 0;
      if (ended) s.end();
      return { onInput: () => handle.finish(), onClose: () => handle.abort() };
    });
    return handle.result;
  });
}
