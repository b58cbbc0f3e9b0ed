/**
 * Tables for notebooks: `tableBundle` turns rows of plain values into one display bundle
 * (an HTML table for JupyterLab, the classic notebook and nbconvert's HTML, and the same
 * table as aligned text), and `showTable` sends it. Pure data in, data out; no tensors.
 */
import { type DisplayBundle, displayBundle, escapeHtml } from './display.js';
import { invalid } from '../util/validate.js';

/**
 * How a column shows its numbers:
 * - `'text'`: `String(value)` (the default; numbers as JavaScript prints them, shortest round trip);
 * - `'integer'`: an integer with thousands separators, `5,509,248` (a non-integer is an error: round it first);
 * - `{ fixed: n }`: `n` digits after the point, `value.toFixed(n)`;
 * - `{ exponential: n }`: `n` digits after the point in scientific notation, `value.toExponential(n)`;
 * - `{ precision: n }`: `n` significant digits, `value.toPrecision(n)`;
 * - `{ percent: n }`: a fraction as a percentage with `n` digits after the point, `0.924` → `92.4 %`;
 * - a function `(value, row) => string`, for anything else (units, signs, several values in one cell);
 *   it is called for non-empty values only, so `value` is a number, string, boolean or bigint.
 *
 * Strings and booleans are shown as they are under every format, bigints too (grouped under
 * `'integer'`), and an empty (`undefined` or `null`) value as an empty cell. `NaN`, `Infinity` and `-Infinity` are shown as those words
 * under every numeric format (no digits are made up for them).
 */
export type CellFormat =
  | 'text'
  | 'integer'
  | { fixed: number }
  | { exponential: number }
  | { precision: number }
  | { percent: number }
  // `any`: a notebook's format reads its own column's values without a cast (see above for what they can be).
  | ((value: any, row: TableRow) => string);

/** Horizontal alignment of a column's header and cells. */
export type CellAlign = 'left' | 'right' | 'center';

/** One column of a table: which field of the rows, and how it is shown. */
export interface TableColumn {
  /** The field of each row this column shows. */
  key: string;
  /** The header (default: the key). */
  label?: string;
  /** See {@link CellFormat} (default `'text'`). */
  format?: CellFormat;
  /** Default: right when the format is numeric or every value of the column is a number, else left. */
  align?: CellAlign;
}

/** Options of {@link tableBundle} and {@link showTable}. */
export interface TableOptions {
  /** The columns in order: field names, or column specs (default: the keys of the first row). */
  columns?: Array<string | TableColumn>;
  /** A title shown above the table. */
  caption?: string;
}

/** A table row: field name → value (number, string, boolean, bigint; undefined or null for an empty cell). */
export type TableRow = Record<string, unknown>;

const ALIGNS: readonly CellAlign[] = ['left', 'right', 'center'];
const DIGIT_FORMATS = { fixed: [0, 100], exponential: [0, 100], precision: [1, 100], percent: [0, 100] } as const;
type DigitFormat = keyof typeof DIGIT_FORMATS;
const FORMAT_VOCABULARY = `'text', 'integer', { fixed: n }, { exponential: n }, { precision: n }, { percent: n } or a function (value, row) => string`;

interface ResolvedColumn {
  key: string;
  label: string;
  format: CellFormat;
  align: CellAlign;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function checkFormat(where: string, name: string, format: unknown): CellFormat {
  if (format === 'text' || format === 'integer' || typeof format === 'function') return format as CellFormat;
  if (isRecord(format)) {
    const keys = Object.keys(format);
    const kind = keys[0] as DigitFormat;
    if (keys.length === 1 && Object.prototype.hasOwnProperty.call(DIGIT_FORMATS, kind)) {
      const digits = format[kind];
      const [lo, hi] = DIGIT_FORMATS[kind];
      if (typeof digits !== 'number' || !Number.isInteger(digits) || digits < lo || digits > hi) {
        invalid(where, `${name}.${kind}`, digits, `an integer number of digits from ${lo} to ${hi}`);
      }
      return format as CellFormat;
    }
  }
  return invalid(where, name, format, FORMAT_VOCABULARY);
}

function isNumericFormat(format: CellFormat): boolean {
  return format === 'integer' || (typeof format === 'object' && format !== null);
}

/** Group an integer's digits by three: 5509248 → "5,509,248" (bigints exactly, digit for digit). */
function groupThousands(value: number | bigint): string {
  const text = String(value);
  const negative = text.startsWith('-');
  const digits = negative ? text.slice(1) : text;
  // Beyond 1e21 JavaScript prints a number with an exponent: nothing to group.
  const grouped = /^\d+$/.test(digits) ? digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',') : digits;
  return negative ? `-${grouped}` : grouped;
}

