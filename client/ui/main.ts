// SPDX-License-Identifier: Apache-2.0
// The page of `ebpfmonctl ui`: one WebSocket to the local server (same origin, with the
// token from this page's URL), a snapshot each second, events as they come. Home is
// `ui.home` from the daemon's configuration (or --home), or a point the user clicks on the
// map (kept in this browser's localStorage).
import type { Hello, PageFilter, ServerMessage, Snapshot, UiEvent } from '../src/ui/protocol.js';
import { rate } from '../src/render/units.js';
import { byId, el } from './dom.js';
import { WorldMap, type Home } from './map.js';
import { eventRows, flowRows, processRows, renderSpecial } from './tables.js';

const token = new URLSearchParams(location.search).get('token') ?? '';
const HOME_KEY = 'ebpfmon.ui.home';
const MAX_EVENTS = 300;

// The map is built after the page's first paint (a frame, then a task): drawing the world
// takes the longest of anything here, and the page's frame and tables need not wait for it.
let map: WorldMap | null = null;
const status = byId('status');
const filter: PageFilter = { pid: null, text: '', port: null, protocol: null, closed: true };
let hello: Hello | null = null;
let snapshot: Snapshot | null = null;
let ws: WebSocket | null = null;
let snapshots = 0;
let dirty = false;
let eventsDirty = false;
let eventsTimer = 0;
let hovered: string | null = null;
const events: UiEvent[] = [];

const procTable = processRows(byId('proc-scroll'), byId('processes').querySelector('tbody')!, () => filter.pid);
const flowTable = flowRows(byId('flows-scroll'), byId('flows').querySelector('tbody')!);
const eventList = eventRows(byId('events-scroll'), byId('events'));

function setText(id: string, text: string): void {
  const e = byId(id);
  if (e.textContent !== text) e.textContent = text;
}

function storedHome(): Home | null {
  try {
    const h = JSON.parse(localStorage.getItem(HOME_KEY) ?? 'null') as Home | null;
    return h && Number.isFinite(h.lat) && Number.isFinite(h.lon) ? h : null;
  } catch {
    return null;
  }
}

function applyHome(): void {
  const picked = storedHome();
  const home = picked ?? hello?.home ?? null;
  map?.setHome(home);
  byId('reset-home').hidden = !(picked && hello?.home);
  setText('map-note', home ? `home: ${home.name ?? `${home.lat}, ${home.lon}`}` : 'no home yet: press "Set home" and click where this machine is');
}

function send(m: object): void {
  if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
}

function setPid(pid: number | null): void {
  filter.pid = pid;
  const chip = byId('map-filter');
  chip.hidden = pid === null;
  const proc = snapshot?.processes.find((p) => p.pid === pid);
  chip.textContent = pid === null ? '' : `only ${proc?.comm ?? '?'}[${pid}] \u2715`;
  send({ type: 'filter', filter });
  if (snapshot) render();
}

function render(): void {
  if (!snapshot) return;
  const s = snapshot;
  map?.update(s);
  procTable.setItems(s.processes);
  flowTable.setItems(s.flows.rows);
  renderSpecial(byId('special'), s);
  setText('flows-count', `${s.flows.rows.length} of ${s.flows.matched} matching (among the ${s.flows.pool} largest of ${s.flows.total} flows)`);
  setText('totals', `sending ${rate(s.totals.txRate)}, receiving ${rate(s.totals.rxRate)} - ${s.totals.processes} processes, ${s.totals.flows} flows${s.linesOmitted ? ` - ${s.linesOmitted} small lines not drawn` : ''}`);
  flushEvents();
  // Snapshots drawn on the map (tests and bench/ui wait on these).
  if (!map) return;
  document.body.dataset.snapshots = String(snapshots);
  document.body.dataset.updated = s.at;
  if (performance.getEntriesByName('ebpfmon-first-data').length === 0) performance.mark('ebpfmon-first-data');
}

// New events are drawn with the next snapshot, so that the page changes once a second and
// not once per batch of events (the server sends those every 250 ms): each change costs a
// style, layout and paint of the page (bench/ui --profile: 4.5 frames a second before,
// most of the renderer's time). The timer draws them when no snapshot comes.
function flushEvents(): void {
  clearTimeout(eventsTimer);
  eventsTimer = 0;
  if (!eventsDirty || document.hidden) return;
  eventsDirty = false;
  eventList.setItems(events);
}

