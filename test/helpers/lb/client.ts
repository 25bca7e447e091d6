// SPDX-License-Identifier: Apache-2.0
// The client for the LB tests, run inside the client's namespace. Commands arrive as JSON
// lines on stdin and are answered on stdout ({id, result} or {id, error}); several may run
// at once (a download keeps going while the test kills the balancer's daemon). Every loop
// is bounded by a count and every wait by a timeout.
//
//   requests {host, port, count, localAddress?}  count new connections, GET / each: tally of answers (and their local ports)
//   open {host, port, n}                         n keep-alive connections
//   ask {}                                       one GET / on each open connection: who answered
//   close {}                                     closes them
//   download {host, port, bytes, chunk, delayMs} a paced /stream: length and pattern checked
//   udp {host, port, count, size, localAddress?} count datagrams, each from its own socket: tally of answers
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import readline from 'node:readline';
import { pattern } from './pattern.js';

type Req = { id: number; cmd: string; [k: string]: unknown };

const send = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const tally = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);

/** One GET on a new connection: the answer's body and the connection's local port. */
function get(host: string, port: number, localAddress: string | undefined, timeoutMs: number): Promise<{ body: string; localPort: number }> {
  return new Promise((resolve, reject) => {
    // `timeout` also covers connecting (req.setTimeout starts only once connected): a SYN
    // the balancer drops shows as ETIMEDOUT, not as a hang until the kernel gives up.
    const req = http.get({ host, port, path: '/', agent: false, timeout: timeoutMs, headers: { connection: 'close' }, ...(localAddress ? { localAddress } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      const localPort = res.socket.localPort ?? 0;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ body: Buffer.concat(chunks).toString(), localPort }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

async function requests(r: Req): Promise<unknown> {
  const count = Math.min(Number(r.count), 20_000);
  const conc = Math.min(Number(r.concurrency ?? 16), 64);
  const answers: Record<string, number> = {};
  const errors: Record<string, number> = {};
  /** Per answer, the local ports its connections had: a port the client's kernel handed
   * out again after the earlier connection closed makes the same 5-tuple twice. */
  const ports: Record<string, number[]> = {};
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      try {
        const a = await get(String(r.host), Number(r.port), r.localAddress as string | undefined, Number(r.timeoutMs ?? 3000));
        tally(answers, a.body);
        (ports[a.body] ??= []).push(a.localPort);
      } catch (err) {
        tally(errors, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: conc }, worker));
  return { answers, errors, ports };
}

interface Conn {
  sock: net.Socket;
  buf: Buffer;
  waiter: ((body: string | null, err?: string) => void) | null;
  closed: string | null;
}
const conns: Conn[] = [];

function parseResponse(c: Conn): void {
  const head = c.buf.indexOf('\r\n\r\n');
  if (head < 0 || !c.waiter) return;
  const m = /content-length:\s*(\d+)/i.exec(c.buf.subarray(0, head).toString());
  const len = m ? Number(m[1]) : 0;
  if (c.buf.length < head + 4 + len) return;
  const body = c.buf.subarray(head + 4, head + 4 + len).toString();
  c.buf = c.buf.subarray(head + 4 + len);
  const w = c.waiter;
  c.waiter = null;
  w(body);
}

async function open(r: Req): Promise<unknown> {
  const n = Math.min(Number(r.n), 1000);
  const out: Array<{ conn: number; localPort: number }> = [];
  for (let i = 0; i < n; i++) {
    const sock = net.connect({ host: String(r.host), port: Number(r.port) });
    const c: Conn = { sock, buf: Buffer.alloc(0), waiter: null, closed: null };
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('connect timeout')), 3000);
      sock.once('connect', () => { clearTimeout(t); resolve(); });
      sock.once('error', (e) => { clearTimeout(t); reject(e); });
    });
    sock.on('data', (d: Buffer) => {
      c.buf = Buffer.concat([c.buf, d]);
      parseResponse(c);
    });
    const fail = (why: string) => {
      c.closed ??= why;
      const w = c.waiter;
      c.waiter = null;
      w?.(null, why);
    };
    sock.on('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
    sock.on('close', () => fail('closed'));
    conns.push(c);
    out.push({ conn: conns.length - 1, localPort: sock.localPort ?? 0 });
  }
  return out;
}

function ask(c: Conn, timeoutMs: number): Promise<{ answer: string | null; error: string | null }> {
  if (c.closed) return Promise.resolve({ answer: null, error: c.closed });
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      c.waiter = null;
      resolve({ answer: null, error: 'timeout' });
    }, timeoutMs);
    c.waiter = (body, err) => {
      clearTimeout(t);
      resolve({ answer: body, error: err ?? null });
    };
    c.sock.write('GET / HTTP/1.1\r\nHost: vip\r\n\r\n');
  });
}

