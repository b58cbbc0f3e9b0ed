import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type CellFormat, type TableOptions, type TableRow, showTable, tableBundle } from '../src/notebook/index.js';
import { launchChromium } from './browser.js';

const text = (rows: readonly TableRow[], options?: TableOptions) => tableBundle(rows, options).data['text/plain'] as string;
const html = (rows: readonly TableRow[], options?: TableOptions) => tableBundle(rows, options).data['text/html'] as string;
/** The one cell of a one-row, one-column table, as text. */
const cell = (value: unknown, format?: CellFormat) =>
  text([{ v: value }], { columns: [{ key: 'v', format }] }).split('\n')[2].trim();

const results = [
  { method: 'full fine-tuning', trainable: 9802, acc: 0.924, loss: 10.58 },
  { method: 'LoRA r=1', trainable: 723, acc: 0.684, loss: 0.5 },
];
const resultColumns: TableOptions['columns'] = [
  'method',
  { key: 'trainable', format: 'integer' },
  { key: 'acc', label: 'test acc', format: { percent: 1 } },
  { key: 'loss', format: { fixed: 2 } },
];

describe('tableBundle: one table as HTML and as aligned text', () => {
  it('text/plain: caption, header, rule, rows; numbers right-aligned, text left, two spaces apart, no trailing spaces', () => {
    expect(text(results, { caption: 'Rotated digits', columns: resultColumns })).toBe(
      [
        'Rotated digits',
        'method            trainable  test acc   loss',
        '----------------  ---------  --------  -----',
        'full fine-tuning      9,802    92.4 %  10.58',
        'LoRA r=1                723    68.4 %   0.50',
      ].join('\n'),
    );
  });

  it('sends exactly two mime types, and the same cells in both', () => {
    const bundle = tableBundle(results, { columns: resultColumns });
    expect(Object.keys(bundle.data).sort()).toEqual(['text/html', 'text/plain']);
    expect(bundle.metadata).toEqual({});
    for (const s of ['9,802', '92.4 %', '10.58', '723', '68.4 %', '0.50']) {
      expect(bundle.data['text/html']).toContain(`>${s}</td>`);
      expect(bundle.data['text/plain']).toContain(s);
    }
  });

  it('columns default to the keys of the first row, in order; a field missing from a row is an empty cell', () => {
    expect(text([{ b: 'x', a: 1 }, { a: 22 }])).toBe(['b   a', '-  --', 'x   1', '   22'].join('\n'));
    expect(text([{ b: 'x', a: 1, c: true }], { columns: ['c', { key: 'a', label: 'A!' }] })).toBe(['c     A!', '----  --', 'true   1'].join('\n'));
  });

  it('formats: integer, fixed, exponential, precision, percent, text, functions; strings, booleans and bigints as they are', () => {
    expect(cell(5_509_248, 'integer')).toBe('5,509,248');
    expect(cell(-1234, 'integer')).toBe('-1,234');
    expect(cell(0, 'integer')).toBe('0');
    expect(cell(999, 'integer')).toBe('999');
    expect(cell(12_345_678_901_234_567_890n, 'integer')).toBe('12,345,678,901,234,567,890'); // every digit
    expect(cell(-1000n, 'integer')).toBe('-1,000');
    expect(cell(1e21, 'integer')).toBe('1e+21'); // nothing to group
    expect(cell(2 / 3, { fixed: 4 })).toBe('0.6667');
    expect(cell(0.000123456, { exponential: 2 })).toBe('1.23e-4');
    expect(cell(0.000123456, { precision: 2 })).toBe('0.00012');
    expect(cell(0.9235, { percent: 1 })).toBe('92.3 %'); // toFixed's rounding of 92.35
    expect(cell(1, { percent: 0 })).toBe('100 %');
    expect(cell(0.1 + 0.2)).toBe('0.30000000000000004'); // 'text' (the default): the shortest round trip
    expect(cell(0.1 + 0.2, 'text')).toBe('0.30000000000000004');
    expect(cell(311.9, (v: number) => `${v.toFixed(1)}x`)).toBe('311.9x');
    expect(cell('n/a', { fixed: 2 })).toBe('n/a');
    expect(cell(true, { fixed: 2 })).toBe('true');
    expect(cell(7n, 'text')).toBe('7');
    // A format function sees the value and the whole row.
    const seen: unknown[] = [];
    text([{ a: 2, b: 3 }], { columns: [{ key: 'a', format: (v, row) => (seen.push(v, row), `${v * (row.b as number)}`) }] });
    expect(seen).toEqual([2, { a: 2, b: 3 }]);
  });

  it('NaN and ±Infinity are shown as words under every numeric format, and empty values as empty cells', () => {
    for (const format of ['integer', { fixed: 2 }, { exponential: 1 }, { precision: 3 }, { percent: 1 }, 'text'] as const) {
      expect(text([{ v: NaN }, { v: Infinity }, { v: -Infinity }], { columns: [{ key: 'v', format }] }).split('\n').slice(2)).toEqual(['      NaN', ' Infinity', '-Infinity']);
    }
    expect(text([{ a: 'x', v: null }, { a: 'y', v: undefined }, { a: 'z', v: 1 }], { columns: ['a', { key: 'v', format: (v) => `<${v}>` }] })).toBe(
      ['a    v', '-  ---', 'x', 'y', 'z  <1>'].join('\n'),
    );
  });

  it('alignment: right for numbers or a numeric format, left for text and mixed columns, or as asked', () => {
    const rows = [{ n: 1, s: 'ab', m: 1, f: 'x' }, { n: 100, s: 'c', m: 'many', f: 'yyy' }];
    expect(text(rows, { columns: ['n', 's', 'm', { key: 'f', format: { fixed: 1 } }] })).toBe(['  n  s   m       f', '---  --  ----  ---', '  1  ab  1       x', '100  c   many  yyy'].join('\n'));
    expect(text([{ c: 'a' }, { c: 'abcd' }], { columns: [{ key: 'c', label: 'centred', align: 'center' }] })).toBe(['centred', '-------', '   a', ' abcd'].join('\n'));
    expect(text([{ c: 1 }], { columns: [{ key: 'c', label: 'left', align: 'left' }] })).toBe(['left', '----', '1'].join('\n'));
  });

  it('measures width in characters, not UTF-16 units, and keeps multi-line captions', () => {
    expect(text([{ a: '→ 𝑥', b: 1 }, { a: 'abc', b: 22 }], { caption: 'two\nlines' })).toBe(['two', 'lines', 'a     b', '---  --', '→ 𝑥   1', 'abc  22'].join('\n'));
  });

  it('an empty table says so', () => {
    expect(text([], { columns: ['a', 'b'], caption: 'none' })).toBe(['none', 'a  b', '-  -', '(no rows)'].join('\n'));
    expect(html([], { columns: ['a'] })).toContain('<td colspan="1" style="text-align:left">(no rows)</td>');
    expect(text([])).toBe('(no rows)');
    expect(text([], { caption: 'c' })).toBe('c\n(no rows)');
  });

  it('escapes every piece of text that goes into the HTML', () => {
    const h = html([{ '<k>': '<b>bold</b> & "q" \'s\'' }], { caption: '<script>x</script>', columns: [{ key: '<k>', label: 'a<b' }] });
    expect(h).not.toMatch(/<b>|<script>|<k>/);
    expect(h).toContain('&lt;b&gt;bold&lt;/b&gt; &amp; &quot;q&quot; &#39;s&#39;');
    expect(h).toContain('<caption style="caption-side:top;text-align:left;font-weight:bold;padding:0.3em 0;white-space:pre-line">&lt;script&gt;x&lt;/script&gt;</caption>');
    expect(h).toContain('<th style="text-align:left">a&lt;b</th>');
  });
});

