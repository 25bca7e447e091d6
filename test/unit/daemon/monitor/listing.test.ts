// SPDX-License-Identifier: Apache-2.0
// History's listings of changes (FlowTable.listChanges) leave out the closed flows whose
// final counts the close event the kernel queued gives history (the flow value's close_sum,
// flows.ts noteChanged()), whether or not a refresh read the flow open before, and however
// many closes come between two refreshes; and they still list a closed flow whose counts
// grew after its close event, or whose event could not be queued (close_sum 0). Over
// FakeFlowMap (the kernel's table) and a dirty ring whose pushes the test makes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BpfMap } from '../../../../daemon/src/bpf/maps.js';
import type { DirtyRing } from '../../../../daemon/src/monitor/dirty.js';
import { FlowTable, type Flow } from '../../../../daemon/src/monitor/flows.js';
import { keyString } from '../../../../daemon/src/monitor/ownerindex.js';
import { FLOW, FLOW_KEY, OWNER } from '../../../../daemon/src/monitor/wire.js';
import { FakeFlowMap } from '../../../helpers/fake-flow-map.js';

const F = FLOW.fields;
const SEC = 1_000_000_000n;

/** The dirty ring's reader as FlowTable uses it: the test pushes keys. */
class FakeDirty {
  keys = new Map<string, number>();
  epoch = 1;
  readonly stats = { records: 0, epochs: 0 };
  async advance(): Promise<number> {
    return ++this.epoch;
  }
  take(): Map<string, number> {
    const out = this.keys;
    this.keys = new Map();
    return out;
  }
  push(k: Buffer): void {
    this.keys.set(keyString(k, 0), 0);
  }
}

function keyOf(lport: number, v6 = false): Buffer {
  const k = Buffer.alloc(FLOW_KEY.size);
  k[FLOW_KEY.fields.family.offset] = v6 ? 10 : 2;
  k[FLOW_KEY.fields.proto.offset] = 6;
  k.writeUInt16LE(lport, FLOW_KEY.fields.lport.offset);
  k.writeUInt16LE(9000, FLOW_KEY.fields.rport.offset);
  k.writeUInt32BE(0xc6120101, FLOW_KEY.fields.laddr.offset);
  k.writeUInt32BE(0xc6120102, FLOW_KEY.fields.raddr.offset);
  if (v6) k.writeUInt32BE(0xfd000198, FLOW_KEY.fields.raddr.offset + 12);
  return k;
}

/** A flow value: `bytes` sent in `pkts` packets, closed at `closedNs` (0n: open), its close
 * event queued with counts summing to `closeSum` (0: none queued; emit_close() in
 * bpf/sockets.bpf.c). */
function valueOf(nowNs: bigint, bytes: number, pkts: number, closedNs: bigint, closeSum = 0): Buffer {
  const v = Buffer.alloc(FLOW.size);
  v.writeBigUInt64LE(nowNs - SEC, F.first_ns.offset);
  v.writeBigUInt64LE(nowNs, F.last_ns.offset);
  v.writeBigUInt64LE(closedNs, F.closed_ns.offset);
  v.writeBigUInt64LE(BigInt(closeSum), F.close_sum.offset);
  v.writeBigUInt64LE(BigInt(bytes), F.tx_bytes.offset);
  v.writeBigUInt64LE(BigInt(pkts), F.tx_packets.offset);
  v.writeUInt32LE(1, F.ifindex.offset);
  v[F.direction.offset] = 1;
  v[F.sock_state.offset] = closedNs ? 7 : 1;
  const ow = F.owner.offset;
  v.writeUInt32LE(4242, ow + OWNER.fields.tgid.offset);
  v.writeUInt32LE(4242, ow + OWNER.fields.pid.offset);
  v.write('client', ow + OWNER.fields.comm.offset, 15, 'latin1');
  v[ow + OWNER.fields.how.offset] = 2;
  return v;
}

async function listing(t: FlowTable): Promise<{ full: boolean; ports: number[] }> {
  const ports: number[] = [];
  let full: boolean | null = null;
  await t.listChanges({ begin: (f) => (full = f), gone: () => {}, flow: (f: Flow) => ports.push(f.localPort ?? -1) });
  return { full: full!, ports: ports.sort((a, b) => a - b) };
}

test('a listing of changes leaves out the closes whose event carried their counts (read open before or not, thousands between two refreshes) and lists the rest', async () => {
  const now = 1_000_000n * SEC;
  const m = new FakeFlowMap();
  const ring = new FakeDirty();
  const t = new FlowTable(m as unknown as BpfMap, () => 'veth0', { lookup: () => undefined }, { closedRetentionMs: 600_000, idleTimeoutMs: 600_000, tcpIdleTimeoutMs: 600_000, clockNs: () => now }, null, null);
  t.useDirty(ring as unknown as DirtyRing, () => 0, 1 << 22, 2);
  /** The flow as the kernel leaves it: counted, and when `closed`, closed with its event
   * queued carrying `eventBytes`/`eventPkts` (null: the ring had no room for the event). */
  const put = (k: Buffer, bytes: number, pkts: number, closed: boolean, event: [number, number] | null = [bytes, pkts]) => {
    m.update(k, valueOf(now, bytes, pkts, closed ? now : 0n, closed && event ? event[0] + event[1] : 0));
    ring.push(k);
  };
  // A long flow, open before the first listing (full), which fills the table's copy.
  const long = keyOf(1000);
  put(long, 100, 1, false);
  const first = await listing(t);
  assert.deepEqual(first, { full: true, ports: [1000] });

  // 1. Opened and closed between two refreshes, its event queued with its counts.
  const a = keyOf(2001);
  put(a, 700, 5, true);
  // 2. Read open by a refresh, then closed with its event: the later read takes it out.
  const b = keyOf(2002, true);
  put(b, 500, 4, false);
  await t.catchUp();
  put(b, 800, 6, true);
  // 3. Its counts grew after its close event (a late segment): listed.
  const c = keyOf(2003);
  put(c, 900, 7, true, [850, 6]);
  // 4. Closed, but its event could not be queued (ring full): listed, history has nothing else.
  const d = keyOf(2004);
  put(d, 100, 1, true, null);
  // 5. Thousands of closes between two refreshes, events queued.
  for (let p = 10_000; p < 10_000 + 9_000; p++) put(keyOf(p, p % 2 === 0), p, 3, true);
  // 6. The long flow carried more: listed.
  put(long, 200, 2, false);

  const second = await listing(t);
  assert.equal(second.full, false, 'a listing of changes');
  assert.deepEqual(second.ports, [1000, 2003, 2004], 'listed: the long flow, the close whose counts grew, the close without an event');

  // Nothing carries over: the next listing, with nothing new, lists nothing.
  const third = await listing(t);
  assert.deepEqual(third, { full: false, ports: [] });
});