async function askAll(r: Req): Promise<unknown> {
  return Promise.all(conns.map(async (c, i) => ({ conn: i, localPort: c.sock.localPort ?? 0, ...(await ask(c, Number(r.timeoutMs ?? 3000))) })));
}

function download(r: Req): Promise<unknown> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const path = `/stream?bytes=${Number(r.bytes)}&chunk=${Number(r.chunk ?? 65536)}&delayMs=${Number(r.delayMs ?? 0)}`;
    const req = http.get({ host: String(r.host), port: Number(r.port), path, agent: false, timeout: Number(r.timeoutMs ?? 60_000) }, (res) => {
      let got = 0;
      let bad = -1;
      res.on('data', (d: Buffer) => {
        for (let i = 0; i < d.length && bad < 0; i++) if (d[i] !== pattern(got + i)) bad = got + i;
        got += d.length;
      });
      res.on('end', () => resolve({ status: res.statusCode, backend: res.headers['x-backend'], bytes: got, firstBadByte: bad, ms: Date.now() - started }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('download timeout')));
    req.on('error', reject);
  });
}

async function udp(r: Req): Promise<unknown> {
  const count = Math.min(Number(r.count), 20_000);
  const size = Math.min(Number(r.size ?? 64), 1400);
  const host = String(r.host);
  const v6 = net.isIPv6(host);
  const answers: Record<string, number> = {};
  let lost = 0;
  const ports = new Set<number>();
  // basePort: datagram i comes from basePort + i (fixed, known ports); else ephemeral ones.
  const base = r.basePort === undefined ? 0 : Number(r.basePort);
  let nextPort = base;
  const one = () =>
    new Promise<void>((resolve) => {
      const s = dgram.createSocket(v6 ? 'udp6' : 'udp4');
      const t = setTimeout(() => { lost++; s.close(); resolve(); }, Number(r.timeoutMs ?? 2000));
      s.once('message', (m) => { clearTimeout(t); tally(answers, m.toString()); s.close(); resolve(); });
      s.once('error', () => { clearTimeout(t); lost++; s.close(); resolve(); });
      const go = () =>
        s.send(Buffer.alloc(size, 0x61), Number(r.port), host, () => {
          try {
            ports.add(s.address().port);
          } catch {
            /* closed already */
          }
        });
      const port = base ? nextPort++ : 0;
      if (r.localAddress || port) s.bind(port, r.localAddress ? String(r.localAddress) : undefined, go);
      else go();
    });
  for (let i = 0; i < count; i += 20) await Promise.all(Array.from({ length: Math.min(20, count - i) }, one));
  // Sockets come and go: the kernel may hand a closed one's port to the next (same flow).
  return { sent: count, answers, lost, ports: ports.size };
}

const handlers: Record<string, (r: Req) => Promise<unknown> | unknown> = {
  requests,
  open,
  ask: askAll,
  close: () => {
    for (const c of conns.splice(0)) c.sock.destroy();
    return true;
  },
  download,
  udp,
};

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let r: Req;
  try {
    r = JSON.parse(line);
  } catch {
    return;
  }
  const h = handlers[r.cmd];
  if (!h) {
    send({ id: r.id, error: `no command ${r.cmd}` });
    return;
  }
  Promise.resolve()
    .then(() => h(r))
    .then((result) => send({ id: r.id, result }), (err: Error) => send({ id: r.id, error: err.message }));
});
send({ ready: true });
