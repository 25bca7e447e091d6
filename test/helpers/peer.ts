// SPDX-License-Identifier: Apache-2.0
// A traffic peer that tests spawn inside lab hosts, so that each test knows the exact pid
// of the process that talked and the exact bytes it sent and received (its own truth).
// Every mode prints JSON lines on stdout.
//
//   peer.js tcp-server <addr> <port> [replyBytes] [--close-first]   accept; read to EOF; reply; report
//   peer.js tcp-client <addr> <port> <sendBytes> [--expect N] [--hold MS] [--local-port P]
//   peer.js udp-server <addr> <port>                report each datagram
//   peer.js udp-client <addr> <port> <count> <size> [--connect] [--expect-replies] [--local-port P]
//   peer.js tcp-stream <addr> <port> <chunk> <intervalMs> <count>   steady traffic, then close
//   peer.js tcp-hold <addr> <port>                  connect and wait for stdin lines:
//                                                   "send N" sends N bytes, "close" closes
//   peer.js udp-hold <addr> <port>                  a connected UDP socket; stdin "send N"
//                                                   sends one datagram of N bytes, "close"
import dgram from 'node:dgram';
import net from 'node:net';
import readline from 'node:readline';

const [mode, addr = '', portS = '0', ...rest] = process.argv.slice(2);
const port = Number(portS);
const out = (o: object) => process.stdout.write(`${JSON.stringify({ pid: process.pid, ...o })}\n`);
const flag = (name: string) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : undefined;
};

