// SPDX-License-Identifier: Apache-2.0
// Closes beyond the detail budget, summed on the event loop. Why here and not in the writer
// thread: at 10,000 closes/s almost every close is beyond the budget, and packing each one
// (a 128-byte row, a string id per field), transferring it, reading it back in the writer
// and collecting the garbage cost more than the rows those closes end up as (bench/history,
// docs/history.md "Fourth round"). Here such a close costs a token check, a comparison of its
// first-seen time (below), a lookup by pid and by remote address and four additions into
// a slot that lives until the next hand-over; the writer gets one packed row per process,
// protocol, family, minute and remote endpoint (OP.rollup) instead of a row per flow.
//
// The remote endpoint (its address and the service port: the remote port of a connection
// the process made, the local port of one it accepted, as Accountant.rollup keys them) is
// kept for the first REMOTES_PER_PROCESS endpoints of each process, and the first
// `maxEndpoints` in all (endpointsPerHandover), between two hand-overs; the closes to
// further endpoints are summed without it (an unspecified address, no ports). So `history
// --remote ADDR` and `--by remote` see what a busy process talked to, and processes that
// talk to thousands of endpoints a second (a scanner, a crawler, a load test) still make a
// bounded number of rows: an endpoint row costs what a detail row does, and there are at
// most a quarter as many as the detail budget allows flows (none at a budget of 0), beside
// one row per process. Totals stay exact either way: every close is in exactly one slot.
//
// What must not be summed here: a close of a flow the writer tracks (listed while open, or
// restored from a previous run: its open records already counted part of its bytes; only the
// accountant knows what is left). The writer's tracked set is not visible from here, but
// every flow it tracks open was in the flow table when a listing read it, or before this
// History started (restored): so a flow first seen after the end of the last listing (and
// after the start) cannot be one, and only such closes are summed here. Until the writer
// says it is open, and while a listing is being read (it may show any flow there is), every
// close goes to it. The general path is always right; the rule costs no memory per flow.
// It replaced a set of the ports and remote address of every flow of the last three
// listings: with incremental listings (only the flows that changed) an idle flow listed
// once stays tracked, and a set of every tracked flow would grow with the table (1M flows).
// Closes kept in detail are not remembered: the kernel reports one close per socket
// (sockets.bpf.c, the move to TCP_CLOSE), and a tuple closed again is a new flow. The token
// comes first, so a close within the budget costs one comparison more.
import type { ObservationPacker, RollupSums } from './pack.js';
import type { FlowObservation } from './types.js';

/** The sum of one process's closes of one protocol and family to one remote endpoint (or to
 * any, beyond the cap) in one minute since the last hand-over. Interface, direction,
 * attribution and the remote's name are kept while all its flows agree (null once they
 * differ): the key is the process and the endpoint, not the path. */
interface Slot extends RollupSums {
  minute: number;
}

/** One process's slots since the last hand-over, by remote address ('' for the slots
 * without one, beyond the cap); `remotes`: how many slots carry an endpoint. */
interface ProcSlots {
  byRemote: Map<string, Slot[]>;
  remotes: number;
}

/** Endpoints kept per process between two hand-overs (500 ms): beyond, closes are summed
 * without their endpoint. Also the writer's bound per process and commit (accountant.ts). */
export const REMOTES_PER_PROCESS = 32;
/** Endpoints kept in all between two hand-overs of `flushMs`: rows that cost what detail
 * flows do, so a quarter of what the detail budget (`perSec` flows a second) allows in that
 * time, at least REMOTES_PER_PROCESS; none at a budget of 0. Without a bound, bench/history's
 * 600 processes closing flows to 5,000 remotes at 10,000/s made a row of almost every close
 * (27,000 rows in 10 s at budget 0 against 3,700 without endpoints; docs/history.md). */
export function endpointsPerHandover(perSec: number, flushMs: number): number {
  return perSec > 0 ? Math.max(REMOTES_PER_PROCESS, Math.floor((perSec * flushMs) / 4000)) : 0;
}

/** The endpoint of a connection for a roll-up: its remote address and the port that names
 * the service, the local port of a connection accepted (true here), the remote port of one
 * made. One rule for every roll-up (Accountant.rollup, rollupProcess, the writer's closeFast). */
export function serviceSide(direction: string | null, attributedBy: string | null): boolean {
  return direction === 'inbound' || attributedBy === 'accept';
}

/** A close event's first-seen time (close time minus the flow's age) and a listing's (the
 * table's first_ns) are converted from the kernel's clock separately: a few ms apart, 29 ms
 * measured under load. The accountant's reuseToleranceMs: as far apart as one flow's two
 * observations may be. */
const FIRST_SEEN_SLACK_MS = 2000;

