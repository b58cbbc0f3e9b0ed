/**
 * initBackend in a page (headless Chromium, network blocked): the automatic choice, GPU
 * backends the app registered, where the wasm binaries are served, and what a page that
 * cannot fetch them is told. The library is bundled from src/ with esbuild, as an app's
 * bundler would (the ES module side of package.json's "imports").
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WASM_BINARIES } from '../src/runtime/backend.js';
import { launchChromium, offlinePage } from './browser.js';
import { serveFolder } from './docs-site.js';

const root = join(import.meta.dirname, '..');
const wasmDist = join(root, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist');

interface Outcome {
  backend?: string;
  again?: string[];
  summary?: string;
  error?: string;
  warnings: string[];
  lossFirst?: number;
  lossLast?: number;
}

// The page's script: register the GPU backends when asked, start a backend, train a few steps.
const PAGE = `
import * as lora from '${join(root, 'src', 'index.ts')}';
const params = new URLSearchParams(location.search);
if (params.get('gpu') === '1') {
  await import('@tensorflow/tfjs-backend-webgl');
  await import('@tensorflow/tfjs-backend-webgpu');
}
const warnings = [];
lora.setWarningHandler((m) => warnings.push(m));
const out = { warnings };
try {
  const options = JSON.parse(params.get('options') ?? '{}');
  out.backend = await lora.initBackend(options);
  out.summary = lora.backendSummary();
  for (const again of JSON.parse(params.get('again') ?? '[]')) {
    try {
      await lora.initBackend(again);
      (out.again ??= []).push('ok');
    } catch (err) {
      (out.again ??= []).push(String(err.message ?? err));
    }
  }
  const task = lora.lowRankShiftTask({ dims: [8, 16, 4], shiftRank: 1, samples: 64, seed: 3 });
  const model = lora.LoRAMLP.fromBase(task.base, { rank: 2, alpha: 4, seed: 1 });
  const { losses } = await lora.train(model, { x: task.x, y: task.yShifted, steps: 150, batchSize: 16, learningRate: 3e-2, seed: 0 });
  out.lossFirst = losses[0];
  out.lossLast = losses.at(-1);
  model.dispose();
  task.dispose();
} catch (err) {
  out.error = String(err.message ?? err);
}
window.__outcome = out;
`;

describe('initBackend in a page', () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof serveFolder>>;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lora-backend-browser-'));
    const { build } = await import('esbuild');
    writeFileSync(join(dir, 'page.mjs'), PAGE);
    await build({
      entryPoints: [join(dir, 'page.mjs')],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      outfile: join(dir, 'site', 'page.js'),
      nodePaths: [join(root, 'node_modules')],
      logLevel: 'warning',
    });
    mkdirSync(join(dir, 'site', 'wasm'));
    for (const file of WASM_BINARIES) copyFileSync(join(wasmDist, file), join(dir, 'site', 'wasm', file));
    writeFileSync(join(dir, 'site', 'index.html'), '<!doctype html><meta charset="utf-8"><title>backend</title><script type="module" src="page.js"></script>');
    server = await serveFolder(join(dir, 'site'));
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function open(query: Record<string, string>): Promise<Outcome & { wasmFetches: string[] }> {
    const { page, blocked, pageErrors, close } = await offlinePage(browser, server.origin);
    const wasmFetches: string[] = [];
    page.on('request', (r) => {
      if (r.url().endsWith('.wasm')) wasmFetches.push(new URL(r.url()).pathname);
    });
    try {
      await page.goto(`${server.origin}/index.html?${new URLSearchParams(query)}`);
      await page.waitForFunction(() => (window as unknown as { __outcome?: unknown }).__outcome !== undefined, undefined, { timeout: 60_000 });
      const outcome = (await page.evaluate(() => (window as unknown as { __outcome: unknown }).__outcome)) as Outcome;
      expect(blocked).toEqual([]);
      expect(pageErrors).toEqual([]);
      return { ...outcome, wasmFetches };
    } finally {
      await close();
    }
  }

  it('picks wasm with the binaries served where wasmPaths says, and trains', async () => {
    const o = await open({ options: JSON.stringify({ wasmPaths: './wasm/' }), again: JSON.stringify([{ wasmPaths: './wasm/' }, { wasmPaths: './other/' }]) });
    expect(o.error).toBeUndefined();
    expect(o.backend).toBe('wasm');
    // The same paths again are fine; other paths, once wasm has started, are refused in words.
    expect(o.again).toEqual(['ok', 'initBackend: wasmPaths = "./other/" is invalid; expected the paths wasm started with ("./wasm/"): they cannot change once it has started; reload the page']);
    expect(o.summary).toMatch(/^wasm \(SIMD, /);
    expect(o.warnings).toEqual([]);
    expect(o.lossLast!).toBeLessThan(0.5 * o.lossFirst!);
    // One binary (SIMD, no cross-origin isolation), fetched once: nothing started wasm before its path was set.
    expect(o.wasmFetches).toEqual(['/wasm/tfjs-backend-wasm-simd.wasm']);
  });

  it('passes over the GPU backends the app registered when they would run in software, and says why', async () => {
    // Headless Chromium without a GPU: WebGL is SwiftShader, WebGPU has no (or a fallback) adapter.
    const o = await open({ gpu: '1', options: JSON.stringify({ wasmPaths: './wasm/' }) });
    expect(o.error).toBeUndefined();
    expect(o.backend).toBe('wasm');
    expect(o.warnings.find((w) => w.startsWith('initBackend: webgl skipped: WebGL here is a software rasterizer ('))).toMatch(/SwiftShader.*\)\), slower than wasm; initBackend\("webgl"\) uses it anyway; using wasm$/);
    expect(o.warnings.find((w) => w.startsWith('initBackend: webgpu skipped: '))).toMatch(/(no WebGPU adapter|software fallback|no WebGPU \(navigator\.gpu\)).*; using wasm$/);
    expect(o.warnings).toHaveLength(2);
  });

  it('uses WebGL when asked for by name, software or not, and trains on it', async () => {
    const o = await open({ gpu: '1', options: JSON.stringify({ backend: 'webgl' }) });
    expect(o.error).toBeUndefined();
    expect(o.backend).toBe('webgl');
    expect(o.summary).toBe('webgl');
    expect(o.lossLast!).toBeLessThan(0.5 * o.lossFirst!);
  });

  it('says that the browser cannot start a GPU backend that is imported but unusable (WebGPU without an adapter)', async () => {
    const o = await open({ gpu: '1', options: JSON.stringify({ backend: 'webgpu' }) });
    expect(o.error).toBe('initBackend: backend "webgpu" cannot be used (no WebGPU adapter (no usable GPU)); its package is imported, but this browser cannot run it; use "wasm"');
  });

  it('says what to install when a GPU backend is asked for but not imported', async () => {
    const o = await open({ options: JSON.stringify({ backend: 'webgl' }) });
    expect(o.error).toBe(
      'initBackend: backend "webgl" cannot be used (no "webgl" backend is registered); install `@tensorflow/tfjs-backend-webgl@4.22.0` and `import \'@tensorflow/tfjs-backend-webgl\'` once before initBackend',
    );
  });

  it('names the folder and the files to serve when the wasm binaries are not there', async () => {
    const forced = await open({ options: JSON.stringify({ backend: 'wasm', wasmPaths: './missing/' }) });
    expect(forced.error).toMatch(/^initBackend: backend "wasm" cannot be used \(.*\); the page could not fetch the wasm binaries under "\.\/missing\/": serve tfjs-backend-wasm\.wasm, tfjs-backend-wasm-simd\.wasm, tfjs-backend-wasm-threaded-simd\.wasm from node_modules\/@tensorflow\/tfjs-backend-wasm\/dist\//);
    // The automatic choice carries on to cpu, and says so.
    const auto = await open({ options: JSON.stringify({ wasmPaths: './missing/' }) });
    expect(auto.error).toBeUndefined();
    expect(auto.backend).toBe('cpu');
    expect(auto.warnings).toHaveLength(1);
    expect(auto.warnings[0]).toMatch(/^initBackend: running on the plain cpu backend because wasm did not start \(wasm: .*\); the page could not fetch the wasm binaries under "\.\/missing\/"/);
    expect(auto.lossLast!).toBeLessThan(0.5 * auto.lossFirst!);
  });
});