switch (mode) {
  case 'tcp-server': {
    const reply = Number(rest[0] ?? 0);
    const srv = net.createServer((s) => {
      if (rest.includes('--close-first')) {
        // The server closes first, so the client ends in CLOSE (not TIME_WAIT) and its
        // local port can be reused at once.
        s.on('error', () => undefined);
        s.end(Buffer.alloc(reply, 0x61), () => out({ event: 'served', remotePort: s.remotePort, remoteAddr: s.remoteAddress, sent: reply }));
        return;
      }
      let got = 0;
      let head = '';
      s.on('data', (d) => {
        got += d.length;
        if (head.length < 64) head += d.toString('latin1').slice(0, 64 - head.length);
      });
      s.on('end', () => {
        const send = () => {
          s.end();
          out({ event: 'served', remotePort: s.remotePort, remoteAddr: s.remoteAddress, received: got, sent: reply, data: head.trim() });
        };
        if (reply > 0) s.write(Buffer.alloc(reply, 0x61), send);
        else send();
      });
      s.on('error', () => undefined);
    });
    srv.listen(port, addr, () => out({ event: 'listening', port: (srv.address() as net.AddressInfo).port }));
    break;
  }
  case 'tcp-client': {
    const n = Number(rest[0] ?? 0);
    const expect = Number(flag('--expect') ?? 0);
    const hold = Number(flag('--hold') ?? 0);
    const localPort = flag('--local-port') ? Number(flag('--local-port')) : undefined;
    let boundPort: number | undefined;
    const s = net.connect({ host: addr, port, localPort }, () => {
      boundPort = s.localPort; // Node forgets it once the socket closes
      out({ event: 'connected', localPort: s.localPort, localAddr: s.localAddress });
      s.write(Buffer.alloc(n, 0x62), () => setTimeout(() => s.end(), hold));
    });
    let got = 0;
    s.on('data', (d) => (got += d.length));
    s.on('close', () => {
      out({ event: 'done', localPort: boundPort, sent: n, received: got, complete: got >= expect });
      process.exit(0);
    });
    s.on('error', (e) => {
      out({ event: 'error', message: e.message });
      process.exit(1);
    });
    break;
  }
  case 'tcp-clients': {
    // `count` connections one after the other, each sending n bytes and reading the reply to
    // its end: many short flows from one process.
    const n = Number(rest[0] ?? 0);
    const count = Number(flag('--count') ?? 1);
    const ports: number[] = [];
    let received = 0;
    const one = (i: number): void => {
      if (i === count) {
        out({ event: 'done', count, sent: n * count, received, localPorts: ports });
        process.exit(0);
      }
      const s = net.connect({ host: addr, port }, () => {
        ports.push(s.localPort!);
        s.end(Buffer.alloc(n, 0x62));
      });
      s.on('data', (d) => (received += d.length));
      s.on('close', () => one(i + 1));
      s.on('error', (e) => {
        out({ event: 'error', message: e.message });
        process.exit(1);
      });
    };
    one(0);
    break;
  }
  case 'tcp-pass': {
    // Connects, then hands the connected socket to a child process over the IPC channel
    // (SCM_RIGHTS) and closes its own descriptor; the child sends the bytes.
    const n = Number(rest[0] ?? 0);
    const s = net.connect({ host: addr, port }, async () => {
      const { fork } = await import('node:child_process');
      const child = fork(process.argv[1]!, ['tcp-pass-child', '', '0', String(n)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const localPort = s.localPort;
      child.once('message', (m) => {
        if (m === 'ready') child.send('socket', s);
      });
      child.once('exit', () => {
        out({ event: 'done', localPort, connectorPid: process.pid, senderPid: child.pid });
        process.exit(0);
      });
    });
    s.on('error', (e) => out({ event: 'error', message: e.message }));
    break;
  }
  case 'tcp-pass-child': {
    const n = Number(rest[0] ?? 0);
    process.on('message', (m, handle) => {
      if (m !== 'socket' || !handle) return;
      const sock = handle as net.Socket;
      sock.end(Buffer.alloc(n, 0x65), () => setTimeout(() => process.exit(0), 50));
    });
    process.send!('ready');
    break;
  }
  case 'tcp-stream': {
    // Sends `chunk` bytes every `interval` ms, `count` times, then closes: continuous traffic.
    const [chunkS = '1000', intervalS = '10', countS = '100'] = rest;
    const chunk = Buffer.alloc(Number(chunkS), 0x66);
    let boundPort: number | undefined;
    let sent = 0;
    let i = 0;
    const s = net.connect({ host: addr, port }, () => {
      boundPort = s.localPort;
      out({ event: 'connected', localPort: boundPort });
      const t = setInterval(() => {
        if (i++ >= Number(countS)) {
          clearInterval(t);
          s.end();
          return;
        }
        s.write(chunk);
        sent += chunk.length;
      }, Number(intervalS));
    });
    s.on('close', () => {
      out({ event: 'done', localPort: boundPort, sent });
      process.exit(0);
    });
    s.on('error', (e) => {
      out({ event: 'error', message: e.message });
      process.exit(1);
    });
    break;
  }
  case 'tcp-hold': {
    let boundPort: number | undefined;
    const s = net.connect({ host: addr, port }, () => {
      boundPort = s.localPort;
      out({ event: 'connected', localPort: s.localPort });
    });
    let sent = 0;
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      const [cmd, arg] = line.trim().split(' ');
      if (cmd === 'send') {
        const n = Number(arg);
        s.write(Buffer.alloc(n, 0x63), () => {
          sent += n;
          out({ event: 'sent', total: sent });
        });
      } else if (cmd === 'close') s.end();
    });
    s.on('close', () => {
      out({ event: 'done', sent, localPort: boundPort });
      process.exit(0);
    });
    s.on('error', (e) => {
      out({ event: 'error', message: e.message });
      process.exit(1);
    });
    break;
  }
  case 'udp-hold': {
    const sock = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
    sock.connect(port, addr, () => out({ event: 'connected', localPort: sock.address().port }));
    let sent = 0;
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      const [cmd, arg] = line.trim().split(' ');
      if (cmd === 'send') {
        const n = Number(arg);
        sock.send(Buffer.alloc(n, 0x75), () => {
          sent += n;
          out({ event: 'sent', total: sent });
        });
      } else if (cmd === 'close') {
        sock.close(() => {
          out({ event: 'done', sent });
          process.exit(0);
        });
      }
    });
    break;
  }
  case 'udp-server': {
    const sock = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
    sock.on('message', (m, r) => {
      out({ event: 'datagram', size: m.length, from: r.address, fromPort: r.port });
      if (rest.includes('--echo')) sock.send(m, r.port, r.address);
    });
    sock.bind(port, addr, () => out({ event: 'listening', port: sock.address().port }));
    break;
  }
  case 'udp-client': {
    const count = Number(rest[0] ?? 1);
    const size = Number(rest[1] ?? 100);
    const sock = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
    const replies = rest.includes('--expect-replies');
    let got = 0;
    let gotBytes = 0;
    sock.on('message', (m) => {
      got++;
      gotBytes += m.length;
      if (got === count) finish();
    });
    const finish = () => {
      out({ event: 'done', localPort: sock.address().port, sent: count, size, replies: got, replyBytes: gotBytes });
      sock.close();
    };
    const go = () => {
      let i = 0;
      const next = () => {
        if (i++ >= count) {
          if (!replies) finish();
          else setTimeout(finish, 3000); // bounded wait for late replies
          return;
        }
        const cb = () => next();
        if (rest.includes('--connect')) sock.send(Buffer.alloc(size, 0x64), cb);
        else sock.send(Buffer.alloc(size, 0x64), port, addr, cb);
      };
      next();
    };
    const lp = flag('--local-port') ? Number(flag('--local-port')) : 0;
    if (rest.includes('--connect')) sock.bind(lp, () => sock.connect(port, addr, go));
    else sock.bind(lp, go);
    break;
  }
  default:
    process.stderr.write(`unknown mode ${mode}\n`);
    process.exit(2);
}
