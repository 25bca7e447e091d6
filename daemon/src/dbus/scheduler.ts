// SPDX-License-Identifier: Apache-2.0
// Fairness between D-Bus callers. Every call waits in its connection's queue; calls are
// started round-robin across connections, one per connection per turn, yielding to I/O
// between turns. A connection sending thousands of calls (the bus lets 128 of them wait
// per connection) is served one call per turn like everyone else, so any other caller's
// call starts within one turn of arriving, however expensive the flooder's calls are (a
// GetFlows dumps the flow table). Queues are bounded: beyond it, the caller is told Busy.

interface Queue {
  waiting: Array<() => Promise<void>>;
  running: number;
}

export class CallScheduler {
  private readonly queues = new Map<string, Queue>();
  private pumpScheduled = false;
  private closed = false;

  constructor(private readonly limits: { maxQueuedPerCaller: number; maxConcurrentPerCaller: number }) {}

  /** Calls waiting or running. */
  get size(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.waiting.length + q.running;
    return n;
  }

  /** Queues `job` for `sender`; false when its queue is full (answer Busy). */
  add(sender: string, job: () => Promise<void>): boolean {
    let q = this.queues.get(sender);
    if (!q) {
      q = { waiting: [], running: 0 };
      this.queues.set(sender, q);
    }
    if (q.waiting.length + q.running >= this.limits.maxQueuedPerCaller) return false;
    q.waiting.push(job);
    this.schedulePump();
    return true;
  }

  /** The connection is gone: its waiting calls would be answered to nobody. */
  drop(sender: string): void {
    const q = this.queues.get(sender);
    if (!q) return;
    q.waiting.length = 0;
    if (q.running === 0) this.queues.delete(sender);
  }

  close(): void {
    this.closed = true;
    this.queues.clear();
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** One turn: starts at most one waiting call per connection. */
  private pump(): void {
    let more = false;
    for (const [sender, q] of this.queues) {
      if (q.waiting.length === 0 || q.running >= this.limits.maxConcurrentPerCaller) continue;
      const job = q.waiting.shift()!;
      q.running++;
      void job().finally(() => {
        q.running--;
        if (q.running === 0 && q.waiting.length === 0 && this.queues.get(sender) === q) this.queues.delete(sender);
        this.schedulePump();
      });
      if (q.waiting.length > 0) more = true;
    }
    if (more) this.schedulePump();
  }
}