describe('tableBundle refuses what it cannot show faithfully, naming the argument and the value', () => {
  const cases: Array<[string, () => unknown, string]> = [
    ['rows not an array', () => tableBundle({ a: 1 } as never), 'tableBundle: rows = { a: 1 } is invalid; expected an array of row objects (field name → value)'],
    ['a row that is null', () => tableBundle([{ a: 1 }, null] as never), 'tableBundle: rows[1] = null is invalid; expected an object (field name → value)'],
    ['a row that is an array', () => tableBundle([[1, 2]] as never), 'tableBundle: rows[0] = [1, 2] is invalid; expected an object'],
    // eslint-disable-next-line no-sparse-arrays
    ['a hole in a sparse array of rows', () => tableBundle([{ a: 1 }, , { a: 2 }] as never), 'tableBundle: rows[1] = undefined is invalid; expected an object'],
    // eslint-disable-next-line no-sparse-arrays
    ['a hole in the columns', () => tableBundle([{ a: 1 }], { columns: ['a', , 'a'] as never }), 'tableBundle: columns[1] = undefined is invalid'],
    ['a row that is a number', () => tableBundle([3] as never), 'tableBundle: rows[0] = 3 is invalid'],
    ['options not an object', () => tableBundle([{ a: 1 }], null as never), 'tableBundle: options = null is invalid; expected an options object { columns?, caption? }'],
    ['an unknown option', () => tableBundle([{ a: 1 }], { colums: ['a'] } as never), 'tableBundle: options.colums = ["a"] is invalid; expected no such option (columns, caption)'],
    ['a caption that is not a string', () => tableBundle([{ a: 1 }], { caption: 3 as never }), 'tableBundle: caption = 3 is invalid; expected a string'],
    ['columns not an array', () => tableBundle([{ a: 1 }], { columns: 'a' as never }), 'tableBundle: columns = "a" is invalid; expected an array of field names'],
    ['an unknown column key', () => tableBundle([{ loss: 1, acc: 2 }], { columns: ['los'] }), 'tableBundle: columns[0].key = "los" is invalid; expected a field of the rows ("loss", "acc")'],
    ['a column present in no row', () => tableBundle([{ a: 1 }, { b: 2 }], { columns: ['a', 'c'] }), 'tableBundle: columns[1].key = "c" is invalid; expected a field of the rows ("a", "b")'],
    ['a column twice', () => tableBundle([{ a: 1 }], { columns: ['a', { key: 'a' }] }), 'tableBundle: columns[1].key = "a" is invalid; expected each field once'],
    ['a column spec that is a number', () => tableBundle([{ a: 1 }], { columns: [1 as never] }), 'tableBundle: columns[0] = 1 is invalid; expected a field name or { key, label?, format?, align? }'],
    ['a column option that does not exist', () => tableBundle([{ a: 1 }], { columns: [{ key: 'a', fmt: 'integer' } as never] }), 'tableBundle: columns[0].fmt = "integer" is invalid; expected no such option (key, label, format, align)'],
    ['a label that is not a string', () => tableBundle([{ a: 1 }], { columns: [{ key: 'a', label: 2 as never }] }), 'tableBundle: columns[0].label = 2 is invalid; expected a string'],
    ['an alignment that does not exist', () => tableBundle([{ a: 1 }], { columns: [{ key: 'a', align: 'middle' as never }] }), 'tableBundle: columns[0].align = "middle" is invalid; expected one of "left", "right", "center"'],
    ['a format not in the vocabulary', () => tableBundle([{ a: 1 }], { columns: [{ key: 'a', format: 'percent' as never }] }), `tableBundle: columns[0].format = "percent" is invalid; expected 'text', 'integer', { fixed: n }, { exponential: n }, { precision: n }, { percent: n } or a function (value, row) => string`],
    ['a format named after an inherited property', () => tableBundle([{ a: 1 }], { columns: [{ key: 'a', format: { toString: 2 } as never }] }), 'tableBundle: columns[0].format = { toString: 2 } is invalid'],
    ['two formats in one', () => tableBundle([{ a: 1 }], { columns: [{ key: 'a', format: { fixed: 1, percent: 1 } as never }] }), 'tableBundle: columns[0].format = { fixed: 1, percent: 1 } is invalid'],
    ['digits that are not an integer', () => tableBundle([{ a: 1 }], { columns: [{ key: 'a', format: { fixed: 1.5 } }] }), 'tableBundle: columns[0].format.fixed = 1.5 is invalid; expected an integer number of digits from 0 to 100'],
    ['too many digits', () => tableBundle([{ a: 1 }], { columns: [{ key: 'a', format: { exponential: 101 } }] }), 'tableBundle: columns[0].format.exponential = 101 is invalid; expected an integer number of digits from 0 to 100'],
    ['precision 0', () => tableBundle([{ a: 1 }], { columns: [{ key: 'a', format: { precision: 0 } }] }), 'tableBundle: columns[0].format.precision = 0 is invalid; expected an integer number of digits from 1 to 100'],
    ['a fraction under the integer format', () => tableBundle([{ n: 1 }, { n: 2.5 }], { columns: [{ key: 'n', format: 'integer' }] }), `tableBundle: rows[1].n = 2.5 is invalid; expected an integer for the 'integer' format of column "n" (round it first, or use { fixed: n })`],
    ['an object as a value', () => tableBundle([{ a: { x: 1 } }]), 'tableBundle: rows[0].a = { x: 1 } is invalid; expected a number, string, boolean, bigint, or undefined/null for an empty cell'],
    ['a tensor-like value', () => tableBundle([{ a: [1, 2] }]), 'tableBundle: rows[0].a = [1, 2] is invalid'],
    ['a format function that returns a number', () => tableBundle([{ a: 1 }], { columns: [{ key: 'a', format: (v) => v }] }), 'tableBundle: the format of column "a" for rows[0].a = 1 is invalid; expected a string'],
    ['a line break in a cell', () => tableBundle([{ a: 'one\ntwo' }]), 'tableBundle: rows[0].a = "one\\ntwo" is invalid; expected text without line breaks'],
    ['a line break in a header', () => tableBundle([{ a: 1 }], { columns: [{ key: 'a', label: 'x\ny' }] }), 'tableBundle: columns[0].label = "x\\ny" is invalid; expected a header without line breaks'],
    ['a first row with no fields', () => tableBundle([{}]), 'tableBundle: rows[0] = {} is invalid; expected a row with at least one field (its keys are the default columns)'],
    ['no columns for rows', () => tableBundle([{ a: 1 }], { columns: [] }), 'tableBundle: columns = [] is invalid; expected at least one column'],
  ];
  for (const [what, call, message] of cases) {
    it(what, () => expect(call).toThrow(message));
  }

  it('showTable names itself in its errors', () => {
    expect(() => showTable([{ a: 1 }], { columns: ['b'] })).toThrow('showTable: columns[0].key = "b" is invalid');
  });
});

