// SPDX-License-Identifier: Apache-2.0
// Who may use the page: whoever has the URL `ebpfmonctl ui` printed. The server listens on
// loopback only, but every local user can reach a loopback port, so each request must
// carry the random token (256 bits) of this run: in the query string (`?token=`), which
// the page passes on to its scripts and WebSocket. No cookie: cookies are per host, not
// per port, so a browser would hand one user's token to another user's server on the
// same machine. Also refused: a Host header that is not this loopback port (DNS
// rebinding) and a WebSocket whose Origin is another site (cross-site WebSocket hijacking).
import crypto from 'node:crypto';

export function newToken(): string {
  return crypto.randomBytes(32).toString('base64url');
}

/** Constant-time comparison; false for anything but the exact token. */
export function tokenMatches(given: unknown, token: string): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/** The names this server answers to (Host header values). */
export function allowedHosts(port: number): Set<string> {
  return new Set([`127.0.0.1:${port}`, `[::1]:${port}`, `localhost:${port}`]);
}

export type Refusal = { status: 403; reason: string } | null;

/** Why a request is refused, or null when it may proceed. */
export function checkRequest(req: { url: string; headers: Record<string, string | string[] | undefined> }, token: string, port: number, websocket: boolean): Refusal {
  const host = req.headers.host;
  if (typeof host !== 'string' || !allowedHosts(port).has(host.toLowerCase())) return { status: 403, reason: 'unexpected Host header' };
  const q = req.url.indexOf('?');
  const given = q < 0 ? null : new URLSearchParams(req.url.slice(q + 1)).get('token');
  if (!tokenMatches(given, token)) return { status: 403, reason: given === null ? 'missing token' : 'wrong token' };
  if (websocket) {
    const origin = req.headers.origin;
    if (typeof origin === 'string') {
      let ok = false;
      try {
        ok = allowedHosts(port).has(new URL(origin).host);
      } catch {
        ok = false;
      }
      if (!ok) return { status: 403, reason: 'cross-origin WebSocket' };
    }
  }
  return null;
}
