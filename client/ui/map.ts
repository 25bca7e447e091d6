// SPDX-License-Identifier: Apache-2.0
// The world map, in two layers: the world (world.svg, projected at build time from
// world-atlas's 1:110m countries by build.mjs; no tiles, no network), an image the browser
// paints with the page's first frame, and above it the live layer, a canvas redrawn once
// per snapshot:
// one great-circle line per process and place, from home to the place, thickness by bytes
// and colour by process, and one dot per place. Hovering a dot shows who talks there.
//
// Canvas rather than SVG: with SVG every line and dot was a DOM element whose attributes
// changed each second, and the browser restyled, laid out and repainted them (bench/ui:
// the map's share of the page's CPU). A canvas redraw of 200 lines is one paint.
// What the canvas shows is also listed, as data, in its fallback content (#map-lines,
// #map-places): not drawn, read by screen readers and by the browser test.
//
// Why the world is not drawn here (bench/ui --profile): turning the TopoJSON into GeoJSON
// and projecting every country took 281 ms of the page's main thread at load (traced, on this
// 2-core machine under load), the largest task before the first data could be drawn, and
// the TopoJSON was half the page's script. Projected once at build time it is a 188 KiB
// image and the script no longer carries it.
import { geoInterpolate, geoNaturalEarth1, geoPath, type GeoPermissibleObjects } from 'd3-geo';
import anchors from 'ebpfmon:country-anchors';
import type { LineRow, LocationDetail, LocationRow, Snapshot } from '../src/ui/protocol.js';
import { bytes, rate } from '../src/render/units.js';
import { colorOf, el } from './dom.js';

export interface Home {
  lat: number;
  lon: number;
  name: string | null;
}

// The map's frame in map units; build.mjs projects world.svg into the same frame.
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

interface FallbackItem {
  li: HTMLLIElement;
  /** Writes the attributes and text that differ from those last written. */
  update(attrs: Record<string, string>, text: string): void;
}

function fallbackItem(list: HTMLElement, cls: string, fixed: Record<string, string>): FallbackItem {
  const li = el('li', { class: cls, ...fixed });
  list.append(li);
  const last = new Map<string, string>();
  let lastText = '';
  return {
    li,
    update(attrs, text) {
      for (const k in attrs) {
        const v = attrs[k]!;
        if (last.get(k) !== v) {
          last.set(k, v);
          li.setAttribute(k, v);
        }
      }
      if (text !== lastText) li.textContent = lastText = text;
    },
  };
}

export class WorldMap {
  private readonly projection = geoNaturalEarth1();
  /** Country outlines from world.svg, read the first time "Set home" needs a name. */
  private countries: Promise<Array<{ name: string; path: Path2D }>> | null = null;
  private readonly ctx: CanvasRenderingContext2D;
  private home: Home | null = null;
  private hovered: string | null = null;
  private last: Snapshot | null = null;
  private drawn: Drawn[] = [];
  private picking: ((h: Home) => void) | null = null;
  private frame = 0;
  private readonly lineItems = new Map<string, FallbackItem>();
  private readonly placeItems = new Map<string, FallbackItem>();
  private readonly lines = document.getElementById('map-lines')!;
  private readonly places = document.getElementById('map-places')!;

  constructor(
    private readonly baseEl: HTMLImageElement,
    private readonly liveEl: HTMLCanvasElement,
    private readonly tooltip: HTMLElement,
    private readonly onHover: (key: string | null) => void,
  ) {
    this.projection.fitExtent([[4, 4], [W - 4, H - 4]], { type: 'Sphere' } as GeoPermissibleObjects);
    this.ctx = liveEl.getContext('2d')!;
    this.resize();
    new ResizeObserver(() => this.resize()).observe(liveEl);

    liveEl.addEventListener('mousemove', (e) => this.onMove(e));
    liveEl.addEventListener('mouseleave', () => this.setHovered(null));
    liveEl.addEventListener('click', (e) => this.onClick(e));
  }

