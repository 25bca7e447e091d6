// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl ui` end to end, in a real browser: the real daemon in a lab host, the UI run
// by an unprivileged lab user (setpriv), headless Debian chromium driven by
// playwright-core. A test client of that user talks to a 198.18.x lab address that the
// test's own MMDB (written by MaxMind's Perl writer, configured in the daemon's
// geo.databases) places in Reykjavík. Truth: the city and coordinates the test wrote into the MMDB, the
// pid the test spawned, the bytes tcpdump captured on the monitored interface.
// Also: wrong or missing tokens get 403; root's traffic in the same lab never reaches the
// page (every WebSocket frame the browser received is checked). A screenshot is saved in a
// directory the test prints.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { geoNaturalEarth1, type GeoPermissibleObjects } from 'd3-geo';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { type Host, type Lab, type LinkInfo, jsonLines, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { CTL_MAIN, destroyMonitorLab, monitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals, readPcap } from '../helpers/pcap.js';
import { cityRecord, writeMmdb } from '../helpers/mmdb.js';

const CITY = { city: 'Reykjavík', country: 'IS', lat: 64.1466, lon: -21.9426, asn: 64512, org: 'ebpfmon test lab' };
const HOME = '48.8566,2.3522,Paris';
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];
const TCP = 6;