function formatNumber(value: number, format: Exclude<CellFormat, 'text' | ((value: any, row: TableRow) => string)>): string | null {
  if (!Number.isFinite(value)) return String(value); // NaN, Infinity, -Infinity: said, not formatted
  if (format === 'integer') return Number.isInteger(value) ? groupThousands(value) : null;
  if ('fixed' in format) return value.toFixed(format.fixed);
  if ('exponential' in format) return value.toExponential(format.exponential);
  if ('precision' in format) return value.toPrecision(format.precision);
  return `${(value * 100).toFixed(format.percent)} %`;
}

/** The text of one cell. */
function cellText(where: string, column: ResolvedColumn, row: TableRow, r: number): string {
  const value = row[column.key];
  const at = `rows[${r}].${column.key}`;
  if (value === undefined || value === null) return '';
  let text: unknown;
  if (typeof column.format === 'function') {
    text = column.format(value, row);
    if (typeof text !== 'string') invalid(where, `the format of column "${column.key}" for ${at}`, text, 'a string');
  } else if (typeof value === 'string') {
    text = value;
  } else if (typeof value === 'boolean' || typeof value === 'bigint') {
    text = typeof value === 'bigint' && column.format === 'integer' ? groupThousands(value) : String(value);
  } else if (typeof value === 'number') {
    if (column.format === 'text') text = String(value);
    else {
      text = formatNumber(value, column.format);
      if (text === null) invalid(where, at, value, `an integer for the 'integer' format of column "${column.key}" (round it first, or use { fixed: n })`);
    }
  } else {
    invalid(where, at, value, 'a number, string, boolean, bigint, or undefined/null for an empty cell');
  }
  const s = text as string;
  // A line break would tear the text table apart; say so rather than reflow it.
  if (/[\r\n]/.test(s)) invalid(where, at, s, 'text without line breaks');
  return s;
}

function resolveColumns(where: string, rows: TableRow[], columns: unknown): ResolvedColumn[] {
  let specs: unknown[];
  if (columns === undefined) specs = rows.length === 0 ? [] : Object.keys(rows[0]);
  else if (!Array.isArray(columns)) return invalid(where, 'columns', columns, 'an array of field names or { key, label?, format?, align? }');
  else specs = Array.from(columns); // holes become undefined, and are refused below
  const seen = new Set<string>();
  return specs.map((spec, i) => {
    const c: Record<string, unknown> = typeof spec === 'string' ? { key: spec } : isRecord(spec) ? spec : invalid(where, `columns[${i}]`, spec, 'a field name or { key, label?, format?, align? }');
    for (const k of Object.keys(c)) {
      if (!['key', 'label', 'format', 'align'].includes(k)) invalid(where, `columns[${i}].${k}`, c[k], 'no such option (key, label, format, align)');
    }
    if (typeof c.key !== 'string' || c.key === '') invalid(where, `columns[${i}].key`, c.key, 'a field name of the rows');
    const key = c.key;
    if (seen.has(key)) invalid(where, `columns[${i}].key`, key, 'each field once');
    seen.add(key);
    // A key that no row has is a typo, not an empty column.
    if (rows.length > 0 && !rows.some((row) => Object.prototype.hasOwnProperty.call(row, key))) {
      const known = [...new Set(rows.flatMap((row) => Object.keys(row)))];
      invalid(where, `columns[${i}].key`, key, `a field of the rows (${known.map((k) => JSON.stringify(k)).join(', ') || 'they have none'})`);
    }
    if (c.label !== undefined && typeof c.label !== 'string') invalid(where, `columns[${i}].label`, c.label, 'a string');
    const label = (c.label as string | undefined) ?? key;
    if (/[\r\n]/.test(label)) invalid(where, `columns[${i}].label`, label, 'a header without line breaks');
    const format = c.format === undefined ? 'text' : checkFormat(where, `columns[${i}].format`, c.format);
    if (c.align !== undefined && !(ALIGNS as readonly unknown[]).includes(c.align)) invalid(where, `columns[${i}].align`, c.align, `one of ${ALIGNS.map((a) => `"${a}"`).join(', ')}`);
    const present = rows.map((row) => row[key]).filter((v) => v !== undefined && v !== null);
    const numeric = isNumericFormat(format) || (present.length > 0 && present.every((v) => typeof v === 'number' || typeof v === 'bigint'));
    const align = (c.align as CellAlign | undefined) ?? (numeric ? 'right' : 'left');
    return { key, label, format, align };
  });
}


/** Width in characters as a monospace terminal shows them (code points; wide CJK characters are not measured). */
const width = (s: string) => [...s].length;

function pad(s: string, w: number, align: CellAlign): string {
  const gap = w - width(s);
  if (align === 'left') return s + ' '.repeat(gap);
  if (align === 'right') return ' '.repeat(gap) + s;
  const left = Math.floor(gap / 2);
  return ' '.repeat(left) + s + ' '.repeat(gap - left);
}

