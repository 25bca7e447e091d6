// SPDX-License-Identifier: Apache-2.0
// A capture follows the daemon across kill -9 and a restart (issue 13): `ebpfmonctl capture
// -p PID` of a client the test spawns, which sends UDP datagrams steadily before, during
// and after the daemon is away. The CLI resumes its session with the restarted daemon; the
// file is one pcapng (a second section for the resumed stream) that tshark reads whole.
// Truth: tcpdump on the same interface. Every frame in the file is one tcpdump saw for that
// client, byte for byte; the frames missing are exactly the losses the last statistics
// block reports (isb_osdrop), and the kernel matched every frame tcpdump saw (isb_ifrecv).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { jsonLines } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { until } from '../helpers/wait.js';
import { restartDaemon } from '../helpers/daemon.js';
import { readPcapRecords } from '../helpers/pcap-frames.js';
import { captureLabSuite, udpSenderJs, frameDiff, framesOf, lastIsb, pcapngFrames, startCapture, startTcpdump, stopTcpdump } from '../helpers/capture-truth.js';

/** Reports its port, then on "go" sends a 120-byte datagram every 4 ms until "stop", then reports its count. */
const SENDER_JS = udpSenderJs(120, 4);

/** Enhanced Packet Blocks and Section Header Blocks in a pcapng file being written (a torn last block is not counted). */
function blocks(file: string): { epb: number; shb: number } {
  const b = fs.existsSync(file) ? fs.readFileSync(file) : Buffer.alloc(0);
  let epb = 0;
  let shb = 0;
  for (let off = 0; off + 8 <= b.length;) {
    const type = b.readUInt32LE(off);
    const len = b.readUInt32LE(off + 4);
    if (len < 12 || off + len > b.length) break;
    if (type === 6) epb++;
    if (type === 0x0a0d0d0a) shb++;
    off += len;
  }
  return { epb, shb };
}

describe('capture across a daemon restart: the CLI resumes its session, losses are counted', privileged({ timeout: 180_000 }), () => {
  const l = captureLabSuite('tcpdump', 'tshark', 'editcap');

  test('capture -p PID across kill -9 + restart: one valid file, packets from before and after, count = tcpdump - reported drops', async () => {
    const { mon, link, dir } = l;
    const file = path.join(dir, 'restart.pcapng');
    const dump = path.join(dir, 'tcpdump.pcap');
    const td = await startTcpdump(mon, link.a.ifname, dump);
    const sender: ChildProcess = mon.spawn(process.execPath, ['-e', SENDER_JS, link.b.ip4, '9001'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines = jsonLines(sender);
    const { port } = (await lines.next((o) => typeof o.port === 'number')) as { port: number };
    const cap = await startCapture(mon, l.daemon.socketPath, ['-p', String(sender.pid), '--stats-interval', '1', '-w', file]);
    sender.stdin!.write('go\n');

    await until('packets before the restart', () => blocks(file).epb >= 50);
    await l.daemon.stop('SIGKILL');
    const killedAt = Date.now();
    // The client keeps sending while no daemon runs.
    await until('datagrams while the daemon is away', () => Date.now() - killedAt > 300);
    l.daemon = await restartDaemon(l.daemon);
    await until('the CLI resumed', () => cap.stderr().includes('resumed session'), 30_000);
    const resumedAt = blocks(file).epb;
    await until('packets after the restart', () => blocks(file).epb >= resumedAt + 50);

    sender.stdin!.write('stop\n');
    const { sent } = (await lines.next((o) => typeof o.sent === 'number')) as { sent: number };
    process.kill(cap.child.pid!, 'SIGINT');
    assert.equal(await cap.exit, 0, cap.stderr());
    await stopTcpdump(td);

    // One valid file: tshark reads it whole; two sections (the resumed stream is the second).
    const shown = execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).length;
    const { epb, shb } = blocks(file);
    assert.equal(shown, epb, 'tshark reads every packet block');
    assert.equal(shb, 2, 'a second section for the resumed stream');

    const truth = framesOf(readPcapRecords(dump).records, [{ proto: 'udp', localPort: port }]);
    const got = pcapngFrames(file);
    const isb = lastIsb(file);
    const reportedDrops = Number(isb[7]);
    process.stderr.write(`sent ${sent}, tcpdump ${truth.length}, file ${got.length}, isb ifrecv ${isb[4]} osdrop ${isb[7]} usrdeliv ${isb[8]}; ${cap.stderr().trim().split('\n').join(' / ')}\n`);
    assert.equal(truth.length, sent, 'tcpdump saw every datagram');
    const d = frameDiff(got, truth);
    assert.equal(d.onlyA.length, 0, `frames in the file that tcpdump did not see for the client: ${d.onlyA[0]?.slice(0, 100)}`);
    assert.ok(got.length > resumedAt, 'packets from after the restart');
    // Losses are counted, not silent: what the file lacks is what the statistics report.
    assert.ok(reportedDrops > 0, 'datagrams sent while no daemon read the rings are counted');
    assert.equal(got.length, truth.length - reportedDrops, `file ${got.length} = tcpdump ${truth.length} - reported drops ${reportedDrops}`);
    assert.equal(Number(isb[4]), truth.length, 'the kernel matched every datagram tcpdump saw, across the restart');
  });
});
