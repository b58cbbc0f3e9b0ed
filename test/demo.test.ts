import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_DIR, DEMO_WASM, buildDemo, demoPage, demoTemplateValues } from '../scripts/lib/demo.js';
import { DEMO_DEFAULTS, DEMO_LIMITS, DEMO_TASK, type DemoRun, type DemoState, LiveSeries, PROBE_ROWS, comparison, demoAlpha, fallbackNote, formatNumber, lossFigure, parseDemoInputs } from '../scripts/lib/demo-page.js';
import { PLOTLY_FILE } from '../scripts/lib/offline.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, LoRAMLP, MLP, decodeSafetensors, deserializeAdapter, initBackend, lowRankShiftTask, maxAbsDiff, tf } from '../src/index.js';
import { plotlyPath } from '../src/notebook/chart.js';
import { WASM_BINARIES } from '../src/runtime/backend.js';
import { launchChromium, offlinePage } from './browser.js';
import { brokenReferences, serveFolder } from './docs-site.js';

const transpose = (m: number[][]) => m[0].map((_, j) => m.map((row) => row[j]));
const demoState = (p: Page) => p.evaluate(() => (window as unknown as { __demo: DemoState }).__demo);

async function trainOnPage(p: Page, rank: number, steps: number): Promise<DemoState> {
  await p.fill('#rank', String(rank));
  await p.fill('#steps', String(steps));
  await p.click('#train');
  await p.waitForFunction(() => ['done', 'error'].includes((window as unknown as { __demo: DemoState }).__demo.state), null, { timeout: 60_000 });
  return demoState(p);
}

