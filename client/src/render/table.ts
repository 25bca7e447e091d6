// SPDX-License-Identifier: Apache-2.0
// Aligned, borderless tables sized to the terminal (cli-table3 does the layout; columns
// marked `flex` shrink, with an ellipsis, when the terminal is narrow).
import Table from 'cli-table3';

export interface Column<T> {
  header: string;
  value: (row: T) => string;
  align?: 'left' | 'right';
  /** May be truncated to fit the terminal. */
  flex?: boolean;
}

const NO_BORDER = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ',
};

export function renderTable<T>(rows: T[], columns: Column<T>[], width = process.stdout.columns || 160): string {
  const cells = rows.map((r) => columns.map((c) => c.value(r)));
  const natural = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  const gap = 2 * (columns.length - 1);
  let excess = natural.reduce((a, b) => a + b, 0) + gap - width;
  const widths = [...natural];
  // Shrink flexible columns, widest first, down to 8 characters each.
  while (excess > 0) {
    let widest = -1;
    columns.forEach((c, i) => {
      if (c.flex && widths[i]! > 8 && (widest < 0 || widths[i]! > widths[widest]!)) widest = i;
    });
    if (widest < 0) break;
    const cut = Math.min(excess, widths[widest]! - 8);
    widths[widest]! -= cut;
    excess -= cut;
  }
  const table = new Table({
    head: columns.map((c) => c.header),
    chars: NO_BORDER,
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0, compact: true },
    colWidths: widths,
    colAligns: columns.map((c) => c.align ?? 'left'),
    wordWrap: false,
    truncate: '…',
  });
  for (const row of cells) table.push(row);
  return table.toString().split('\n').map((l) => l.trimEnd()).join('\n');
}
