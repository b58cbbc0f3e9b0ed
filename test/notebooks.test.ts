import { createServer, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { execa } from 'execa';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNotebook, recordTraces } from '../scripts/lib/notebook-run.js';
import { launchChromium, offlinePage } from './browser.js';

const root = join(import.meta.dirname, '..');
const notebooks = readdirSync(join(root, 'notebooks')).filter((f) => /^\d\d-.*\.ipynb$/.test(f)).sort();
const PLOTLY_MIME = 'application/vnd.plotly.v1+json';
const RECORD_MIME = 'application/vnd.lora-tfjs.record+json';
// The goldens are kept for wasm (the default backend here); pinned so that a machine
// where another backend is picked cannot turn this into a run with nothing compared.
const BACKEND = 'wasm';

describe('the seven notebooks, run headless, and their HTML docs', () => {
  const out = mkdtempSync(join(tmpdir(), 'lora-notebooks-'));
  let run: { exitCode: number | undefined; text: string };
  const sources = new Map<string, string>();

  beforeAll(async () => {
    for (const nb of notebooks) sources.set(nb, createHash('sha256').update(readFileSync(join(root, 'notebooks', nb))).digest('hex'));
    const r = await execa(join(root, 'node_modules', '.bin', 'tsx'), [join(root, 'scripts', 'run-notebooks.ts'), '--out', out], {
      cwd: root,
      env: { LORA_BACKEND: BACKEND },
      reject: false,
      all: true,
      timeout: 900_000,
    });
    run = { exitCode: r.exitCode, text: r.all ?? '' };
  }, 900_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

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
      const golden = JSON.parse(readFileSync(join(root, 'notebooks', nb.replace('.ipynb', '.golden.json')), 'utf8')) as { backends: Record<string, Record<string, unknown>> };
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
    let server: Server;
    let origin: string;

    beforeAll(async () => {
      const docs = join(out, 'docs');
      server = createServer((req, res) => {
        const file = join(docs, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '') || 'index.html');
        try {
          const body = readFileSync(file);
          const type = { '.html': 'text/html', '.js': 'text/javascript' }[extname(file)] ?? 'application/octet-stream';
          res.writeHead(200, { 'content-type': `${type}; charset=utf-8` }).end(body);
        } catch {
          res.writeHead(404).end();
        }
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const address = server.address();
      origin = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
      browser = await launchChromium();
    }, 600_000);
    afterAll(async () => {
      await browser?.close();
      server?.close();
    });

    async function open(path: string) {
      const { page: p, blocked, pageErrors, consoleErrors, close } = await offlinePage(browser, origin);
      await p.goto(`${origin}/${path}`, { waitUntil: 'load' });
      return { p, errors: [...consoleErrors, ...pageErrors], blocked, close };
    }

    it('index.html links every notebook with its status and run time', async () => {
      const { p, errors, close } = await open('index.html');
      const rows = await p.locator('tbody tr').allInnerTexts();
      expect(rows).toHaveLength(7);
      rows.forEach((row, i) => expect(row).toMatch(new RegExp(`^${notebooks[i].replace('.ipynb', '')}\\s+passed\\s+[\\d.]+ s`)));
      expect(await p.locator('tbody a').count()).toBe(7);
      expect(errors).toEqual([]);
      await close();
    });

    for (const nb of notebooks) {
      it(`${nb}: every chart rendered its plot SVG, and the page logged no errors`, async () => {
        const executed = JSON.parse(readFileSync(join(out, 'notebooks', nb), 'utf8')) as { cells: Array<{ outputs?: Array<{ data?: Record<string, unknown> }> }> };
        const expected = executed.cells.flatMap((c) => c.outputs ?? []).filter((o) => o.data?.[PLOTLY_MIME] !== undefined).length;
        const { p, errors, blocked, close } = await open(nb.replace('.ipynb', '.html'));
        const plots = p.locator('.lora-tfjs-plot');
        expect(await plots.count()).toBe(expected);
        for (let i = 0; i < expected; i++) {
          await plots.nth(i).locator('svg.main-svg').first().waitFor({ state: 'attached', timeout: 20_000 });
          expect(await plots.nth(i).locator('.plot-container .cartesianlayer, .plot-container .heatmaplayer, .plot-container .barlayer').count()).toBeGreaterThan(0);
        }
        expect(errors).toEqual([]);
        expect(blocked).toEqual([]); // the page asked for nothing outside the docs folder
        await close();
      });
    }
  });
});