function onMessage(m: ServerMessage): void {
  switch (m.type) {
    case 'hello': {
      hello = m;
      setText('who', `as ${m.user.name} (uid ${m.user.uid}) - ebpfmon ${m.version}`);
      byId('attribution').replaceChildren(...m.attributions.map((a, i) => el('span', {}, i ? ' - ' : '', el('a', { href: a.url, target: '_blank', rel: 'noopener noreferrer' }, a.text))));
      setText('sources', m.geoOff ? `geo: off (${m.geoOff})` : `geo: ${m.databases.map((d) => `${d.databaseType} (${d.source})`).join(', ')}`);
      applyHome();
      break;
    }
    case 'snapshot':
      snapshot = m;
      snapshots++;
      if (document.hidden) dirty = true;
      else render();
      break;
    case 'events': {
      events.unshift(...m.events.slice().reverse());
      if (events.length > MAX_EVENTS) events.length = MAX_EVENTS;
      eventsDirty = true;
      eventsTimer ||= window.setTimeout(flushEvents, 1100);
      if (m.skipped) setText('events-note', `${m.skipped} events not shown (too many at once)`);
      break;
    }
    case 'lost':
      setText('events-note', `${m.lost} events lost by the daemon for this page`);
      break;
    case 'status':
      status.dataset.ok = String(m.ok);
      status.textContent = m.ok ? (m.message ? `live (${m.message})` : 'live') : `daemon: ${m.message || 'not connected'}`;
      break;
  }
}

function connect(): void {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  ws = new WebSocket(`${proto}//${location.host}/ws?token=${encodeURIComponent(token)}`);
  ws.onopen = () => {
    send({ type: 'filter', filter });
    if (hovered) send({ type: 'hover', key: hovered });
  };
  ws.onmessage = (e) => onMessage(JSON.parse(String(e.data)) as ServerMessage);
  ws.onclose = () => {
    status.dataset.ok = 'false';
    status.textContent = 'disconnected from ebpfmonctl ui; retrying';
    setTimeout(connect, 2000);
  };
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && dirty) {
    dirty = false;
    render();
  }
  flushEvents();
});
byId('processes').querySelector('tbody')!.addEventListener('click', (e) => {
  const tr = (e.target as Element).closest('tr');
  if (!tr || tr.classList.contains('spacer')) return;
  const pid = tr.getAttribute('data-pid') === '' ? null : Number(tr.getAttribute('data-pid'));
  setPid(pid === filter.pid ? null : pid);
});
byId('map-filter').addEventListener('click', () => setPid(null));
byId('set-home').addEventListener('click', () => {
  byId('set-home').setAttribute('aria-pressed', 'true');
  map?.pickHome((h) => {
    localStorage.setItem(HOME_KEY, JSON.stringify(h));
    byId('set-home').setAttribute('aria-pressed', 'false');
    applyHome();
  });
});
byId('reset-home').addEventListener('click', () => {
  localStorage.removeItem(HOME_KEY);
  applyHome();
});
let typing: number | undefined;
const onFilterInput = () => {
  clearTimeout(typing);
  typing = window.setTimeout(() => {
    const portText = byId<HTMLInputElement>('f-port').value;
    const port = Number(portText);
    filter.text = byId<HTMLInputElement>('f-text').value;
    filter.port = portText === '' || !Number.isInteger(port) ? null : port;
    filter.protocol = byId<HTMLSelectElement>('f-protocol').value || null;
    filter.closed = byId<HTMLInputElement>('f-closed').checked;
    send({ type: 'filter', filter });
  }, 200);
};
for (const id of ['f-text', 'f-port', 'f-protocol', 'f-closed']) byId(id).addEventListener('input', onFilterInput);

connect();
requestAnimationFrame(() =>
  setTimeout(() => {
    map = new WorldMap(byId<HTMLImageElement>('map-base'), byId<HTMLCanvasElement>('map'), byId('tooltip'), (key) => {
      hovered = key;
      send({ type: 'hover', key });
    });
    applyHome();
    if (snapshot) render();
  }),
);
