import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type DocEntry, MARKERS, TEMPLATE_DIR, TEMPLATE_NAME, docPage, docStatus, indexHtml, neighbours, notebookInfo, pageChrome, writeSite } from '../scripts/lib/docs.js';
import type { GoldenCheck } from '../scripts/lib/goldens.js';
import { applyEdits, decodeEntities, escapeHtml, startTags } from '../scripts/lib/html.js';
import { externalReferences, isExternalUrl, offlineHtml } from '../scripts/lib/offline.js';
import { PLOTLY_SCRIPT_MARKER } from '../src/notebook/display.js';

const run = { backend: 'wasm', when: new Date('2026-01-02T03:04:05Z'), wallSeconds: 123.4 };
const entry = (name: string, extra: Partial<DocEntry> = {}): DocEntry => ({
  name,
  title: `${name} title`,
  summary: `what ${name} shows`,
  status: 'passed',
  note: '3 of 3 values within tolerance',
  seconds: 12.34,
  page: `${name}.html`,
  ...extra,
});
const three = [entry('01-a'), entry('02-b'), entry('03-c')];

/** A page shaped like nbconvert's lab template output, through the lora-docs template. */
function nbconvertPage(body: string, { markers = true } = {}): string {
  return [
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8" />\n<title>01-a</title>',
    '<style type="text/css">.jp-Notebook { background: url(data:image/png;base64,AAAA) }</style>',
    markers ? MARKERS.head : '',
    '</head>\n<body class="jp-Notebook" data-jp-theme-light="true">\n<main>',
    markers ? MARKERS.header : '',
    body,
    markers ? MARKERS.footer : '',
    '</main>\n</body>\n</html>',
  ].join('\n');
}

const hrefs = (html: string) => startTags(html).flatMap((t) => t.attrs.filter((a) => a.name === 'href').map((a) => a.value as string));
const tagsWith = (html: string, name: string, attr: string, value: string) => startTags(html).filter((t) => t.name === name && t.attrs.some((a) => a.name === attr && a.value === value));

describe('HTML scanning (scripts/lib/html.ts)', () => {
  it('reads start tags and attributes, skipping comments and the text of scripts and styles', () => {
    const html = [
      '<!DOCTYPE html><!-- <img src="http://in-a-comment"> -->',
      `<a href="x.html" title='a > b' data-x=1 hidden>link</a>`,
      '<script>var s = "<img src=\'http://in-a-script\'>";</script>',
      '<style>p::before { content: "<img src=x>" }</style>',
      '<img src="&#104;ttp&colon;//decoded">',
    ].join('');
    const tags = startTags(html);
    expect(tags.map((t) => t.name)).toEqual(['a', 'script', 'style', 'img']);
    expect(tags[0].attrs).toEqual([
      { name: 'href', value: 'x.html' },
      { name: 'title', value: 'a > b' },
      { name: 'data-x', value: '1' },
      { name: 'hidden', value: null },
    ]);
    expect(tags[1].raw?.text).toBe('var s = "<img src=\'http://in-a-script\'>";');
    expect(html.slice(tags[1].start, tags[1].raw?.elementEnd)).toMatch(/^<script>[^]*<\/script>$/);
    expect(tags[3].attrs[0].value).toBe('http://decoded');
  });

  it('escapes and decodes text, and applies edits in any order', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    expect(decodeEntities('&lt;&#x41;&#66;&amp;&unknown;')).toBe('<AB&&unknown;');
    expect(applyEdits('abcdef', [{ start: 4, end: 5, text: 'E' }, { start: 0, end: 1, text: '' }])).toBe('bcdEf');
    expect(() => applyEdits('abc', [{ start: 0, end: 2, text: '' }, { start: 1, end: 3, text: '' }])).toThrow(/overlapping/);
  });
});

