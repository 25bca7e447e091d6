// SPDX-License-Identifier: Apache-2.0
// The local web server of `ebpfmonctl ui`: fastify on 127.0.0.1 and ::1, the page's files
// (build/ui, bundled at build time: nothing comes from the network) with @fastify/static,
// and one WebSocket per open page (@fastify/websocket) carrying snapshots, events, the
// page's filters and the place it hovers. Every request needs this run's token (auth.ts);
// anything else is 403.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';
import fastifyWebsocket from '@fastify/websocket';
import type { WebSocket } from 'ws';
import { checkRequest, newToken } from './auth.js';
import type { LiveModel, ModelState } from './model.js';
import { buildSnapshot, DEFAULT_LIMITS, NO_FILTER, type SnapshotLimits } from './snapshot.js';
import { WS_PATH, type Hello, type PageFilter, type ServerMessage, type UiEvent } from './protocol.js';

/** build/ui next to build/js (same layout in a source tree and in the .deb). */
export const UI_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../ui');

export interface UiServerOptions {
  model: LiveModel;
  hello: Omit<Hello, 'type'>;
  /** 0: a free port. */
  port?: number;
  /** Default: 127.0.0.1 and ::1 (::1 skipped when the machine has no IPv6 loopback). */
  hosts?: string[];
  token?: string;
  staticDir?: string;
  limits?: SnapshotLimits;
  /** Bytes queued on a page's socket above which it is skipped for a round (a slow tab
   * must not make the server buffer without bound). */
  maxBufferedBytes?: number;
}

export interface UiServer {
  app: FastifyInstance;
  port: number;
  token: string;
  urls: string[];
  /** Pages connected now. */
  pages(): number;
  close(): Promise<void>;
}

/** What a page asked for, checked field by field (a page is code the server did not write
 * in the moment it runs: anything malformed is ignored). */
function parseMessage(v: unknown): { filter: PageFilter } | { hover: string | null } | null {
  const m = v as { type?: unknown; filter?: unknown; key?: unknown } | null;
  if (m?.type === 'hover') return { hover: typeof m.key === 'string' && m.key.length <= 64 ? m.key : null };
  const f = m?.type === 'filter' ? (m.filter as Partial<PageFilter> | undefined) : undefined;
  if (!f || typeof f !== 'object') return null;
  const int = (x: unknown, max: number) => (typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= max ? x : null);
  return {
    filter: {
      pid: int(f.pid, 0x7fffffff),
      text: typeof f.text === 'string' ? f.text.slice(0, 200) : '',
      port: int(f.port, 65535),
      protocol: typeof f.protocol === 'string' && /^[a-z0-9]{1,10}$/.test(f.protocol) ? f.protocol : null,
      closed: f.closed !== false,
    },
  };
}

