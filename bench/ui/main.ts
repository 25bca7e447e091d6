// SPDX-License-Identifier: Apache-2.0
// The page of `ebpfmonctl ui` in headless Debian chromium (playwright-core): time to first
// paint and to the first data drawn, and the browser's CPU (all its processes, from /proc)
// while the page updates every second with 1,000 and 10,000 live flows. The flows come
// from bench/ui/fake-daemon.ts over a real Unix socket, read by the real `ebpfmonctl ui`
// process; each flow carries a remoteGeo spread over 2,000 places (the worst case for the
// map: far more places than the bundled country database gives). Baselines measured in
// the same run: an empty page (first paint, idle CPU) and the UI with no flows.
// Targets (issue 15): first paint < 1 s; < 10% of a core while updating at 10,000 flows.
//
//   node build/js/bench/ui/main.js [--runs N] [--window S] [--flows N,N] [--profile DIR]
//
// --profile DIR: instead of measuring, trace each page's load and then its updating over
// the window (Chrome trace + V8 CPU profile through CDP, profile.ts), write them to DIR and
// print where the time went.
//
// Chromium runs with software rendering (--disable-gpu, as in the browser test), so its
// CPU includes painting that a GPU would take over on a desktop.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { machine, median, numArg, onExit, sleep, tempDir } from '../lib/harness.js';
import { cpuMs } from '../lib/proc.js';
import { printLoad, printProfile, profilePage } from './profile.js';

const BUILD = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const CTL = path.join(BUILD, 'client/src/ebpfmonctl.js');
const FAKE = path.join(BUILD, 'bench/ui/fake-daemon.js');
const RUNS = numArg('runs', 3);
const WINDOW_S = numArg('window', 10);
// PreloadTopChromeWebUI: a fresh chromium otherwise loads its omnibox popup (a WebUI page,
// 1-2 s of CPU in its own renderer) while the bench's page loads; a browser already running
// has done that long before a page is opened (bench/ui --profile showed it).
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-features=PreloadTopChromeWebUI'];
const tmp = tempDir('ui');
const strArg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const PROFILE = strArg('profile');
const FLOWS = (strArg('flows') ?? '0,1000,10000').split(',').map(Number);

function track(c: ChildProcess): ChildProcess {
  onExit(() => {
    if (c.pid && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
  return c;
}

function firstLine(c: ChildProcess, pred: (l: string) => boolean, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`${what}: nothing after 30 s (${err.slice(-500)})`)), 30_000);
    c.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
    c.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const l = buf.split('\n').find(pred);
      if (l !== undefined) {
        clearTimeout(t);
        resolve(l);
      }
    });
    c.once('exit', (code) => reject(new Error(`${what} exited ${code}: ${err.slice(-500)}`)));
  });
}

/** Pids of every process under `root` (chromium's browser, renderer, GPU, utility...). */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      (children.get(ppid) ?? children.set(ppid, []).get(ppid)!).push(Number(d));
    } catch {
      /* exited */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(root);
  return out;
}

/** CPU ms of a set of processes (those that exit in between count until they exit). */
function groupCpu(pids: number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const p of pids) {
    try {
      m.set(p, cpuMs(p));
    } catch {
      /* exited */
    }
  }
  return m;
}

interface Measure {
  firstPaintMs: number;
  firstDataMs: number | null;
  browserPct: number;
  uiPct: number | null;
  snapshotsPerSec: number | null;
  /** % of a core per chromium process type (browser, renderer, gpu-process, utility...). */
  byType: Record<string, number>;
}

