import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNotebook, recordTraces } from '../scripts/lib/notebook-run.js';
import { launchChromium } from './browser.js';
import { brokenReferences, openDocsPage, pageHeader, serveFolder } from './docs-site.js';

const root = join(import.meta.dirname, '..');
const notebooks = readdirSync(join(root, 'notebooks')).filter((f) => /^\d\d-.*\.ipynb$/.test(f)).sort();
const PLOTLY_MIME = 'application/vnd.plotly.v1+json';
const RECORD_MIME = 'application/vnd.lora-tfjs.record+json';
// The goldens are kept for wasm (the default backend here); pinned so that a machine
// where another backend is picked cannot turn this into a run with nothing compared.
const BACKEND = 'wasm';

// Fixtures whose docs show the states a run of the seven should never have: a drifted
// value, a failed cell (no page), values without a golden for the backend (cpu).
const FIXTURES = ['fixture-drift', 'fixture-throw', 'fixture-unchecked'];

describe('the seven notebooks, run headless, and their HTML docs', () => {
  const out = mkdtempSync(join(tmpdir(), 'lora-notebooks-'));
  const fixturesOut = mkdtempSync(join(tmpdir(), 'lora-notebooks-fixtures-'));
  let run: { exitCode: number | undefined; text: string };
  let fixturesRun: { exitCode: number | undefined; text: string };
  const sources = new Map<string, string>();

  beforeAll(async () => {
    for (const nb of notebooks) sources.set(nb, createHash('sha256').update(readFileSync(join(root, 'notebooks', nb))).digest('hex'));
    const runner = (args: string[], env: Record<string, string>) =>
      execa(join(root, 'node_modules', '.bin', 'tsx'), [join(root, 'scripts', 'run-notebooks.ts'), ...args], { cwd: root, env, reject: false, all: true, timeout: 900_000 });
    const [r, f] = await Promise.all([
      runner(['--out', out], { LORA_BACKEND: BACKEND }),
      runner(['--out', fixturesOut, '--goldens', join(root, 'test', 'fixtures'), ...FIXTURES.map((n) => join(root, 'test', 'fixtures', `${n}.ipynb`))], { LORA_BACKEND: 'cpu' }),
    ]);
    run = { exitCode: r.exitCode, text: r.all ?? '' };
    fixturesRun = { exitCode: f.exitCode, text: f.all ?? '' };
  }, 900_000);
  afterAll(() => {
    rmSync(out, { recursive: true, force: true });
    rmSync(fixturesOut, { recursive: true, force: true });
  });

  it('runs all seven notebooks: exit 0, every golden holds, sources untouched', () => {
    expect(notebooks).toHaveLength(7);
    if (run.exitCode !== 0) console.error(run.text);
    expect(run.exitCode).toBe(0);
    for (const nb of notebooks) {
      expect(createHash('sha256').update(readFileSync(join(root, 'notebooks', nb))).digest('hex')).toBe(sources.get(nb));
    }
    expect(run.text).toContain(`backend ${BACKEND}`);
    expect(run.text).toContain('7 passed, 0 failed, 0 unchecked');
  });

  it(`compares every recorded value with the ${BACKEND} golden: the summary counts all of them`, () => {
    for (const nb of notebooks) {
      const executed = JSON.parse(readFileSync(join(out, 'notebooks', nb), 'utf8')) as { cells: Array<{ outputs?: Array<{ metadata?: Record<string, unknown> }> }> };
      // record() sends each value in a display message's metadata, with no data to render.
      const records = executed.cells.flatMap((c) => c.outputs ?? []).flatMap((o) => (o.metadata?.[RECORD_MIME] === undefined ? [] : [o.metadata[RECORD_MIME] as { name: string; backend: string }]));
      const golden = JSON.parse(readFileSync(join(root, 'test', 'goldens', nb.replace('.ipynb', '.golden.json')), 'utf8')) as { backends: Record<string, Record<string, unknown>> };
      expect(records.length, nb).toBeGreaterThan(0);
      expect(new Set(records.map((r) => r.backend)), nb).toEqual(new Set([BACKEND]));
      expect(records.map((r) => r.name).sort(), nb).toEqual(Object.keys(golden.backends[BACKEND]).sort());
      const n = records.length;
      expect(run.text).toMatch(new RegExp(`${nb.replace('.ipynb', '')}\\s+passed\\s+[\\d.]+\\s+ok \\(${n} of ${n}\\)`));
    }
  });

  it('shows readers no recorded value: no "recorded " text in any output, and no record where it would leave a gap', () => {
    for (const nb of notebooks) {
      const executed = readNotebook(join(out, 'notebooks', nb));
      const shown = executed.cells.flatMap((c) => c.outputs ?? []).map((o) => JSON.stringify([o.text, o.data]));
      expect(shown.filter((s) => s.includes('recorded ')), nb).toEqual([]);
      expect(recordTraces(executed), nb).toEqual([]);
    }
  });

  it('sends each chart as one message with Plotly JSON (an object), offline HTML and text', () => {
    for (const nb of notebooks) {
      const executed = JSON.parse(readFileSync(join(out, 'notebooks', nb), 'utf8')) as { cells: Array<{ outputs?: Array<{ data?: Record<string, unknown> }> }> };
      const charts = executed.cells.flatMap((c) => c.outputs ?? []).filter((o) => o.data?.[PLOTLY_MIME] !== undefined);
      if (nb.startsWith('02-')) continue; // the layer-mechanics notebook has no chart
      expect(charts.length, nb).toBeGreaterThan(0);
      charts.forEach((o, i) => {
        expect(typeof o.data?.[PLOTLY_MIME]).toBe('object');
        expect(Object.keys(o.data ?? {}).sort()).toEqual([PLOTLY_MIME, 'text/html', 'text/plain']);
        const html = o.data?.['text/html'] as string | string[];
        const text = Array.isArray(html) ? html.join('') : html;
        // plotly.js inlined with the first chart of the notebook only; never a CDN.
        expect(text.includes('data-lora-tfjs-plotly="inline"'), `${nb} chart ${i} inlines plotly.js`).toBe(i === 0);
        expect(/<script[^>]*\ssrc=/.test(text), `${nb} chart ${i} loads a script from elsewhere`).toBe(false);
      });
    }
  });

  describe('in headless Chromium, with the network blocked', () => {
    let browser: Browser;
    let docs: { origin: string; close: () => Promise<void> };
    let fixtureDocs: { origin: string; close: () => Promise<void> };
    const names = notebooks.map((nb) => nb.replace('.ipynb', ''));
    /** What the index says of each notebook, read in the first test, checked on its page. */
    const rows = new Map<string, string>();

    beforeAll(async () => {
      docs = await serveFolder(join(out, 'docs'));
      fixtureDocs = await serveFolder(join(fixturesOut, 'docs'));
      browser = await launchChromium();
    }, 600_000);
    afterAll(async () => {
      await browser?.close();
      await docs?.close();
      await fixtureDocs?.close();
    });

    it('index.html: what LoRA is, how to run the notebooks, the run, and every notebook with its summary, status, check and run time', async () => {
      const { p, errors, blocked, close } = await openDocsPage(browser, docs.origin, 'index.html');
      const text = (await p.locator('body').innerText()).replace(/\s+/g, ' ');
      for (const phrase of ['What LoRA is', 'frozen', 's = alpha / r', 'B starts at zero', 'npm install', 'npm run lab', 'npm run notebooks', `backend ${BACKEND},`, '7 passed, 0 failed, 0 unchecked']) {
        expect(text, phrase).toContain(phrase);
      }
      expect(text).toMatch(/\d{4}-\d\d-\d\d \d\d:\d\d UTC/);
      expect(await p.locator('p.demo a[href="demo/index.html"]').count()).toBe(1); // the browser demo (test/demo.test.ts)
      const tr = p.locator('tbody tr');
      expect(await tr.count()).toBe(7);
      for (const [i, name] of names.entries()) {
        const row = tr.nth(i);
        const source = JSON.parse(readFileSync(join(root, 'notebooks', `${name}.ipynb`), 'utf8')) as { metadata: { lora_tfjs?: { summary?: string } } };
        expect(await row.locator('a.title').getAttribute('href')).toBe(`${name}.html`);
        expect(await row.locator('.summary').innerText()).toBe(source.metadata.lora_tfjs?.summary);
        const rowText = (await row.innerText()).replace(/\s+/g, ' ');
        expect(rowText).toMatch(new RegExp(`^${i + 1} \\d\\d · .+ ${name}\\.ipynb passed [\\d.]+ s (\\d+) of \\1 values within tolerance$`));
        rows.set(name, rowText);
      }
      expect((await brokenReferences(p, docs.origin)).broken).toEqual([]);
      expect(errors).toEqual([]);
      expect(blocked).toEqual([]);
      await close();
    });

    for (const [i, nb] of notebooks.entries()) {
      it(`${nb}: every chart drew its plot SVG; the header links back and to its neighbours, with its status and run time; every link resolves; nothing outside the folder was asked for`, async () => {
        const executed = JSON.parse(readFileSync(join(out, 'notebooks', nb), 'utf8')) as { cells: Array<{ outputs?: Array<{ data?: Record<string, unknown> }> }> };
        const expected = executed.cells.flatMap((c) => c.outputs ?? []).filter((o) => o.data?.[PLOTLY_MIME] !== undefined).length;
        const { p, errors, blocked, close } = await openDocsPage(browser, docs.origin, nb.replace('.ipynb', '.html'));
        const plots = p.locator('.lora-tfjs-plot');
        expect(await plots.count()).toBe(expected);
        for (let k = 0; k < expected; k++) {
          await plots.nth(k).locator('svg.main-svg').first().waitFor({ state: 'attached', timeout: 20_000 });
          expect(await plots.nth(k).locator('.plot-container .cartesianlayer, .plot-container .heatmaplayer, .plot-container .barlayer').count()).toBeGreaterThan(0);
        }
        expect(await p.locator('script[src="plotly.min.js"]').count()).toBe(expected > 0 ? 1 : 0);
        const header = await pageHeader(p);
        expect(header.home).toBe('index.html');
        expect(header.prev).toBe(i === 0 ? null : `${names[i - 1]}.html`);
        expect(header.next).toBe(i === names.length - 1 ? null : `${names[i + 1]}.html`);
        // The status, run time and check the index shows for this notebook.
        const [, seconds, check] = /passed ([\d.]+ s) (.*)$/.exec(rows.get(names[i]) ?? '') ?? [];
        expect(header.text).toContain(`passed run time ${seconds} · ${check} · backend ${BACKEND}`);
        const { checked, broken } = await brokenReferences(p, docs.origin);
        expect(broken).toEqual([]);
        expect(checked.filter((r) => r.tag === 'a' && r.url.startsWith(docs.origin) && r.url.endsWith('.html')).length).toBeGreaterThanOrEqual(i === 0 || i === names.length - 1 ? 3 : 5);
        expect(errors).toEqual([]);
        expect(blocked).toEqual([]); // the page asked for nothing outside the docs folder
        await close();
      });
    }

    it('a run with a drifted value, a failed cell and unchecked values: its docs index and pages say so', async () => {
      expect(fixturesRun.exitCode, fixturesRun.text).toBe(1);
      const { p, errors, blocked, close } = await openDocsPage(browser, fixtureDocs.origin, 'index.html');
      const text = (await p.locator('body').innerText()).replace(/\s+/g, ' ');
      expect(text).toContain('backend cpu,');
      expect(text).toContain('0 passed, 2 failed, 1 unchecked');
      const tr = p.locator('tbody tr');
      expect((await tr.allInnerTexts()).map((t) => t.replace(/\s+/g, ' '))).toEqual([
        expect.stringMatching(/^1 fixture-drift fixture-drift\.ipynb failed [\d.]+ s 1 drifted: drifting$/),
        expect.stringMatching(/^2 fixture-throw fixture-throw\.ipynb · no page \(the run failed\) failed [\d.]+ s cell-error in cell 3 of 4$/),
        expect.stringMatching(/^3 fixture-unchecked fixture-unchecked\.ipynb unchecked [\d.]+ s 1 of 2 values unchecked \(no cpu golden\)$/),
      ]);
      expect(await tr.nth(1).locator('a').count()).toBe(0);
      expect((await brokenReferences(p, fixtureDocs.origin)).broken).toEqual([]);
      expect(errors).toEqual([]);
      expect(blocked).toEqual([]);
      await close();
      for (const [page, status, note, prev, next] of [
        ['fixture-drift.html', 'failed', '1 drifted: drifting', null, 'fixture-unchecked.html'],
        ['fixture-unchecked.html', 'unchecked', '1 of 2 values unchecked (no cpu golden)', 'fixture-drift.html', null],
      ] as const) {
        const opened = await openDocsPage(browser, fixtureDocs.origin, page);
        const header = await pageHeader(opened.p);
        expect(header.text).toMatch(new RegExp(`${status} run time [\\d.]+ s · ${note.replace(/[()]/g, '\\$&')} · backend cpu`));
        expect([header.prev, header.next]).toEqual([prev, next]); // the failed notebook has no page: skipped
        expect((await brokenReferences(opened.p, fixtureDocs.origin)).broken).toEqual([]);
        expect(opened.errors).toEqual([]);
        expect(opened.blocked).toEqual([]);
        await opened.close();
      }
      // The browser demo (and the plotly.js it draws with) comes with every site.
      expect(readdirSync(join(fixturesOut, 'docs')).sort()).toEqual(['demo', 'fixture-drift.html', 'fixture-unchecked.html', 'index.html', 'plotly.min.js']);
    });
  });
});
