// SPDX-License-Identifier: Apache-2.0
// The world map, on two canvases: the world (world-atlas's 1:110m countries, bundled; no
// tiles, no network) drawn once, and above it the live layer, redrawn once per snapshot:
// one great-circle line per process and place, from home to the place, thickness by bytes
// and colour by process, and one dot per place. Hovering a dot shows who talks there.
//
// Canvas rather than SVG: with SVG every line and dot was a DOM element whose attributes
// changed each second, and the browser restyled, laid out and repainted them (bench/ui:
// the map's share of the page's CPU). A canvas redraw of 200 lines is one paint.
// What the canvas shows is also listed, as data, in its fallback content (#map-lines,
// #map-places): not drawn, read by screen readers and by the browser test.
import { geoContains, geoGraticule10, geoInterpolate, geoNaturalEarth1, geoPath, type GeoPermissibleObjects } from 'd3-geo';
import { feature, mesh } from 'topojson-client';
import type { GeometryCollection, Topology } from 'topojson-specification';
import type { Feature, FeatureCollection } from 'geojson';
import world from 'world-atlas/countries-110m.json';
import anchors from 'ebpfmon:country-anchors';
import type { LineRow, LocationDetail, LocationRow, Snapshot } from '../src/ui/protocol.js';
import { bytes, rate } from '../src/render/units.js';
import { colorOf, el } from './dom.js';

export interface Home {
  lat: number;
  lon: number;
  name: string | null;
}

const W = 960;
const H = 480;

/** [lon, lat] of a place: its coordinates, else its country's anchor, else none. */
export function placePoint(l: { lat: number | null; lon: number | null; country: string | null }): [number, number] | null {
  if (l.lat !== null && l.lon !== null) return [l.lon, l.lat];
  const a = l.country ? anchors[l.country] : undefined;
  return a ? [a[0], a[1]] : null;
}

export function countryName(code: string | null): string | null {
  return code ? (anchors[code]?.[2] ?? code) : null;
}

export function placeName(l: Pick<LocationRow, 'city' | 'country'>): string {
  const parts = [l.city, countryName(l.country)].filter(Boolean);
  return parts.length ? parts.join(', ') : 'unknown';
}

// Thickness and size on fixed logarithmic scales (1 kB thin, 1 GB thick), not relative to
// the largest, so that a line keeps its width while its own traffic does.
const widthOf = (b: number) => Math.min(6, 0.75 + 0.75 * Math.max(0, Math.log10(Math.max(1, b) / 1000)));
const radiusOf = (b: number) => Math.min(9, 2.5 + 0.9 * Math.max(0, Math.log10(Math.max(1, b) / 1000)));

interface Drawn {
  loc: LocationRow;
  x: number;
  y: number;
  r: number;
}

/** Sets an attribute only when its value changes. */
function set(e: Element, name: string, v: string): void {
  if (e.getAttribute(name) !== v) e.setAttribute(name, v);
}

export class WorldMap {
  private readonly projection = geoNaturalEarth1();
  private readonly countries: FeatureCollection;
  private readonly ctx: CanvasRenderingContext2D;
  private home: Home | null = null;
  private hovered: string | null = null;
  private last: Snapshot | null = null;
  private drawn: Drawn[] = [];
  private picking: ((h: Home) => void) | null = null;
  private frame = 0;
  private readonly lineItems = new Map<string, HTMLLIElement>();
  private readonly placeItems = new Map<string, HTMLLIElement>();

  constructor(
    private readonly baseEl: HTMLCanvasElement,
    private readonly liveEl: HTMLCanvasElement,
    private readonly tooltip: HTMLElement,
    private readonly onHover: (key: string | null) => void,
  ) {
    const topo = world as unknown as Topology<{ countries: GeometryCollection }>;
    this.countries = feature(topo, topo.objects.countries) as unknown as FeatureCollection;
    this.projection.fitExtent([[4, 4], [W - 4, H - 4]], { type: 'Sphere' } as GeoPermissibleObjects);
    this.ctx = liveEl.getContext('2d')!;
    const borders = mesh(topo, topo.objects.countries, (a, b) => a !== b);
    this.resize(() => this.drawBase(borders));
    new ResizeObserver(() => this.resize(() => this.drawBase(borders))).observe(liveEl);

    liveEl.addEventListener('mousemove', (e) => this.onMove(e));
    liveEl.addEventListener('mouseleave', () => this.setHovered(null));
    liveEl.addEventListener('click', (e) => this.onClick(e));
  }

