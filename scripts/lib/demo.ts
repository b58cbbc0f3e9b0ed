import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { replaceDir } from './atomic.js';
import { DEMO_DEFAULTS, DEMO_LIMITS, DEMO_TASK, DEMO_TRAINING } from './demo-page.js';
import { externalReferences } from './offline.js';

/**
 * The docs' browser demo: `demo/` beside the notebook pages, a page that trains a LoRA
 * adapter with lora-tfjs in the reader's browser (scripts/demo/: index.html, main.ts).
 *
 *   demo/index.html   the page (the template with this build's settings filled in)
 *   demo/demo.js      main.ts bundled with lora-tfjs (its ESM build, dist/esm) by esbuild:
 *                     one classic script, so that the page works from file:// too
 *   demo/*.wasm       tfjs-backend-wasm's three binaries (the page passes wasmPaths: './')
 *
 * plotly.js is the site's shared copy, `../plotly.min.js`: the site writes it when it holds
 * the demo (writeSite).
 */

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEMO_SOURCE = join(root, 'scripts', 'demo');
/** The demo's folder in the docs. */
export const DEMO_DIR = 'demo';
/** Its page, as the docs index links it. */
export const DEMO_PAGE = `${DEMO_DIR}/index.html`;
/** tfjs-backend-wasm's binaries (its dist/), the names the wasm backend fetches. */
export const DEMO_WASM = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'] as const;

/** The values the page template's `{{name}}` placeholders take. */
export function demoTemplateValues(): Record<string, string> {
  const testSamples = Math.max(1, Math.floor(DEMO_TASK.samples / 4)); // lowRankShiftTask's default
  return {
    dimsArrow: DEMO_TASK.dims.join(' → '),
    samples: String(DEMO_TASK.samples),
    testSamples: String(testSamples),
    shiftRank: String(DEMO_TASK.shiftRank),
    taskOptions: `{ dims: [${DEMO_TASK.dims.join(', ')}], shiftRank: ${DEMO_TASK.shiftRank}, samples: ${DEMO_TASK.samples}, seed: ${DEMO_TASK.seed} }`,
    batchSize: String(DEMO_TRAINING.batchSize),
    learningRate: String(DEMO_TRAINING.learningRate),
    trainSeed: String(DEMO_TRAINING.seed),
    rank: String(DEMO_DEFAULTS.rank),
    steps: String(DEMO_DEFAULTS.steps),
    rankMin: String(DEMO_LIMITS.rank.min),
    rankMax: String(DEMO_LIMITS.rank.max),
    stepsMin: String(DEMO_LIMITS.steps.min),
    stepsMax: String(DEMO_LIMITS.steps.max),
  };
}

/**
 * The template with its placeholders filled in (the values are plain text, escaped here).
 * Refuses a placeholder it has no value for, and a page that would reach outside the docs
 * (it sits one folder down: `../` may climb to the docs folder, not above it).
 */
export function demoPage(template: string, values: Record<string, string> = demoTemplateValues()): string {
  const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  const page = template.replace(/\{\{(\w+)\}\}/g, (m, name: string) => {
    if (!(name in values)) throw new Error(`demo: the page template has a placeholder ${m} with no value (known: ${Object.keys(values).join(', ')})`);
    return escape(values[name]);
  });
  const external = externalReferences(page, 1);
  if (external.length > 0) throw new Error(`demo: ${DEMO_PAGE} would load or link outside the docs folder:\n  ${external.join('\n  ')}`);
  return page;
}

/** tfjs-backend-wasm's dist/ folder, as the checkout installed it. */
function wasmDist(): string {
  const require = createRequire(join(root, 'package.json'));
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
}

/**
 * Build the demo into `outDir` (its folder, e.g. `out/docs/demo`): built beside it, then
 * swapped in, so `outDir` holds the old demo or the new one, never half of one. Needs the
 * library built (dist/esm: `npm run build`), which the page imports as `lora-tfjs`.
 * Resolves to the files written.
 */
export async function buildDemo(outDir: string): Promise<string[]> {
  const target = resolve(outDir);
  const library = join(root, 'node_modules', 'lora-tfjs', 'dist', 'esm', 'index.js');
  if (!existsSync(library)) {
    throw new Error(`demo: lora-tfjs is not built (${library} is missing); run npm run build (npm install does it) first`);
  }
  const dist = wasmDist();
  for (const f of DEMO_WASM) if (!existsSync(join(dist, f))) throw new Error(`demo: ${join(dist, f)} is missing; reinstall @tensorflow/tfjs-backend-wasm`);
  const page = demoPage(readFileSync(join(DEMO_SOURCE, 'index.html'), 'utf8'));

  const tmp = join(dirname(target), `.${basename(target)}.${process.pid}.${Date.now()}.tmp`);
  mkdirSync(tmp, { recursive: true });
  try {
    const { build } = await import('esbuild');
    await build({
      entryPoints: [join(DEMO_SOURCE, 'main.ts')],
      outfile: join(tmp, 'demo.js'),
      bundle: true,
      // A classic script, not a module: Chromium refuses module scripts on file:// pages.
      format: 'iife',
      platform: 'browser',
      target: 'es2020',
      minify: true,
      legalComments: 'eof',
      logLevel: 'warning',
      absWorkingDir: root,
    });
    for (const f of DEMO_WASM) copyFileSync(join(dist, f), join(tmp, f));
    writeFileSync(join(tmp, 'index.html'), page);
    replaceDir(tmp, target);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return ['index.html', 'demo.js', ...DEMO_WASM];
}
