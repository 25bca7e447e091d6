// SPDX-License-Identifier: Apache-2.0
// DNS over TCP (RFC 1035 4.2.2, RFC 7766): each message is preceded by its length in two
// bytes, and messages follow each other on the connection. A StreamSink that cuts one
// direction's bytes into messages. Bounded: one message (at most 64 KiB) is gathered at a
// time; a hole inside a message drops that message (counted) and the next length prefix
// is found again after it when the hole's size is known to end the message, else the rest
// of the connection is given up (counted: a TCP DNS connection carries a few messages).
import type { StreamSink } from '../stream.js';

export interface DnsTcpCounters {
  messages: number;
  /** Messages a hole cut into. */
  lostMessages: number;
  /** Connections whose framing was lost for good. */
  framingLost: number;
}

export class DnsTcpFramer implements StreamSink {
  private len = -1;
  private lenBuf: number[] = [];
  private buf: Uint8Array | null = null;
  private have = 0;
  /** Bytes of a message to skip (a hole fell into it). */
  private skip = 0;
  private lost = false;

  constructor(private readonly onMessage: (m: Uint8Array, tsNs: number) => void, private readonly counters: DnsTcpCounters) {}

  data(bytes: Uint8Array, _seq: number, tsNs: number, _ack?: number): void {
    let i = 0;
    while (i < bytes.length && !this.lost) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, bytes.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      if (this.len < 0) {
        this.lenBuf.push(bytes[i++]!);
        if (this.lenBuf.length === 2) {
          this.len = (this.lenBuf[0]! << 8) | this.lenBuf[1]!;
          this.lenBuf = [];
          this.buf = new Uint8Array(this.len);
          this.have = 0;
        }
        continue;
      }
      const n = Math.min(this.len - this.have, bytes.length - i);
      this.buf!.set(bytes.subarray(i, i + n), this.have);
      this.have += n;
      i += n;
      if (this.have === this.len) {
        this.counters.messages++;
        const m = this.buf!;
        this.len = -1;
        this.buf = null;
        this.onMessage(m, tsNs);
      }
    }
  }

  hole(n: number, _why?: string, _seq?: number, _tsNs?: number): void {
    if (this.lost) return;
    if (this.len >= 0 && this.have + n <= this.len) {
      // Inside one message: that message is gone, the framing is not.
      this.counters.lostMessages++;
      this.skip = this.len - this.have - n;
      this.len = -1;
      this.buf = null;
      return;
    }
    this.counters.framingLost++;
    this.lost = true;
    this.buf = null;
  }
}
