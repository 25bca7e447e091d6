// SPDX-License-Identifier: Apache-2.0
// The process table (like `top`: sorted by current rate), the flow table and the events
// list. Each renders only the rows its scroll box shows (plus a few), into a small pool of
// rows reused in place, with two spacer rows standing for the rest: the page's work per
// update is that of ~20 rows however long the list (bench/ui).
import type { FlowRow, ProcessRow, Snapshot, UiEvent } from '../src/ui/protocol.js';
import { bytes, rate } from '../src/render/units.js';
import { colorOf, el, endpoint } from './dom.js';

type Cell = string | { color: string };

export interface RowSpec {
  attrs: Record<string, string>;
  cells: Cell[];
}

/** Row height in CSS pixels (style.css gives every row exactly this). */
export const ROW_PX = 20;
const OVERSCAN = 1;

/** Sets an attribute only when its value changes. */
function set(e: Element, name: string, v: string): void {
  if (e.getAttribute(name) !== v) e.setAttribute(name, v);
}

export class VirtualRows<T> {
  private items: T[] = [];
  private readonly top: HTMLElement;
  private readonly bottom: HTMLElement;
  private readonly pool: Array<{ row: HTMLElement; cells: HTMLElement[]; attrs: string[] }> = [];
  private frame = 0;
  // The scroll box's height and position, read only when they change (resize, scroll):
  // reading them in render() made the browser lay the page out again for each table on
  // each update (bench/ui --profile: forced layouts, a third of the renderer's time).
  private view = 320;
  private scrollTop = 0;

  constructor(
    private readonly scroller: HTMLElement,
    private readonly body: HTMLElement,
    private readonly rowTag: 'tr' | 'li',
    private readonly columns: number,
    private readonly spec: (item: T) => RowSpec,
    private readonly numeric: number[] = [],
  ) {
    this.top = el(rowTag, { class: 'spacer', 'aria-hidden': 'true' });
    this.bottom = el(rowTag, { class: 'spacer', 'aria-hidden': 'true' });
    body.replaceChildren(this.top, this.bottom);
    scroller.addEventListener('scroll', () => {
      this.frame ||= requestAnimationFrame(() => {
        this.frame = 0;
        this.scrollTop = this.scroller.scrollTop;
        this.render();
      });
    }, { passive: true });
    new ResizeObserver(() => {
      const h = this.scroller.clientHeight || 320;
      if (h === this.view) return;
      this.view = h;
      this.render();
    }).observe(scroller);
  }

  setItems(items: T[]): void {
    this.items = items;
    this.render();
  }

  private cellTag(): 'td' | 'span' {
    return this.rowTag === 'tr' ? 'td' : 'span';
  }

  private render(): void {
    const view = this.view;
    const first = Math.max(0, Math.floor(this.scrollTop / ROW_PX) - OVERSCAN);
    const count = Math.min(this.items.length - first, Math.ceil(view / ROW_PX) + 2 * OVERSCAN);
    const topPx = `${first * ROW_PX}px`;
    const bottomPx = `${Math.max(0, this.items.length - first - Math.max(0, count)) * ROW_PX}px`;
    if (this.top.style.height !== topPx) this.top.style.height = topPx;
    if (this.bottom.style.height !== bottomPx) this.bottom.style.height = bottomPx;
    for (let i = 0; i < Math.max(0, count); i++) {
      let r = this.pool[i];
      if (!r) {
        const cells = Array.from({ length: this.columns }, (_, j) => el(this.cellTag(), { class: this.numeric.includes(j) ? 'num' : `c${j}` }));
        const row = el(this.rowTag, {}, ...cells);
        r = { row, cells, attrs: [] };
        this.pool.push(r);
      }
      if (r.row.parentNode !== this.body) this.body.insertBefore(r.row, this.bottom);
      const s = this.spec(this.items[first + i]!);
      const names = Object.keys(s.attrs);
      for (const k of r.attrs) if (!(k in s.attrs)) r.row.removeAttribute(k);
      for (const k of names) set(r.row, k, s.attrs[k]!);
      r.attrs = names;
      s.cells.forEach((c, j) => {
        const td = r!.cells[j]!;
        if (typeof c === 'string') {
          if (td.textContent !== c) td.textContent = c;
        } else if (td.dataset.color !== c.color) {
          td.dataset.color = c.color;
          const swatch = td.firstElementChild as HTMLElement | null;
          if (swatch) swatch.style.background = c.color;
          else td.append(el('span', { class: 'swatch', style: `background:${c.color}` }));
        }
      });
    }
    for (let i = Math.max(0, count); i < this.pool.length; i++) this.pool[i]!.row.remove();
  }
}

export function processRows(scroller: HTMLElement, tbody: HTMLElement, selected: () => number | null): VirtualRows<ProcessRow> {
  return new VirtualRows<ProcessRow>(scroller, tbody, 'tr', 9, (p) => ({
    attrs: { 'data-pid': String(p.pid ?? ''), 'data-comm': p.comm ?? '', 'data-tx': String(p.txBytes), 'data-rx': String(p.rxBytes), class: p.pid !== null && p.pid === selected() ? 'selected' : '' },
    cells: [{ color: colorOf(p.pid, p.comm) }, String(p.pid ?? '-'), p.user, p.comm ?? '(unknown process)', rate(p.txRate), rate(p.rxRate), bytes(p.txBytes), bytes(p.rxBytes), `${p.openFlows}/${p.flows}`],
  }), [1, 4, 5, 6, 7, 8]);
}

export function flowRows(scroller: HTMLElement, tbody: HTMLElement): VirtualRows<FlowRow> {
  return new VirtualRows<FlowRow>(scroller, tbody, 'tr', 10, (f) => ({
    attrs: { 'data-pid': String(f.pid ?? ''), 'data-remote': f.remoteAddr, 'data-remote-port': String(f.remotePort ?? ''), 'data-tx': String(f.txBytes), 'data-rx': String(f.rxBytes), title: f.org ?? '' },
    cells: [
      `${f.comm ?? '?'}[${f.pid ?? '?'}]`, f.protocol, endpoint(f.localAddr, f.localPort),
      f.remoteName ? `${f.remoteName}${f.remotePort !== null ? `:${f.remotePort}` : ''}` : endpoint(f.remoteAddr, f.remotePort),
      f.where, f.asn !== null ? `AS${f.asn}` : '', f.state, bytes(f.txBytes), bytes(f.rxBytes), rate(f.txRate + f.rxRate),
    ],
  }), [7, 8, 9]);
}

export function eventRows(scroller: HTMLElement, list: HTMLElement): VirtualRows<UiEvent> {
  return new VirtualRows<UiEvent>(scroller, list, 'li', 3, (e) => ({
    attrs: { 'data-type': e.type, 'data-pid': String(e.pid ?? '') },
    cells: [e.at.slice(11, 19), e.type, `${e.text}${e.where ? ` ${e.where}` : ''}`],
  }));
}

export function renderSpecial(box: HTMLElement, s: Snapshot): void {
  const text = s.special.map((x) => `${x.label} ${x.flows} flow${x.flows === 1 ? '' : 's'} (${bytes(x.txBytes + x.rxBytes)})`).join(', ');
  const want = text ? `Not on the map: ${text}` : '';
  if (box.textContent !== want) box.textContent = want;
}
