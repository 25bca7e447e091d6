// SPDX-License-Identifier: Apache-2.0
// capture.start on the socket: the reply is the session's description, and every byte after
// the reply's line is the pcapng stream (no JSON, no base64: the client copies bytes to its
// file or stdout; bench/capture --part transport measured both ways). The client ends the
// session by sending anything (a `capture.stop` notification line: the daemon writes the
// last packets and statistics, then closes), or at once by closing the connection (dying
// does the same).
import type net from 'node:net';
import { METHODS } from '../contract/methods.js';
import { captureStart, type CaptureApiDeps, type CaptureSink } from '../api/index.js';
import type { RpcServer } from './server.js';
import { invalidParam } from '../errors.js';

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
    const handle = captureStart(deps, streamParams(raw), ctx.caller, sink);
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