async function measurePage(url: string, uiPid: number | null, expectData: boolean): Promise<Measure> {
  const profile = fs.mkdtempSync(path.join(tmp, 'profile-'));
  const ctx: BrowserContext = await chromium.launchPersistentContext(profile, { executablePath: '/usr/bin/chromium', headless: true, args: FLAGS, viewport: { width: 1400, height: 1100 } });
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    await page.goto(url);
    // Polled from here: playwright's in-page polling evaluates strings, which the page's
    // Content-Security-Policy (no 'unsafe-eval') refuses.
    for (let i = 0; expectData && Number(await page.evaluate('document.body.dataset.snapshots ?? 0')) < 1; i++) {
      if (i > 600) throw new Error('no snapshot drawn after 60 s');
      await sleep(100);
    }
    await page.waitForLoadState('load');
    // The paint entries come when the frame was presented, which may be after 'load'.
    for (let i = 0; !(await page.evaluate(`performance.getEntriesByType('paint').some((e) => e.name === 'first-paint')`)); i++) {
      if (i > 100) throw new Error('no first-paint entry after 10 s');
      await sleep(100);
    }
    const paint = (await page.evaluate(`(() => {
      const fp = performance.getEntriesByType('paint').find((e) => e.name === 'first-paint');
      const fd = performance.getEntriesByName('ebpfmon-first-data')[0];
      return { fp: fp ? fp.startTime : -1, fd: fd ? fd.startTime : null };
    })()`)) as { fp: number; fd: number | null };
    await sleep(3000); // settle: the first snapshots, layout, GC
    const browserPids = descendants(process.pid).filter((p) => p !== uiPid && !isNode(p));
    const snaps0 = expectData ? Number(await page.evaluate('document.body.dataset.snapshots')) : 0;
    const b0 = groupCpu(browserPids);
    const u0 = uiPid ? cpuMs(uiPid) : 0;
    const t0 = performance.now();
    await sleep(WINDOW_S * 1000);
    const wall = performance.now() - t0;
    const b1 = groupCpu(browserPids);
    let browser = 0;
    const byType: Record<string, number> = {};
    for (const [p, c] of b1) {
      browser += c - (b0.get(p) ?? c);
      const t = procType(p);
      byType[t] = (byType[t] ?? 0) + (100 * (c - (b0.get(p) ?? c))) / (performance.now() - t0);
    }
    const snaps1 = expectData ? Number(await page.evaluate('document.body.dataset.snapshots')) : 0;
    return {
      firstPaintMs: paint.fp,
      firstDataMs: paint.fd,
      browserPct: (100 * browser) / wall,
      uiPct: uiPid ? (100 * (cpuMs(uiPid) - u0)) / wall : null,
      snapshotsPerSec: expectData ? (snaps1 - snaps0) / (wall / 1000) : null,
      byType,
    };
  } finally {
    await ctx.close();
  }
}

function procType(pid: number): string {
  try {
    // Chromium rewrites its process titles: the arguments may be one space-separated string.
    return /--type=(\S+)/.exec(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' '))?.[1] ?? 'browser';
  } catch {
    return '?';
  }
}

function isNode(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'node';
  } catch {
    return false;
  }
}

