// SPDX-License-Identifier: Apache-2.0
// Where the page's time goes (bench/ui --profile DIR): a Chrome trace of every chromium
// process and a V8 CPU profile of the page, both over the Chrome DevTools Protocol
// (playwright-core's CDP session), written to DIR and summarised: busy time per process and
// thread (the `toplevel` tasks), the renderer main thread by timeline event (script,
// style, layout, paint...), and the page's JavaScript by function (self time).
// The profilers' own sampling costs CPU: these are shares, not the bench's figures.
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';

export interface TraceEvent {
  name: string;
  cat: string;
  ph: string;
  pid: number;
  tid: number;
  ts: number;
  dur?: number;
  args?: { name?: string; data?: { url?: string; frame?: string } };
}

const CATEGORIES = ['toplevel', 'devtools.timeline', 'disabled-by-default-devtools.timeline', 'v8.execute', 'blink', 'cc', 'viz', 'gpu', 'v8'].join(',');

export interface Profiled {
  /** Milliseconds busy per "process/thread" over the window. */
  threads: Array<[string, number]>;
  /** Renderer main thread: milliseconds per timeline event (outermost of each name). */
  mainThread: Array<[string, number]>;
  /** Page JavaScript: self milliseconds per function. */
  functions: Array<[string, number]>;
  windowMs: number;
}

/** Traces and profiles `page` while `during` runs, writes trace.json and page.cpuprofile to `dir`. */
export async function profilePage(page: Page, dir: string, during: () => Promise<void>): Promise<Profiled & { events: TraceEvent[] }> {
  fs.mkdirSync(dir, { recursive: true });
  const cdp = await page.context().newCDPSession(page);
  const events: TraceEvent[] = [];
  cdp.on('Tracing.dataCollected', (e) => {
    events.push(...(e.value as unknown as TraceEvent[]));
  });
  const complete = new Promise<void>((r) => cdp.once('Tracing.tracingComplete', () => r()));
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 500 });
  await cdp.send('Tracing.start', { categories: CATEGORIES, transferMode: 'ReportEvents' });
  await cdp.send('Profiler.start');
  const t0 = performance.now();
  await during();
  const windowMs = performance.now() - t0;
  const { profile } = (await cdp.send('Profiler.stop')) as unknown as { profile: CpuProfile };
  await cdp.send('Tracing.end');
  await complete;
  await cdp.detach();
  fs.writeFileSync(path.join(dir, 'trace.json'), JSON.stringify({ traceEvents: events }));
  fs.writeFileSync(path.join(dir, 'page.cpuprofile'), JSON.stringify(profile));
  return { ...summariseTrace(events), functions: selfTimes(profile), windowMs, events };
}

function summariseTrace(events: TraceEvent[]): Omit<Profiled, 'functions' | 'windowMs'> {
  const procName = new Map<number, string>();
  const threadName = new Map<string, string>();
  for (const e of events) {
    if (e.ph !== 'M') continue;
    if (e.name === 'process_name') procName.set(e.pid, e.args?.name ?? '?');
    if (e.name === 'thread_name') threadName.set(`${e.pid}:${e.tid}`, e.args?.name ?? '?');
  }
  // Busy time: outermost complete events per thread (a task inside a task counts once).
  const byThread = new Map<string, TraceEvent[]>();
  for (const e of events) {
    if (e.ph !== 'X' || e.dur === undefined) continue;
    const k = `${e.pid}:${e.tid}`;
    (byThread.get(k) ?? byThread.set(k, []).get(k)!).push(e);
  }
  const threads = new Map<string, number>();
  const main = new Map<string, number>();
  for (const [k, list] of byThread) {
    list.sort((a, b) => a.ts - b.ts || b.dur! - a.dur!);
    const tName = threadName.get(k) ?? '?';
    const label = `${procName.get(Number(k.split(':')[0])) ?? '?'}/${tName}`;
    let end = -Infinity;
    let busy = 0;
    for (const e of list) {
      if (e.ts >= end) {
        busy += e.dur!;
        end = e.ts + e.dur!;
      }
    }
    threads.set(label, (threads.get(label) ?? 0) + busy / 1000);
    if (tName !== 'CrRendererMain') continue;
    // Per event name, outermost occurrences only (a Layout inside a FunctionCall counts
    // under both names: the table says where time went, the columns do not add up).
    const open = new Map<string, number>();
    for (const e of list) {
      if (e.cat.includes('toplevel')) continue;
      if (e.ts < (open.get(e.name) ?? -Infinity)) continue;
      open.set(e.name, e.ts + e.dur!);
      main.set(e.name, (main.get(e.name) ?? 0) + e.dur! / 1000);
    }
  }
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { threads: sorted(threads), mainThread: sorted(main) };
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

function selfTimes(p: CpuProfile): Array<[string, number]> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const m = new Map<string, number>();
  p.samples.forEach((id, i) => {
    const f = byId.get(id)?.callFrame;
    const name = f ? `${f.functionName || '(anonymous)'}${f.url ? ` ${path.basename(f.url.split('?')[0]!)}:${f.lineNumber + 1}:${f.columnNumber + 1}` : ''}` : '?';
    m.set(name, (m.get(name) ?? 0) + (p.timeDeltas[i + 1] ?? 0) / 1000);
  });
  return [...m].sort((a, b) => b[1] - a[1]);
}