describe('the demo page helpers (scripts/lib/demo-page.ts)', () => {
  it('checks the form: whole numbers within the limits, a message naming each bad field', () => {
    expect(parseDemoInputs({ rank: '4', steps: '300' })).toEqual({ ok: true, rank: 4, steps: 300 });
    expect(parseDemoInputs({ rank: ' 8 ', steps: '1' })).toEqual({ ok: true, rank: 8, steps: 1 });
    expect(DEMO_LIMITS.rank.max).toBe(Math.min(...DEMO_TASK.dims));
    const bad = parseDemoInputs({ rank: '9', steps: '1.5' });
    expect(bad).toEqual({
      ok: false,
      errors: {
        rank: 'rank = "9" is invalid; expected a whole number from 1 to 8 (the narrowest layer has 8 units)',
        steps: 'steps = "1.5" is invalid; expected a whole number from 1 to 2000',
      },
    });
    for (const rank of ['0', '-1', '', 'abc', '1e1', '4x', '0x4', 'Infinity']) expect(parseDemoInputs({ rank, steps: '10' }).ok, rank).toBe(false);
    expect(parseDemoInputs({ rank: '2', steps: '2001' })).toEqual({ ok: false, errors: { steps: 'steps = "2001" is invalid; expected a whole number from 1 to 2000' } });
    expect(demoAlpha(4)).toBe(8);
  });

  it('draws a step when due: the first, the last, else once the interval has passed since the last redraw ended', () => {
    const s = new LiveSeries(6, 100);
    expect(s.push(0, 1, 0)).toBe(true);
    expect(s.take()).toEqual({ x: [1], y: [1] });
    s.drawn(40); // that redraw took 40 ms
    expect([s.push(1, 0.9, 50), s.push(2, 0.8, 139)]).toEqual([false, false]);
    expect(s.push(3, 0.7, 140)).toBe(true);
    expect(s.take()).toEqual({ x: [2, 3, 4], y: [0.9, 0.8, 0.7] });
    expect(s.take()).toEqual({ x: [], y: [] });
    s.drawn(150);
    expect([s.push(4, 0.6, 151), s.push(5, 0.5, 152)]).toEqual([false, true]); // the last step always
    expect(s.take()).toEqual({ x: [5, 6], y: [0.6, 0.5] });
  });

  it('the loss figure: one point per step from 1, log scale, no Plotly logo; the notes and numbers', () => {
    const f = lossFigure([1, 0.5, 0.25], 'title');
    expect(f.data).toEqual([expect.objectContaining({ type: 'scatter', x: [1, 2, 3], y: [1, 0.5, 0.25] })]);
    expect(f.layout).toMatchObject({ title: { text: 'title' }, yaxis: { type: 'log' } });
    expect(f.config).toMatchObject({ displaylogo: false });
    expect(fallbackNote('file:')).toMatch(/^wasm is unavailable on a page opened from a file .*cpu backend.*HTTP/);
    expect(fallbackNote('http:')).toMatch(/^wasm did not start \(its \.wasm files did not load from this folder\), so this runs on the slower cpu backend\.$/);
    expect([formatNumber(0.048203), formatNumber(1.3629), formatNumber(0.00012), formatNumber(123456), formatNumber(0)]).toEqual(['0.0482', '1.36', '1.20e-4', '1.23e+5', '0.00']);
    expect(comparison(0.05, 1.5)).toBe("30.0× lower than the base model's");
    expect(comparison(2, 1)).toBe("2.00× higher than the base model's");
    expect(comparison(0, 1)).toBe('');
  });

  it('fills every placeholder of the page template, escaped, and refuses an unknown one or a reference outside the docs', () => {
    const template = readFileSync(join(import.meta.dirname, '..', 'scripts', 'demo', 'index.html'), 'utf8');
    const page = demoPage(template);
    expect(page).not.toMatch(/\{\{|\}\}/);
    expect(page).toContain(`lowRankShiftTask({ dims: [${DEMO_TASK.dims.join(', ')}], shiftRank: ${DEMO_TASK.shiftRank}, samples: ${DEMO_TASK.samples}, seed: ${DEMO_TASK.seed} })`);
    expect(page).toContain(`value="${DEMO_DEFAULTS.rank}"`);
    expect(page).toContain('16 → 32 → 8');
    expect(Object.keys(demoTemplateValues()).every((k) => template.includes(`{{${k}}}`))).toBe(true); // no value unused
    expect(demoPage('<p>{{x}}</p>', { x: '<b>&' })).toBe('<p>&lt;b&gt;&amp;</p>');
    expect(() => demoPage('<p>{{nope}}</p>', {})).toThrow(/placeholder \{\{nope\}\} with no value/);
    expect(() => demoPage('<script src="../../x.js"></script>', {})).toThrow(/demo\/index\.html would load or link outside the docs folder:\n {2}<script src> \.\.\/\.\.\/x\.js/);
    expect(() => demoPage('<script src="https://cdn.example/plotly.js"></script>', {})).toThrow(/outside the docs folder/);
  });
});

