// SPDX-License-Identifier: Apache-2.0
// Compiling pcap-filter expressions through libpcap: the instructions are libpcap's own
// (the same as `tcpdump -dd` prints for the link type), and bad input gets an error that
// names the expression and libpcap's reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { CaptureError } from '../../../../daemon/src/capture/errors.js';
import { compileFilter, DLT } from '../../../../daemon/src/capture/pcap.js';
import { checkProgram, decode } from '../../../../daemon/src/capture/cbpf.js';
import { requireTool } from '../../../helpers/privileged.js';

test('the instructions equal tcpdump -dd for the same expression (Ethernet, snaplen 262144)', () => {
  requireTool('tcpdump');
  for (const expr of ['tcp port 9000', 'ip6 and udp', 'host 198.18.0.1 and not port 53']) {
    // -y EN10MB on a dead "any" capture is not possible; -r reads a file's link type instead.
    const dd = execFileSync('tcpdump', ['-dd', '-y', 'EN10MB', '-i', 'lo', expr], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim().split('\n').map((l) => /\{ (0x[0-9a-f]+), (\d+), (\d+), (0x[0-9a-f]+) \}/.exec(l)!).map((m) => [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])]);
    const ours = decode(compileFilter(expr, { linkType: DLT.EN10MB })).map((i) => [i.code, i.jt, i.jf, i.k]);
    assert.deepEqual(ours, dd, expr);
  }
});

test('a bad expression names itself and libpcap\'s reason', () => {
  assert.throws(() => compileFilter('tcp prot 80', { linkType: DLT.EN10MB }), (e: unknown) =>
    e instanceof CaptureError && e.code === 'BAD_FILTER' && e.message === 'filter "tcp prot 80" (Ethernet): syntax error');
  assert.throws(() => compileFilter('ether host 02:00:00:00:00:01', { linkType: DLT.RAW }), (e: unknown) =>
    e instanceof CaptureError && e.code === 'BAD_FILTER' && /^filter "ether host 02:00:00:00:00:01" \(raw IP\): ethernet addresses supported only on/.test(e.message));
  assert.throws(() => compileFilter('tcp and udp', { linkType: DLT.EN10MB }), /rejects all packets/);
  assert.throws(() => compileFilter('tcp', { linkType: DLT.EN10MB, snaplen: 0 }), (e: unknown) => e instanceof CaptureError && e.code === 'BAD_SNAPLEN');
});

test('an empty expression accepts every packet with the snap length', () => {
  const p = compileFilter('', { linkType: DLT.EN10MB, snaplen: 128 });
  assert.deepEqual(checkProgram(p).map((i) => [i.code, i.k]), [[0x06, 128]]);
});