export class CloseRollups {
  private tokens = 0;
  private refilledAt = -Infinity;
  private readonly slots = new Map<number, ProcSlots>();
  private rows = 0;
  /** Slots that carry an endpoint, in all (at most `maxEndpoints`). */
  private endpoints = 0;
  /** The writer said it is open: until then every close goes to it. */
  private ready = false;
  /** A listing is being read. */
  private listing = false;

  /** `horizon`: flows first seen before this (wall ms) may be tracked by the writer; it
   * moves to the end of each listing. The default, now: restored flows are older. */
  constructor(private readonly perSec: number, private readonly burst: number, private horizon = Date.now(),
    private readonly maxEndpoints = endpointsPerHandover(perSec, 500)) {}

  /** The writer thread (re)opened its store and restored what it tracks. */
  writerReady(): void {
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
    if (this.listing || o.firstMs <= this.horizon + FIRST_SEEN_SLACK_MS) return false;
    const at = o.closedMs ?? now;
    const minute = Math.floor(at / 60_000);
    const pk = o.pid ?? -1;
    let p = this.slots.get(pk);
    if (p === undefined) this.slots.set(pk, (p = { byRemote: new Map(), remotes: 0 }));
    const inbound = serviceSide(o.direction, o.attributedBy);
    const port = inbound ? o.localPort : o.remotePort;
    let s = find(p.byRemote.get(o.remoteAddr), o, minute, inbound, port);
    if (s === undefined) {
      // A new endpoint while the process has room for one, else the slot without one.
      const keep = p.remotes < REMOTES_PER_PROCESS && this.endpoints < this.maxEndpoints;
      const raddr = keep ? o.remoteAddr : '';
      if (!keep) s = find(p.byRemote.get(''), o, minute, false, null);
      if (s === undefined) {
        s = {
          minute, pid: o.pid, comm: o.comm, uid: o.uid, exe: o.exe, cgroupId: o.cgroupId, unit: o.unit ?? null, proto: o.proto, family: o.family,
          remoteAddr: keep ? o.remoteAddr : null, inbound: keep && inbound, port: keep ? port : null, remoteName: keep ? o.remoteName ?? null : null,
          iface: o.interface, direction: o.direction, how: o.attributedBy, at, firstMs: o.firstMs, endMs: at, conns: 0, tx: 0, rx: 0, txp: 0, rxp: 0,
        };
        const list = p.byRemote.get(raddr);
        if (list === undefined) p.byRemote.set(raddr, [s]);
        else list.push(s);
        if (keep) {
          p.remotes++;
          this.endpoints++;
        }
        this.rows++;
      } else merge(s, o, at);
    } else merge(s, o, at);
    s.conns++;
    s.tx += o.txBytes;
    s.rx += o.rxBytes;
    s.txp += o.txPackets;
    s.rxp += o.rxPackets;
    return true;
  }

  /** A listing begins: until it ends, any flow may be in it. */
  beginListing(): void {
    this.listing = true;
  }

  /** The listing's reading ended at `now`: every flow it showed was first seen before. */
  endListing(now: number): void {
    this.listing = false;
    if (now > this.horizon) this.horizon = now;
  }

  /** Packs the sums as OP.rollup rows (before a hand-over, and before a listing's rows, so
   * that the writer's watermark covers these closes when it reads the listing). */
  drain(p: ObservationPacker): void {
    if (this.rows === 0) return;
    for (const proc of this.slots.values()) for (const slots of proc.byRemote.values()) for (const s of slots) p.addRollup(s);
    this.slots.clear();
    this.rows = 0;
    this.endpoints = 0;
  }
}

/** The slot in `list` for the close `o` (endpoint already matched by the list's address). */
function find(list: Slot[] | undefined, o: FlowObservation, minute: number, inbound: boolean, port: number | null): Slot | undefined {
  if (list === undefined) return undefined;
  for (let i = 0; i < list.length; i++) {
    const x = list[i]!;
    if (x.minute === minute && x.port === port && x.inbound === inbound && x.proto === o.proto && x.family === o.family && x.comm === o.comm && x.uid === o.uid
      && x.exe === o.exe && x.cgroupId === o.cgroupId && x.unit === (o.unit ?? null)) return x;
  }
  return undefined;
}

/** The path and the name are kept while every close summed agrees. */
function merge(s: Slot, o: FlowObservation, at: number): void {
  if (s.iface !== o.interface) s.iface = null;
  if (s.direction !== o.direction) s.direction = null;
  if (s.how !== o.attributedBy) s.how = null;
  if (s.remoteName !== (o.remoteName ?? null)) s.remoteName = null;
  if (o.firstMs < s.firstMs) s.firstMs = o.firstMs;
  if (at > s.endMs) s.endMs = at;
}
