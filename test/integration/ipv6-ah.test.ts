// SPDX-License-Identifier: Apache-2.0
// IPv6 with an Authentication Header (IPsec AH, RFC 4302), through the shipped classifier
// (build/bpf/flows.bpf.o, BPF_PROG_TEST_RUN): AH gives its length in 4-byte words minus 2,
// every other extension header in 8-byte words minus 1 (RFC 8200), so each header must be
// sized by its own type. The truth is the frame the test built: the flow must be keyed by
// the TCP ports written after the headers, and count the IP bytes sent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { privileged } from '../helpers/privileged.js';
import { ROOT } from '../helpers/cc.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { writeUint } from '../../daemon/src/bpf/layout.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { FLOW, FLOW_KEY, IFACE } from '../../daemon/src/monitor/wire.js';
import { TcTestRunner } from '../../bench/classifier/testrun.js';

const AF_INET6 = 10;
const IPPROTO_TCP = 6;
const IPPROTO_DSTOPTS = 60;
const IPPROTO_AH = 51;
const SRC = Buffer.from('fd000198000000000000000000000002', 'hex'); // the remote (ingress frames)
const DST = Buffer.from('fd000198000000000000000000000001', 'hex');

/** AH with `icvWords` 4-byte words of ICV: 12 fixed bytes + the ICV; length field = total/4 - 2. */
function ah(next: number, icvWords: number): Buffer {
  const b = Buffer.alloc(12 + icvWords * 4);
  b[0] = next;
  b[1] = b.length / 4 - 2;
  b.writeUInt32BE(0x1234, 4); // SPI
  b.writeUInt32BE(1, 8); // sequence number
  return b;
}

/** Destination Options of `len8` 8-byte units (PadN filling it); length field = len8 - 1. */
function dstopts(next: number, len8: number): Buffer {
  const b = Buffer.alloc(len8 * 8);
  b[0] = next;
  b[1] = len8 - 1;
  b[2] = 0x01; // PadN
  b[3] = b.length - 4;
  return b;
}

/** An Ethernet frame arriving from SRC:sport at DST:dport, IPv6 with `exts` before TCP. */
function frame(firstNext: number, exts: Buffer[], sport: number, dport: number): Buffer {
  const tcp = Buffer.alloc(20 + 10);
  tcp.writeUInt16BE(sport, 0);
  tcp.writeUInt16BE(dport, 2);
  tcp[12] = 5 << 4;
  tcp[13] = 0x18; // PSH|ACK
  const payload = Buffer.concat([...exts, tcp]);
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(payload.length, 4);
  ip[6] = firstNext;
  ip[7] = 64;
  SRC.copy(ip, 8);
  DST.copy(ip, 24);
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(0x86dd, 12);
  return Buffer.concat([eth, ip, payload]);
}

function key(lport: number, rport: number): Buffer {
  const k = Buffer.alloc(FLOW_KEY.size);
  k[FLOW_KEY.fields.family.offset] = AF_INET6;
  k[FLOW_KEY.fields.proto.offset] = IPPROTO_TCP;
  k.writeUInt16LE(lport, FLOW_KEY.fields.lport.offset);
  k.writeUInt16LE(rport, FLOW_KEY.fields.rport.offset);
  DST.copy(k, FLOW_KEY.fields.laddr.offset);
  SRC.copy(k, FLOW_KEY.fields.raddr.offset);
  return k;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

describe('classifier: IPv6 extension headers are sized by their own type (AH in 4-byte words)', privileged({ timeout: 60_000 }), () => {
  let obj: BpfObject;
  const runner = new TcTestRunner();

  before(() => {
    obj = BpfObject.open(path.join(ROOT, 'build/bpf/flows.bpf.o'));
    obj.setMaxEntries(MAP.flows, 1024);
    obj.load();
    const v = Buffer.alloc(IFACE.size);
    writeUint(v, IFACE.fields.ifindex, 1); // BPF_PROG_TEST_RUN runs on loopback, Ethernet-framed
    writeUint(v, IFACE.fields.l2_len, 14);
    obj.map(MAP.ifaces).update(u32(1), v);
  });
  after(() => obj?.close());

  const cases: Array<[string, number, Buffer[], number, number]> = [
    // AH sized as an 8-byte-unit header would read 40 bytes instead of 24.
    ['AH (24 bytes) then TCP', IPPROTO_AH, [ah(IPPROTO_TCP, 3)], 443, 40001],
    // Destination Options of 16 bytes sized by AH's rule (the header after it) would be 12.
    ['Destination Options (16 bytes) then AH then TCP', IPPROTO_DSTOPTS, [dstopts(IPPROTO_AH, 2), ah(IPPROTO_TCP, 3)], 443, 40002],
    ['AH then Destination Options (24 bytes) then TCP', IPPROTO_AH, [ah(IPPROTO_DSTOPTS, 1), dstopts(IPPROTO_TCP, 3)], 8443, 40003],
  ];
  for (const [name, first, exts, sport, dport] of cases) {
    test(name, () => {
      const f = frame(first, exts, sport, dport);
      const runs = 3;
      const r = runner.run(obj.progFd('tc_ingress'), 'tc', f, runs);
      assert.equal(r.retval, -1); // TC_ACT_UNSPEC
      const v = obj.map(MAP.flows).lookup(key(dport, sport));
      assert.ok(v, `no flow keyed by the TCP ports ${sport} -> ${dport} written after the headers`);
      const vv = new DataView(v.buffer, v.byteOffset, v.length);
      assert.equal(Number(vv.getBigUint64(FLOW.fields.rx_packets.offset, true)), runs);
      assert.equal(Number(vv.getBigUint64(FLOW.fields.rx_bytes.offset, true)), runs * (f.length - 14), 'the IP bytes of every frame');
    });
  }
});
