// SPDX-License-Identifier: Apache-2.0
// fd delivery's pieces on this process's own descriptors (pidfd_getfd on oneself needs no
// privilege): what is taken and what is refused (naming params.fd), and FdOutput into a
// pipe whose reader is slower than the writer: every byte arrives, in order (the reader's
// digest against the bytes written), without blocking the writer; a reader that goes away
// is EPIPE, reported once.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FdOutput, takeClientFd } from '../../../../daemon/src/capture/fdout.js';

const me = process.pid;
const uid = process.getuid!();

describe('fd delivery: taking the client\'s descriptor', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capfd-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  test('a regular file open for writing is taken: the duplicate writes into the same file at its offset', () => {
    const file = path.join(dir, 'a.pcapng');
    const fd = fs.openSync(file, 'w+');
    fs.writeSync(fd, 'head;');
    const t = takeClientFd(me, uid, fd);
    assert.equal(t.kind, 'file');
    const out = new FdOutput(t.fd, t.kind);
    out.writevSync!([Buffer.from('from the daemon')]);
    out.end();
    assert.equal(out.isClosed, true);
    fs.writeSync(fd, ';tail');
    fs.closeSync(fd);
    assert.equal(fs.readFileSync(file, 'utf8'), 'head;from the daemon;tail');
  });

  test('refused, naming params.fd: read-only, a directory, a character device, a number not open; another uid', () => {
    const ro = fs.openSync(path.join(dir, 'a.pcapng'), 'r');
    const d = fs.openSync(dir, 'r');
    const nul = fs.openSync('/dev/null', 'w');
    const cases: Array<[number, RegExp]> = [[ro, /not open for writing/], [d, /is a directory/], [nul, /character device/], [987, /descriptor 987 of the calling process is not open/]];
    for (const [fd, re] of cases) {
      assert.throws(() => takeClientFd(me, uid, fd), (e: Error & { data?: { field?: string } }) => re.test(e.message) && e.data?.field === 'params.fd', `fd ${fd}`);
    }
    assert.throws(() => takeClientFd(me, uid + 1, nul), /runs with uids .* not the connection's uid/);
    for (const fd of [ro, d, nul]) fs.closeSync(fd);
  });

  test('FdOutput into a pipe to a slow reader: every byte in order, the writer never blocks; EPIPE once the reader is gone', async () => {
    // The reader: a FIFO (as `-w - | tshark`: a pipe), read only after 300 ms, so the pipe fills and the writer queues.
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = spawn(process.execPath, ['-e', `const h = require('crypto').createHash('sha256'); let n = 0;
      const s = require('fs').createReadStream(process.argv[1]); s.pause();
      setTimeout(() => s.on('data', (d) => { h.update(d); n += d.length; }).on('end', () => console.log(JSON.stringify({ n, sha: h.digest('hex') }))).resume(), 300);`, fifo], { stdio: ['ignore', 'pipe', 'inherit'] });
    const fd = fs.openSync(fifo, 'w'); // returns once the reader opened its end
    const t = takeClientFd(me, uid, fd);
    fs.closeSync(fd); // the duplicate alone keeps the write end open
    assert.equal(t.kind, 'fifo');
    const out = new FdOutput(t.fd, t.kind);
    const want = createHash('sha256');
    let total = 0;
    const t0 = performance.now();
    for (let i = 0; i < 64; i++) {
      const b = randomBytes(16384);
      want.update(b);
      total += b.length;
      out.write(b);
    }
    assert.ok(performance.now() - t0 < 250, 'writing 1 MiB into a full pipe returned at once');
    assert.ok(out.backlog() > 0, 'the pipe was full: the rest waits in the queue');
    const closed = new Promise<void>((r) => (out.onClosed = r));
    out.end();
    await closed;
    let got = '';
    reader.stdout!.setEncoding('utf8').on('data', (x: string) => (got += x));
    await new Promise((r) => reader.once('exit', r));
    assert.deepEqual(JSON.parse(got), { n: total, sha: want.digest('hex') });

    // EPIPE: a reader that opens the FIFO and exits.
    const fifo2 = path.join(dir, 'fifo2');
    execFileSync('mkfifo', [fifo2]);
    const gone = spawn(process.execPath, ['-e', "require('fs').closeSync(require('fs').openSync(process.argv[1], 'r'))", fifo2], { stdio: 'ignore' });
    const fd2 = fs.openSync(fifo2, 'w');
    await new Promise((r) => gone.once('exit', r));
    const t2 = takeClientFd(me, uid, fd2);
    fs.closeSync(fd2);
    const out2 = new FdOutput(t2.fd, t2.kind);
    const errors: string[] = [];
    out2.onError = (m) => errors.push(m);
    out2.write(Buffer.alloc(100));
    out2.write(Buffer.alloc(100));
    assert.deepEqual(errors, ['the reader closed its end (EPIPE)']);
    out2.end();
  });
});
