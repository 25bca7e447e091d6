// SPDX-License-Identifier: Apache-2.0
// A ring-buffer record as a BusEvent (events/bus.ts): type, pid and uid read from the bytes
// at once (subscribers filter on them), the object, its JSON and its row each built only if a
// subscriber asks, at most once. One instance is reused for every record: it is valid while
// the bus publishes it, which is while the reader holds the record. Its forms carry
// remoteGeo and the owner's identity themselves (decoder.ts), so the bus need not complete
// them (`complete`), and a filter on identity reads the owner without decoding the record.
import type { EventType, MonitorEvent } from '../contract/events.js';
import type { OwnerIdentity } from '../contract/identity.js';
import type { BusEvent, CloseFacts } from '../events/bus.js';
import { decodeCloseFacts, decodeEvent, encodeRow, encodeRowInto, ownerOffset, recordOwner, type DecodeContext } from './decoder.js';
import { EV, EVENT_EXEC, EVENT_EXIT, OWNER, ownedByProcess } from './wire.js';

export class RecordEvent implements BusEvent {
  type: EventType = 'close';
  pid: number | null = null;
  uid: number | null = null;
  readonly complete = true;
  private recordType = 0;
  private v: DataView | null = null;
  private off = 0;
  private len = 0;
  private obj: MonitorEvent | null = null;
  private jsonText: string | null = null;
  private rowText: string | null = null;
  /** Where rowInto() last wrote this record's row (a second subscriber copies it). */
  private rowAt: Uint8Array | null = null;
  private rowStart = 0;
  private rowEnd = 0;

  constructor(private readonly ctx: DecodeContext) {}

  /** Points the view at a record the decoder can read (decodable()); `type` is its event type. */
  set(v: DataView, off: number, len: number, recordType: number, type: EventType): this {
    this.v = v;
    this.off = off;
    this.len = len;
    this.type = type;
    this.recordType = recordType;
    this.obj = null;
    this.jsonText = null;
    this.rowText = null;
    this.rowAt = null;
    const o = ownerOffset(recordType);
    if (o !== null) {
      const owned = ownedByProcess(v.getUint8(off + o + OWNER.fields.how.offset));
      this.pid = owned ? v.getUint32(off + o + OWNER.fields.tgid.offset, true) : null;
      this.uid = owned ? v.getUint32(off + o + OWNER.fields.uid.offset, true) : null;
    } else if (recordType === EV.EXEC) {
      this.pid = v.getUint32(off + EVENT_EXEC.fields.tgid.offset, true);
      this.uid = v.getUint32(off + EVENT_EXEC.fields.uid.offset, true);
    } else {
      this.pid = v.getUint32(off + EVENT_EXIT.fields.tgid.offset, true);
      this.uid = v.getUint32(off + EVENT_EXIT.fields.uid.offset, true);
    }
    return this;
  }

  owner(): OwnerIdentity {
    return recordOwner(this.v!, this.off, this.recordType, this.ctx).identity;
  }

  event(): MonitorEvent {
    return (this.obj ??= decodeEvent(this.v!, this.off, this.len, this.ctx)!);
  }

  closeFacts(into?: CloseFacts): CloseFacts | null {
    return this.recordType === EV.CLOSE ? decodeCloseFacts(this.v!, this.off, this.len, this.ctx, into) : null;
  }

  json(): string {
    return (this.jsonText ??= JSON.stringify(this.event()));
  }

  row(): string {
    return (this.rowText ??= encodeRow(this.v!, this.off, this.len, this.ctx)!);
  }

  rowInto(d: Uint8Array, p: number): number {
    const from = this.rowAt;
    if (from !== null) {
      const n = this.rowEnd - this.rowStart;
      if (p + n > d.length) return -1;
      if (from === d) d.copyWithin(p, this.rowStart, this.rowEnd);
      else d.set(from.subarray(this.rowStart, this.rowEnd), p);
      return p + n;
    }
    const end = encodeRowInto(this.v!, this.off, this.len, this.ctx, d, p);
    if (end >= 0) {
      this.rowAt = d;
      this.rowStart = p;
      this.rowEnd = end;
    }
    return end;
  }
}
