// SPDX-License-Identifier: Apache-2.0
// One direction of a byte stream rebuilt from captured pieces: TCP segments as the
// classifier copied them (a sequence number, the payload length on the wire, and the first
// bytes of it), or SSL_read/SSL_write calls (a stream offset the uprobe keeps per
// connection). Hands the consumer the bytes in order, and says explicitly where bytes are
// missing, how many, and why: not captured (the kernel copied a prefix only), or lost
// (a segment or record never arrived, or arrived too late). Consumers decide what a hole
// means for them (nothing in a body of known length; a lost message in a header).
//
// Bounded: at most `maxHeldSegments` segments and `maxHeldBytes` bytes wait for a hole to
// fill; past either bound, or once a hole is older than `holdNs`, the hole is given up
// (reported as lost) and the stream goes on after it.

export interface Piece {
  /** Sequence number (mod 2^32) of the first payload byte. */
  seq: number;
  /** Payload bytes the piece stands for on the wire. */
  len: number;
  /** The captured prefix of those bytes (length <= len). */
  data: Uint8Array;
  /** Capture time, ns (any monotonic clock; only differences are used). */
  tsNs: number;
  /** TCP acknowledgment number the piece carried (what the sender had received of the
   * other direction), when known. */
  ack?: number;
}

export interface StreamSink {
  /** In-order bytes starting at sequence number `seq`, from a piece captured at `tsNs`
   * that carried acknowledgment `ack` (undefined when unknown). */
  data(bytes: Uint8Array, seq: number, tsNs: number, ack: number | undefined): void;
  /** `n` bytes exist at `seq` but their content is unknown. */
  hole(n: number, why: 'uncaptured' | 'lost', seq: number, tsNs: number): void;
}

export interface StreamCounters {
  /** Pieces (or parts of them) seen again: TCP retransmissions. */
  duplicates: number;
  /** Pieces that arrived ahead of a hole and waited. */
  reordered: number;
  /** Holes given up on, and the bytes in them. */
  holesLost: number;
  bytesLost: number;
  /** Bytes not captured (beyond the kernel's copy). */
  bytesUncaptured: number;
}

export interface StreamLimits {
  maxHeldSegments: number;
  maxHeldBytes: number;
  holdNs: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = { maxHeldSegments: 32, maxHeldBytes: 64 * 1024, holdNs: 200e6 };

/** a - b as a signed 32-bit sequence distance. */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

export class Stream {
  /** Next expected sequence number; undefined before the first piece. */
  private next: number | undefined;
  private held: Piece[] = [];
  private heldBytes = 0;
  private holeSinceNs = 0;

  constructor(
    private readonly sink: StreamSink,
    private readonly counters: StreamCounters,
    private readonly limits: StreamLimits = DEFAULT_STREAM_LIMITS,
  ) {}

  /** Bytes held waiting for a hole (for memory accounting). */
  get heldByteCount(): number {
    return this.heldBytes;
  }

  /** Sequence number the stream expects next (undefined before the first piece). */
  get position(): number | undefined {
    return this.next;
  }

  push(p: Piece): void {
    if (p.len <= 0) return;
    if (this.next === undefined) this.next = p.seq >>> 0;
    const d = seqDiff(p.seq, this.next);
    if (d > 0) {
      // Ahead of a hole: hold it (ordered by seq), unless over the bounds.
      if (this.held.length === 0) this.holeSinceNs = p.tsNs;
      this.insertHeld(p);
      this.counters.reordered++;
      this.enforceLimits(p.tsNs);
      return;
    }
    this.deliver(p);
    this.drainHeld();
    if (this.held.length) this.enforceLimits(p.tsNs);
  }

  /**
   * The bytes before `seq` that were not delivered yet were deliberately not captured (the
   * kernel's budget was spent): reports them as such at once instead of waiting for them.
   */
  skipTo(seq: number, tsNs: number): void {
    if (this.next === undefined) {
      this.next = seq >>> 0;
      return;
    }
    const gap = seqDiff(seq, this.next);
    if (gap <= 0) return;
    this.counters.bytesUncaptured += gap;
    this.sink.hole(gap, 'uncaptured', this.next, tsNs);
    this.next = seq >>> 0;
    this.drainHeld();
  }

  /** Gives up on every hole: delivers what is held, holes reported as lost (flow end). */
  flush(): void {
    while (this.held.length) this.skipToFirstHeld(this.held[0]!.tsNs);
  }

  private insertHeld(p: Piece): void {
    // Held past this call: copy (a piece's bytes may be a view of the ring buffer).
    p = { ...p, data: p.data.slice() };
    let i = this.held.length;
    while (i > 0 && seqDiff(this.held[i - 1]!.seq, p.seq) > 0) i--;
    this.held.splice(i, 0, p);
    this.heldBytes += p.data.length;
  }

  private enforceLimits(nowNs: number): void {
    while (
      this.held.length &&
      (this.held.length > this.limits.maxHeldSegments || this.heldBytes > this.limits.maxHeldBytes || nowNs - this.holeSinceNs > this.limits.holdNs)
    ) {
      this.skipToFirstHeld(nowNs);
    }
  }

  private skipToFirstHeld(nowNs: number): void {
    const first = this.held[0]!;
    const gap = seqDiff(first.seq, this.next!);
    if (gap > 0) {
      this.counters.holesLost++;
      this.counters.bytesLost += gap;
      this.sink.hole(gap, 'lost', this.next!, first.tsNs);
      this.next = (this.next! + gap) >>> 0;
    }
    this.drainHeld();
    this.holeSinceNs = nowNs;
  }

  private drainHeld(): void {
    while (this.held.length && seqDiff(this.held[0]!.seq, this.next!) <= 0) {
      const p = this.held.shift()!;
      this.heldBytes -= p.data.length;
      this.deliver(p);
    }
  }

  /** Delivers the part of `p` at or after `next`. */
  private deliver(p: Piece): void {
    const skip = -seqDiff(p.seq, this.next!); // bytes of p already delivered
    if (skip >= p.len) {
      this.counters.duplicates++;
      return;
    }
    if (skip > 0) this.counters.duplicates++;
    const captured = p.data.length;
    if (skip < captured) this.sink.data(skip ? p.data.subarray(skip) : p.data, this.next!, p.tsNs, p.ack);
    const uncaptured = p.len - Math.max(skip, captured);
    if (uncaptured > 0) {
      this.counters.bytesUncaptured += uncaptured;
      this.sink.hole(uncaptured, 'uncaptured', (p.seq + p.len - uncaptured) >>> 0, p.tsNs);
    }
    this.next = (this.next! + p.len - skip) >>> 0;
  }
}

export function newStreamCounters(): StreamCounters {
  return { duplicates: 0, reordered: 0, holesLost: 0, bytesLost: 0, bytesUncaptured: 0 };
}