  /** Backing stores at the element's size in device pixels; both layers drawn in 960x480 units. */
  private resize(redrawBase: () => void): void {
    const r = this.liveEl.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(r.width * dpr));
    const h = Math.max(1, Math.round((r.width / 2) * dpr));
    if (this.liveEl.width === w && this.liveEl.height === h) return;
    for (const c of [this.baseEl, this.liveEl]) {
      c.width = w;
      c.height = h;
      c.getContext('2d')!.setTransform(w / W, 0, 0, h / H, 0, 0);
    }
    redrawBase();
    this.schedule();
  }

  private drawBase(borders: GeoPermissibleObjects): void {
    const ctx = this.baseEl.getContext('2d')!;
    const path = geoPath(this.projection, ctx);
    const css = getComputedStyle(document.documentElement);
    const color = (name: string) => css.getPropertyValue(name).trim();
    ctx.clearRect(0, 0, W, H);
    const fill = (o: GeoPermissibleObjects, style: string) => {
      ctx.beginPath();
      path(o);
      ctx.fillStyle = style;
      ctx.fill();
    };
    const stroke = (o: GeoPermissibleObjects, style: string, width: number) => {
      ctx.beginPath();
      path(o);
      ctx.strokeStyle = style;
      ctx.lineWidth = width;
      ctx.stroke();
    };
    fill({ type: 'Sphere' } as GeoPermissibleObjects, color('--sea'));
    stroke(geoGraticule10(), color('--graticule'), 0.5);
    fill(this.countries, color('--land'));
    stroke(borders, color('--border'), 0.5);
    stroke({ type: 'Sphere' } as GeoPermissibleObjects, color('--line'), 1);
  }

  private toMap(e: MouseEvent): [number, number] {
    const r = this.liveEl.getBoundingClientRect();
    return [((e.clientX - r.left) / r.width) * W, ((e.clientY - r.top) / r.height) * H];
  }

  private onMove(e: MouseEvent): void {
    const [x, y] = this.toMap(e);
    let best: Drawn | null = null;
    let bestD = Infinity;
    for (const d of this.drawn) {
      const dist = Math.hypot(d.x - x, d.y - y);
      if (dist <= d.r + 3 && dist < bestD) {
        best = d;
        bestD = dist;
      }
    }
    this.setHovered(best?.loc.key ?? null);
    if (best) this.placeTooltip(e);
  }

  private setHovered(key: string | null): void {
    if (key === this.hovered) return;
    this.hovered = key;
    this.liveEl.classList.toggle('pointing', key !== null);
    this.onHover(key);
    this.renderTooltip();
  }

  private onClick(e: MouseEvent): void {
    if (!this.picking) return;
    const p = this.projection.invert?.(this.toMap(e));
    if (!p || !Number.isFinite(p[0]) || !Number.isFinite(p[1])) return;
    const country = this.countries.features.find((f: Feature) => geoContains(f, p));
    const done = this.picking;
    this.picking = null;
    this.liveEl.classList.remove('picking');
    done({ lon: Math.round(p[0] * 100) / 100, lat: Math.round(p[1] * 100) / 100, name: (country?.properties as { name?: string } | null)?.name ?? null });
  }

  /** The next click on the map picks home. */
  pickHome(done: (h: Home) => void): void {
    this.picking = done;
    this.liveEl.classList.add('picking');
  }

  setHome(h: Home | null): void {
    this.home = h;
    const marker = document.getElementById('map-home');
    if (marker) {
      const xy = h ? this.projection([h.lon, h.lat]) : null;
      set(marker, 'data-lat', h ? String(h.lat) : '');
      set(marker, 'data-lon', h ? String(h.lon) : '');
      set(marker, 'data-x', xy ? xy[0].toFixed(2) : '');
      set(marker, 'data-y', xy ? xy[1].toFixed(2) : '');
      marker.textContent = h ? `this machine${h.name ? ` (${h.name})` : ''}` : '';
    }
    this.lineItems.forEach((li) => li.remove());
    this.lineItems.clear();
    if (this.last) this.update(this.last);
  }

  update(s: Snapshot): void {
    this.last = s;
    this.schedule();
    this.syncFallback(s);
    if (this.hovered) this.renderTooltip();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  /** The geometry of a line: its ends and the middle of its great circle, in map units. */
  private lineGeometry(l: LineRow, loc: LocationRow): { a: [number, number]; b: [number, number]; m: [number, number] } | null {
    const h = this.home;
    const p = placePoint(loc);
    if (!h || !p) return null;
    const a = this.projection([h.lon, h.lat]);
    const b = this.projection(p);
    const m = this.projection(geoInterpolate([h.lon, h.lat], p)(0.5));
    return a && b && m ? { a, b, m } : null;
  }

  private draw(): void {
    const s = this.last;
    const ctx = this.ctx;
    ctx.clearRect(0, 0, W, H);
    if (!s) return;
    const byKey = new Map(s.locations.map((l) => [l.key, l]));
    const path = geoPath(this.projection, ctx);
    const h = this.home;
    ctx.globalAlpha = 0.8;
    ctx.lineCap = 'round';
    if (h) {
      // Thin lines first, so that thick ones stay visible on top.
      for (const l of [...s.lines].sort((x, y) => x.txBytes + x.rxBytes - (y.txBytes + y.rxBytes))) {
        const loc = byKey.get(l.location);
        const p = loc && placePoint(loc);
        if (!p) continue;
        ctx.beginPath();
        path({ type: 'LineString', coordinates: [[h.lon, h.lat], p] });
        ctx.strokeStyle = colorOf(l.pid, l.comm);
        ctx.lineWidth = widthOf(l.txBytes + l.rxBytes);
        ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
    const drawn: Drawn[] = [];
    for (const loc of s.locations) {
      const p = placePoint(loc);
      const xy = p && this.projection(p);
      if (!xy) continue;
      const r = radiusOf(loc.txBytes + loc.rxBytes);
      ctx.beginPath();
      ctx.arc(xy[0], xy[1], r, 0, 2 * Math.PI);
      ctx.fillStyle = loc.lat === null ? '#f4a261' : '#ffd166';
      ctx.fill();
      ctx.lineWidth = 0.8;
      ctx.strokeStyle = '#0b1017';
      ctx.stroke();
      drawn.push({ loc, x: xy[0], y: xy[1], r });
    }
    if (h) {
      const xy = this.projection([h.lon, h.lat]);
      if (xy) {
        ctx.beginPath();
        ctx.arc(xy[0], xy[1], 5, 0, 2 * Math.PI);
        ctx.fillStyle = '#5fb3f9';
        ctx.fill();
        ctx.lineWidth = 1.5;
        ctx.strokeStyle = '#ffffff';
        ctx.stroke();
      }
    }
    this.drawn = drawn;
  }

  /** The canvas's fallback content: one item per line and per place, updated by key. */
  private syncFallback(s: Snapshot): void {
    const byKey = new Map(s.locations.map((l) => [l.key, l]));
    const lines = document.getElementById('map-lines')!;
    const places = document.getElementById('map-places')!;
    const seenLines = new Set<string>();
    for (const l of s.lines) {
      const loc = byKey.get(l.location);
      const g = loc && this.lineGeometry(l, loc);
      if (!loc || !g) continue;
      seenLines.add(l.key);
      let li = this.lineItems.get(l.key);
      if (!li) {
        li = el('li', { class: 'line' });
        this.lineItems.set(l.key, li);
        lines.append(li);
        set(li, 'data-key', l.key);
        set(li, 'data-location', l.location);
        set(li, 'data-pid', String(l.pid ?? ''));
        set(li, 'data-comm', l.comm ?? '');
        set(li, 'data-color', colorOf(l.pid, l.comm));
        set(li, 'data-x1', g.a[0].toFixed(2));
        set(li, 'data-y1', g.a[1].toFixed(2));
        set(li, 'data-x2', g.b[0].toFixed(2));
        set(li, 'data-y2', g.b[1].toFixed(2));
        set(li, 'data-mx', g.m[0].toFixed(2));
        set(li, 'data-my', g.m[1].toFixed(2));
      }
      set(li, 'data-tx', String(l.txBytes));
      set(li, 'data-rx', String(l.rxBytes));
      set(li, 'data-width', widthOf(l.txBytes + l.rxBytes).toFixed(2));
      const text = `${l.comm ?? '?'}[${l.pid ?? '?'}] to ${placeName(loc)}: sent ${bytes(l.txBytes)}, received ${bytes(l.rxBytes)}`;
      if (li.textContent !== text) li.textContent = text;
    }
    for (const [k, li] of this.lineItems) {
      if (!seenLines.has(k)) {
        li.remove();
        this.lineItems.delete(k);
      }
    }
    const seenPlaces = new Set<string>();
    for (const loc of s.locations) {
      const p = placePoint(loc);
      const xy = p && this.projection(p);
      if (!xy) continue;
      seenPlaces.add(loc.key);
      let li = this.placeItems.get(loc.key);
      if (!li) {
        li = el('li', { class: 'place' });
        this.placeItems.set(loc.key, li);
        places.append(li);
        set(li, 'data-key', loc.key);
        set(li, 'data-city', loc.city ?? '');
        set(li, 'data-country', loc.country ?? '');
        set(li, 'data-lat', loc.lat === null ? '' : String(loc.lat));
        set(li, 'data-lon', loc.lon === null ? '' : String(loc.lon));
        set(li, 'data-x', xy[0].toFixed(2));
        set(li, 'data-y', xy[1].toFixed(2));
      }
      set(li, 'data-tx', String(loc.txBytes));
      set(li, 'data-rx', String(loc.rxBytes));
      set(li, 'data-flows', String(loc.flows));
      const text = `${placeName(loc)}: ${loc.flows} flows, sent ${bytes(loc.txBytes)}, received ${bytes(loc.rxBytes)}`;
      if (li.textContent !== text) li.textContent = text;
    }
    for (const [k, li] of this.placeItems) {
      if (!seenPlaces.has(k)) {
        li.remove();
        this.placeItems.delete(k);
      }
    }
  }

  private placeTooltip(e: MouseEvent): void {
    const wrap = this.tooltip.parentElement!.getBoundingClientRect();
    this.tooltip.style.left = `${Math.max(0, Math.min(e.clientX - wrap.left + 14, wrap.width - 320))}px`;
    this.tooltip.style.top = `${e.clientY - wrap.top + 14}px`;
  }

  private renderTooltip(): void {
    const loc = this.hovered ? this.last?.locations.find((l) => l.key === this.hovered) : undefined;
    if (!loc) {
      this.tooltip.hidden = true;
      return;
    }
    const d: LocationDetail | null = this.last?.detail?.key === loc.key ? this.last.detail : null;
    const parts: Node[] = [
      el('h3', {}, placeName(loc), loc.lat === null ? ' (country)' : ''),
      el('div', {}, `${loc.flows} flow${loc.flows === 1 ? '' : 's'}, sent ${bytes(loc.txBytes)}, received ${bytes(loc.rxBytes)}, now ${rate(loc.txRate + loc.rxRate)}`),
    ];
    if (d) {
      parts.push(
        el('table', { class: 'tt-procs' }, ...d.processes.map((p) =>
          el('tr', { 'data-pid': p.pid ?? '' }, el('td', {}, el('span', { class: 'swatch', style: `background:${colorOf(p.pid, p.comm)}` })), el('td', {}, `${p.comm ?? '?'}[${p.pid ?? '?'}]`), el('td', { class: 'num' }, bytes(p.bytes))))),
        el('table', { class: 'tt-remotes' }, ...d.remotes.map((r) =>
          el('tr', {}, el('td', {}, r.name ? `${r.name} (${r.addr})` : r.addr), el('td', {}, r.ports.length ? `port ${r.ports.join(', ')}` : ''), el('td', {}, r.asn !== null ? `AS${r.asn}${r.org ? ` ${r.org}` : ''}` : ''), el('td', { class: 'num' }, bytes(r.bytes))))),
      );
    }
    this.tooltip.replaceChildren(...parts);
    this.tooltip.hidden = false;
  }
}
