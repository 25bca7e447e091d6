// SPDX-License-Identifier: Apache-2.0
// emon_flows as the kernel keeps it, with the calls FlowTable makes (batch walks and
// lookups counted), for unit tests of the flow table without a kernel; and its batch reader.
import { keyBytes } from '../../daemon/src/monitor/ownerindex.js';
import { FLOW, FLOW_KEY } from '../../daemon/src/monitor/wire.js';

export class FakeFlowMap {
  readonly entries = new Map<string, Buffer>();
  walks = 0;
  lookups = 0;
  readonly valueBytes = FLOW.size;
  readonly keySize = FLOW_KEY.size;
  readonly maxEntries = 1 << 20;

  async forEachChunkAsync(onChunk: (c: { keys: Buffer; values: Buffer; count: number }) => void, chunk = 4096): Promise<void> {
    this.walks++;
    const all = [...this.entries];
    for (let i = 0; i < all.length; i += chunk) {
      const part = all.slice(i, i + chunk);
      const keys = Buffer.concat(part.map(([k]) => Buffer.from(k, 'hex')));
      const values = Buffer.concat(part.map(([, v]) => v));
      onChunk({ keys, values, count: part.length });
      await new Promise((r) => setImmediate(r));
    }
  }

  lookup(key: Uint8Array, out: Buffer = Buffer.alloc(FLOW.size)): Buffer | null {
    this.lookups++;
    const v = this.entries.get(hexKey(key));
    if (!v) return null;
    v.copy(out);
    return out;
  }

  update(key: Uint8Array, value: Uint8Array): void {
    this.entries.set(hexKey(key), Buffer.from(value.subarray(0, FLOW.size)));
  }

  deleteBatch(keys: Buffer, count: number): number {
    let n = 0;
    for (let i = 0; i < count; i++) if (this.entries.delete(keys.subarray(i * FLOW_KEY.size, (i + 1) * FLOW_KEY.size).toString('hex'))) n++;
    return n;
  }

  /**
   * What FlowBatchReader does with bpf/flowread.bpf.c, over this table: read() looks up
   * each key (counted as lookups), take() hands out what was found. The run numbered
   * `failAt` (1-based) and every later one throw, as a run the kernel refused would.
   */
  batchReader(failAt = Infinity): { read(keys: readonly string[], from: number, n: number): void; take(j: number, vb: Uint8Array, kb?: Uint8Array): boolean } {
    const slots: Array<Buffer | null> = [];
    const keyOf: Buffer[] = [];
    let runs = 0;
    return {
      read: (keys, from, n) => {
        if (++runs >= failAt) throw new Error('running read_flows: Operation not permitted (fake)');
        slots.length = 0;
        keyOf.length = 0;
        for (let j = 0; j < n; j++) {
          keyOf.push(keyBytes(keys[from + j]!));
          const v = this.lookup(keyOf[j]!);
          slots.push(v ? Buffer.from(v) : null);
        }
      },
      take: (j, vb, kb) => {
        kb?.set(keyOf[j]!);
        const v = slots[j];
        if (!v) return false;
        vb.set(v);
        return true;
      },
    };
  }

  clone(): FakeFlowMap {
    const m = new FakeFlowMap();
    for (const [k, v] of this.entries) m.entries.set(k, Buffer.from(v));
    return m;
  }
}

function hexKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, FLOW_KEY.size).toString('hex');
}