/** The table as aligned text: caption, header, a rule, the rows; columns two spaces apart, no trailing spaces. */
function textTable(columns: ResolvedColumn[], cells: string[][], caption: string | undefined): string {
  const widths = columns.map((c, j) => Math.max(width(c.label), ...cells.map((row) => width(row[j]))));
  const line = (parts: string[]) => parts.join('  ').replace(/ +$/, '');
  const lines =
    columns.length === 0
      ? []
      : [
          line(columns.map((c, j) => pad(c.label, widths[j], c.align))),
          line(widths.map((w) => '-'.repeat(w))),
          ...cells.map((row) => line(row.map((s, j) => pad(s, widths[j], columns[j].align)))),
        ];
  if (cells.length === 0) lines.push('(no rows)');
  return [...(caption === undefined ? [] : caption.split(/\r?\n/)), ...lines].join('\n');
}

// Inline styles, so the table reads the same in JupyterLab, the classic notebook and
// nbconvert's HTML without a stylesheet of its own; colours, borders and padding are left to
// the page (light and dark themes). Digits of equal width line the numbers up. In an
// untrusted notebook the sanitizers filter styles: JupyterLab 4.6 keeps text-align and
// white-space but drops font-variant-numeric; the classic notebook 6.4 drops them all, and
// its own table style right-aligns every column.
const TABLE_STYLE = 'font-variant-numeric:tabular-nums';
const CAPTION_STYLE = 'caption-side:top;text-align:left;font-weight:bold;padding:0.3em 0;white-space:pre-line';
const cellStyle = (c: ResolvedColumn) => `text-align:${c.align}${c.align === 'left' ? '' : ';white-space:nowrap'}`;

function htmlTable(columns: ResolvedColumn[], cells: string[][], caption: string | undefined): string {
  const head = columns.map((c) => `<th style="${cellStyle(c)}">${escapeHtml(c.label)}</th>`).join('');
  const body =
    cells.length === 0
      ? `<tr><td colspan="${Math.max(1, columns.length)}" style="text-align:left">(no rows)</td></tr>`
      : cells.map((row) => `<tr>${row.map((s, j) => `<td style="${cellStyle(columns[j])}">${escapeHtml(s)}</td>`).join('')}</tr>`).join('\n');
  return (
    `<table class="lora-tfjs-table" style="${TABLE_STYLE}">\n` +
    (caption === undefined ? '' : `<caption style="${CAPTION_STYLE}">${escapeHtml(caption)}</caption>\n`) +
    `<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>`
  );
}

/**
 * The display bundle of a table: `text/html` (a table with a header row, numbers right-aligned
 * in tabular figures, text escaped) and `text/plain` (the same cells as aligned text, caption
 * first). Throws, naming the argument and the value, for anything it cannot show faithfully.
 */
export function tableBundle(rows: readonly TableRow[], options: TableOptions = {}): DisplayBundle {
  return buildTable('tableBundle', rows, options);
}

function buildTable(where: string, rows: readonly TableRow[], options: TableOptions): DisplayBundle {
  if (!Array.isArray(rows)) invalid(where, 'rows', rows, 'an array of row objects (field name → value)');
  // An index loop, not forEach: a hole in a sparse array is a missing row too.
  for (let i = 0; i < rows.length; i++) {
    if (!isRecord(rows[i])) invalid(where, `rows[${i}]`, rows[i], 'an object (field name → value)');
  }
  if (!isRecord(options)) invalid(where, 'options', options, 'an options object { columns?, caption? }');
  for (const k of Object.keys(options)) {
    if (k !== 'columns' && k !== 'caption') invalid(where, `options.${k}`, (options as Record<string, unknown>)[k], 'no such option (columns, caption)');
  }
  const caption = options.caption;
  if (caption !== undefined && typeof caption !== 'string') invalid(where, 'caption', caption, 'a string');
  const columns = resolveColumns(where, rows as TableRow[], options.columns);
  if (columns.length === 0 && rows.length > 0) {
    if (options.columns === undefined) invalid(where, 'rows[0]', rows[0], 'a row with at least one field (its keys are the default columns)');
    invalid(where, 'columns', options.columns, 'at least one column');
  }
  const cells = rows.map((row, r) => columns.map((c) => cellText(where, c, row, r)));
  return { data: { 'text/html': htmlTable(columns, cells, caption), 'text/plain': textTable(columns, cells, caption) }, metadata: {} };
}

/**
 * Show rows as a table in the notebook (HTML, with the aligned text table as the plain-text
 * form); outside a kernel, print the text table. See {@link tableBundle}.
 */
export function showTable(rows: readonly TableRow[], options: TableOptions = {}): void {
  displayBundle(buildTable('showTable', rows, options));
}
