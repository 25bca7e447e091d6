// SPDX-License-Identifier: Apache-2.0
// Traffic by process for Prometheus with bounded cardinality. Input: every process's
// cumulative totals (processes.list), read again and again. Output: counters labelled by
// identity (command, unit, container) for at most `top` identities, plus one "[other]"
// series for the rest. Never by pid: pids are unbounded over time.
//
// Monotonic by construction: each refresh turns every pid's totals into a delta against
// what was already counted for that pid, and adds the delta to exactly one series (the
// identity's if it has one, else "[other]"). Bytes of processes that went away stay in
// the series they were added to; a pid that disappears from the input is forgotten, so a
// reused pid starts from zero (and so does one whose `startedAt` changed, when the input
// has it: a pid forgotten and reused between two refreshes). The command is not used to
// tell processes apart: a process that exec()s has flows under two commands.
//
// Ranking: an exponentially decayed byte count per identity (half-life `halfLifeMs`). A
// free slot goes to the next identity with traffic; when all are taken, a newcomer takes
// the slot of the lowest-ranked series only once it ranks `hysteresis` times higher, so
// series do not flap. An evicted series disappears (Prometheus marks it stale); if it comes
// back it starts again from 0, which rate()/increase() read as a counter reset - never as
// bytes counted twice - and what it counted after the last scrape goes to "[other]". Memory is bounded too: at most `maxCandidates` unranked identities
// are remembered (the lowest-ranked are forgotten first).
import { containerLabel, type ProcessTrafficInput } from './api-types.js';
import { addCounts, type Counts } from '../util/counts.js';

export const OTHER = '[other]';
/** processes.list's pid-less rows: flows with no known owner, and the kernel's own. */
export const UNKNOWN_COMM = '[unknown]';

export interface SeriesLabels {
  comm: string;
  unit: string;
  container: string;
}

export type TrafficValues = Counts;

export interface TopNOptions {
  top: number;
  halfLifeMs?: number;
  hysteresis?: number;
  maxCandidates?: number;
}

interface Ranked {
  labels: SeriesLabels;
  score: number;
  scoredAt: number;
}

interface Admitted extends Ranked {
  values: TrafficValues;
  /** The values the last scrape read (markExposed). */
  exposed: TrafficValues;
}

const FIELDS = ['txBytes', 'rxBytes', 'txPackets', 'rxPackets', 'flows'] as const;

type Baseline = TrafficValues & { startedAt?: string | null };

const zero = (): TrafficValues => ({ txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, flows: 0 });

function sub(a: TrafficValues, b: TrafficValues): TrafficValues {
  return { txBytes: a.txBytes - b.txBytes, rxBytes: a.rxBytes - b.rxBytes, txPackets: a.txPackets - b.txPackets, rxPackets: a.rxPackets - b.rxPackets, flows: a.flows - b.flows };
}


export class ProcessSeries {
  readonly top: number;
  private readonly halfLifeMs: number;
  private readonly hysteresis: number;
  private readonly maxCandidates: number;
  /** Per pid (or pid-less row): what was counted so far, at most (totals only grow). */
  private baselines = new Map<string, Baseline>();
  private readonly admitted = new Map<string, Admitted>();
  private readonly candidates = new Map<string, Ranked>();
  private readonly other: TrafficValues = zero();
  /** Bytes (packets, flows) the pid-less rows lost to pids, not yet taken back from growth. */
  private readonly moved: TrafficValues = zero();
  /** Evicted during the current update: not admitted again before a scrape has seen them gone. */
  private evictedNow = new Set<string>();
  evictions = 0;

  constructor(opts: TopNOptions) {
    this.top = opts.top;
    this.halfLifeMs = opts.halfLifeMs ?? 10 * 60_000;
    this.hysteresis = opts.hysteresis ?? 2;
    this.maxCandidates = opts.maxCandidates ?? Math.max(1000, 10 * opts.top);
  }

  /** Takes a full listing of per-process totals (every pid the daemon knows). */
  update(rows: readonly ProcessTrafficInput[], nowMs = Date.now()): void {
    const next = new Map<string, Baseline>();
    const deltas: Array<{ labels: SeriesLabels; d: TrafficValues }> = [];
    for (const r of rows) {
      const comm = r.comm ?? UNKNOWN_COMM;
      const pidless = r.pid === null;
      const key = pidless ? `c${comm}` : `p${r.pid}`;
      const cur = { txBytes: r.txBytes, rxBytes: r.rxBytes, txPackets: r.txPackets, rxPackets: r.rxPackets, flows: r.flows };
      let prev = next.get(key) ?? this.baselines.get(key);
      // A new process on a pid the daemon forgot and reused between two refreshes.
      if (prev && r.startedAt && prev.startedAt && r.startedAt !== prev.startedAt) prev = undefined;
      const base = prev ?? zero();
      const d = zero();
      const kept = zero();
      for (const f of FIELDS) {
        d[f] = Math.max(0, cur[f] - base[f]);
        if (pidless) {
          // The pid-less rows (no known owner, the kernel) shrink when the daemon finds a
          // flow's owner: the flow's bytes, already counted here, reappear under the pid.
          // Follow the current value and count the shrink as bytes to take back from this
          // round's (or a later round's) growth, so that they are counted once.
          kept[f] = cur[f];
          this.moved[f] += Math.max(0, base[f] - cur[f]);
        } else {
          // A pid's total may read lower than before when the daemon's walk raced its own
          // collector: keep the highest seen, so that nothing is counted twice.
          kept[f] = Math.max(cur[f], base[f]);
        }
      }
      next.set(key, { ...kept, startedAt: r.startedAt ?? prev?.startedAt });
      if (FIELDS.some((f) => d[f] > 0)) deltas.push({ labels: { comm, unit: r.unit ?? '', container: containerLabel(r.container) }, d });
    }
    this.baselines = next; // pids no longer listed are forgotten
    this.evictedNow = new Set();
    for (const f of FIELDS) this.takeBack(deltas.map((x) => x.d), f);
    // Largest first: free slots go to the biggest talkers of this round.
    deltas.sort((a, b) => b.d.txBytes + b.d.rxBytes - (a.d.txBytes + a.d.rxBytes));
    for (const { labels, d } of deltas) if (FIELDS.some((f) => d[f] > 0)) this.account(labels, d, nowMs);
  }