describe('offline pages (scripts/lib/offline.ts)', () => {
  it('tells references outside the docs folder from those inside', () => {
    for (const url of ['https://cdn.example/x.js', 'http://x', 'HTTPS://X', 'file:///usr/share/javascript/mathjax/MathJax.js', '//cdn.example/x', '\\\\host\\x', '/abs.js', '../up.html', 'a/../../up.html', '%2e%2e/up.html', 'mailto:a@b.c', 'javascript:void(0)', ' https://x ', 'ht\ttps://x', 'ws://x']) {
      expect(isExternalUrl(url), url).toBe(true);
    }
    for (const url of ['', '#Heading-1', 'page.html', './page.html#x', 'a/../page.html', 'plotly.min.js?v=1', 'data:image/png;base64,AAAA', 'DATA:text/plain,x', '02 b.html']) {
      expect(isExternalUrl(url), url).toBe(false);
    }
  });

  it('lets a page one folder down (demo/index.html) climb to the docs folder, not above it', () => {
    for (const url of ['../index.html', '../plotly.min.js', './demo.js', 'x/../../index.html']) expect(isExternalUrl(url, 1), url).toBe(false);
    for (const url of ['../../index.html', '../../../x', '..\\..\\x', '%2e%2e/%2e%2e/x', '/abs.js', 'https://x']) expect(isExternalUrl(url, 1), url).toBe(true);
    expect(externalReferences('<script src="../plotly.min.js"></script><a href="../index.html">x</a>', 1)).toEqual([]);
    expect(externalReferences('<script src="../plotly.min.js"></script>')).toEqual(['<script src> ../plotly.min.js']);
    expect(externalReferences('<a href="../../up.html">x</a>', 1)).toEqual(['<a href> ../../up.html']);
  });

  it('checks every url() of a style attribute, not only the first', () => {
    const out = offlineHtml('<div style="background: url(local.png), url(../up.png)"></div>');
    expect(externalReferences(out)).toEqual([]);
    expect(out).toContain('url(local.png)');
    expect(out).not.toContain('../up.png');
  });

  it('finds every kind of reference out: src, href, srcset, CSS url() and @import, meta refresh, script literals', () => {
    const html = [
      '<script src="https://cdnjs.example/require.min.js"></script>',
      '<link rel="stylesheet" href="//fonts.example/css">',
      '<img srcset="local.png 1x, https://img.example/big.png 2x" src="local.png">',
      '<style>@import url("https://fonts.example/a.css"); .x { background: url(\'http://img.example/b.png\') } .y { background: url(data:image/png;base64,AA) }</style>',
      '<div style="background-image: url(https://img.example/c.png)"></div>',
      '<meta http-equiv="refresh" content="0; url=https://elsewhere.example/">',
      '<script type="module">const m = await import("https://cdnjs.example/mermaid.esm.min.mjs");</script>',
      '<script>document.createElementNS("http://www.w3.org/2000/svg", "svg");</script>',
      '<a href="#top">top</a> <a href="02-b.html">next</a> <a href="https&#58;//obfuscated.example">x</a>',
    ].join('\n');
    expect(externalReferences(html)).toEqual([
      '<script src> https://cdnjs.example/require.min.js',
      '<link href> //fonts.example/css',
      '<img srcset> https://img.example/big.png',
      '<style> https://fonts.example/a.css',
      '<style> http://img.example/b.png',
      '<div style> https://img.example/c.png',
      '<meta content> https://elsewhere.example/',
      '<script> https://cdnjs.example/mermaid.esm.min.mjs',
      '<a href> https://obfuscated.example',
    ]);
  });

  it('removes external scripts, stylesheets and images, keeps local ones, and turns links to other sites into text with the address', () => {
    const html = nbconvertPage(
      [
        '<script src="https://cdnjs.example/require.min.js"></script>',
        '<script src="file:///usr/share/javascript/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"> </script>',
        '<script src="local.js"></script>',
        '<link rel="stylesheet" href="https://fonts.example/css"><link rel="stylesheet" href="local.css">',
        '<img src="https://img.example/x.png" alt="a <figure>"><img src="local.png">',
        '<p>The data (<a href="https://doi.org/10.24432/C50P49">doi:10.24432/C50P49</a>), <a href="https://example.org/">https://example.org/</a>, <a href="#The-data">here</a>, <a href="02-b.html">next</a>.</p>',
        '<div style="color: red; background: url(https://img.example/y.png)" id="d"></div>',
        '<style>@import "https://fonts.example/a.css"; .z { background: url(https://img.example/z.png) }</style>',
      ].join('\n'),
    );
    const out = offlineHtml(html);
    expect(externalReferences(out)).toEqual([]);
    expect(out).toContain('<script src="local.js"></script>');
    expect(out).toContain('<link rel="stylesheet" href="local.css">');
    expect(out).toContain('<img src="local.png">');
    expect(out).not.toMatch(/require\.min\.js|MathJax|fonts\.example|img\.example/);
    expect(out).toContain('<span class="lora-docs-external">a &lt;figure&gt;</span>');
    expect(out).toContain(
      '<span class="lora-docs-external" title="https://doi.org/10.24432/C50P49">doi:10.24432/C50P49</span> <span class="lora-docs-url">(https://doi.org/10.24432/C50P49)</span>',
    );
    expect(out).toContain('<span class="lora-docs-external" title="https://example.org/">https://example.org/</span>,'); // the text is the address: not repeated
    expect(out).toContain('<a href="#The-data">here</a>, <a href="02-b.html">next</a>');
    expect(out).toContain('<div style="color: red; background: none" id="d"></div>');
    expect(out).toContain('<style> .z { background: none }</style>');
    expect(out).toContain('url(data:image/png;base64,AAAA)'); // inline data stays
    expect(offlineHtml(out)).toBe(out);
  });

  const inline = `<script type="text/javascript" ${PLOTLY_SCRIPT_MARKER}="inline">/* plotly.js, 5 MB */ var Plotly = {};<\\/script></script>`;
  const chart = (id: string) => `<div id="${id}" class="lora-tfjs-plot" style="width:100%;height:460px"></div>\n<script type="text/javascript">draw(${JSON.stringify(id)})</script>`;
  const shared =
    `<script type="text/javascript" src="plotly.min.js" ${PLOTLY_SCRIPT_MARKER}="file"></script>` +
    `<script type="text/javascript" ${PLOTLY_SCRIPT_MARKER}="config">if (window.Plotly) window.Plotly.setPlotConfig({ displaylogo: false });</script>`;

  it('loads the shared plotly.min.js once in the head of a page with charts, with or without an inlined copy', () => {
    for (const body of [`${inline}\n${chart('p1')}\n${inline}\n${chart('p2')}`, `${chart('p1')}\n${chart('p2')}`]) {
      const out = offlineHtml(nbconvertPage(body));
      expect(out).not.toContain('5 MB');
      expect(out.split(shared)).toHaveLength(2);
      expect(out.indexOf(shared)).toBeLessThan(out.indexOf('</head>'));
      expect(out).toContain(chart('p1'));
      expect(out).toContain(chart('p2'));
      expect(offlineHtml(out)).toBe(out);
    }
    // A page without a chart loads no plotly.js; a fragment gets it before its first chart.
    expect(offlineHtml(nbconvertPage('<pre>class="lora-tfjs-plot" as text</pre>'))).not.toContain('plotly.min.js');
    expect(offlineHtml(nbconvertPage('<pre>&lt;div class=&quot;lora-tfjs-plot&quot;&gt;</pre>'))).not.toContain('plotly.min.js');
    expect(offlineHtml(`<p>x</p>${inline}${chart('p1')}`)).toBe(`<p>x</p>${shared}\n${chart('p1')}`);
  });
});

