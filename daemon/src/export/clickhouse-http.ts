// SPDX-License-Identifier: Apache-2.0
// ClickHouse's HTTP interface, spoken directly with node:http(s). Two requests are all the
// export needs: a statement (DDL, SELECT) in a POST body, and `INSERT ... FORMAT
// JSONEachRow` with the rows as the body. Both have worked the same way since the 2016
// releases, which is what lets one exporter serve Debian 12's 18.16 and current servers.
//
// Why not @clickhouse/client (1.23): it supports servers from 24.8 on ("older versions:
// best effort"). Against 18.16 its requests did work, but it could not read 18.16's error
// format (`Code: 60, e.displayText() = ...`: its ClickHouseError came back with no code),
// so the exporter could not tell a missing table (create it, retry) from refused rows (drop
// the batch) from a server in trouble (retry); and it logs failures on the console itself.
// Here: the body of a batch is built once and sent byte for byte on every retry (a
// Replicated table then deduplicates a batch whose first attempt did land), errors map
// once in errors.ts, and no dependency is added.
import http from 'node:http';
import https from 'node:https';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { ClickHouseError, clickHouseHttpError, clickHouseNetworkError } from './errors.js';

const gzip = promisify(zlib.gzip);

export interface ClickHouseHttpOptions {
  url: URL;
  credentials?: { user: string; password: string } | null;
  timeoutMs: number;
}

export class ClickHouseHttp {
  private readonly agent: http.Agent;
  private readonly mod: typeof http | typeof https;

  constructor(private readonly opts: ClickHouseHttpOptions) {
    this.mod = opts.url.protocol === 'https:' ? https : http;
    this.agent = new this.mod.Agent({ keepAlive: true, maxSockets: 2 });
  }

  /** The URL without credentials, for logs and status. */
  get safeUrl(): string {
    return this.opts.url.origin + this.opts.url.pathname.replace(/\/$/, '');
  }

  setCredentials(c: { user: string; password: string } | null): void {
    this.opts.credentials = c;
  }

  /** Runs one statement; returns the response body. */
  query(sql: string, settings: Record<string, string | number> = {}): Promise<string> {
    return this.request(settings, Buffer.from(sql), false, sql.split(/\s+/).slice(0, 3).join(' '));
  }

  /** `INSERT INTO table FORMAT JSONEachRow` with `body` (newline-terminated JSON rows). */
  insert(table: string, body: Buffer, opts: { gzipped: boolean; settings?: Record<string, string | number> }): Promise<string> {
    return this.request({ ...opts.settings, query: `INSERT INTO ${table} FORMAT JSONEachRow` }, body, opts.gzipped, `INSERT INTO ${table}`);
  }

  static gzip(body: Buffer): Promise<Buffer> {
    return gzip(body, { level: 1 }); // level 1: most of the size gain for a fraction of the CPU (bench/export)
  }

  private request(params: Record<string, string | number>, body: Buffer, gzipped: boolean, what: string): Promise<string> {
    const u = new URL(this.opts.url.href);
    if (!u.pathname.endsWith('/')) u.pathname += '/';
    for (const [k, v] of Object.entries(params)) u.searchParams.set(k, String(v));
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length };
    if (gzipped) headers['content-encoding'] = 'gzip';
    const c = this.opts.credentials;
    if (c) headers.authorization = `Basic ${Buffer.from(`${c.user}:${c.password}`).toString('base64')}`;
    return new Promise((resolve, reject) => {
      let timedOut = false;
      const req = this.mod.request(u, { method: 'POST', headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('error', (err) => reject(clickHouseNetworkError(err, what, timedOut)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          // An exception raised after the server sent "200 OK" comes as text at the end of
          // the body (ClickHouse's HTTP interface cannot change the status by then): an
          // INSERT or a DDL answers with an empty body otherwise.
          const late = res.statusCode === 200 && /(^|\n)Code: \d+[,.] /.test(text) && !/^SELECT /i.test(what);
          if (res.statusCode === 200 && !late) resolve(text);
          else reject(clickHouseHttpError(res.statusCode ?? 0, text, res.headers['x-clickhouse-exception-code'] as string | undefined, what));
        });
      });
      req.setTimeout(this.opts.timeoutMs, () => {
        timedOut = true;
        req.destroy(new Error('timeout'));
      });
      req.on('error', (err) => reject(err instanceof ClickHouseError ? err : clickHouseNetworkError(err, what, timedOut)));
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
