#!/usr/bin/env -S npx tsx
/**
 * `npm run bench:browser [-- --json]`: the LoRA training step in a page (headless Chromium, as
 * a reader's browser without a GPU runs it) on each backend a page can use, in one browser so
 * that the ratios compare. This is the measurement behind initBackend's order in a page: a
 * software-rendered WebGL (SwiftShader here) is skipped by the automatic choice.
 *
 * Shapes: the reference's demo 1 (512 → 2048 → 2048 → 128, batch 32, rank 8, Adam) and a
 * small one (64 → 256 → 256 → 16), the library bundled from src/ with esbuild.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { WASM_BINARIES } from '../src/runtime/backend.js';
import { launchChromium, serveFolder } from './lib/browser.js';

const json = process.argv.includes('--json');
const root = resolve(import.meta.dirname, '..');
const SHAPES = [
  { name: 'small 64→256→256→16', dims: [64, 256, 256, 16], steps: 20 },
  { name: 'demo-1 512→2048→2048→128', dims: [512, 2048, 2048, 128], steps: 5 },
];
const BACKENDS = ['wasm', 'webgl', 'cpu'] as const;

const PAGE = `
import '@tensorflow/tfjs-backend-webgl';
import * as lora from '${join(root, 'src', 'index.ts')}';
window.step = async (backend, dims, steps) => {
  await lora.initBackend({ backend, wasmPaths: './' });
  const task = lora.lowRankShiftTask({ dims, shiftRank: 2, samples: 256, seed: 3 });
  const model = lora.LoRAMLP.fromBase(task.base, { rank: 8, alpha: 16, seed: 1 });
  const options = { x: task.x, y: task.yShifted, batchSize: 32, learningRate: 1e-3, seed: 0 };
  await lora.train(model, { ...options, steps: 2 }); // warm-up: kernels compiled, weights packed
  const { msPerStep } = await lora.train(model, { ...options, steps });
  model.dispose();
  task.dispose();
  let renderer = '';
  if (backend === 'webgl') {
    const gl = document.createElement('canvas').getContext('webgl2');
    const info = gl?.getExtension('WEBGL_debug_renderer_info');
    renderer = gl ? String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER)) : 'none';
  }
  return { summary: lora.backendSummary(), msPerStep, renderer };
};
`;

const dir = mkdtempSync(join(tmpdir(), 'lora-bench-browser-'));
const site = join(dir, 'site');
try {
  const { build } = await import('esbuild');
  writeFileSync(join(dir, 'page.mjs'), PAGE);
  await build({ entryPoints: [join(dir, 'page.mjs')], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', outfile: join(site, 'page.js'), nodePaths: [join(root, 'node_modules')], logLevel: 'warning' });
  for (const f of WASM_BINARIES) copyFileSync(join(root, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist', f), join(site, f));
  writeFileSync(join(site, 'index.html'), '<!doctype html><meta charset="utf-8"><script type="module" src="page.js"></script>');
  const server = await serveFolder(site);
  const browser = await launchChromium((line) => console.error(line));
  const rows: { shape: string; backend: string; msPerStep: number; vsWasm: number; renderer: string }[] = [];
  try {
    for (const shape of SHAPES) {
      let wasmMs = NaN;
      for (const backend of BACKENDS) {
        if (backend === 'cpu' && shape.dims[1] > 256) continue; // ~45× wasm on matMul: minutes per step
        const page = await browser.newPage(); // one backend per page: tfjs keeps one engine per page
        await page.goto(`${server.origin}/index.html`);
        await page.waitForFunction(() => 'step' in window);
        const r = (await page.evaluate(([b, d, s]) => (window as unknown as { step: (...a: unknown[]) => Promise<unknown> }).step(b, d, s), [backend, shape.dims, shape.steps] as const)) as { summary: string; msPerStep: number; renderer: string };
        await page.close();
        if (backend === 'wasm') wasmMs = r.msPerStep;
        rows.push({ shape: shape.name, backend: r.summary, msPerStep: r.msPerStep, vsWasm: r.msPerStep / wasmMs, renderer: r.renderer });
      }
    }
  } finally {
    await browser.close();
    await server.close();
  }
  if (json) console.log(JSON.stringify({ chromium: browser.version(), rows }, null, 2));
  else {
    console.log(`LoRA training step (rank 8, batch 32, Adam) in headless Chromium ${browser.version()}, one page per backend\n`);
    console.log(`${'shape'.padEnd(26)} ${'backend'.padEnd(22)} ${'ms/step'.padStart(9)} ${'× wasm'.padStart(7)}  renderer`);
    for (const r of rows) console.log(`${r.shape.padEnd(26)} ${r.backend.padEnd(22)} ${r.msPerStep.toFixed(1).padStart(9)} ${r.vsWasm.toFixed(2).padStart(7)}  ${r.renderer}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
