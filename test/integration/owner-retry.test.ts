// SPDX-License-Identifier: Apache-2.0
// The classifier's owner retry for unowned flows (bpf/flows.bpf.c retry_due): during a
// flow's first second it looks for the owner on the first packet of every tick (an accept
// or a late bind races with the first packets); after that once per retry window (about a
// quarter of a second), so forwarded traffic, which no local socket owns, stops paying the
// owner lookups on every tick. The real classifier (build/bpf/flows.bpf.o) runs on packets
// through BPF_PROG_TEST_RUN with the kernel's own jiffies; the owner appears as a listener's
// bind in emon_binds, as the socket probes write it. Truth: the flow's owner and flags as
// the map holds them, and the times this test waited.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { privileged } from '../helpers/privileged.js';
import { ROOT } from '../helpers/cc.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { writeUint } from '../../daemon/src/bpf/layout.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { FLOW, FLOW_KEY, IFACE, OWNER } from '../../daemon/src/monitor/wire.js';
import { TcTestRunner } from '../../bench/classifier/testrun.js';
import { tcp4 } from '../../bench/classifier/packets.js';
import { bindWildcard } from '../../bench/classifier/owners.js';

const PSH_ACK = 0x18; // never a new connection on an existing tuple
const EMON_FLOW_F_UNOWNED = 1 << 3;
const EMON_HOW_BIND = 4;
/** A tick is at most 10 ms (HZ >= 100): waiting this long puts the next packet in a new one. */
const NEXT_TICK_MS = 12;

/** tcp4()'s frame leaving from local port `lport` (198.18.0.1:lport -> 198.18.0.2:443). */
function frameFrom(lport: number): Buffer {
  const f = Buffer.from(tcp4(PSH_ACK));
  f.writeUInt16BE(lport, 14 + 20);
  return f;
}

function keyOf(lport: number): Buffer {
  const k = Buffer.alloc(FLOW_KEY.size);
  k[FLOW_KEY.fields.family.offset] = 2;
  k[FLOW_KEY.fields.proto.offset] = 6;
  k.writeUInt16LE(lport, FLOW_KEY.fields.lport.offset);
  k.writeUInt16LE(443, FLOW_KEY.fields.rport.offset);
  Buffer.from([198, 18, 0, 1]).copy(k, FLOW_KEY.fields.laddr.offset);
  Buffer.from([198, 18, 0, 2]).copy(k, FLOW_KEY.fields.raddr.offset);
  return k;
}

describe('owner retry of unowned flows: every tick in the first second, then once a window', privileged({ timeout: 60_000 }), () => {
  let obj: BpfObject;
  const runner = new TcTestRunner();
  const send = (lport: number) => assert.equal(runner.run(obj.progFd('tc_egress'), 'tc', frameFrom(lport), 1).retval, -1);
  const flow = (lport: number) => {
    const v = obj.map(MAP.flows).lookup(keyOf(lport));
    assert.ok(v, `flow from port ${lport} in emon_flows`);
    return { how: v[FLOW.fields.owner.offset + OWNER.fields.how.offset]!, tgid: v.readUInt32LE(FLOW.fields.owner.offset + OWNER.fields.tgid.offset), unowned: (v[FLOW.fields.flags.offset]! & EMON_FLOW_F_UNOWNED) !== 0 };
  };

  before(() => {
    obj = BpfObject.open(path.join(ROOT, 'build/bpf/flows.bpf.o'));
    obj.load();
    const v = Buffer.alloc(IFACE.size);
    writeUint(v, IFACE.fields.ifindex, 1); // BPF_PROG_TEST_RUN runs on loopback, Ethernet-framed
    writeUint(v, IFACE.fields.l2_len, 14);
    const k = Buffer.alloc(4);
    k.writeUInt32LE(1);
    obj.map(MAP.ifaces).update(k, v);
  });
  after(() => obj?.close());

  test('a young flow takes an owner learned after it on its first packet of the next tick', async () => {
    send(41000);
    assert.deepEqual(flow(41000), { how: 0, tgid: 0, unowned: true });
    bindWildcard(obj, 41000, 5001);
    await sleep(NEXT_TICK_MS);
    send(41000);
    assert.deepEqual(flow(41000), { how: EMON_HOW_BIND, tgid: 5001, unowned: false });
  });

  test('a flow older than a second looks again once per window: not on the next tick, but within a second', async () => {
    const ports = [42001, 42002, 42003];
    // Age the flows past a second with packets in many ticks (last seen - first seen > 1 s).
    const start = Date.now();
    while (Date.now() - start < 1300) {
      for (const p of ports) send(p);
      await sleep(20);
    }
    for (const p of ports) assert.equal(flow(p).unowned, true, `port ${p} still unowned (nothing binds it yet)`);
    const rounds: Array<{ port: number; nextTick: boolean; ms: number }> = [];
    for (const port of ports) {
      await sleep(NEXT_TICK_MS);
      send(port); // its last tick is now
      bindWildcard(obj, port, 6000 + port);
      await sleep(NEXT_TICK_MS);
      send(port); // the first packet of the next tick: a retry only if a window began between
      const nextTick = !flow(port).unowned;
      const t0 = Date.now();
      while (flow(port).unowned && Date.now() - t0 < 3000) {
        await sleep(5);
        send(port);
      }
      rounds.push({ port, nextTick, ms: Date.now() - t0 });
      assert.deepEqual(flow(port), { how: EMON_HOW_BIND, tgid: 6000 + port, unowned: false }, `port ${port}: the owner arrived (${JSON.stringify(rounds)})`);
    }
    // A window is 2^5..2^8 ticks (64-320 ms at the usual HZ): the owner arrives within one,
    // with room for a loaded machine; the chance that a window began within each of three
    // one-tick gaps is below 1e-4, while a retry every tick takes the owner at once each time.
    assert.ok(rounds.every((r) => r.ms < 1000), `patched within a second: ${JSON.stringify(rounds)}`);
    assert.ok(rounds.some((r) => !r.nextTick), `not looked for on every tick once older than a second: ${JSON.stringify(rounds)}`);
  });
});