describe('the docs site (scripts/lib/docs.ts)', () => {
  it('reads a notebook title and its one-line summary (metadata.lora_tfjs.summary, else the first heading)', () => {
    const cells = [
      { cell_type: 'code', source: '# not markdown' },
      { cell_type: 'markdown', source: ['Some text first\n', '\n', '# 01 · `LoRA` *parameter* efficiency ##\n', 'more'] },
      { cell_type: 'markdown', source: '## A later heading' },
    ];
    expect(notebookInfo({ cells, metadata: { lora_tfjs: { summary: '  Counts parameters.  ' } } }, '01-x')).toEqual({ title: '01 · LoRA parameter efficiency', summary: 'Counts parameters.' });
    expect(notebookInfo({ cells, metadata: {} }, '01-x')).toEqual({ title: '01 · LoRA parameter efficiency', summary: '01 · LoRA parameter efficiency' });
    expect(notebookInfo({ cells, metadata: { lora_tfjs: { summary: 42 } } }, '01-x').summary).toBe('01 · LoRA parameter efficiency');
    expect(notebookInfo({ cells: [{ cell_type: 'markdown', source: 'Fixture: no heading.' }], metadata: {} }, 'fixture-x')).toEqual({ title: 'fixture-x', summary: '' });
  });

  it('states each run: failed (where), drifted, unchecked, passed, golden updated', () => {
    const check = (status: GoldenCheck['status'], extra: Partial<GoldenCheck> = {}): GoldenCheck => ({ ok: status === 'ok', status, backend: 'cpu', recorded: 2, checked: 2, drifts: [], unchecked: [], note: null, ...extra });
    const ok = { passed: true, failure: null, cells: 4 };
    const failure = { kind: 'cell-error' as const, cell: 2, source: 'throw 1', stderr: '', message: '' };
    expect(docStatus({ passed: false, failure, cells: 4 }, undefined, null)).toEqual({ status: 'failed', note: 'cell-error in cell 3 of 4' });
    expect(docStatus({ passed: false, failure: { ...failure, kind: 'nbconvert', cell: null }, cells: 4 }, undefined, null)).toEqual({ status: 'failed', note: 'nbconvert before any cell ran' });
    const drift = (name: string) => ({ name, expected: 1, actual: 2, allowed: 0, why: '' });
    expect(docStatus(ok, check('drift', { drifts: [drift('loss')] }), null)).toEqual({ status: 'failed', note: '1 drifted: loss' });
    expect(docStatus(ok, check('drift', { drifts: ['a', 'b', 'b', 'c', 'd', 'e'].map(drift) }), null).note).toBe('6 drifted: a, b, c, and 2 more');
    expect(docStatus(ok, check('unchecked', { checked: 1, unchecked: ['loss'] }), null)).toEqual({ status: 'unchecked', note: '1 of 2 values unchecked (no cpu golden)' });
    expect(docStatus(ok, check('ok'), null)).toEqual({ status: 'passed', note: '2 of 2 values within tolerance' });
    expect(docStatus(ok, undefined, { values: 5 })).toEqual({ status: 'passed', note: 'golden updated (5 values)' });
  });

  it('links every page back to the index and to its previous and next page: first, middle, last', () => {
    const links = (name: string) => {
      const page = docPage(nbconvertPage('<p>cells</p>'), three, name, run);
      const header = page.slice(page.indexOf('<header'), page.indexOf('</header>'));
      const footer = page.slice(page.indexOf('<footer'), page.indexOf('</footer>'));
      return { page, header, footer, prev: tagsWith(header, 'a', 'rel', 'prev'), next: tagsWith(header, 'a', 'rel', 'next') };
    };
    const first = links('01-a');
    expect(first.prev).toEqual([]);
    expect(first.next.map((t) => t.attrs.find((a) => a.name === 'href')?.value)).toEqual(['02-b.html']);
    expect(first.header).toContain('02-b title');
    const middle = links('02-b');
    expect(hrefs(middle.header)).toEqual(['index.html', '01-a.html', '03-c.html']);
    expect(hrefs(middle.footer)).toEqual(['01-a.html', '03-c.html', 'index.html']);
    const last = links('03-c');
    expect(last.next).toEqual([]);
    expect(hrefs(last.header)).toEqual(['index.html', '02-b.html']);
    for (const { page, header } of [first, middle, last]) {
      expect(header).toContain('<span class="lora-docs-status lora-docs-passed">passed</span> run time 12.3 s · 3 of 3 values within tolerance · backend wasm');
      expect(header).toContain('<time datetime="2026-01-02T03:04:05.000Z">2026-01-02 03:04 UTC</time>');
      expect(page).not.toContain('<!-- lora-docs:');
      expect(page.indexOf('<header')).toBeGreaterThan(page.indexOf('<main>'));
      expect(page.indexOf('<footer')).toBeLessThan(page.indexOf('</main>'));
      expect(page).toContain('.lora-docs-header');
      expect(page.indexOf('.lora-docs-header')).toBeLessThan(page.indexOf('</head>'));
      expect(externalReferences(page)).toEqual([]);
    }
    expect(first.page).toContain('<title>01-a title · lora-tfjs notebooks</title>');
  });

  it('skips notebooks without a page (a failed run) in previous/next, and says each page status', () => {
    const entries = [entry('01-a'), entry('02-b', { status: 'failed', page: null, note: 'cell-error in cell 3 of 4' }), entry('03-c', { status: 'unchecked', note: '1 of 2 values unchecked (no cpu golden)' })];
    expect(neighbours(entries, '01-a')).toEqual({ prev: null, next: entries[2] });
    expect(neighbours(entries, '03-c')).toEqual({ prev: entries[0], next: null });
    expect(() => neighbours(entries, '02-b')).toThrow(/no page for notebook "02-b"/);
    expect(pageChrome(entries, '03-c', run).header).toContain('<span class="lora-docs-status lora-docs-unchecked">unchecked</span> run time 12.3 s · 1 of 2 values unchecked (no cpu golden)');
  });

  it('escapes titles, notes and names, and encodes page names in links', () => {
    const entries = [entry('01 a&b #1', { title: '<b>"Title"</b> & more', note: '<script>alert(1)</script>', page: '01 a&b #1.html' }), entry('02-b')];
    const page = docPage(nbconvertPage('<p>x</p>'), entries, '02-b', run);
    expect(hrefs(page)).toContain('01%20a%26b%20%231.html');
    expect(page).toContain('&lt;b&gt;&quot;Title&quot;&lt;/b&gt; &amp; more');
    const index = indexHtml(entries, { ...run, backend: '<wasm>' });
    expect(hrefs(index)).toContain('01%20a%26b%20%231.html');
    expect(index).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(index).not.toContain('<script>');
    expect(index).toContain('<code>&lt;wasm&gt;</code>');
    expect(indexHtml([entry('x', { title: '"><img src=x>' })], run)).not.toContain('<img');
  });

  it("escapes the page's own header and <title>, and takes $-patterns in a title as text", () => {
    for (const title of ["Cost $' dollars", 'A $` B', '$& and $$', '<script>x</script>']) {
      const entries = [entry('01-a', { title, note: '<img src=x onerror=alert(1)>' }), entry('02-b')];
      const page = docPage(nbconvertPage('<p>x</p>'), entries, '01-a', { ...run, backend: '<b>wasm</b>' });
      const head = page.slice(0, page.indexOf('<p>x</p>'));
      expect(head, title).toContain(`<title>${escapeHtml(title)} · lora-tfjs notebooks</title>`);
      expect(head.match(/<title>/g), title).toHaveLength(1);
      expect(head).not.toContain('<img');
      expect(head).not.toContain('<b>wasm');
      expect(head).not.toContain('<script>x');
    }
  });

  it('falls back to the body tag without the template markers, and refuses a page with neither', () => {
    const page = docPage(nbconvertPage('<p>x</p>', { markers: false }), three, '02-b', run);
    expect(page).toMatch(/<body class="jp-Notebook" data-jp-theme-light="true"><header class="lora-docs-header">/);
    expect(page).toMatch(/<\/footer><\/main>|<\/footer>\n?<\/main>|<\/footer><\/body>/);
    expect(() => docPage('<p>no document</p>', three, '02-b', run)).toThrow(/neither/);
    expect(() => docPage(nbconvertPage('x'), three, '09-z', run)).toThrow(/no notebook "09-z"/);
  });

  it('index: what LoRA is, each notebook with its summary, status, note, run time and page, the run, how to run them', () => {
    const entries = [
      entry('01-a'),
      entry('02-b', { status: 'failed', page: null, note: 'cell-error in cell 3 of 4', seconds: 4 }),
      entry('03-c', { status: 'unchecked', note: '1 of 2 values unchecked (no cpu golden)', summary: '03-c title' }),
    ];
    const html = indexHtml(entries, run);
    const rows = html.slice(html.indexOf('<tbody>'), html.indexOf('</tbody>')).split('</tr>').slice(0, -1);
    expect(rows).toHaveLength(3);
    expect(rows[0]).toContain('<a class="title" href="01-a.html">01-a title</a><div class="summary">what 01-a shows</div>');
    expect(rows[0]).toContain('<span class="lora-docs-status lora-docs-passed">passed</span></td><td class="time">12.3 s</td><td class="note">3 of 3 values within tolerance</td>');
    expect(rows[1]).toContain('<span class="title">02-b title</span>'); // no page: no link
    expect(rows[1]).toContain('no page (the run failed)');
    expect(rows[1]).toContain('lora-docs-failed">failed</span></td><td class="time">4.0 s</td><td class="note">cell-error in cell 3 of 4</td>');
    expect(rows[2]).not.toContain('class="summary"'); // a summary that only repeats the title is left out
    expect(rows[2]).toContain('lora-docs-unchecked">unchecked</span>');
    expect(hrefs(html)).toEqual(['01-a.html', '03-c.html']);
    expect(html).toContain('backend <code>wasm</code>, <time datetime="2026-01-02T03:04:05.000Z">2026-01-02 03:04 UTC</time>, 123.4 s in all');
    expect(html).toContain('1 passed, 1 failed, 1 unchecked');
    for (const text of ['frozen', 'A: [in, r]', 'B: [r, out]', 's = alpha / r', '<code>B</code> starts at zero', 'npm install', 'npm run lab', 'npm run notebooks']) expect(html).toContain(text);
    expect(externalReferences(html)).toEqual([]);
    expect(html).not.toContain('demo/index.html');
    // With the browser demo: one line in the intro links it.
    const withDemo = indexHtml(entries, run, { demo: true });
    expect(hrefs(withDemo)).toEqual(['demo/index.html', '01-a.html', '03-c.html']);
    expect(withDemo).toMatch(/<p class="demo">[^\n]*<a href="demo\/index.html">train a LoRA adapter in your browser<\/a>[^\n]*<\/p>\n/);
    expect(externalReferences(withDemo)).toEqual([]);
  });

  describe('writeSite', () => {
    const dirs: string[] = [];
    afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
    const setup = (pages: Record<string, string>) => {
      const dir = mkdtempSync(join(tmpdir(), 'lora-docs-'));
      dirs.push(dir);
      const rendered = new Map<string, string>();
      for (const [name, html] of Object.entries(pages)) {
        writeFileSync(join(dir, `${name}.raw.html`), html);
        rendered.set(name, join(dir, `${name}.raw.html`));
      }
      writeFileSync(join(dir, 'plotly.src.js'), 'window.Plotly = {};');
      return { dir, docs: join(dir, 'docs'), rendered };
    };

    it('writes every page, plotly.min.js and index.html, and nothing half-written', () => {
      const chart = '<div id="p" class="lora-tfjs-plot"></div><script>draw("p")</script>';
      const { dir, docs, rendered } = setup({ '01-a': nbconvertPage('<p>a</p>'), '03-c': nbconvertPage(chart) });
      const entries = [entry('01-a'), entry('02-b', { status: 'failed', page: null }), entry('03-c')];
      writeSite(docs, entries, rendered, run, join(dir, 'plotly.src.js'));
      expect(readdirSync(docs).sort()).toEqual(['01-a.html', '03-c.html', 'index.html', 'plotly.min.js']);
      expect(readFileSync(join(docs, 'plotly.min.js'), 'utf8')).toBe('window.Plotly = {};');
      expect(readFileSync(join(docs, '01-a.html'), 'utf8')).toContain('rel="next" href="03-c.html"');
      expect(readFileSync(join(docs, '01-a.html'), 'utf8')).not.toContain('plotly.min.js');
      expect(readFileSync(join(docs, '03-c.html'), 'utf8')).toContain('src="plotly.min.js"');
      // Without a chart on any page, no plotly.js is copied.
      const bare = setup({ '01-a': nbconvertPage('<p>a</p>') });
      writeSite(bare.docs, [entry('01-a')], bare.rendered, run, join(bare.dir, 'plotly.src.js'));
      expect(readdirSync(bare.docs).sort()).toEqual(['01-a.html', 'index.html']);
    });

    it('moves a built demo folder in whole (replacing the old one), writes plotly.min.js for it and links it from the index', () => {
      const { dir, docs, rendered } = setup({ '01-a': nbconvertPage('<p>a</p>') });
      const built = (text: string) => {
        const demo = mkdtempSync(join(dir, 'demo-'));
        writeFileSync(join(demo, 'index.html'), text);
        writeFileSync(join(demo, 'demo.js'), '');
        return demo;
      };
      mkdirSync(join(docs, 'demo'), { recursive: true });
      writeFileSync(join(docs, 'demo', 'stale.js'), 'old');
      const demo = built('<p>new demo</p>');
      writeSite(docs, [entry('01-a')], rendered, run, join(dir, 'plotly.src.js'), { demo });
      expect(readdirSync(docs).sort()).toEqual(['01-a.html', 'demo', 'index.html', 'plotly.min.js']); // no chart, but the demo needs plotly.js
      expect(readdirSync(join(docs, 'demo')).sort()).toEqual(['demo.js', 'index.html']); // the old folder's files are gone
      expect(readFileSync(join(docs, 'demo', 'index.html'), 'utf8')).toBe('<p>new demo</p>');
      expect(existsSync(demo)).toBe(false); // moved, not copied
      expect(hrefs(readFileSync(join(docs, 'index.html'), 'utf8'))).toContain('demo/index.html');
      // A demo folder that was never built is refused before anything is written.
      const fresh = setup({ '01-a': nbconvertPage('<p>a</p>') });
      expect(() => writeSite(fresh.docs, [entry('01-a')], fresh.rendered, run, join(fresh.dir, 'plotly.src.js'), { demo: join(fresh.dir, 'nothing') })).toThrow(/has no index\.html/);
      expect(existsSync(fresh.docs)).toBe(false);
    });

    it('a page refused after another was built writes nothing: the previous site stays whole', () => {
      const { dir, docs, rendered } = setup({ '01-a': nbconvertPage('<p>a</p>'), '02-b': nbconvertPage('<script type="module">import("https://cdnjs.example/mermaid.mjs")</script>') });
      expect(() => writeSite(docs, [entry('01-a'), entry('02-b')], rendered, run, join(dir, 'plotly.src.js'))).toThrow(/02-b\.html would load or link outside/);
      expect(existsSync(docs) ? readdirSync(docs) : []).toEqual([]);
    });

    it('refuses a page that would still reach outside the docs folder, naming the page and the reference', () => {
      const { dir, docs, rendered } = setup({ '01-a': nbconvertPage('<script type="module">import("https://cdnjs.example/mermaid.mjs")</script>') });
      expect(() => writeSite(docs, [entry('01-a')], rendered, run, join(dir, 'plotly.src.js'))).toThrow(/01-a\.html would load or link outside the docs folder:\n {2}<script> https:\/\/cdnjs\.example\/mermaid\.mjs/);
    });
  });

  it('the nbconvert template leaves room for the header, footer and head', () => {
    const template = readFileSync(join(TEMPLATE_DIR, TEMPLATE_NAME, 'index.html.j2'), 'utf8');
    for (const marker of Object.values(MARKERS)) expect(template).toContain(marker);
    expect(JSON.parse(readFileSync(join(TEMPLATE_DIR, TEMPLATE_NAME, 'conf.json'), 'utf8'))).toMatchObject({ base_template: 'lab' });
  });
});
