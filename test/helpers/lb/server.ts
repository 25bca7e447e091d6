// SPDX-License-Identifier: Apache-2.0
// A backend for the LB tests, run inside a backend's namespace: an HTTP server that
// answers with its own name (which backend answered is the tests' independent truth),
// a paced deterministic stream for long transfers, and a UDP echo that counts what it got.
//
//   node server.js NAME TCP_PORT UDP_PORT
//   GET /            -> NAME
//   GET /stream?bytes=N&chunk=C&delayMs=D -> N bytes of pattern(i), C bytes every D ms
//   GET /udpstats    -> {"datagrams": n, "bytes": n}
//   UDP datagram     -> NAME (and counted)
import dgram from 'node:dgram';
import http from 'node:http';
import { pattern } from './pattern.js';

const [name = 'backend', tcpPort = '8080', udpPort = '5353'] = process.argv.slice(2);

let udpDatagrams = 0;
let udpBytes = 0;

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/udpstats') {
    res.end(JSON.stringify({ datagrams: udpDatagrams, bytes: udpBytes }));
    return;
  }
  if (url.pathname === '/stream') {
    const total = Math.min(Number(url.searchParams.get('bytes') ?? 1 << 20), 1 << 30);
    const chunk = Math.max(1, Math.min(Number(url.searchParams.get('chunk') ?? 65536), 1 << 20));
    const delayMs = Math.max(0, Math.min(Number(url.searchParams.get('delayMs') ?? 0), 1000));
    res.writeHead(200, { 'content-length': String(total), 'x-backend': name });
    let sent = 0;
    const next = () => {
      if (sent >= total || res.destroyed) {
        res.end();
        return;
      }
      const n = Math.min(chunk, total - sent);
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = pattern(sent + i);
      sent += n;
      const ok = res.write(b);
      if (delayMs) setTimeout(next, delayMs);
      else if (ok) setImmediate(next);
      else res.once('drain', next);
    };
    next();
    return;
  }
  res.setHeader('x-backend', name);
  res.end(name);
});
server.keepAliveTimeout = 120_000;

const udp = dgram.createSocket({ type: 'udp6', ipv6Only: false });
udp.on('message', (msg, rinfo) => {
  udpDatagrams++;
  udpBytes += msg.length;
  udp.send(name, rinfo.port, rinfo.address);
});

let ready = 0;
const up = () => {
  if (++ready === 2) process.stdout.write('listening\n');
};
server.listen(Number(tcpPort), '::', up);
udp.bind(Number(udpPort), '::', up);