export async function startUiServer(o: UiServerOptions): Promise<UiServer> {
  const token = o.token ?? newToken();
  const dir = o.staticDir ?? UI_DIR;
  const indexFile = path.join(dir, 'index.html');
  if (!fs.existsSync(indexFile)) throw new Error(`the page is not built: ${indexFile} is missing (npm run build)`);
  // The page's asset URLs carry the token (auth.ts: no cookies).
  const index = fs.readFileSync(indexFile, 'utf8').replaceAll('__EBPFMON_TOKEN__', token);
  // The page's one inline style (build.mjs puts it there so that the first paint waits for
  // no second request), allowed by its hash and nothing else inline.
  const inline = /<style>([\s\S]*?)<\/style>/.exec(index)?.[1];
  const styleSrc = inline === undefined ? "'self'" : `'self' 'sha256-${createHash('sha256').update(inline).digest('base64')}'`;
  const limits = o.limits ?? DEFAULT_LIMITS;
  const maxBuffered = o.maxBufferedBytes ?? 8 << 20;
  let port = o.port ?? 0;

  const app = Fastify({ logger: false, forceCloseConnections: true });
  app.addHook('onRequest', async (req, reply) => {
    const refusal = checkRequest({ url: req.url, headers: req.headers }, token, port, req.url.startsWith(WS_PATH));
    if (!refusal) return;
    // A refused WebSocket handshake: end the connection once the 403 is written (fastify
    // would keep the raw upgrade socket open, and a close would wait for it forever).
    if (req.headers.upgrade) reply.raw.once('finish', () => req.raw.socket.end());
    return reply.code(403).type('text/plain; charset=utf-8').header('cache-control', 'no-store').send(`403 Forbidden: ${refusal.reason}\n`);
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('referrer-policy', 'no-referrer'); // the token never leaves in a Referer
    reply.header('x-content-type-options', 'nosniff');
    reply.header('cache-control', 'no-store'); // URLs carry the token: keep them out of caches
    reply.header('x-frame-options', 'DENY');
    reply.header('content-security-policy', `default-src 'none'; script-src 'self'; style-src ${styleSrc}; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`);
    return payload;
  });
  await app.register(fastifyWebsocket, { options: { maxPayload: 64 * 1024 } });
  await app.register(fastifyStatic, { root: dir, index: false, wildcard: true, cacheControl: false });
  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(index));

  const sockets = new Map<WebSocket, { filter: PageFilter; hover: string | null }>();
  const send = (ws: WebSocket, m: ServerMessage) => {
    if (ws.readyState === ws.OPEN && ws.bufferedAmount < maxBuffered) ws.send(JSON.stringify(m));
  };
  app.register(async (scope) => {
    scope.get(WS_PATH, { websocket: true }, (ws) => {
      const view = { filter: { ...NO_FILTER }, hover: null as string | null };
      sockets.set(ws, view);
      o.model.setViewers(sockets.size);
      send(ws, { type: 'hello', ...o.hello });
      send(ws, { type: 'status', ok: o.model.connected, message: o.model.lastError });
      if (o.model.state) send(ws, buildSnapshot(o.model.state, view.filter, view.hover, limits));
      ws.on('message', (data) => {
        let msg: unknown;
        try {
          msg = JSON.parse(String(data));
        } catch {
          return;
        }
        const m = parseMessage(msg);
        if (!m) return;
        if ('filter' in m) view.filter = m.filter;
        else view.hover = m.hover;
        if (o.model.state) send(ws, buildSnapshot(o.model.state, view.filter, view.hover, limits));
      });
      const gone = () => {
        sockets.delete(ws);
        o.model.setViewers(sockets.size);
      };
      ws.on('close', gone);
      ws.on('error', gone);
    });
  });

  const onUpdate = (s: ModelState) => {
    for (const [ws, v] of sockets) send(ws, buildSnapshot(s, v.filter, v.hover, limits));
  };
  const onEvents = (events: UiEvent[], skipped: number) => {
    for (const ws of sockets.keys()) send(ws, { type: 'events', events, skipped });
  };
  const onLost = (lost: number) => {
    for (const ws of sockets.keys()) send(ws, { type: 'lost', lost });
  };
  const onStatus = (ok: boolean, message: string) => {
    for (const ws of sockets.keys()) send(ws, { type: 'status', ok, message });
  };
  o.model.on('update', onUpdate).on('events', onEvents).on('lost', onLost).on('status', onStatus);

  const hosts = o.hosts ?? ['127.0.0.1', '::1'];
  const urls: string[] = [];
  const [first, ...rest] = hosts;
  if (!first) throw new Error('no address to listen on');
  // Fastify listens once; the other loopback addresses get their own servers sharing the
  // same handler and port.
  await app.listen({ host: first, port });
  port = (app.server.address() as { port: number }).port;
  const extra: Server[] = [];
  const urlOf = (h: string) => `http://${h.includes(':') ? `[${h}]` : h}:${port}/?token=${token}`;
  urls.push(urlOf(first));
  for (const h of rest) {
    const s = createServer((req, res) => app.routing(req, res));
    s.on('upgrade', (req, socket, head) => app.server.emit('upgrade', req, socket, head));
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false)); // e.g. no IPv6 loopback on this machine
      s.listen(port, h, () => resolve(true));
    });
    if (ok) {
      extra.push(s);
      urls.push(urlOf(h));
    }
  }

  return {
    app,
    port,
    token,
    urls,
    pages: () => sockets.size,
    async close() {
      o.model.off('update', onUpdate).off('events', onEvents).off('lost', onLost).off('status', onStatus);
      for (const ws of sockets.keys()) ws.terminate();
      for (const s of extra) {
        s.closeAllConnections();
        await new Promise((r) => s.close(r));
      }
      await app.close();
    },
  };
}