export function printProfile(name: string, p: Profiled, top = 15): void {
  const pct = (ms: number) => `${ms.toFixed(0)} ms (${((100 * ms) / p.windowMs).toFixed(1)}%)`;
  console.log(`\nprofile: ${name}, ${(p.windowMs / 1000).toFixed(0)} s`);
  console.log('  busy per process/thread:');
  for (const [k, v] of p.threads.slice(0, top)) if (v >= 1) console.log(`    ${k}: ${pct(v)}`);
  console.log('  renderer main thread by event:');
  for (const [k, v] of p.mainThread.slice(0, top)) if (v >= 1) console.log(`    ${k}: ${pct(v)}`);
  console.log('  page JavaScript, self time:');
  for (const [k, v] of p.functions.slice(0, top)) if (v >= 1) console.log(`    ${k}: ${pct(v)}`);
}

/** The page's load, from the trace: when each request went and came back, and the renderer
 * main thread's work (tasks of 2 ms or more) and paints, in ms from the first request. */
export function printLoad(events: TraceEvent[], pageUrl: string): void {
  const keep = /^(ResourceSendRequest|ResourceReceiveResponse|ResourceFinish|ParseHTML|EvaluateScript|v8.compile|FunctionCall|TimerFire|FireAnimationFrame|UpdateLayoutTree|Layout|Paint|firstPaint|firstContentfulPaint|MarkDOMContent|MarkLoad|EventDispatch|RunMicrotasks)$/;
  const origin = new URL(pageUrl).origin;
  const first = events.filter((e) => e.name === 'ResourceSendRequest' && e.args?.data?.url?.startsWith(origin)).sort((a, b) => a.ts - b.ts)[0];
  if (!first) return;
  // The page's renderer: the process that parsed its HTML (other renderers are chromium's own).
  const renderer = events.find((e) => e.name === 'ParseHTML' && e.ts >= first.ts)?.pid;
  const t0 = first.ts;
  console.log('  load timeline (ms from the page\'s request; its renderer\'s events of 2 ms or more):');
  for (const e of events.filter((x) => keep.test(x.name) && x.ts >= t0).sort((a, b) => a.ts - b.ts)) {
    const url = e.args?.data?.url;
    if (url !== undefined && !url.startsWith(origin)) continue;
    if (e.name.startsWith('Resource') ? false : e.pid !== renderer) continue;
    const instant = e.ph !== 'X';
    if (!instant && (e.dur ?? 0) < 2000) continue;
    if (instant && !/^(Resource|first|Mark)/.test(e.name)) continue;
    const u = url ? ` ${url.slice(origin.length).replace(/token=[^&]*/, 'token=...')}` : '';
    console.log(`    ${((e.ts - t0) / 1000).toFixed(1).padStart(7)}  ${e.name}${instant ? '' : ` ${((e.dur ?? 0) / 1000).toFixed(1)} ms`}${u}`);
  }
}