  /** Takes `moved[f]` back from this round's growth, in proportion to each delta. */
  private takeBack(ds: TrafficValues[], f: keyof TrafficValues): void {
    const owed = this.moved[f];
    if (owed === 0) return;
    const total = ds.reduce((a, d) => a + d[f], 0);
    if (total === 0) return;
    const take = Math.min(owed, total);
    let left = take;
    for (const d of ds) {
      const t = Math.min(d[f], Math.floor((take * d[f]) / total), left);
      d[f] -= t;
      left -= t;
    }
    for (const d of ds) {
      // What rounding left over, from whoever still has some.
      const t = Math.min(d[f], left);
      d[f] -= t;
      left -= t;
    }
    this.moved[f] = owed - take;
  }

  private decayed(r: Ranked, nowMs: number): number {
    if (nowMs > r.scoredAt) {
      r.score *= 2 ** (-(nowMs - r.scoredAt) / this.halfLifeMs);
      r.scoredAt = nowMs;
    }
    return r.score;
  }

  private account(labels: SeriesLabels, d: TrafficValues, nowMs: number): void {
    const id = `${labels.comm}\0${labels.unit}\0${labels.container}`;
    const bytes = d.txBytes + d.rxBytes;
    const a = this.admitted.get(id);
    if (a) {
      a.score = this.decayed(a, nowMs) + bytes;
      addCounts(a.values, d);
      return;
    }
    const c = this.candidates.get(id) ?? { labels, score: 0, scoredAt: nowMs };
    const score = this.decayed(c, nowMs) + bytes;
    c.score = score;
    if (this.admitted.size < this.top) {
      this.candidates.delete(id);
      this.admit(id, c, d);
      return;
    }
    let lowId = '';
    let low: Admitted | undefined;
    for (const [k, x] of this.admitted) {
      if (!low || this.decayed(x, nowMs) < low.score) {
        low = x;
        lowId = k;
      }
    }
    if (low && score > this.hysteresis * low.score && !this.evictedNow.has(id)) {
      // What no scrape has read of the evicted series yet goes to [other]: a scrape then
      // finds, in all, every byte once.
      addCounts(this.other, sub(low.values, low.exposed));
      this.admitted.delete(lowId);
      this.evictedNow.add(lowId);
      this.evictions++;
      this.remember(lowId, { labels: low.labels, score: low.score, scoredAt: nowMs });
      this.candidates.delete(id);
      this.admit(id, c, d);
      return;
    }
    addCounts(this.other, d);
    this.remember(id, c);
  }

  private admit(id: string, r: Ranked, d: TrafficValues): void {
    const values = zero();
    addCounts(values, d);
    this.admitted.set(id, { labels: r.labels, score: r.score, scoredAt: r.scoredAt, values, exposed: zero() });
  }

  private remember(id: string, r: Ranked): void {
    this.candidates.delete(id);
    this.candidates.set(id, r); // most recent last
    if (this.candidates.size <= this.maxCandidates) return;
    // Forget the lowest-ranked tenth (one scan, not one per insert).
    const now = r.scoredAt;
    const ranked = [...this.candidates].map(([k, x]) => [k, this.decayed(x, now)] as const).sort((p, q) => p[1] - q[1]);
    for (const [k] of ranked.slice(0, Math.max(1, Math.floor(this.maxCandidates / 10)))) this.candidates.delete(k);
  }

  /** The series to export: one per admitted identity, then "[other]" (always present). */
  series(): Array<{ labels: SeriesLabels; values: TrafficValues }> {
    const out = [...this.admitted.values()].map((a) => ({ labels: a.labels, values: { ...a.values } }));
    out.push({ labels: { comm: OTHER, unit: '', container: '' }, values: { ...this.other } });
    return out;
  }

  /** Call when a scrape has read series(): evictions then keep what it has not read. */
  markExposed(): void {
    for (const a of this.admitted.values()) a.exposed = { ...a.values };
  }

  stats(): { limit: number; admitted: number; candidates: number; evictions: number; pids: number } {
    return { limit: this.top, admitted: this.admitted.size, candidates: this.candidates.size, evictions: this.evictions, pids: this.baselines.size };
  }
}