describe('showTable', () => {
  afterEach(() => vi.restoreAllMocks());

  it('outside a kernel prints the text table', () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    showTable(results, { caption: 'Rotated digits', columns: resultColumns });
    expect(log.mock.calls).toEqual([[text(results, { caption: 'Rotated digits', columns: resultColumns })]]);
  });
});

describe('the HTML, parsed and laid out by Chromium', () => {
  let browser: Browser;
  let page: Page;
  beforeAll(async () => {
    browser = await launchChromium();
    page = await browser.newPage();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
  });

  it('a caption, one header row, one body row per row, cells as given, numbers right-aligned in tabular figures', async () => {
    const rows = [...results, { method: '<img src=x onerror=alert(1)> & co', trainable: 1_234_567, acc: NaN, loss: -0.004 }];
    await page.setContent(`<!doctype html><body>${html(rows, { caption: 'Rotated <digits>', columns: resultColumns })}</body>`);
    const table = await page.evaluate(() => {
      const t = document.querySelector('table.lora-tfjs-table') as HTMLTableElement;
      const cells = (tr: Element) => Array.from(tr.children).map((c) => ({ tag: c.tagName, text: c.textContent, align: getComputedStyle(c).textAlign }));
      return {
        count: document.querySelectorAll('table').length,
        injected: document.querySelectorAll('img, script').length,
        caption: t.caption?.textContent,
        numeric: getComputedStyle(t).fontVariantNumeric,
        head: Array.from(t.tHead!.rows).map(cells),
        body: Array.from(t.tBodies[0].rows).map(cells),
        bodies: t.tBodies.length,
      };
    });
    expect(table.count).toBe(1);
    expect(table.injected).toBe(0);
    expect(table.caption).toBe('Rotated <digits>');
    expect(table.numeric).toBe('tabular-nums');
    expect(table.bodies).toBe(1);
    expect(table.head).toEqual([
      [
        { tag: 'TH', text: 'method', align: 'left' },
        { tag: 'TH', text: 'trainable', align: 'right' },
        { tag: 'TH', text: 'test acc', align: 'right' },
        { tag: 'TH', text: 'loss', align: 'right' },
      ],
    ]);
    expect(table.body.map((r) => r.map((c) => c.text))).toEqual([
      ['full fine-tuning', '9,802', '92.4 %', '10.58'],
      ['LoRA r=1', '723', '68.4 %', '0.50'],
      ['<img src=x onerror=alert(1)> & co', '1,234,567', 'NaN', '-0.00'],
    ]);
    expect(new Set(table.body.flat().map((c) => `${c.tag} ${c.align}`))).toEqual(new Set(['TD left', 'TD right']));
    expect(table.body.every((r) => r[0].align === 'left' && r.slice(1).every((c) => c.align === 'right'))).toBe(true);
  });
});