async function withUi<T>(flows: number, fn: (url: string, uiPid: number) => Promise<T>): Promise<T> {
  const sock = path.join(tmp, `fake-${flows}.sock`);
  const fake = track(spawn(process.execPath, [FAKE, sock, String(flows), '--events-per-sec', '20'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  await firstLine(fake, (l) => l === 'ready', 'fake daemon');
  const ui = track(spawn(process.execPath, [CTL, '--socket', sock, 'ui', '--json', '--home', '48.8566,2.3522,Paris'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const line = await firstLine(ui, (l) => l.startsWith('{'), 'ebpfmonctl ui');
  const { urls } = JSON.parse(line) as { urls: string[] };
  try {
    return await fn(urls[0]!, ui.pid!);
  } finally {
    ui.kill('SIGTERM');
    fake.kill('SIGTERM');
    await Promise.all([ui, fake].map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
  }
}

// The empty page: a tiny server of one static paragraph.
const empty = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>empty</title><p>empty</p>'));
await new Promise<void>((r) => empty.listen(0, '127.0.0.1', r));
onExit(() => empty.close());
const emptyUrl = `http://127.0.0.1:${(empty.address() as { port: number }).port}/`;

async function profileRun(name: string, url: string, expectData: boolean): Promise<void> {
  const profile = fs.mkdtempSync(path.join(tmp, 'profile-'));
  const ctx = await chromium.launchPersistentContext(profile, { executablePath: '/usr/bin/chromium', headless: true, args: FLAGS, viewport: { width: 1400, height: 1100 } });
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const dir = path.join(PROFILE!, name.replace(/[^a-z0-9]+/gi, '-'));
    const load = await profilePage(page, path.join(dir, 'load'), async () => {
      await page.goto(url);
      for (let i = 0; expectData && Number(await page.evaluate('document.body.dataset.snapshots ?? 0')) < 1; i++) {
        if (i > 600) throw new Error('no snapshot drawn after 60 s');
        await sleep(100);
      }
      await page.waitForLoadState('load');
    });
    const fp = (await page.evaluate(`performance.getEntriesByType('paint').find((e) => e.name === 'first-paint')?.startTime ?? -1`)) as number;
    printProfile(`${name}: load (first paint ${fp.toFixed(0)} ms)`, load);
    printLoad(load.events, url);
    await sleep(3000);
    printProfile(`${name}: updating`, await profilePage(page, path.join(dir, 'update'), () => sleep(WINDOW_S * 1000)));
    console.log(`  written to ${dir}`);
  } finally {
    await ctx.close();
  }
}

if (PROFILE) {
  await profileRun('empty page', emptyUrl, false);
  for (const flows of FLOWS) await withUi(flows, (url) => profileRun(`ui ${flows} flows`, url, true));
  empty.close();
  process.exit(0);
}

const rows: Array<{ name: string; m: Measure[] }> = [];
const run = async (name: string, fn: () => Promise<Measure>) => {
  const m: Measure[] = [];
  for (let i = 0; i < RUNS; i++) m.push(await fn());
  rows.push({ name, m });
  process.stderr.write(`done: ${name}\n`);
};
await run('baseline: empty page', () => measurePage(emptyUrl, null, false));
for (const flows of FLOWS) {
  await run(`ebpfmonctl ui, ${flows.toLocaleString('en')} live flows`, () => withUi(flows, (url, pid) => measurePage(url, pid, true)));
}
empty.close();

console.log(`bench/ui: ${machine()}, chromium ${fs.existsSync('/usr/bin/chromium') ? 'Debian' : '?'}; medians of ${RUNS} runs, CPU over ${WINDOW_S} s after a 3 s settle`);
console.log(`load average at the end: ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n`);
const fmt = (v: number | null, d = 0) => (v === null ? '-' : v.toFixed(d));
const header = ['page', 'first paint ms', 'first data ms', 'browser % core', 'ui server % core', 'snapshots/s'];
const table = rows.map(({ name, m }) => {
  const med = (f: (x: Measure) => number | null) => {
    const xs = m.map(f).filter((x): x is number => x !== null);
    return xs.length ? median(xs) : null;
  };
  return [name, fmt(med((x) => x.firstPaintMs)), fmt(med((x) => x.firstDataMs)), fmt(med((x) => x.browserPct), 1), fmt(med((x) => x.uiPct), 1), fmt(med((x) => x.snapshotsPerSec), 2)];
});
const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
console.log(header.map((h, i) => (i ? h.padStart(widths[i]!) : h.padEnd(widths[i]!))).join('  '));
for (const r of table) console.log(r.map((c, i) => (i ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  '));
console.log('\nruns (first paint ms / browser % core [by chromium process type]):');
for (const { name, m } of rows) {
  console.log(`  ${name}: ${m.map((x) => `${x.firstPaintMs.toFixed(0)}/${x.browserPct.toFixed(1)} [${Object.entries(x.byType).filter(([, v]) => v >= 0.05).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}]`).join('; ')}`);
}
