import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNotebook } from '../scripts/lib/notebook-run.js';
import { ensureJupyter, ensureKernelSpec, kernelEnv } from '../scripts/lib/system.js';
import { launchChromium, offlinePage } from './browser.js';
import { serveFolder } from './docs-site.js';

/**
 * The published package, installed in a fresh project: `npm pack` of the checkout, installed
 * into a temporary app beside the optional peers an app would add, then used from Node (ESM
 * and CommonJS), from a tslab notebook, and from a page bundled with esbuild (wasm and webgl
 * in headless Chromium). Everything runs in child processes and browsers, never in this one.
 */

/** `export * from 'lora-tfjs'`, minified for the browser (measured ~951 KB / 259 KB gzip). */
const BUNDLE_BUDGET = { minified: 1_050_000, gzip: 290_000 };
/** What backendSummary() says in a fresh app's Node here: one wasm thread per core (at most 8). */
const WASM_THREADS = Math.min(availableParallelism(), 8);
const WASM_SUMMARY = `wasm (SIMD, ${WASM_THREADS} thread${WASM_THREADS === 1 ? '' : 's'})`;

const root = join(import.meta.dirname, '..');
/** Set to keep the temporary folder (the packed tarball, the app, its scripts and outputs) for a look after the run. */
const KEEP_VAR = 'LORA_TFJS_KEEP_PACKAGE_TEST';
const timings: Array<[string, number]> = [];
const log = (line: string) => console.log(`[package] ${line}`);
const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;

async function phase<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
  const started = performance.now();
  try {
    return await fn();
  } finally {
    const seconds = (performance.now() - started) / 1000;
    timings.push([name, seconds]);
    log(`${name}: ${seconds.toFixed(1)} s`);
  }
}

/** The environment of child processes: no npm_* variables of an enclosing `npm test`, no backend override. */
function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    // A fresh app's defaults: no lora-tfjs setting of this checkout's run (vitest shares the wasm threads among its files).
    if (v === undefined || /^npm_/i.test(k) || k === 'LORA_BACKEND' || k === 'LORA_PLOTLY' || k === 'LORA_WASM_THREADS' || k === 'NODE_OPTIONS') continue;
    env[k] = v;
  }
  return { ...env, NO_UPDATE_NOTIFIER: '1', ...extra };
}