describe('the demo built, served and used in headless Chromium (network blocked)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lora-demo-'));
  /** As the docs have it: demo/ beside plotly.min.js and index.html. */
  const site = join(tmp, 'site');
  const noWasm = join(tmp, 'no-wasm');
  let browser: Browser;
  let served: { origin: string; close: () => Promise<void> };
  let servedNoWasm: { origin: string; close: () => Promise<void> };
  let built: string[];
  let buildSeconds: number;

  beforeAll(async () => {
    const started = performance.now();
    built = await buildDemo(join(site, DEMO_DIR));
    buildSeconds = (performance.now() - started) / 1000;
    cpSync(plotlyPath(), join(site, PLOTLY_FILE));
    writeFileSync(join(site, 'index.html'), '<!DOCTYPE html><title>docs</title><p>the docs index</p>');
    cpSync(site, noWasm, { recursive: true });
    for (const f of DEMO_WASM) rmSync(join(noWasm, DEMO_DIR, f));
    served = await serveFolder(site);
    servedNoWasm = await serveFolder(noWasm);
    browser = await launchChromium();
    await initBackend('wasm');
  }, 300_000);
  afterAll(async () => {
    await browser?.close();
    await served?.close();
    await servedNoWasm?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('builds the page, one script and the three wasm binaries, and leaves nothing beside them; a rebuild replaces the folder', async () => {
    console.log(`demo build: ${buildSeconds.toFixed(1)} s, demo.js ${(readFileSync(join(site, DEMO_DIR, 'demo.js')).length / 1e6).toFixed(2)} MB`);
    expect([...DEMO_WASM].sort()).toEqual([...WASM_BINARIES].sort());
    expect(readdirSync(join(site, DEMO_DIR)).sort()).toEqual([...built].sort());
    expect(readdirSync(site).sort()).toEqual([DEMO_DIR, 'index.html', PLOTLY_FILE]);
    const again = join(tmp, 'again', DEMO_DIR);
    cpSync(join(site, DEMO_DIR), again, { recursive: true });
    writeFileSync(join(again, 'stale.txt'), 'x');
    await buildDemo(again);
    expect(readdirSync(join(tmp, 'again'))).toEqual([DEMO_DIR]);
    expect(existsSync(join(again, 'stale.txt'))).toBe(false);
    expect(readFileSync(join(again, 'demo.js')).equals(readFileSync(join(site, DEMO_DIR, 'demo.js')))).toBe(true); // the same build
  });

  it('trains on wasm with a live loss curve, reports the run, and its two downloads are the adapter it trained (PEFT layout, exact) that reloads in Node to the same predictions', async () => {
    const { page: p, blocked, pageErrors, consoleErrors, close } = await offlinePage(browser, served.origin);
    try {
      await p.goto(`${served.origin}/${DEMO_DIR}/index.html`);
      await p.waitForFunction(() => ((window as unknown as { __demo?: DemoState }).__demo?.state ?? 'loading') !== 'loading', null, { timeout: 30_000 });
      const ready = await demoState(p);
      expect(ready.state, ready.error ?? '').toBe('ready');
      expect(ready.backend).toBe('wasm');
      expect(await p.locator('#backend-name').innerText()).toMatch(/^wasm \(SIMD, 1 thread\)$/);
      expect(await p.locator('#fallback').isHidden()).toBe(true);
      // Every link resolves (back to the index, fragments), before any blob: URL exists.
      expect((await brokenReferences(p, served.origin)).broken).toEqual([]);
      expect(await p.locator('a[href="../index.html"]').count()).toBe(2);

      // Bad input is refused with a message, and nothing trains.
      await p.fill('#rank', '0');
      await p.fill('#steps', '3000');
      await p.click('#train');
      expect(await p.locator('#form-error').innerText()).toBe('rank = "0" is invalid; expected a whole number from 1 to 8 (the narrowest layer has 8 units); steps = "3000" is invalid; expected a whole number from 1 to 2000');
      expect(await p.locator('#rank').getAttribute('aria-invalid')).toBe('true');
      expect((await demoState(p)).state).toBe('ready');

      const rank = 4;
      const steps = 80;
      const done = await trainOnPage(p, rank, steps);
      expect(done.state, done.error ?? '').toBe('done');
      const run = done.run as DemoRun;
      expect(await p.locator('#form-error').innerText()).toBe('');
      expect([run.rank, run.alpha, run.steps, run.losses.length]).toEqual([rank, 2 * rank, steps, steps]);
      expect(run.losses[steps - 1]).toBeLessThan(0.5 * run.losses[0]);
      expect(run.testMse).toBeLessThan(0.5 * run.baseTestMse);
      console.log(`demo on ${done.summary}: ${run.computeMsPerStep.toFixed(2)} ms/step (train()'s msPerStep with the live chart ${run.msPerStep.toFixed(2)}); loss ${run.losses[0].toFixed(3)} → ${run.losses[steps - 1].toFixed(4)}; held-out MSE ${run.testMse.toFixed(4)} vs base ${run.baseTestMse.toFixed(3)}`);

      // The chart: one point per step, the losses train() returned, drawn by Plotly as SVG.
      const chart = await p.evaluate(() => {
        const gd = document.getElementById('chart') as unknown as { data: Array<{ x: number[]; y: number[] }> };
        return { x: Array.from(gd.data[0].x), y: Array.from(gd.data[0].y), traces: gd.data.length };
      });
      expect(chart.traces).toBe(1);
      expect(chart.x).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
      expect(chart.y).toEqual(run.losses);
      expect(await p.locator('#chart svg.main-svg').count()).toBeGreaterThan(0);
      expect(await p.locator('#chart .cartesianlayer .trace path.js-line').count()).toBe(1);
      expect(await p.locator('#chart a[href*="plotly.com"]').count()).toBe(0);

      // The results table shows what the run reported.
      const results = (await p.locator('#results').innerText()).replace(/\s+/g, ' ');
      expect(results).toContain(`${run.computeMsPerStep.toFixed(2)} ms on wasm (SIMD, 1 thread)`);
      expect(results).toContain(`held-out MSE, base model ${formatNumber(run.baseTestMse)}`);
      expect(results).toContain(`held-out MSE, with the adapter ${formatNumber(run.testMse)} ${comparison(run.testMse, run.baseTestMse)}`);
      expect(results).toContain(`trainable parameters (LoRA) ${run.trainable}`);
      expect(run.trainable).toBe(rank * (16 + 32) + rank * (32 + 8));

      // The two downloads, as a reader gets them.
      const download = async (selector: string) => {
        const [d] = await Promise.all([p.waitForEvent('download'), p.click(selector)]);
        return { name: d.suggestedFilename(), bytes: new Uint8Array(readFileSync(await d.path())) };
      };
      const config = await download('#download-config');
      const weights = await download('#download-weights');
      expect([config.name, weights.name]).toEqual([ADAPTER_CONFIG, ADAPTER_WEIGHTS]);
      const configText = Buffer.from(config.bytes).toString('utf8');
      expect(configText).toBe(run.files.config);
      expect(weights.bytes.length).toBe(run.files.weightsBytes);
      expect(createHash('sha256').update(weights.bytes).digest('hex')).toBe(run.files.weightsSha256);
      const peft = JSON.parse(configText) as Record<string, unknown>;
      expect(peft).toMatchObject({ peft_type: 'LORA', r: rank, lora_alpha: 2 * rank, target_modules: ['fc1', 'fc2'], use_rslora: false, bias: 'none' });

      // The weights file holds the page's factors, exactly, in PyTorch's layout.
      const decoded = decodeSafetensors(weights.bytes);
      expect(run.adapter.modules).toEqual(['fc1', 'fc2']);
      expect([...decoded.tensors.keys()].sort()).toEqual(run.adapter.modules.flatMap((m) => [`base_model.model.${m}.lora_A.weight`, `base_model.model.${m}.lora_B.weight`]).sort());
      for (const m of run.adapter.modules) {
        const { A, B } = run.adapter.factors[m];
        const a = decoded.tensors.get(`base_model.model.${m}.lora_A.weight`)!;
        const b = decoded.tensors.get(`base_model.model.${m}.lora_B.weight`)!;
        expect([a.dtype, a.shape, b.dtype, b.shape]).toEqual(['F32', [rank, A.length], 'F32', [B[0].length, rank]]);
        expect(Array.from(a.data), `${m} lora_A`).toEqual(transpose(A).flat());
        expect(Array.from(b.data), `${m} lora_B`).toEqual(transpose(B).flat());
        expect(B.flat().some((v) => v !== 0)).toBe(true); // trained (B starts at zero)
      }

      // In Node: the same seeded task on wasm is the page's, to the bit; the downloaded pair
      // loaded on the page's base predicts what the page predicted.
      const before = tf.memory().numTensors;
      const task = lowRankShiftTask(DEMO_TASK);
      const nodeBase = task.base.layers.map((l) => ({ W: l.W.arraySync(), b: l.b?.arraySync() }));
      expect(nodeBase, 'lowRankShiftTask in Node vs in the page').toEqual(run.base);
      const probeX = tf.tidy(() => task.xTest.slice([0, 0], [PROBE_ROWS, DEMO_TASK.dims[0]]).arraySync());
      expect(probeX).toEqual(run.probe.x);
      task.dispose();
      const weightsIn = run.base.map((l) => ({ W: tf.tensor2d(l.W), b: tf.tensor1d(l.b) }));
      const base = MLP.fromWeights(weightsIn); // copies
      tf.dispose(weightsIn.flatMap((l) => [l.W, l.b]));
      const model = LoRAMLP.fromBase(base, { rank: 1, alpha: 1 }); // replaced by the file's adapter
      const name = deserializeAdapter(model, { weights: weights.bytes, config: peft });
      expect(name).toBe('default');
      const diff = tf.tidy(() => maxAbsDiff(model.predict(tf.tensor2d(run.probe.x)), tf.tensor2d(run.probe.y)));
      console.log(`round trip: max |Node prediction - page prediction| = ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(1e-5);
      model.dispose();
      base.dispose();
      expect(tf.memory().numTensors).toBe(before);

      // A second run replaces the first: new downloads, the old model freed (no tensor left behind).
      const second = (await trainOnPage(p, 2, 5)).run as DemoRun;
      expect([second.rank, second.losses.length, second.tensors]).toEqual([2, 5, run.tensors]);
      expect(JSON.parse(Buffer.from((await download('#download-config')).bytes).toString('utf8'))).toMatchObject({ r: 2, lora_alpha: 4 });
      expect(await p.evaluate(() => (document.getElementById('chart') as unknown as { data: Array<{ y: number[] }> }).data[0].y.length)).toBe(5);

      expect(blocked).toEqual([]);
      expect(pageErrors).toEqual([]);
      expect(consoleErrors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('without its wasm files (or opened from file://) it says so in one line and trains on cpu', async () => {
    const { page: p, blocked, pageErrors, close } = await offlinePage(browser, servedNoWasm.origin);
    const errors: Array<{ text: string; url: string }> = [];
    p.on('console', (m) => {
      if (m.type() === 'error') errors.push({ text: m.text(), url: m.location().url });
    });
    try {
      await p.goto(`${servedNoWasm.origin}/${DEMO_DIR}/index.html`);
      await p.waitForFunction(() => ((window as unknown as { __demo?: DemoState }).__demo?.state ?? 'loading') !== 'loading', null, { timeout: 30_000 });
      const ready = await demoState(p);
      expect([ready.state, ready.backend, ready.summary]).toEqual(['ready', 'cpu', 'cpu']);
      expect(await p.locator('#backend-name').innerText()).toBe('cpu');
      const note = p.locator('#fallback');
      expect(await note.isVisible()).toBe(true);
      expect(await note.innerText()).toBe(fallbackNote('http:'));
      expect(await note.getAttribute('title')).toMatch(/wasm/); // the error itself, for whoever hovers
      const done = await trainOnPage(p, 2, 10);
      expect(done.state, done.error ?? '').toBe('done');
      expect(done.run?.losses).toHaveLength(10);
      expect(await p.locator('#download-weights').getAttribute('download')).toBe(ADAPTER_WEIGHTS);
      expect(blocked).toEqual([]);
      expect(pageErrors).toEqual([]);
      // The only console errors: the browser's own reports of the missing .wasm files.
      expect(errors.length).toBeGreaterThan(0);
      for (const e of errors) expect(`${e.text} ${e.url}`).toMatch(/\.wasm\b.*404|404.*\.wasm\b/);
    } finally {
      await close();
    }

    // From disk: Chromium refuses to fetch .wasm for a file:// page.
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const requests: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      const fileErrors: string[] = [];
      page.on('pageerror', (e) => fileErrors.push(String(e)));
      await page.goto(`file://${join(site, DEMO_DIR, 'index.html')}`);
      await page.waitForFunction(() => ((window as unknown as { __demo?: DemoState }).__demo?.state ?? 'loading') !== 'loading', null, { timeout: 30_000 });
      const state = await demoState(page);
      expect([state.state, state.backend]).toEqual(['ready', 'cpu']);
      expect(await page.locator('#fallback').innerText()).toBe(fallbackNote('file:'));
      expect(requests.filter((u) => !u.startsWith(`file://${site}/`))).toEqual([]);
      expect(fileErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
