// SPDX-License-Identifier: Apache-2.0
// Wall-clock time per phase of an e2e run (rootfs, boot, each check, teardown), printed
// as a table at the end so that CI logs show where the 30-minute budget goes. These are
// reports, not assertions: speed belongs in bench/.
export class PhaseTimer {
  private readonly phases: Array<{ name: string; ms: number; ok: boolean }> = [];

  async time<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    let ok = false;
    try {
      const v = await fn();
      ok = true;
      return v;
    } finally {
      this.phases.push({ name, ms: performance.now() - start, ok });
    }
  }

  get totalMs(): number {
    return this.phases.reduce((s, p) => s + p.ms, 0);
  }

  table(title = 'phase times'): string {
    const width = Math.max(5, ...this.phases.map((p) => p.name.length));
    const rows = this.phases.map((p) => `  ${p.name.padEnd(width)}  ${(p.ms / 1000).toFixed(2).padStart(7)} s${p.ok ? '' : '  (failed)'}`);
    return [`${title}:`, ...rows, `  ${'total'.padEnd(width)}  ${(this.totalMs / 1000).toFixed(2).padStart(7)} s`].join('\n');
  }
}
