// SPDX-License-Identifier: Apache-2.0
// Closes beyond the detail budget, summed on the event loop. Why here and not in the writer
// thread: at 10,000 closes/s almost every close is beyond the budget, and packing each one
// (a 128-byte row, a string id per field), transferring it, reading it back in the writer
// and collecting the garbage cost more than the rows those closes end up as (bench/history,
// docs/history.md "Fourth round"). Here such a close costs a token check, a hash of its ports
// and remote address and a few set lookups (below), a lookup by pid and four additions into
// a slot that lives until the next hand-over; the writer gets one packed
// row per process, protocol, family and minute (OP.rollup) instead of a row per flow.
//
// What must not be summed here: a close of a flow the writer tracks (listed while open, or
// restored from a previous run: its open records already counted part of its bytes; only the
// accountant knows what is left). The writer's tracked set is not visible from here, so a
// close goes to the writer whenever its key (ports and remote address) matches a flow of the
// last three listings (the writer forgets a listed flow after two listings that miss it), a
// flow the writer restored (it sends their keys once it is open: until then every close goes
// to it). A collision only sends a close the general way, which is always right. Ports alone
// collided too often: with ephemeral local ports and a handful of remote ports, the keys of
// recent closes matched a large part of the closes beyond the budget (bench/history, default
// budget, first attempt). Closes kept in detail are not remembered: the kernel reports one
// close per socket (sockets.bpf.c, the move to TCP_CLOSE), and a tuple closed again is a
// new flow. The token comes first, so a close within the budget costs no key.
import { strHash, type ObservationPacker, type RollupSums } from './pack.js';
import type { FlowObservation } from './types.js';

/** A flow's ports and remote address as one integer (null ports as 65535; a collision only
 * costs the general path). */
export function flowKey32(localPort: number | null, remotePort: number | null, remoteAddr: string): number {
  const h = Math.imul(((localPort ?? 65535) << 16) ^ (remotePort ?? 65535), 0x9e3779b1) ^ strHash(remoteAddr);
  return (h ^ (h >>> 15)) | 0;
}

/** The sum of one process's closes of one protocol and family in one minute since the last
 * hand-over. Interface, direction and attribution are kept while all its flows agree (null
 * once they differ): the key is the process, not the path. */
interface Slot extends RollupSums {
  minute: number;
}

const LISTINGS_KEPT = 3;

export class CloseRollups {
  private tokens = 0;
  private refilledAt = -Infinity;
  private readonly slots = new Map<number, Slot[]>();
  private rows = 0;
  /** Keys (flowKey32) of the flows the last listings showed ([0]: the listing being read). */
  private listings: Array<Set<number>> = [new Set()];
  /** Keys of the flows the writer restored, until three listings have passed. */
  private restored = new Set<number>();
  private restoredFor = 0;
  /** The writer told what it tracks: until then every close goes to it. */
  private ready = false;

  constructor(private readonly perSec: number, private readonly burst: number) {}

  /** The writer thread (re)opened its store and tracks flows with these keys. */
  writerReady(keys: number[]): void {
    this.restored = new Set(keys);
    this.restoredFor = 0;
    this.ready = true;
  }

  /** A new writer thread: nothing is summed until it tells what it tracks. */
  writerGone(): void {
    this.ready = false;
  }

  /** Rows waiting for the next drain (one per slot). */
  get pendingRows(): number {
    return this.rows;
  }

  private known(k: number): boolean {
    if (this.restored.has(k)) return true;
    for (const s of this.listings) if (s.has(k)) return true;
    return false;
  }

  private takeToken(now: number): boolean {
    if (now > this.refilledAt) {
      this.tokens = this.refilledAt === -Infinity ? this.burst : Math.min(this.burst, this.tokens + ((now - this.refilledAt) * this.perSec) / 1000);
      this.refilledAt = now;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  /** A close: true when it was summed here (beyond the budget), false when the caller must
   * pack it for the writer (within the budget, or a flow the writer may track). */
  close(o: FlowObservation, now: number): boolean {
    if (!this.ready || this.takeToken(now)) return false;
    if (this.known(flowKey32(o.localPort, o.remotePort, o.remoteAddr))) return false;
    const at = o.closedMs ?? now;
    const minute = Math.floor(at / 60_000);
    const pk = o.pid ?? -1;
    let slots = this.slots.get(pk);
    if (slots === undefined) this.slots.set(pk, (slots = []));
    let s: Slot | undefined;
    for (let i = 0; i < slots.length; i++) {
      const x = slots[i]!;
      if (x.minute === minute && x.proto === o.proto && x.family === o.family && x.comm === o.comm && x.uid === o.uid && x.exe === o.exe && x.cgroupId === o.cgroupId && x.unit === (o.unit ?? null)) {
        s = x;
        break;
      }
    }
    if (s === undefined) {
      s = {
        minute, pid: o.pid, comm: o.comm, uid: o.uid, exe: o.exe, cgroupId: o.cgroupId, unit: o.unit ?? null, proto: o.proto, family: o.family,
        iface: o.interface, direction: o.direction, how: o.attributedBy, at, firstMs: o.firstMs, endMs: at, conns: 0, tx: 0, rx: 0, txp: 0, rxp: 0,
      };
      slots.push(s);
      this.rows++;
    } else {
      if (s.iface !== o.interface) s.iface = null;
      if (s.direction !== o.direction) s.direction = null;
      if (s.how !== o.attributedBy) s.how = null;
      if (o.firstMs < s.firstMs) s.firstMs = o.firstMs;
      if (at > s.endMs) s.endMs = at;
    }
    s.conns++;
    s.tx += o.txBytes;
    s.rx += o.rxBytes;
    s.txp += o.txPackets;
    s.rxp += o.rxPackets;
    return true;
  }

  /** A listing begins (its flows are noted as they are packed: listed()). */
  beginListing(): void {
    this.listings.unshift(new Set());
    if (this.listings.length > LISTINGS_KEPT + 1) this.listings.length = LISTINGS_KEPT + 1;
  }

  listed(o: FlowObservation): void {
    this.listings[0]!.add(flowKey32(o.localPort, o.remotePort, o.remoteAddr));
  }

  /** A listing is complete: the restored flows are covered by listings after three. */
  endListing(): void {
    if (this.restored.size && ++this.restoredFor >= LISTINGS_KEPT) this.restored = new Set();
  }

  /** Packs the sums as OP.rollup rows (before a hand-over, and before a listing's rows, so
   * that the writer's watermark covers these closes when it reads the listing). */
  drain(p: ObservationPacker): void {
    if (this.rows === 0) return;
    for (const slots of this.slots.values()) for (const s of slots) p.addRollup(s);
    this.slots.clear();
    this.rows = 0;
  }
}