async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== null && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out: ${what}${last ? ` (${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('ebpfmonctl ui in a browser', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let user: TestUser;
  let ui: ChildProcess;
  let url: string;
  let port: number;
  let ctx: BrowserContext;
  let page: Page;
  let cap: Capture;
  let out: string;
  const frames: string[] = [];

  before(async () => {
    requireTool('chromium', 'tcpdump', 'setpriv', 'perl');
    ({ lab, mon, peer, link } = await monitorLab());
    user = await lab.user('ui');
    out = lab.outputDir('ui-test');
    // The test's own database, configured in the daemon as the user's (geo.databases: looked
    // up first, even for the lab's 198.18 benchmarking range), and home in ui.home.
    const mmdb = writeMmdb([{ network: `${link.b.ip4}/32`, data: cityRecord(CITY) }], { dir: lab.tmpdir(), name: 'lab-city.mmdb' });
    daemon = await startDaemon(mon, { config: { flows: { closedRetentionSec: 600, gcIntervalSec: 2 }, geo: { databases: [mmdb] }, ui: { home: HOME } } });

    ui = lab.root.spawn('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', process.execPath, CTL_MAIN, '--socket', daemon.socketPath, 'ui', '--json']);
    const first = await jsonLines(ui).next((o) => Array.isArray(o.urls), 30_000);
    url = (first.urls as string[])[0]!;
    port = Number(first.port);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{43}$/);
    assert.ok((first.urls as string[]).some((u) => u.startsWith(`http://[::1]:${port}/`)), 'listens on ::1 too');

    cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'ui.pcap'));
    const profile = lab.tmpdir();
    ctx = await chromium.launchPersistentContext(profile, { executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1400, height: 1100 } });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.on('websocket', (ws) => ws.on('framereceived', (f) => frames.push(String(f.payload))));
  });

  after(async () => {
    await ctx?.close();
    await cap?.stop(0).catch(() => undefined);
    await destroyMonitorLab(daemon, lab);
  });

  async function tcpServer(): Promise<number> {
    const s = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0']);
    return Number((await jsonLines(s).next((o) => o.event === 'listening')).port);
  }

  /** A connected client in `mon` (as `as`, or root) that sends on request: "send N". */
  async function holdClient(serverPort: number, as?: TestUser) {
    const argv = [process.execPath, PEER, 'tcp-hold', link.b.ip4, String(serverPort)];
    const c = as ? mon.spawn('setpriv', [`--reuid=${as.uid}`, `--regid=${as.gid}`, '--init-groups', ...argv], { stdio: ['pipe', 'pipe', 'pipe'] }) : mon.spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines = jsonLines(c);
    const localPort = Number((await lines.next((o) => o.event === 'connected')).localPort);
    let total = 0;
    return {
      pid: c.pid!,
      localPort,
      async send(n: number) {
        total += n;
        const want = total;
        c.stdin!.write(`send ${n}\n`);
        await lines.next((o) => o.event === 'sent' && o.total === want);
      },
    };
  }

  // The map is a canvas; what it draws is listed, as data, in its fallback content
  // (#map-lines, #map-places, #map-home), which the page keeps in step with each drawing.
  const lineOf = (pid: number) => page.locator(`#map-lines li.line[data-pid="${pid}"]`);
  // The page's projection, rebuilt here from the map's documented frame (960x480 map units,
  // Natural Earth fitted with a 4-unit margin): the truth for where home and the city are.
  const projection = geoNaturalEarth1().fitExtent([[4, 4], [956, 476]], { type: 'Sphere' } as GeoPermissibleObjects);

  /** Waits until the page's line for `pid` shows exactly the bytes tcpdump has seen. */
  async function pageMatchesCapture(pid: number, localPort: number, serverPort: number, minTx: number) {
    return until(`the map's line for pid ${pid} to show the captured bytes (>= ${minTx} sent)`, async () => {
      const truth = flowTotals(readPcap(cap.file), { local: link.a.ip4, remote: link.b.ip4, proto: TCP, localPort, remotePort: serverPort });
      const shown = await lineOf(pid).evaluateAll((els) => els.map((e) => ({ tx: Number(e.getAttribute('data-tx')), rx: Number(e.getAttribute('data-rx')), location: e.getAttribute('data-location') })));
      if (shown.length !== 1 || truth.txBytes < minTx) return null;
      return shown[0]!.tx === truth.txBytes && shown[0]!.rx === truth.rxBytes ? { ...shown[0]!, truth } : null;
    }, 30_000);
  }

  test('the map draws a line from home to the city the MMDB gives, with the process and the bytes tcpdump counted; the tables list it; the numbers follow the traffic', async () => {
    // The page first: events are live, the connect must happen while it watches.
    const resp = await page.goto(url);
    assert.equal(resp?.status(), 200);
    // Polled from here: playwright's in-page polling evaluates strings, which the page's
    // Content-Security-Policy (no 'unsafe-eval') refuses.
    await until('the first snapshot drawn', async () => Number(await page.evaluate('document.body.dataset.snapshots ?? 0')) >= 1);
    const serverPort = await tcpServer();
    const client = await holdClient(serverPort, user);
    await client.send(50_000);

    // Home marker where the daemon's ui.home says.
    const home = page.locator('#map-home');
    assert.deepEqual([await home.getAttribute('data-lat'), await home.getAttribute('data-lon')], ['48.8566', '2.3522']);

    const first = await pageMatchesCapture(client.pid, client.localPort, serverPort, 50_000);
    const line = lineOf(client.pid);
    assert.equal(await line.getAttribute('data-comm'), 'node');
    const place = page.locator(`#map-places li.place[data-key="${first.location}"]`);
    assert.equal(await place.getAttribute('data-city'), CITY.city);
    assert.equal(await place.getAttribute('data-country'), CITY.country);
    assert.equal(Number(await place.getAttribute('data-lat')), CITY.lat);
    assert.equal(Number(await place.getAttribute('data-lon')), CITY.lon);
    // The line runs from home (Paris) to the city the MMDB gives, in map units.
    const num = async (l: ReturnType<Page['locator']>, ...names: string[]) => Promise.all(names.map(async (n) => Number(await l.getAttribute(n))));
    const near = (p: number[], q: number[]) => Math.hypot(p[0]! - q[0]!, p[1]! - q[1]!) < 0.05;
    const [homeLat, homeLon] = HOME.split(',').map(Number) as [number, number];
    const truthA = projection([homeLon, homeLat])!;
    const truthB = projection([CITY.lon, CITY.lat])!;
    const geom = { a: await num(line, 'data-x1', 'data-y1'), b: await num(line, 'data-x2', 'data-y2'), dot: await num(place, 'data-x', 'data-y'), truthA, truthB };
    assert.ok(near(geom.a, truthA) && near(geom.b, truthB) && near(geom.dot, truthB), JSON.stringify(geom));
    // ... and is drawn there: the canvas has the line's colour at its middle (a great circle's
    // midpoint, so not hidden under a dot).
    const [mx, my] = await num(line, 'data-mx', 'data-my');
    const color = (await line.getAttribute('data-color'))!;
    const pixel = await page.evaluate(`(() => { const c = document.getElementById('map'); const x = Math.round(${mx} * c.width / 960), y = Math.round(${my} * c.height / 480); return Array.from(c.getContext('2d').getImageData(x - 1, y - 1, 3, 3).data); })()`) as number[];
    assert.ok(pixel.some((v, i) => i % 4 === 3 && v > 0), `something is drawn at the line's middle: ${JSON.stringify(pixel)} (${color})`);

    // The process table lists the client, with the bytes its flows carried.
    const row = page.locator(`#processes tbody tr[data-pid="${client.pid}"]`);
    assert.equal(await row.getAttribute('data-comm'), 'node');
    assert.ok(Number(await row.getAttribute('data-tx')) >= first.truth.txBytes);
    // ... the flow table its flow, the events list its connect.
    assert.equal(await page.locator(`#flows tbody tr[data-pid="${client.pid}"][data-remote-port="${serverPort}"]`).count(), 1);
    await until('the connect event of the client', async () => (await page.locator(`#events li[data-type="connect"][data-pid="${client.pid}"]`).count()) > 0);

    // Hovering the place's dot on the canvas shows the process, the address and port, the organisation.
    const box = (await page.locator('#map').boundingBox())!;
    await page.mouse.move(box.x + (truthB[0] * box.width) / 960, box.y + (truthB[1] * box.height) / 480);
    const tip = page.locator('#tooltip');
    await until('the tooltip', async () => (await tip.isVisible()) && (await tip.textContent())?.includes(`node[${client.pid}]`));
    const text = (await tip.textContent()) ?? '';
    for (const s of [CITY.city, link.b.ip4, `port ${serverPort}`, `AS${CITY.asn} ${CITY.org}`]) assert.ok(text.includes(s), `tooltip has ${s}: ${text}`);

    // The numbers follow the traffic.
    await client.send(200_000);
    const second = await pageMatchesCapture(client.pid, client.localPort, serverPort, first.truth.txBytes + 200_000);
    assert.ok(second.tx >= first.tx + 200_000, `${first.tx} -> ${second.tx}`);
    const shot = path.join(out, 'ui-map.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`# screenshot: ${shot}`);
  });

  test('clicking a process in the table shows only its lines; clicking it again shows all', async () => {
    const serverPort = await tcpServer();
    const other = await holdClient(serverPort, user);
    await other.send(30_000);
    await until('a line for the second client', async () => (await lineOf(other.pid).count()) === 1);
    const pids = async () => (await page.locator('#map-lines li.line').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-pid'))))).sort();
    const all = await pids();
    assert.ok(all.length >= 2 && all.includes(other.pid), JSON.stringify(all));
    await page.locator(`#processes tbody tr[data-pid="${other.pid}"]`).click();
    await until('only the clicked process on the map', async () => JSON.stringify(await pids()) === JSON.stringify([other.pid]));
    assert.equal(await page.locator(`#processes tbody tr[data-pid="${other.pid}"]`).getAttribute('class'), 'selected');
    assert.deepEqual(await page.locator('#flows tbody tr:not(.spacer)').evaluateAll((els) => [...new Set(els.map((e) => Number(e.getAttribute('data-pid'))))]), [other.pid], 'the flow table follows');
    await page.locator(`#processes tbody tr[data-pid="${other.pid}"]`).click();
    await until('every line back', async () => JSON.stringify(await pids()) === JSON.stringify(all));
  });

  test("root's flows never reach the page of an unprivileged user", async () => {
    const serverPort = await tcpServer();
    const rootClient = await holdClient(serverPort);
    await rootClient.send(70_000);
    // The daemon does have root's flow (so a leak would have something to leak).
    const all = await daemon.call('flows.list', { pid: rootClient.pid, limit: 10 });
    assert.equal(all.flows.length, 1);
    const from = frames.length;
    await until('three more snapshots', async () => frames.slice(from).filter((f) => f.startsWith('{"type":"snapshot"')).length >= 3);
    const leaks = frames.filter((f) => f.includes(`"pid":${rootClient.pid}`) || f.includes(`"localPort":${rootClient.localPort}`) || f.includes(`"remotePort":${serverPort}`) || /"uid":0[,}]/.test(f));
    assert.deepEqual(leaks.map((f) => f.slice(0, 200)), []);
    assert.equal(await page.locator(`[data-pid="${rootClient.pid}"]`).count(), 0);
    // Every process the page was told about belongs to the user.
    const snapshots = frames.filter((f) => f.startsWith('{"type":"snapshot"')).map((f) => JSON.parse(f) as { processes: Array<{ uid: number | null }>; flows: { rows: Array<{ uid: number | null }> } });
    assert.ok(snapshots.length > 3);
    for (const s of snapshots) {
      for (const p of s.processes) assert.equal(p.uid, user.uid);
      for (const f of s.flows.rows) assert.equal(f.uid, user.uid);
    }
  });

  test('a wrong or missing token gets 403, for the page, its files and the WebSocket', async () => {
    const base = `http://127.0.0.1:${port}`;
    const p2 = await ctx.newPage();
    try {
      for (const u of [`${base}/`, `${base}/?token=wrong`, `${base}/app.js`, `${base}/app.js?token=${'x'.repeat(43)}`, `http://[::1]:${port}/?token=nope`]) {
        const r = await p2.goto(u);
        assert.equal(r?.status(), 403, u);
      }
      // A WebSocket with a wrong token, from the page's own origin, never opens.
      await p2.goto(url);
      const outcome = await p2.evaluate((port) => new Promise<string>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=wrong`);
        ws.onopen = () => resolve('open');
        ws.onerror = () => resolve('error');
        setTimeout(() => resolve('timeout'), 5000);
      }), port);
      assert.equal(outcome, 'error');
    } finally {
      await p2.close();
    }
    // From outside the browser too: the server answers 403 to a request with no token.
    const r = await fetch(`${base}/`);
    assert.equal(r.status, 403);
  });
});
