// SPDX-License-Identifier: Apache-2.0
// What ran in the daemon's longest event-loop tasks: bench/lib/long-tasks.ts's list next to
// a V8 CPU profile of the same run (bench/attribution --daemon-cpu-prof). For each of the N
// longest tasks, the profile's samples inside it: the functions with the most samples of
// their own, and those on the most stacks.
//   node build/js/bench/attribution/long-tasks-report.js long-tasks-PID.json daemon-PID-0.cpuprofile [N]
import fs from 'node:fs';
import type { LongTask } from '../lib/long-tasks.js';

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: ProfileNode[]; startTime: number; samples: number[]; timeDeltas: number[] }

const [tasksFile, profileFile, n = '12'] = process.argv.slice(2);
if (!tasksFile || !profileFile) {
  console.error('usage: long-tasks-report.js LONG_TASKS.json PROFILE.cpuprofile [N]');
  process.exit(2);
}
const tasks = JSON.parse(fs.readFileSync(tasksFile, 'utf8')) as LongTask[];
const p = JSON.parse(fs.readFileSync(profileFile, 'utf8')) as Profile;
const nodes = new Map(p.nodes.map((x) => [x.id, x]));
const parent = new Map<number, number>();
for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
const name = (id: number) => {
  const f = nodes.get(id)!.callFrame;
  return `${f.functionName || '(anonymous)'} ${f.url.split('/').at(-1)}:${f.lineNumber + 1}`;
};
const times: number[] = [];
let t = p.startTime;
for (const d of p.timeDeltas) times.push((t += d));

const at = (ms: number) => tasks.filter((x) => x.ms >= ms).length;
console.log(`tasks of 8 ms or more: ${tasks.length}; 10 ms or more: ${at(10)}; 15: ${at(15)}; 20: ${at(20)}`);
const top = (c: Map<string, number>, k: number) => [...c].sort((a, b) => b[1] - a[1]).slice(0, k).map(([f, v]) => `${f} (${v})`).join(', ');
for (const task of [...tasks].sort((a, b) => b.ms - a.ms).slice(0, Number(n))) {
  const own = new Map<string, number>();
  const on = new Map<string, number>();
  let count = 0;
  for (let i = 0; i < p.samples.length; i++) {
    if (times[i]! < task.us || times[i]! > task.us + task.ms * 1000) continue;
    count++;
    const s = p.samples[i]!;
    own.set(name(s), (own.get(name(s)) ?? 0) + 1);
    const seen = new Set<string>();
    for (let id: number | undefined = s; id !== undefined && nodes.has(id); id = parent.get(id)) {
      const f = name(id);
      if (f.startsWith('(root)') || seen.has(f)) continue;
      seen.add(f);
      on.set(f, (on.get(f) ?? 0) + 1);
    }
  }
  console.log(`\n${task.ms} ms (${task.type}), ${count} samples`);
  if (count) console.log(`  own: ${top(own, 4)}\n  on the stack: ${top(on, 10)}`);
}
