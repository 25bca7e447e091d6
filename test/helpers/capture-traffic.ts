// SPDX-License-Identifier: Apache-2.0
// Real frames for the capture tests: a short burst of varied traffic between two lab hosts
// (ping and big pings that fragment, IPv4 and IPv6; TCP with data; UDP; a refused TCP
// connection), recorded by tcpdump on one end. What a real stack puts on a veth, next to
// the generated corpus.
import path from 'node:path';
import type { Lab } from './lab.js';
import { readPcapRecords } from './pcap-frames.js';
import type { CorpusPacket } from './capture-corpus.js';

const NODE = process.execPath;

/** A tiny TCP/UDP peer in Node: no tool whose flags differ between netcat flavours. */
const PEER_JS = `
const net = require('node:net'); const dgram = require('node:dgram');
const [mode, host, port] = process.argv.slice(1);
if (mode === 'serve') {
  const s = net.createServer((c) => { c.on('data', () => {}); c.on('end', () => c.end('bye')); c.on('error', () => {}); }).listen(Number(port), '::');
  const u = dgram.createSocket('udp6'); u.bind(Number(port), '::'); u.on('message', (m, r) => u.send(m, r.port, r.address));
  s.on('listening', () => console.log('ready'));
} else {
  const c = net.connect(Number(port), host, () => { c.write(Buffer.alloc(3000, 7)); c.end(); });
  c.on('data', () => {}); c.on('close', () => {
    const u = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    let n = 0; const send = () => u.send(Buffer.alloc(100 + 400 * n, n), Number(port), host, () => { if (++n < 4) send(); else setTimeout(() => { u.close(); process.exit(0); }, 200); });
    send();
  });
  c.on('error', (e) => { console.error(e.message); process.exit(1); });
}`;

export async function realFrames(lab: Lab): Promise<CorpusPacket[]> {
  const a = await lab.host('ca');
  const b = await lab.host('cb');
  const link = await lab.link(a, b);
  const file = path.join(lab.tmpdir(), 'real.pcap');
  const dump = b.spawn('tcpdump', ['-i', link.b.ifname, '-n', '--immediate-mode', '-U', '-s', '0', '-w', file]);
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 10_000);
    dump.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (err.includes('listening on')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  const server = b.spawn(NODE, ['-e', PEER_JS, 'serve', '::', '9000']);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('peer server did not start')), 10_000);
    server.stdout!.setEncoding('utf8').on('data', (d: string) => {
      if (d.includes('ready')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  await a.exec('ping', ['-c', '2', '-i', '0.2', link.b.ip4]);
  await a.exec('ping', ['-6', '-c', '2', '-i', '0.2', link.b.ip6]);
  await a.exec('ping', ['-c', '1', '-s', '3000', link.b.ip4]); // IPv4 fragments
  await a.exec('ping', ['-6', '-c', '1', '-s', '3000', link.b.ip6]); // IPv6 fragment headers
  for (const host of [link.b.ip4, link.b.ip6]) await a.exec(NODE, ['-e', PEER_JS, 'client', host, '9000']);
  await a.exec(NODE, ['-e', `require('node:net').connect(9999, '${link.b.ip4}').on('error', () => {})`], { allowFail: true }); // RST
  await new Promise((r) => setTimeout(r, 300));
  const done = new Promise((r) => dump.once('exit', r));
  process.kill(dump.pid!, 'SIGINT');
  await done;
  process.kill(server.pid!, 'SIGKILL');
  const { linkType, records } = readPcapRecords(file);
  if (linkType !== 1) throw new Error(`tcpdump wrote link type ${linkType}, expected Ethernet (1)`);
  return records
    .filter((r) => r.data.length >= 14)
    .map((r, i) => ({ frame: r.data.length > 2000 ? r.data.subarray(0, 2000) : r.data, ip: [0x0800, 0x86dd].includes(r.data.readUInt16BE(12)), origin: `tcpdump capture #${i}` }));
}