/** Run a command to completion (or kill it after `timeout` ms); fail with its output unless it exits 0 by itself. */
async function run(command: string, args: string[], cwd: string, timeout: number, env = childEnv()): Promise<{ stdout: string; stderr: string }> {
  const r = await execa(command, args, { cwd, env, extendEnv: false, reject: false, timeout, stdin: 'ignore' });
  if (r.timedOut || r.exitCode !== 0) {
    const how = r.timedOut ? `did not exit within ${timeout / 1000} s (killed)` : `exited with ${r.exitCode ?? r.signal}`;
    throw new Error(`${[command, ...args].join(' ')} (in ${cwd}) ${how}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  }
  return { stdout: r.stdout, stderr: r.stderr };
}

/** The one line of stdout that is a JSON object (a script's result). */
function resultLine(stdout: string, what: string): Record<string, any> {
  const lines = stdout.split('\n').filter((l) => l.startsWith('{'));
  if (lines.length !== 1) throw new Error(`${what}: expected one JSON line on stdout, got ${lines.length}:\n${stdout}`);
  return JSON.parse(lines[0]) as Record<string, any>;
}

/** Every package installed under `dir`'s node_modules (nested copies included), as paths relative to `dir`. */
function installedPackages(dir: string): string[] {
  const out: string[] = [];
  const walk = (nm: string) => {
    if (!existsSync(nm)) return;
    for (const name of readdirSync(nm)) {
      if (name.startsWith('.')) continue;
      const dirs = name.startsWith('@') ? readdirSync(join(nm, name)).map((n) => join(name, n)) : [name];
      for (const d of dirs) {
        if (!existsSync(join(nm, d, 'package.json'))) continue;
        out.push(relative(dir, join(nm, d)));
        walk(join(nm, d, 'node_modules'));
      }
    }
  };
  walk(join(dir, 'node_modules'));
  return out;
}

function folderBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = lstatSync(p);
    total += s.isDirectory() ? folderBytes(p) : s.size;
  }
  return total;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = statSync(p);
    newest = Math.max(newest, s.isDirectory() ? newestMtime(p) : s.mtimeMs);
  }
  return newest;
}

/** Whether dist/ is missing or older than what it is built from. */
function distIsStale(): boolean {
  const built = ['dist/cjs/index.js', 'dist/esm/index.js'].map((f) => join(root, f));
  if (!built.every((f) => existsSync(f))) return true;
  const builtAt = Math.min(...built.map((f) => statSync(f).mtimeMs));
  const sources = Math.max(newestMtime(join(root, 'src')), ...['package.json', 'scripts/build.mjs', 'tsconfig.build.json', 'tsconfig.esm.json'].map((f) => statSync(join(root, f)).mtimeMs));
  return sources > builtAt;
}

type Metafile = { outputs: Record<string, { bytes: number; inputs: Record<string, { bytesInOutput: number }> }> };

/** Bytes of a bundle by package (node_modules/<name>), largest first. */
function byPackage(metafile: Metafile): Array<[string, number]> {
  const sizes = new Map<string, number>();
  for (const output of Object.values(metafile.outputs)) {
    for (const [file, input] of Object.entries(output.inputs)) {
      const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file);
      const key = m !== null ? m[1] : file.startsWith('(disabled)') ? '(disabled Node built-ins)' : '(app)';
      sizes.set(key, (sizes.get(key) ?? 0) + input.bytesInOutput);
    }
  }
  return [...sizes.entries()].sort((a, b) => b[1] - a[1]);
}

/** Bundle `entry` (a file in the app) for the browser with the checkout's esbuild, resolving from the app's node_modules. */
async function bundle(app: string, entry: string, outfile?: string) {
  const esbuild = await import('esbuild');
  try {
    const r = await esbuild.build({
      entryPoints: [join(app, entry)],
      absWorkingDir: app,
      bundle: true,
      minify: true,
      platform: 'browser',
      format: 'esm',
      metafile: true,
      write: false,
      outfile: outfile ?? join(app, 'out', entry),
      logLevel: 'silent',
    });
    const code = r.outputFiles.find((f) => f.path.endsWith('.js'))?.contents ?? new Uint8Array();
    if (outfile !== undefined) writeFileSync(outfile, code);
    return { code, warnings: r.warnings.map((w) => `${w.location?.file ?? ''}: ${w.text}${w.notes.map((n) => ` (${n.text})`).join('')}`), metafile: r.metafile as Metafile };
  } catch (err) {
    const errors = (err as { errors?: Array<{ text: string; location: { file: string } | null; notes: Array<{ text: string }> }> }).errors ?? [];
    throw new Error(`esbuild could not bundle ${entry} for the browser:\n${errors.map((e) => `${e.location?.file ?? ''}: ${e.text}${e.notes.map((n) => ` (${n.text})`).join('')}`).join('\n') || String(err)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The scripts run in the app. `essentials` is shared by the ESM and CommonJS scripts.

const ESSENTIALS = String.raw`
async function essentials(lora, loraNode, tfl, adapterDir) {
  const { tf } = lora;
  const out = {};
  out.backend = await lora.initBackend();
  out.summary = lora.backendSummary();
  const task = lora.lowRankShiftTask({ dims: [16, 32, 8], shiftRank: 2, samples: 256, seed: 3 });
  const model = lora.LoRAMLP.fromBase(task.base, { rank: 4, alpha: 8, seed: 1 });
  const { losses, msPerStep } = await lora.train(model, { x: task.x, y: task.yShifted, steps: 60, batchSize: 32, learningRate: 1e-2, seed: 0 });
  out.mlp = { first: losses[0], last: losses[losses.length - 1], steps: losses.length, msPerStep };

  // Files: save, then load into a second model on the same base.
  loraNode.saveAdapter(model, adapterDir);
  const loaded = lora.LoRAMLP.fromBase(task.base, { noAdapter: true });
  out.loadedName = loraNode.loadAdapter(loaded, adapterDir);
  const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  const p = model.predict(task.xTest).dataSync();
  out.loadedPredictions = { count: p.length, maxDiff: maxDiff(p, loaded.predict(task.xTest).dataSync()) };

  // Bytes: serialize, deserialize into a fresh model, serialize again.
  const sameBytes = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  const first = lora.serializeAdapter(model);
  const fresh = lora.LoRAMLP.fromBase(task.base, { noAdapter: true });
  lora.deserializeAdapter(fresh, first);
  const again = lora.serializeAdapter(fresh);
  const { readFileSync } = await import('node:fs');
  out.roundTrip = {
    bytes: first.weights.length,
    sameWeights: sameBytes(first.weights, again.weights),
    sameConfig: lora.adapterConfigText(first.config) === lora.adapterConfigText(again.config),
    fileIsSerialized: sameBytes(readFileSync(adapterDir + '/adapter_model.safetensors'), first.weights),
    configFileIsSerialized: readFileSync(adapterDir + '/adapter_config.json', 'utf8') === lora.adapterConfigText(first.config),
    predictionsMaxDiff: maxDiff(p, fresh.predict(task.xTest).dataSync()),
  };

  // A tfjs Layers model with addLoRA, trained with compile + fit: needs tfjs-core's gradients
  // (registered by #tfjs-registrations, and also by tfjs-layers itself: its index imports
  // tfjs-core's register_all_gradients, its Node bundle carries a copy). The chained op below
  // is what only #tfjs-registrations provides.
  const base = tfl.sequential({ layers: [
    tfl.layers.dense({ inputShape: [16], units: 64, activation: 'relu', name: 'hidden' }),
    tfl.layers.dense({ units: 4, activation: 'softmax', name: 'head' }),
  ] });
  const adapted = lora.addLoRA(base, { targetModules: ['hidden'], modulesToSave: ['head'], rank: 4, alpha: 8, seed: 1 });
  adapted.compile({ optimizer: tf.train.adam(1e-2), loss: 'categoricalCrossentropy' });
  const x = tf.randomNormal([64, 16], 0, 1, 'float32', 1);
  const y = tf.oneHot(tf.argMax(tf.matMul(x, tf.randomNormal([16, 4], 0, 1, 'float32', 2)), 1), 4);
  const history = await adapted.fit(x, y, { epochs: 20, batchSize: 32, verbose: 0 });
  out.layers = { counts: lora.layersParameterCounts(adapted), first: history.history.loss[0], last: history.history.loss[history.history.loss.length - 1] };

  // A chained op (tensor.square()), which tfjs-core alone does not register.
  out.chained = Array.from(tf.tensor1d([1, 2, 3]).square().dataSync());
  out.version = lora.VERSION;
  return out;
}
`;

const ESM_SCRIPT = String.raw`
import * as lora from 'lora-tfjs';
import * as loraNode from 'lora-tfjs/node';
import * as tfl from '@tensorflow/tfjs-layers';
${ESSENTIALS}
const out = await essentials(lora, loraNode, tfl, process.argv[2]);
out.resolved = Object.fromEntries(['lora-tfjs', 'lora-tfjs/node', '@tensorflow/tfjs-layers', '@tensorflow/tfjs-core'].map((s) => [s, new URL(import.meta.resolve(s)).pathname]));
// import and require in one process give the same lora-tfjs: a model adapted by one is a LoRA model to the other.
const { createRequire } = await import('node:module');
const required = createRequire(import.meta.url)('lora-tfjs');
const adapted = lora.addLoRA(tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [4], units: 3, name: 'd' })] }), { rank: 1 });
out.dual = { same: required.addLoRA === lora.addLoRA && required.LoRADense === lora.LoRADense, layersSeenByRequire: required.loraLayers(adapted).length };
adapted.dispose();
// Run from outside the app: the notebook helpers must find plotly.js beside lora-tfjs, not in the working folder.
const notebook = await import('lora-tfjs/notebook');
let digitsError = null;
try { notebook.loadDigits(); } catch (e) { digitsError = e.message; }
out.notebook = { plotlyPath: notebook.plotlyPath(), digitsError };
console.log(JSON.stringify(out));
`;

const CJS_SCRIPT = String.raw`
'use strict';
const Module = require('node:module');
const path = require('node:path');
// Built-in modules that lora-tfjs's own files require, as "file -> module".
const own = path.join(__dirname, 'node_modules', 'lora-tfjs') + path.sep;
const builtins = [];
const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (Module.isBuiltin(request) && parent && typeof parent.filename === 'string' && parent.filename.startsWith(own)) {
    builtins.push(path.relative(own, parent.filename) + ' -> ' + request);
  }
  return load.apply(this, arguments);
};
const loaded = () => Object.keys(require.cache).map((f) => path.relative(__dirname, f));
${ESSENTIALS}
async function main() {
  const lora = require('lora-tfjs');
  const core = {
    entry: path.relative(__dirname, require.resolve('lora-tfjs')),
    files: loaded().filter((f) => f.startsWith('node_modules/lora-tfjs/')).length,
    nodeOrNotebook: loaded().filter((f) => /^node_modules\/lora-tfjs\/dist\/cjs\/(node|notebook)\//.test(f)),
    plotly: loaded().filter((f) => /plotly/i.test(f)),
    builtins: builtins.splice(0),
  };
  const loraNode = require('lora-tfjs/node');
  const nodeBuiltins = builtins.splice(0);
  const out = await essentials(lora, loraNode, require('@tensorflow/tfjs-layers'), process.argv[2]);
  out.core = core;
  out.nodeBuiltins = nodeBuiltins;
  const notebook = require('lora-tfjs/notebook');
  out.notebook = { entry: path.relative(__dirname, require.resolve('lora-tfjs/notebook')), plotlyPath: notebook.plotlyPath(), plotlyLoaded: loaded().filter((f) => /plotly/i.test(f)) };
  out.packageVersion = require('lora-tfjs/package.json').version;
  console.log(JSON.stringify(out));
}
main().catch((e) => { console.error(e); process.exitCode = 1; });
`;

/** The notebook's cells (tslab compiles them with its own TypeScript 5.0.4, moduleResolution node10). */
const NOTEBOOK_CELLS = [
  `import { initBackend, backendSummary, LoRAMLP, lowRankShiftTask, train, tf } from "lora-tfjs";
import { saveAdapter } from "lora-tfjs/node";
import { lossCurvesFigure, plotlyPath, showPlot, showTable } from "lora-tfjs/notebook";
await initBackend();
console.log(\`backend: \${backendSummary()}\`);`,
  `const task = lowRankShiftTask({ dims: [16, 32, 8], shiftRank: 2, samples: 128, seed: 3 });
const model = LoRAMLP.fromBase(task.base, { rank: 4, alpha: 8, seed: 1 });
const { losses } = await train(model, { x: task.x, y: task.yShifted, steps: 30, batchSize: 32, learningRate: 1e-2, seed: 0 });
const squares: number[] = Array.from(tf.tensor1d([1, 2, 3]).square().dataSync());
const { weightsBytes } = saveAdapter(model, "notebook-adapter");
console.log(JSON.stringify({ first: losses[0], last: losses[losses.length - 1], steps: losses.length, squares, weightsBytes, plotlyPath: plotlyPath() }));`,
  `showTable([{ step: 1, loss: losses[0] }, { step: losses.length, loss: losses[losses.length - 1] }]);
showPlot(lossCurvesFigure([{ name: "LoRA r=4", y: losses }], "Training loss"));`,
];

/** The page: trains, round-trips the adapter's bytes and times training; the outcome goes on window.__result. */
const PAGE_ENTRY = String.raw`
import '@tensorflow/tfjs-backend-webgl';
import { loadLayersModel } from '@tensorflow/tfjs-layers';
// Nothing here names LoRADense: the model below loads only if the bundler kept the LoRA layer
// classes' registration (package.json sideEffects).
import { initBackend, backendSummary, LoRAMLP, lowRankShiftTask, train, serializeAdapter, deserializeAdapter, adapterConfigText, tf } from 'lora-tfjs';

const params = new URLSearchParams(location.search);

function glRenderer() {
  const gl = document.createElement('canvas').getContext('webgl2');
  if (!gl) return null;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  return String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
}

/** Train and time every step: the first (kernels compiled, shaders built) apart from the median of the rest. */
async function timedTrain(dims, steps, batchSize, learningRate) {
  const task = lowRankShiftTask({ dims, shiftRank: 2, samples: 256, seed: 3 });
  const model = LoRAMLP.fromBase(task.base, { rank: 4, alpha: 8, seed: 1 });
  const stamps = [performance.now()];
  const { losses, msPerStep } = await train(model, { x: task.x, y: task.yShifted, steps, batchSize, learningRate, seed: 0, onStep: () => { stamps.push(performance.now()); } });
  const per = stamps.slice(1).map((t, i) => t - stamps[i]);
  const rest = per.slice(1).sort((a, b) => a - b);
  return { task, model, losses, timing: { dims: dims.join('-'), batchSize, steps, firstMs: per[0], medianMs: rest[rest.length >> 1], meanMs: msPerStep } };
}

async function main() {
  const backend = params.get('backend');
  const wasmPaths = params.get('wasmPaths');
  const started = await initBackend(wasmPaths === null ? backend : { backend, wasmPaths });
  const { task, model, losses, timing } = await timedTrain([16, 32, 8], 60, 32, 1e-2);
  const first = serializeAdapter(model);
  const fresh = LoRAMLP.fromBase(task.base, { noAdapter: true });
  deserializeAdapter(fresh, first);
  const again = serializeAdapter(fresh);
  const a = await model.predict(task.xTest).data();
  const b = await fresh.predict(task.xTest).data();
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  // (Backends' speeds are compared by npm run bench:browser, not here: this page only logs its own.)
  // A Layers model with LoRA layers, saved by the Node script, read with plain tfjs-layers.
  const saved = await loadLayersModel('./lora-model/model.json');
  const expected = await (await fetch('./lora-model/expected.json')).json();
  const got = Array.from(await saved.predict(tf.tensor2d(expected.x)).data());
  const loaded = { classes: saved.layers.map((l) => l.getClassName()), maxDiff: Math.max(...got.map((v, i) => Math.abs(v - expected.y.flat()[i]))) };
  // The tensor methods come from #tfjs-registrations (tfjs-layers registers the gradients itself).
  const chained = Array.from(tf.tensor1d([1, 2, 3]).square().dataSync());
  return {
    backend: started,
    active: tf.getBackend(),
    summary: backendSummary(),
    renderer: glRenderer(),
    first: losses[0],
    last: losses[losses.length - 1],
    bytes: first.weights.length,
    sameWeights: first.weights.length === again.weights.length && first.weights.every((v, i) => v === again.weights[i]),
    sameConfig: adapterConfigText(first.config) === adapterConfigText(again.config),
    predictions: a.length,
    maxDiff,
    timings: [timing],
    loaded,
    chained,
  };
}

main().then(
  (r) => { window.__result = { ok: true, ...r }; },
  (e) => { window.__result = { ok: false, error: String((e && e.message) || e) }; },
);
`;

/** Saves an adapted (and trained) Layers model with file:// for the page, with a few inputs and its outputs on them. */
const SAVE_LORA_MODEL = String.raw`
import { mkdirSync, writeFileSync } from 'node:fs';
import * as tfl from '@tensorflow/tfjs-layers';
import { addLoRA, initBackend, tf } from 'lora-tfjs';
import 'lora-tfjs/node';
const dir = process.argv[2];
await initBackend();
const base = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [6], units: 8, activation: 'relu', name: 'hidden' }), tfl.layers.dense({ units: 3, name: 'head' })] });
const model = addLoRA(base, { targetModules: ['hidden'], rank: 2, alpha: 4, seed: 1 });
model.compile({ optimizer: tf.train.adam(3e-2), loss: 'meanSquaredError' });
const x = tf.randomNormal([32, 6], 0, 1, 'float32', 5);
await model.fit(x, tf.randomNormal([32, 3], 0, 1, 'float32', 6), { epochs: 20, verbose: 0 });
mkdirSync(dir, { recursive: true });
await model.save('file://' + dir);
const probe = tf.slice(x, [0, 0], [4, 6]);
writeFileSync(dir + '/expected.json', JSON.stringify({ x: probe.arraySync(), y: model.predict(probe).arraySync() }));
`;

// ---------------------------------------------------------------------------------------------

describe('the published package in a fresh project', () => {
  let work: string;
  let app: string;
  let packed: { filename: string; size: number; unpackedSize: number; entryCount: number; files: Array<{ path: string }> };
  let tarball: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'lora-tfjs-package-'));
    app = join(work, 'app');
    mkdirSync(app);
    if (distIsStale()) {
      await phase('build dist/ (it was missing or older than src/)', () => run(process.execPath, [join(root, 'scripts', 'build.mjs')], root, 300_000));
    } else {
      log('dist/ is up to date with src/: not rebuilt');
    }
    const pack = await phase('npm pack', () => run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], root, 120_000));
    [packed] = JSON.parse(pack.stdout) as Array<typeof packed>;
    tarball = join(work, packed.filename);
    log(`tarball ${packed.filename}: ${kb(packed.size)} packed, ${kb(packed.unpackedSize)} unpacked, ${packed.entryCount} files`);

    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'commonjs' }, null, 2) + '\n');
    const install = await phase('npm install (tarball + webgl + plotly)', () =>
      run('npm', ['install', tarball, '@tensorflow/tfjs-backend-webgl@4.22.0', 'plotly.js-dist-min@3.7.0', '--no-audit', '--no-fund'], app, 300_000),
    );
    for (const line of `${install.stdout}\n${install.stderr}`.split('\n').filter((l) => l.trim() !== '')) log(`npm: ${line}`);
    const sizes = installedPackages(app).map((p) => [p.replace(/^node_modules\//, ''), folderBytes(join(app, p))] as const).sort((a, b) => b[1] - a[1]);
    log(`app node_modules: ${mb(folderBytes(join(app, 'node_modules')))} in ${sizes.length} packages; largest: ${sizes.slice(0, 6).map(([p, b]) => `${p} ${mb(b)}`).join(', ')}`);
  }, 600_000);

  afterAll(() => {
    log(`phases: ${timings.map(([n, s]) => `${n} ${s.toFixed(1)} s`).join('; ')}`);
    if (work === undefined) return;
    if (process.env[KEEP_VAR] === '1') log(`kept ${work} (${KEEP_VAR}=1)`);
    else rmSync(work, { recursive: true, force: true });
  });

  it('packs dist/ with both builds, their types and the three entry points, and nothing else', () => {
    const files = packed.files.map((f) => f.path);
    const required = ['package.json', 'README.md', 'LICENSE', 'dist/cjs/index.mjs', 'dist/cjs/node/index.mjs', 'dist/cjs/notebook/index.mjs'];
    for (const build of ['cjs', 'esm']) {
      for (const entry of ['index', 'node/index', 'notebook/index']) required.push(`dist/${build}/${entry}.js`, `dist/${build}/${entry}.d.ts`);
      required.push(`dist/${build}/package.json`, `dist/${build}/runtime/tfjs-registrations.node.cjs`, `dist/${build}/runtime/tfjs-registrations.browser.mjs`, `dist/${build}/runtime/wasm-pthread-worker.cjs`);
    }
    expect(required.filter((f) => !files.includes(f)), 'missing from the tarball').toEqual([]);
    expect(files.filter((f) => !f.startsWith('dist/') && !['package.json', 'README.md', 'LICENSE'].includes(f)), 'outside dist/').toEqual([]);
    expect(
      files.filter((f) => /(^|\/)plotly[^/]*\.js$/i.test(f) || /(^|\/)(src|scripts|test|notebooks|node_modules)\//.test(f) || f.endsWith('.tsbuildinfo') || f.endsWith('.ipynb')),
      'must not ship',
    ).toEqual([]);
  });

  it('has a package.json that runs nothing on install and maps the three entry points', async () => {
    const unpacked = join(work, 'unpacked');
    mkdirSync(unpacked);
    await run('tar', ['-xzf', tarball, '-C', unpacked, 'package/package.json'], work, 60_000);
    const pkg = JSON.parse(readFileSync(join(unpacked, 'package', 'package.json'), 'utf8')) as { scripts?: Record<string, string>; exports: Record<string, unknown>; dependencies: Record<string, string> };
    expect(Object.keys(pkg.scripts ?? {}).filter((s) => ['preinstall', 'install', 'postinstall'].includes(s)), 'install-time scripts').toEqual([]);
    expect(Object.keys(pkg.exports).sort()).toEqual(['.', './node', './notebook', './package.json']);
    expect(Object.keys(pkg.dependencies).filter((d) => ['@tensorflow/tfjs', '@tensorflow/tfjs-node', 'plotly.js-dist-min', 'plotly.js-dist'].includes(d))).toEqual([]);
  });

  it('installs without the tfjs union, converter, data or tfjs-node, with one tfjs-core and tfjs-layers hoisted', () => {
    const installed = installedPackages(app);
    const forbidden = /(^|\/)@tensorflow\/(tfjs|tfjs-converter|tfjs-data|tfjs-node|tfjs-node-gpu)$/;
    expect(installed.filter((p) => forbidden.test(p)), 'installed but must not be').toEqual([]);
    expect(installed.filter((p) => p.endsWith('@tensorflow/tfjs-core')), 'copies of tfjs-core').toEqual(['node_modules/@tensorflow/tfjs-core']);
    for (const p of ['lora-tfjs', '@tensorflow/tfjs-layers', '@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-webgl', 'plotly.js-dist-min']) {
      expect(installed, `${p} at the top of the app's node_modules`).toContain(`node_modules/${p}`);
    }
    expect(installed.filter((p) => p.startsWith('node_modules/lora-tfjs/')), 'nested under lora-tfjs').toEqual([]);
  });

  it('works from a Node ES module: wasm, training, adapter files and bytes, a Layers model with compile + fit, chained ops', async () => {
    writeFileSync(join(app, 'check.mjs'), ESM_SCRIPT);
    const adapterDir = join(work, 'adapter-esm');
    const { stdout } = await phase('Node ESM script', () => run(process.execPath, [join(app, 'check.mjs'), adapterDir], work, 90_000));
    const r = resultLine(stdout, 'check.mjs');
    log(`ESM: ${r.summary}, LoRAMLP loss ${r.mlp.first.toFixed(4)} -> ${r.mlp.last.toFixed(4)} (${r.mlp.msPerStep.toFixed(1)} ms/step), Layers loss ${r.layers.first.toFixed(4)} -> ${r.layers.last.toFixed(4)}`);
    expect(r.backend).toBe('wasm');
    // The threaded build starts from the installed package (its worker entry finds tfjs there).
    expect(r.summary).toBe(WASM_SUMMARY);
    expect(r.mlp.steps).toBe(60);
    expect(r.mlp.last).toBeLessThan(r.mlp.first / 2);
    expect(r.loadedName).toBe('default');
    expect(r.loadedPredictions).toEqual({ count: 64 * 8, maxDiff: 0 });
    expect(r.roundTrip).toEqual({ bytes: expect.any(Number), sameWeights: true, sameConfig: true, fileIsSerialized: true, configFileIsSerialized: true, predictionsMaxDiff: 0 });
    expect(r.layers.counts).toMatchObject({ lora: 320, saved: 260 });
    expect(r.layers.last).toBeLessThan(r.layers.first / 2);
    expect(r.chained).toEqual([1, 4, 9]);
    expect(r.resolved).toEqual({
      // Node's import is the CommonJS build behind a one-line ES module: one copy per process.
      'lora-tfjs': join(app, 'node_modules/lora-tfjs/dist/cjs/index.mjs'),
      'lora-tfjs/node': join(app, 'node_modules/lora-tfjs/dist/cjs/node/index.mjs'),
      '@tensorflow/tfjs-layers': join(app, 'node_modules/@tensorflow/tfjs-layers/dist/tf-layers.node.js'),
      '@tensorflow/tfjs-core': join(app, 'node_modules/@tensorflow/tfjs-core/dist/tf-core.node.js'),
    });
    expect(r.dual).toEqual({ same: true, layersSeenByRequire: 1 });
    expect(r.notebook.plotlyPath).toBe(join(app, 'node_modules/plotly.js-dist-min/plotly.min.js'));
    expect(r.notebook.digitsError).toBe(
      `loadDigits: ${join(work, 'notebooks/data/digits.csv.gz')} does not exist; the digits ship with the lora-tfjs repository (notebooks/data/digits.csv.gz), not with the npm package: pass the path of a copy`,
    );
  });

  it('works from CommonJS; require("lora-tfjs") loads no Node built-in, nothing of /node or /notebook, no plotly', async () => {
    writeFileSync(join(app, 'check.cjs'), CJS_SCRIPT);
    const adapterDir = join(work, 'adapter-cjs');
    const { stdout } = await phase('Node CommonJS script', () => run(process.execPath, ['check.cjs', adapterDir], app, 90_000));
    const r = resultLine(stdout, 'check.cjs');
    log(`CJS: ${r.summary}, ${r.core.files} files of lora-tfjs loaded by require("lora-tfjs"); lora-tfjs/node requires ${r.nodeBuiltins.length} built-ins`);
    expect(r.core.entry).toBe('node_modules/lora-tfjs/dist/cjs/index.js');
    expect(r.core.builtins, 'Node built-ins required by lora-tfjs files when loading the core entry').toEqual([]);
    expect(r.core.nodeOrNotebook).toEqual([]);
    expect(r.core.plotly).toEqual([]);
    // The same hook sees lora-tfjs/node's built-ins: the empty list above is not an accident of the hook.
    expect(r.nodeBuiltins).toContain('dist/cjs/node/safe-files.js -> node:fs');
    expect(r.backend).toBe('wasm');
    // The threaded build starts from the installed package (its worker entry finds tfjs there).
    expect(r.summary).toBe(WASM_SUMMARY);
    expect(r.mlp.last).toBeLessThan(r.mlp.first / 2);
    expect(r.loadedPredictions).toEqual({ count: 64 * 8, maxDiff: 0 });
    expect(r.roundTrip).toEqual({ bytes: expect.any(Number), sameWeights: true, sameConfig: true, fileIsSerialized: true, configFileIsSerialized: true, predictionsMaxDiff: 0 });
    expect(r.layers.last).toBeLessThan(r.layers.first / 2);
    expect(r.chained).toEqual([1, 4, 9]);
    expect(r.notebook).toEqual({
      entry: 'node_modules/lora-tfjs/dist/cjs/notebook/index.js',
      plotlyPath: join(app, 'node_modules/plotly.js-dist-min/plotly.min.js'),
      plotlyLoaded: [],
    });
    expect(r.version).toBe(r.packageVersion);
  });

  it('works in a tslab notebook in the app folder (types through typesVersions, display, Plotly)', async () => {
    const nbPath = join(app, 'check.ipynb');
    const notebook = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: { kernelspec: { name: 'tslab', display_name: 'TypeScript', language: 'typescript' } },
      cells: NOTEBOOK_CELLS.map((source, i) => ({ cell_type: 'code', id: `cell-${i}`, metadata: {}, execution_count: null, outputs: [], source })),
    };
    writeFileSync(nbPath, JSON.stringify(notebook, null, 1) + '\n');
    const jupyter = await phase('find Jupyter and the tslab kernelspec', async () => {
      const found = await ensureJupyter(root, log);
      await ensureKernelSpec(root);
      return found;
    });
    const executedDir = join(work, 'executed');
    mkdirSync(executedDir);
    const result = await phase('tslab notebook (nbconvert --execute)', () =>
      runNotebook({
        jupyter,
        notebook: nbPath,
        tmpDir: executedDir,
        cellTimeout: 120,
        // runNotebook adds this process's environment, where vitest set LORA_WASM_THREADS: empty is unset.
        env: childEnv({ ...kernelEnv(root), PYTHONUNBUFFERED: '1', LORA_WASM_THREADS: '' }),
        hooksConfig: join(root, 'scripts', 'nbconvert_hooks.py'),
      }),
    );
    expect(result.failure, 'the notebook failed').toBeNull();
    type Output = { output_type: string; name?: string; text?: string | string[]; data?: Record<string, unknown> };
    const executed = JSON.parse(readFileSync(result.executed as string, 'utf8')) as { cells: Array<{ outputs: Output[] }> };
    const outputs = executed.cells.map((c) => c.outputs);
    const text = (o: Output) => (Array.isArray(o.text) ? o.text.join('') : (o.text ?? ''));
    expect(outputs.flat().filter((o) => o.output_type === 'error' || (o.output_type === 'stream' && o.name === 'stderr')).map(text), 'error outputs').toEqual([]);

    const printed = outputs.map((cell) => cell.filter((o) => o.output_type === 'stream').map(text).join(''));
    expect(printed[0].trim()).toBe(`backend: ${WASM_SUMMARY}`);
    const values = JSON.parse(printed[1]) as { first: number; last: number; steps: number; squares: number[]; weightsBytes: number; plotlyPath: string };
    log(`notebook: ${printed[0].trim()}, loss ${values.first.toFixed(4)} -> ${values.last.toFixed(4)}`);
    expect(values.steps).toBe(30);
    expect(values.last).toBeLessThan(values.first / 2);
    expect(values.squares).toEqual([1, 4, 9]);
    expect(values.weightsBytes).toBeGreaterThan(0);
    expect(existsSync(join(app, 'notebook-adapter', 'adapter_model.safetensors'))).toBe(true);
    // lora-tfjs resolves plotly.js from its own folder first: this is the app's copy, not the checkout's.
    expect(values.plotlyPath).toBe(join(app, 'node_modules/plotly.js-dist-min/plotly.min.js'));

    const displays = outputs[2].filter((o) => o.output_type === 'display_data');
    expect(displays.map((o) => Object.keys(o.data ?? {}).sort())).toEqual([
      ['text/html', 'text/plain'],
      ['application/vnd.plotly.v1+json', 'text/html', 'text/plain'],
    ]);
    expect(String(displays[0].data?.['text/html'])).toContain('<table class="lora-tfjs-table"');
    const figure = displays[1].data?.['application/vnd.plotly.v1+json'] as { data: Array<{ name: string; y: number[] }> };
    expect(figure.data[0].name).toBe('LoRA r=4');
    expect(figure.data[0].y).toHaveLength(30);
    // The first chart of a page inlines plotly.js (read from the app's plotly.js-dist-min).
    expect(String(displays[1].data?.['text/html'])).toContain('data-lora-tfjs-plotly="inline"');
  }, 300_000);

  describe('in headless Chromium, bundled with esbuild', () => {
    let browser: Browser;
    let server: { origin: string; close: () => Promise<void> };
    const site = () => join(app, 'site');

    beforeAll(async () => {
      mkdirSync(join(site(), 'wasm'), { recursive: true });
      writeFileSync(join(app, 'page.js'), PAGE_ENTRY);
      const b = await phase('esbuild: page bundle', () => bundle(app, 'page.js', join(site(), 'page.js')));
      expect(b.warnings, 'esbuild warnings').toEqual([]);
      log(`page bundle (lora-tfjs + webgl): ${kb(b.code.length)} minified`);
      for (const f of readdirSync(join(app, 'node_modules/@tensorflow/tfjs-backend-wasm/dist')).filter((f) => f.endsWith('.wasm'))) {
        copyFileSync(join(app, 'node_modules/@tensorflow/tfjs-backend-wasm/dist', f), join(site(), 'wasm', f));
      }
      expect(readdirSync(join(site(), 'wasm')).sort()).toEqual(['tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm', 'tfjs-backend-wasm.wasm']);
      writeFileSync(join(app, 'save-lora-model.mjs'), SAVE_LORA_MODEL);
      await phase('Node: a Layers model with LoRA layers saved for the page', () => run(process.execPath, ['save-lora-model.mjs', join(site(), 'lora-model')], app, 90_000));
      writeFileSync(join(site(), 'index.html'), '<!doctype html>\n<html><head><meta charset="utf-8"><title>lora-tfjs</title></head>\n<body><script type="module" src="./page.js"></script></body></html>\n');
      server = await serveFolder(site());
      browser = await phase('launch Chromium', () => launchChromium());
    }, 300_000);

    afterAll(async () => {
      await browser?.close();
      await server?.close();
    });

    /** Open the page with `query`; what it put on window.__result, with the page's blocked requests, errors and 404s. */
    async function openPage(query: string) {
      const p = await offlinePage(browser, server.origin);
      const notFound: string[] = [];
      p.page.on('response', (res) => {
        if (res.status() === 404) notFound.push(res.url());
      });
      try {
        await p.page.goto(`${server.origin}/index.html?${query}`, { waitUntil: 'load' });
        await p.page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, null, { timeout: 150_000 });
        const result = await p.page.evaluate(() => (window as unknown as { __result: Record<string, any> }).__result);
        return { result, blocked: p.blocked, pageErrors: p.pageErrors, consoleErrors: p.consoleErrors, notFound };
      } finally {
        await p.close();
      }
    }

    type Timing = { dims: string; batchSize: number; steps: number; firstMs: number; medianMs: number; meanMs: number };
    const describeTimings = (ts: Timing[]) =>
      ts.map((t) => `${t.dims} batch ${t.batchSize}: first step ${t.firstMs.toFixed(0)} ms, then median ${t.medianMs.toFixed(1)} ms/step (mean of ${t.steps} ${t.meanMs.toFixed(1)})`).join('; ');

    for (const [backend, query] of [
      ['wasm', 'backend=wasm&wasmPaths=./wasm/'],
      ['webgl', 'backend=webgl'],
    ] as const) {
      it(`${backend}: trains, round-trips the adapter's bytes, predictions equal`, async () => {
        const page = await phase(`Chromium page: ${backend}`, () => openPage(query));
        const r = page.result;
        expect(r.ok ? null : r.error, `the ${backend} page failed`).toBeNull();
        log(`Chromium ${r.summary}${backend === 'webgl' ? ` (WebGL renderer: ${r.renderer})` : ''}: loss ${r.first.toFixed(4)} -> ${r.last.toFixed(4)}; ${describeTimings(r.timings)}`);
        expect({ blocked: page.blocked, pageErrors: page.pageErrors, consoleErrors: page.consoleErrors, notFound: page.notFound }).toEqual({ blocked: [], pageErrors: [], consoleErrors: [], notFound: [] });
        expect(r.backend).toBe(backend);
        expect(r.active).toBe(backend);
        // A page that is not cross-origin isolated has no shared memory: tfjs's single-thread build.
        if (backend === 'wasm') expect(r.summary).toBe('wasm (SIMD, 1 thread)');
        expect(r.last).toBeLessThan(r.first / 2);
        expect({ sameWeights: r.sameWeights, sameConfig: r.sameConfig, predictions: r.predictions, maxDiff: r.maxDiff }).toEqual({ sameWeights: true, sameConfig: true, predictions: 64 * 8, maxDiff: 0 });
        expect(r.bytes).toBeGreaterThan(1000);
        expect(r.chained).toEqual([1, 4, 9]);
        expect(r.loaded.classes).toEqual(['LoRADense', 'Dense']);
        expect(r.loaded.maxDiff).toBeLessThan(1e-5);
      }, 200_000);
    }

    it('wasm with wrong wasmPaths: the error says the binaries could not be fetched, and where from', async () => {
      const page = await phase('Chromium page: wasm, wrong wasmPaths', () => openPage('backend=wasm&wasmPaths=./missing/'));
      const r = page.result;
      expect(r.ok, 'initBackend should have failed').toBe(false);
      expect(r.error).toMatch(/^initBackend: backend "wasm" cannot be used \(.*\); the page could not fetch the wasm binaries under "\.\/missing\/": serve tfjs-backend-wasm\.wasm, /);
      expect(page.blocked).toEqual([]);
      expect(page.notFound.length, 'the page asked for the binaries').toBeGreaterThan(0);
      expect(page.notFound.filter((u) => !u.startsWith(`${server.origin}/missing/tfjs-backend-wasm`)), '404s outside ./missing/').toEqual([]);
      expect(page.consoleErrors.filter((m) => !m.includes('the server responded with a status of 404'))).toEqual([]);
    });
  });

  it(`bundles for the browser within ${BUNDLE_BUDGET.minified.toLocaleString('en-US')} bytes minified, ${BUNDLE_BUDGET.gzip.toLocaleString('en-US')} gzip, without plotly or Node built-ins`, async () => {
    writeFileSync(join(app, 'everything.js'), "export * from 'lora-tfjs';\n");
    writeFileSync(join(app, 'one-codec.js'), "export { encodeSafetensors } from 'lora-tfjs';\n");
    const full = await phase('esbuild: export * from lora-tfjs', () => bundle(app, 'everything.js'));
    const gzip = gzipSync(full.code).length;
    log(`export * from 'lora-tfjs': ${full.code.length.toLocaleString('en-US')} bytes minified, ${gzip.toLocaleString('en-US')} gzip`);
    for (const [name, bytes] of byPackage(full.metafile)) log(`  ${name}: ${kb(bytes)}`);
    const one = await phase('esbuild: { encodeSafetensors } only', () => bundle(app, 'one-codec.js'));
    const oneGzip = gzipSync(one.code).length;
    const kept = Object.keys(Object.values(one.metafile.outputs)[0].inputs)
      .filter((f) => f.includes('node_modules/lora-tfjs/'))
      .map((f) => f.replace(/.*node_modules\/lora-tfjs\/dist\/esm\//, ''));
    log(`{ encodeSafetensors } alone: ${one.code.length.toLocaleString('en-US')} bytes minified, ${oneGzip.toLocaleString('en-US')} gzip; by package: ${byPackage(one.metafile).map(([n, b]) => `${n} ${kb(b)}`).join(', ')}; lora-tfjs files kept: ${kept.join(', ')}`);

    expect(full.warnings, 'esbuild warnings (a Node built-in in the browser build shows here or fails the build)').toEqual([]);
    expect(one.warnings).toEqual([]);
    expect(full.code.length).toBeLessThan(BUNDLE_BUDGET.minified);
    expect(gzip).toBeLessThan(BUNDLE_BUDGET.gzip);
    expect(Buffer.from(full.code).toString('utf8').toLowerCase().includes('plotly'), 'the bundle mentions plotly').toBe(false);
    expect(byPackage(full.metafile).map(([n]) => n).filter((n) => /^@tensorflow\/(tfjs|tfjs-converter|tfjs-data|tfjs-backend-webgl)$/.test(n) || n.startsWith('plotly'))).toEqual([]);
    expect(one.code.length).toBeLessThan(full.code.length);
  });
});
