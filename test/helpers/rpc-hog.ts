// SPDX-License-Identifier: Apache-2.0
// A hostile or careless JSON-RPC client, run as any user (through setpriv) by the
// reliability tests. Each mode prints one JSON line when it has done its work, then (for
// the modes that hold connections) waits until its stdin closes, and exits.
//
//   hold SOCKET N              open N connections and keep them open, idle
//   flood SOCKET CONNS LINES BATCH read|noread|close
//                              each connection writes LINES lines of BATCH `status` calls;
//                              `read` reads the replies, `noread` never reads, `close`
//                              closes right after writing
//   linger SOCKET N            open N connections that each send a request and never close
//                              them (refused ones must be closed by the daemon)
import net from 'node:net';

const [mode, socket, ...rest] = process.argv.slice(2);
const nums = rest.map(Number);

function open(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socket!);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** The first line the daemon sends on a fresh connection within `ms`, if any (a refusal). */
function firstLine(s: net.Socket, ms: number): Promise<string | null> {
  return new Promise((resolve) => {
    let buf = '';
    const done = (v: string | null) => {
      clearTimeout(t);
      s.off('data', onData);
      s.pause();
      resolve(v);
    };
    const onData = (d: Buffer) => {
      buf += d.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(buf.slice(0, nl));
    };
    const t = setTimeout(() => done(null), ms);
    s.on('data', onData);
    s.once('close', () => done(buf || null));
  });
}

function waitStdin(): Promise<void> {
  return new Promise((resolve) => {
    process.stdin.resume();
    process.stdin.once('end', resolve);
    process.stdin.once('close', resolve);
  });
}

async function main(): Promise<void> {
  const held: net.Socket[] = [];
  const keep = (s: net.Socket) => {
    s.on('error', () => undefined);
    held.push(s);
  };
  switch (mode) {
    case 'hold': {
      const [n] = nums;
      let refused = 0;
      const messages: string[] = [];
      for (let i = 0; i < n!; i++) {
        const s = await open();
        keep(s);
        // A refusal arrives at once; an admitted connection says nothing.
        const line = await firstLine(s, 150);
        if (line !== null) {
          refused++;
          if (messages.length < 3) messages.push(line);
        }
      }
      process.stdout.write(`${JSON.stringify({ opened: n! - refused, refused, messages })}\n`);
      await waitStdin();
      break;
    }
    case 'flood': {
      const [conns, lines, batch] = nums;
      const how = rest[3];
      const line = `${JSON.stringify(Array.from({ length: batch! }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'status' })))}\n`;
      const payload = line.repeat(lines!);
      let replies = 0;
      await Promise.all(Array.from({ length: conns! }, async () => {
        const s = await open();
        keep(s);
        if (how === 'read') {
          let buf = '';
          s.on('data', (d: Buffer) => {
            buf += d.toString('utf8');
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              replies++;
              buf = buf.slice(nl + 1);
            }
          });
        } else s.pause();
        await new Promise<void>((resolve) => {
          s.write(payload, () => resolve());
          if (how !== 'noread') return;
          // The daemon stops reading from a client that reads no replies (its queue bound):
          // what it has not taken stays unsent here for good, so the write's callback never
          // comes. Done when the unsent bytes stop shrinking.
          let last = -1;
          const t = setInterval(() => {
            if (s.writableLength === 0 || s.writableLength === last) {
              clearInterval(t);
              resolve();
            }
            last = s.writableLength;
          }, 300);
        });
        if (how === 'close') s.destroy();
        if (how === 'read') await new Promise<void>((resolve) => {
          const t = setInterval(() => {
            if (replies >= conns! * lines! || s.destroyed) {
              clearInterval(t);
              resolve();
            }
          }, 20);
        });
      }).map((p) => p.catch(() => undefined)));
      process.stdout.write(`${JSON.stringify({ written: conns! * lines!, replies })}\n`);
      if (how !== 'close') await waitStdin();
      break;
    }
    case 'linger': {
      // In waves, so that the listen backlog never refuses a connect: every connection is
      // admitted to the daemon's accept and must be closed by it.
      const [n] = nums;
      let closedByDaemon = 0;
      let failed = 0;
      for (let done = 0; done < n!; done += 100) {
        await Promise.all(Array.from({ length: Math.min(100, n! - done) }, () => new Promise<void>((resolve) => {
          const s = net.connect(socket!);
          const t = setTimeout(resolve, 5000);
          s.on('error', () => {
            failed++;
            clearTimeout(t);
            resolve();
          });
          s.on('connect', () => s.write('{"jsonrpc":"2.0","id":1,"method":"status"}\n'));
          s.on('end', () => {
            closedByDaemon++;
            clearTimeout(t);
            resolve();
          });
          s.resume();
          held.push(s);
        })));
      }
      process.stdout.write(`${JSON.stringify({ opened: n, closedByDaemon, failed })}\n`);
      await waitStdin();
      break;
    }
    default:
      process.stderr.write(`rpc-hog: unknown mode ${mode}\n`);
      process.exit(2);
  }
  for (const s of held) s.destroy();
  process.exit(0);
}

void main();