  /** The live layer's backing store at the element's size in device pixels, drawn in 960x480 units. */
  private resize(): void {
    const r = this.liveEl.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(r.width * dpr));
    const h = Math.max(1, Math.round((r.width / 2) * dpr));
    if (this.liveEl.width === w && this.liveEl.height === h) return;
    this.liveEl.width = w;
    this.liveEl.height = h;
    this.ctx.setTransform(w / W, 0, 0, h / H, 0, 0);
    this.schedule();
  }

  /** The country at a point in map units, from world.svg's outlines (one `path` per country). */
  private async countryAt(xy: [number, number]): Promise<string | null> {
    this.countries ??= fetch(this.baseEl.src)
      .then((r) => r.text())
      .then((text) => [...new DOMParser().parseFromString(text, 'image/svg+xml').querySelectorAll('path[data-name]')]
        .map((e) => ({ name: e.getAttribute('data-name')!, path: new Path2D(e.getAttribute('d')!) })));
    const hit = document.createElement('canvas').getContext('2d')!;
    return (await this.countries.catch(() => [])).find((c) => hit.isPointInPath(c.path, xy[0], xy[1]))?.name ?? null;
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
    const xy = this.toMap(e);
    const p = this.projection.invert?.(xy);
    if (!p || !Number.isFinite(p[0]) || !Number.isFinite(p[1])) return;
    const done = this.picking;
    this.picking = null;
    this.liveEl.classList.remove('picking');
    void this.countryAt(xy).then((name) => done({ lon: Math.round(p[0] * 100) / 100, lat: Math.round(p[1] * 100) / 100, name }));
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
    this.lineItems.forEach((item) => item.li.remove());
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

  /** The canvas's fallback content: one item per line and per place, updated by key. The
   * values last written are kept with each item, so an unchanged one costs no DOM call
   * (reading attributes back was a tenth of the page's script time, bench/ui --profile). */
  private syncFallback(s: Snapshot): void {
    const byKey = new Map(s.locations.map((l) => [l.key, l]));
    const seenLines = new Set<string>();
    for (const l of s.lines) {
      const loc = byKey.get(l.location);
      const g = loc && this.lineGeometry(l, loc);
      if (!loc || !g) continue;
      seenLines.add(l.key);
      let item = this.lineItems.get(l.key);
      if (!item) {
        item = fallbackItem(this.lines, 'line', {
          'data-key': l.key, 'data-location': l.location, 'data-pid': String(l.pid ?? ''), 'data-comm': l.comm ?? '', 'data-color': colorOf(l.pid, l.comm),
          'data-x1': g.a[0].toFixed(2), 'data-y1': g.a[1].toFixed(2), 'data-x2': g.b[0].toFixed(2), 'data-y2': g.b[1].toFixed(2), 'data-mx': g.m[0].toFixed(2), 'data-my': g.m[1].toFixed(2),
        });
        this.lineItems.set(l.key, item);
      }
      item.update({ 'data-tx': String(l.txBytes), 'data-rx': String(l.rxBytes), 'data-width': widthOf(l.txBytes + l.rxBytes).toFixed(2) },
        `${l.comm ?? '?'}[${l.pid ?? '?'}] to ${placeName(loc)}: sent ${bytes(l.txBytes)}, received ${bytes(l.rxBytes)}`);
    }
    for (const [k, item] of this.lineItems) {
      if (!seenLines.has(k)) {
        item.li.remove();
        this.lineItems.delete(k);
      }
    }
    const seenPlaces = new Set<string>();
    for (const loc of s.locations) {
      const p = placePoint(loc);
      const xy = p && this.projection(p);
      if (!xy) continue;
      seenPlaces.add(loc.key);
      let item = this.placeItems.get(loc.key);
      if (!item) {
        item = fallbackItem(this.places, 'place', {
          'data-key': loc.key, 'data-city': loc.city ?? '', 'data-country': loc.country ?? '', 'data-lat': loc.lat === null ? '' : String(loc.lat), 'data-lon': loc.lon === null ? '' : String(loc.lon),
          'data-x': xy[0].toFixed(2), 'data-y': xy[1].toFixed(2),
        });
        this.placeItems.set(loc.key, item);
      }
      item.update({ 'data-tx': String(loc.txBytes), 'data-rx': String(loc.rxBytes), 'data-flows': String(loc.flows) },
        `${placeName(loc)}: ${loc.flows} flows, sent ${bytes(loc.txBytes)}, received ${bytes(loc.rxBytes)}`);
    }
    for (const [k, item] of this.placeItems) {
      if (!seenPlaces.has(k)) {
        item.li.remove();
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
