import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as wasmBackend from '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoRAMLP, backendSummary, initBackend } from '../src/index.js';
import { MAX_WASM_THREADS, resetWasm, restartWasm, wasmThreadsState } from '../src/runtime/wasm-threads.js';
import { TFJS_WASM_VERSION, defaultWasmThreads, threadedWasmFiles } from '../src/runtime/wasm-threads-node.js';
import { fileFromStack } from '../src/util/module-url.js';

const ROOT = resolve(__dirname, '..');
const BUILT = join(ROOT, 'dist', 'cjs', 'index.js');
const CORES = defaultWasmThreads();
/** The count this process starts with: vitest shares the cores among its files (vitest.config.ts). */
const STARTED = Math.min(Number(process.env.LORA_WASM_THREADS || CORES), MAX_WASM_THREADS);
const summaryOf = (n: number) => `wasm (SIMD, ${n} thread${n === 1 ? '' : 's'})`;

interface Run {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run a CommonJS script in a fresh Node; resolves when the process has ended by itself (or was killed at the timeout). */
function runScript(source: string, env: Record<string, string> = {}, nodeArgs: string[] = [], timeoutMs = 60_000): Promise<Run> {
  const t0 = performance.now();
  return new Promise((done) => {
    const base = { ...process.env };
    delete base.LORA_WASM_THREADS; // a plain script's defaults, unless the test sets it
    execFile(process.execPath, [...nodeArgs, '-e', source], { cwd: ROOT, env: { ...base, ...env }, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string }) | null;
      done({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : null, signal: e?.signal ?? null, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

/** A script that trains a small LoRAMLP on the built package and returns from main: the process must then end. */
const TRAIN = `
const lora = require(${JSON.stringify(BUILT)});
const tf = lora.tf;
(async () => {
  await lora.initBackend();
  const m = new lora.LoRAMLP([32, 64, 8], { rank: 4, seed: 1 });
  const x = tf.randomNormal([16, 32], 0, 1, 'float32', 2);
  const y = tf.randomNormal([16, 8], 0, 1, 'float32', 3);
  const opt = tf.train.adam(0.01);
  let last;
  for (let i = 0; i < 20; i++) last = opt.minimize(() => tf.losses.meanSquaredError(y, m.apply(x, { training: true })), true).dataSync()[0];
  console.log(JSON.stringify({ summary: lora.backendSummary(), loss: last }));
})();
`;

describe('what the threaded start relies on in tfjs-backend-wasm (fails loudly when tfjs changes)', () => {
  const files = threadedWasmFiles();

  it('is the pinned version, with the threaded glue, worker code and binary', () => {
    expect(wasmBackend.version_wasm).toBe(TFJS_WASM_VERSION);
    expect(files.version).toBe(TFJS_WASM_VERSION);
    // Each pthread evaluates the glue as a classic script: it must define this global.
    expect(readFileSync(files.glue, 'utf8').trimStart().split('\n')[0]).toBe('var WasmBackendModuleThreadedSimd = (() => {');
    expect(typeof createRequire(files.glue)(files.glue)).toBe('function');
    // The worker code exists only as a string, with a Node branch that loads the glue by path.
    const { wasmWorkerContents } = createRequire(files.workerCode)(files.workerCode) as { wasmWorkerContents: unknown };
    expect(typeof wasmWorkerContents).toBe('string');
    for (const piece of ['ENVIRONMENT_IS_NODE', 'require("worker_threads")', 'importScripts:function(f){(0,eval)(fs.readFileSync(f,"utf8")', 'importScripts(e.data.urlOrBlob)', 'WasmBackendModuleThreadedSimd(Module)']) {
      expect(wasmWorkerContents as string, piece).toContain(piece);
    }
    expect(readFileSync(files.worker, 'utf8')).toContain('wasmWorkerContents.replace(/\\n/g');
  });

  it('has the wasm import and exports the start overrides and calls', async () => {
    const module = await WebAssembly.compile(readFileSync(files.binary));
    // The import whose answer tfjs halves (num_cores = cores / 2, the cap on threads).
    expect(WebAssembly.Module.imports(module)).toContainEqual({ module: 'env', name: 'emscripten_num_logical_cores', kind: 'function' });
    const exports = WebAssembly.Module.exports(module).map((e) => e.name);
    for (const name of ['init', 'init_with_threads_count', 'get_threads_count', 'register_tensor', 'dispose_data', 'dispose']) expect(exports).toContain(name);
    expect(typeof wasmBackend.BackendWasm).toBe('function');
    expect(typeof wasmBackend.setThreadsCount).toBe('function');
    expect(typeof wasmBackend.getThreadsCount).toBe('function');
  });

  it('still turns threads off in Node by itself (else this workaround is no longer needed)', async () => {
    const flag = (tf.env() as unknown as { flagRegistry: Record<string, { evaluationFn: () => unknown }> }).flagRegistry.WASM_HAS_MULTITHREAD_SUPPORT;
    expect(await flag.evaluationFn()).toBe(false);
    // tfjs's own start gives the pthreads a blob: URL (Node's Worker refuses it).
    const bundle = readFileSync(createRequire(__filename).resolve('@tensorflow/tfjs-backend-wasm'), 'utf8');
    expect(bundle).toContain('factoryConfig.mainScriptUrlOrBlob = new Blob(');
  });
});

describe('threaded wasm in this (vitest) process', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('starts the count asked for (LORA_WASM_THREADS, else one per core), and says so', async () => {
    expect(tf.getBackend()).toBe('wasm');
    expect(wasmThreadsState()).toEqual({ threads: STARTED, threaded: STARTED > 1, fallback: null });
    expect(wasmBackend.getThreadsCount()).toBe(STARTED);
    expect(backendSummary()).toBe(summaryOf(STARTED));
    // Every core, in this vitest process too.
    await restartWasm(CORES);
    expect(wasmThreadsState()).toEqual({ threads: CORES, threaded: CORES > 1, fallback: null });
    expect(backendSummary()).toBe(summaryOf(CORES));
  });

  it('refuses a bad or late thread count, naming it', async () => {
    for (const bad of [0, -1, 1.5, '2', Number.NaN]) {
      await expect(initBackend({ threads: bad as never })).rejects.toThrow(/^initBackend: threads = .* is invalid; expected a positive whole number of threads/);
    }
    expect(await initBackend({ backend: 'wasm', threads: CORES })).toBe('wasm');
    await expect(initBackend({ backend: 'wasm', threads: CORES + 1 })).rejects.toThrow(
      `initBackend: threads = ${CORES + 1} is invalid; expected the ${CORES} thread${CORES === 1 ? '' : 's'} wasm started with: the count is fixed once wasm has started`,
    );
    process.env.LORA_WASM_THREADS = 'two';
    try {
      await expect(initBackend('cpu')).rejects.toThrow('initBackend: LORA_WASM_THREADS = "two" is invalid; expected a positive whole number of threads (e.g. 2)');
    } finally {
      delete process.env.LORA_WASM_THREADS;
    }
    expect(tf.getBackend()).toBe('wasm');
  });

  it('waits for a start already under way, then checks the count against it', async () => {
    resetWasm(2);
    const pending = tf.setBackend('wasm'); // not awaited: initBackend finds the start under way
    await expect(initBackend({ backend: 'wasm', threads: 3 })).rejects.toThrow('initBackend: threads = 3 is invalid; expected the 2 threads wasm started with');
    expect(await pending).toBe(true);
    expect(await initBackend({ backend: 'wasm', threads: 2 })).toBe('wasm');
    expect(backendSummary()).toBe(summaryOf(2));
  });

  it('refuses to restart wasm while tensors live on it (they would be lost)', async () => {
    const t = tf.ones([2, 2]);
    await expect(restartWasm(1)).rejects.toThrow('restartWasm: 1 tensor still on wasm would be lost; dispose it first');
    expect(Array.from(t.dataSync())).toEqual([1, 1, 1, 1]);
    t.dispose();
  });

  it('gives the same numbers on 1, 2 and 3 threads (matMul, conv2d, LoRA training)', async () => {
    /** A fixed workload, read back to plain arrays (wasm restarts in between). */
    const workload = () =>
      tf.tidy(() => {
        const a = tf.randomUniform([96, 640], -1, 1, 'float32', 1);
        const b = tf.randomUniform([640, 384], -1, 1, 'float32', 2);
        const img = tf.randomUniform([2, 20, 20, 8], -1, 1, 'float32', 3) as tf.Tensor4D;
        const filter = tf.randomUniform([3, 3, 8, 16], -1, 1, 'float32', 4) as tf.Tensor4D;
        return { matMul: tf.matMul(a, b).dataSync(), conv: tf.conv2d(img, filter, 1, 'same').dataSync() };
      });
    const train = () => {
      const model = new LoRAMLP([64, 256, 256, 16], { rank: 4, alpha: 8, baseInit: 'kaiming', seed: 5 });
      const x = tf.randomNormal([32, 64], 0, 1, 'float32', 6) as tf.Tensor2D;
      const y = tf.randomNormal([32, 16], 0, 1, 'float32', 7) as tf.Tensor2D;
      const opt = tf.train.adam(1e-2);
      const losses: number[] = [];
      for (let i = 0; i < 15; i++) {
        const loss = opt.minimize(() => tf.mean(tf.squaredDifference(model.apply(x, { training: true }), y)) as tf.Scalar, true, model.trainableVariables())!;
        losses.push(loss.dataSync()[0]);
        loss.dispose();
      }
      const weights = model.layers.flatMap((l) => [l.A.dataSync(), l.B.dataSync()]);
      opt.dispose();
      tf.dispose([x, y]);
      model.dispose();
      return { losses, weights };
    };
    const before = tf.memory().numTensors;
    const runs: Array<{ threads: number; work: ReturnType<typeof workload>; trained: ReturnType<typeof train> }> = [];
    for (const threads of [2, 1, 3]) {
      await restartWasm(threads);
      expect(wasmBackend.getThreadsCount()).toBe(threads);
      runs.push({ threads, work: workload(), trained: train() });
      expect(tf.memory().numTensors).toBe(before);
    }
    await restartWasm(CORES);
    const [first, ...rest] = runs;
    for (const r of rest) {
      // XNNPACK splits the output into tiles; each element keeps its own summation order, so
      // the thread count changes no bit (the threaded build at 1 thread is the stock SIMD build).
      expect(Buffer.from(r.work.matMul.buffer).equals(Buffer.from(first.work.matMul.buffer)), `matMul, ${r.threads} vs ${first.threads} threads`).toBe(true);
      expect(Buffer.from(r.work.conv.buffer).equals(Buffer.from(first.work.conv.buffer)), `conv2d, ${r.threads} vs ${first.threads} threads`).toBe(true);
      expect(r.trained.losses, `losses, ${r.threads} vs ${first.threads} threads`).toEqual(first.trained.losses);
      r.trained.weights.forEach((w, i) => expect(Array.from(w), `weight ${i}`).toEqual(Array.from(first.trained.weights[i])));
    }
    expect(first.trained.losses.at(-1)!).toBeLessThan(first.trained.losses[0] * 0.7);
  });
});

describe('threaded wasm in a plain script (the built package)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'lora-wasm-threads-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('trains on every core, and the process ends by itself when main returns', async () => {
    const run = await runScript(TRAIN);
    expect(run.signal, `killed: the process did not end by itself\n${run.stderr}`).toBeNull();
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout.trim().split('\n').at(-1)!);
    expect(out.summary).toBe(summaryOf(CORES));
    expect(run.stderr).toBe('');
    // One thread (the stock build) gives the same loss, bit for bit.
    const one = await runScript(TRAIN, { LORA_WASM_THREADS: '1' });
    expect(one.code, one.stderr).toBe(0);
    const outOne = JSON.parse(one.stdout.trim().split('\n').at(-1)!);
    expect(outOne).toEqual({ summary: 'wasm (SIMD, 1 thread)', loss: out.loss });
  });

  it('starts threaded from the TypeScript sources under tsx too (as npm run bench does)', async () => {
    // An ES module without __filename or a build-time URL: lora-tfjs finds its files from the stack.
    const tsx = join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');
    const source = `import { initBackend, backendSummary } from ${JSON.stringify(join(ROOT, 'src', 'index.ts'))}; await initBackend('wasm'); console.log(backendSummary());`;
    const run = await new Promise<Run>((done) => {
      const t0 = performance.now();
      const env = { ...process.env, LORA_WASM_THREADS: '2' };
      execFile(process.execPath, [tsx, '--input-type=module', '-e', source], { cwd: ROOT, env, timeout: 60_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) =>
        done({ code: err === null ? 0 : 1, signal: (err as { signal?: string } | null)?.signal ?? null, stdout, stderr, ms: performance.now() - t0 }),
      );
    });
    expect(run.signal, run.stderr).toBeNull();
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('wasm (SIMD, 2 threads)');
  });

  it('reads a module\'s file from a V8 stack frame', () => {
    expect(fileFromStack('Error\n    at moduleFile (file:///work/a%20b/src/util/module-url.ts:14:10)\n    at x (file:///other.js:1:1)')).toBe('/work/a b/src/util/module-url.ts');
    expect(fileFromStack('Error\n    at /work/dist/cjs/util/module-url.js:20:5')).toBe('/work/dist/cjs/util/module-url.js');
    expect(fileFromStack('Error\n    at moduleFile (node:internal/x:1:1)')).toBeNull();
    expect(fileFromStack(undefined)).toBeNull();
    expect(fileFromStack('no frames')).toBeNull();
  });

  it('caps LORA_WASM_THREADS at tfjs\'s pool of 8, with a warning', async () => {
    const source = `const lora = require(${JSON.stringify(BUILT)});
lora.initBackend().then(async () => {
  await lora.initBackend({ threads: 12 }); // the same request, capped alike: fine
  const late = await lora.initBackend({ threads: 7 }).then(() => 'accepted', (e) => e.message);
  console.log(JSON.stringify({ summary: lora.backendSummary(), late }));
});`;
    const run = await runScript(source, { LORA_WASM_THREADS: ' 12 ' });
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout.trim().split('\n').at(-1)!);
    expect(out.summary).toBe(`wasm (SIMD, ${MAX_WASM_THREADS} threads)`);
    expect(out.late).toBe(`initBackend: threads = 7 is invalid; expected the ${MAX_WASM_THREADS} threads wasm started with: the count is fixed once wasm has started; set it in the process's first initBackend call, or with LORA_WASM_THREADS before wasm starts`);
    expect(run.stderr).toContain(`lora-tfjs: 12 wasm threads asked for; tfjs's pool has ${MAX_WASM_THREADS}, so wasm uses ${MAX_WASM_THREADS}`);
  });

  it('falls back to one thread when the pthreads cannot start, and says why', async () => {
    // Node refuses the worker (as it refuses tfjs's own blob: URL).
    const preload = join(dir, 'no-workers.cjs');
    writeFileSync(preload, `const wt = require('node:worker_threads');\nwt.Worker = class { constructor() { throw new Error('workers are off in this test'); } };\n`);
    const run = await runScript(TRAIN, { LORA_WASM_THREADS: '2' }, ['--require', preload]);
    expect(run.signal, run.stderr).toBeNull();
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout.trim().split('\n').at(-1)!).summary).toBe('wasm (SIMD, 1 thread)');
    expect(run.stderr).toContain('lora-tfjs: wasm runs on 1 thread instead of 2: the threaded build did not start (');
    expect(run.stderr).toContain('workers are off in this test');
    expect(run.stderr).toContain('set LORA_WASM_THREADS=1 to skip trying');
    // A measurement that asks for 2 threads must not get 1 in silence.
    const restart = `require(${JSON.stringify(join(ROOT, 'dist', 'cjs', 'runtime', 'wasm-threads.js'))}).restartWasm(2).then(() => console.log('restarted'), (e) => console.log(e.message));`;
    const again = await runScript(restart, {}, ['--require', preload]);
    expect(again.stdout.trim()).toBe('restartWasm: wasm runs 1 thread, not 2 (workers are off in this test)');
  });

  it('falls back when a pthread fails after it started (an error event, not a throw), and the process lives', async () => {
    const preload = join(dir, 'broken-entry.cjs');
    writeFileSync(preload, `const wt = require('node:worker_threads');\nconst W = wt.Worker;\nwt.Worker = class extends W { constructor() { super('throw new Error("worker entry broke")', { eval: true }); } };\n`);
    const run = await runScript(TRAIN, { LORA_WASM_THREADS: '2' }, ['--require', preload]);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout.trim().split('\n').at(-1)!).summary).toBe('wasm (SIMD, 1 thread)');
    expect(run.stderr).toContain('the threaded build did not start (a pthread worker failed (worker entry broke))');
  });

  it('ends a script that throws after the start with its own error (exit 1), not the glue\'s', async () => {
    const run = await runScript(`const lora = require(${JSON.stringify(BUILT)}); lora.initBackend().then(() => { throw new Error('the user code failed'); });`);
    expect(run.signal).toBeNull();
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('Error: the user code failed');
    // The glue's rethrowing handler would print its whole minified source (55 KB) and exit with 7.
    expect(run.stderr.length).toBeLessThan(2000);
  });

  it('works with the sources and the build loaded in one process (two copies of lora-tfjs)', async () => {
    const tsx = join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');
    const file = join(dir, 'two-copies.mts');
    writeFileSync(file, `import { createRequire } from 'node:module';
import * as src from ${JSON.stringify(join(ROOT, 'src', 'index.ts'))};
const built = createRequire(import.meta.url)(${JSON.stringify(BUILT)});
await built.initBackend('wasm');
await src.initBackend('wasm');
const m = new src.LoRAMLP([8, 16, 4], { rank: 2, seed: 1 });
const y = m.predict(src.tf.ones([2, 8]));
console.log(JSON.stringify({ src: src.backendSummary(), built: built.backendSummary(), sum: y.sum().dataSync()[0] }));
`);
    for (const threads of ['1', '2']) {
      const run = await new Promise<Run>((done) => {
        const t0 = performance.now();
        execFile(process.execPath, [tsx, file], { cwd: ROOT, env: { ...process.env, LORA_WASM_THREADS: threads }, timeout: 60_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) =>
          done({ code: err === null ? 0 : 1, signal: (err as { signal?: string } | null)?.signal ?? null, stdout, stderr, ms: performance.now() - t0 }),
        );
      });
      expect(run.signal, `${threads} thread(s): the process hung\n${run.stderr}`).toBeNull();
      expect(run.code, run.stderr).toBe(0);
      const out = JSON.parse(run.stdout.trim().split('\n').at(-1)!);
      expect([out.src, out.built]).toEqual([summaryOf(Number(threads)), summaryOf(Number(threads))]);
      expect(Number.isFinite(out.sum)).toBe(true);
    }
  });

  it('gives up on pthreads that never report back, stops them, and the process still ends', async () => {
    // Workers that start but never load the module (what tfjs's worker.js file itself would do).
    const preload = join(dir, 'silent-workers.cjs');
    writeFileSync(preload, `const wt = require('node:worker_threads');\nconst W = wt.Worker;\nwt.Worker = class extends W { constructor() { super('setInterval(() => {}, 1000)', { eval: true }); } };\n`);
    const source = `
const { startThreadedWasm } = require(${JSON.stringify(join(ROOT, 'dist', 'cjs', 'runtime', 'wasm-threads-node.js'))});
startThreadedWasm(2, 1500).then(() => console.log('started?'), (e) => console.log('rejected: ' + e.message));
`;
    const run = await runScript(source, {}, ['--require', preload], 30_000);
    expect(run.signal, `the silent workers kept the process alive\n${run.stderr}`).toBeNull();
    expect(run.stdout.trim()).toBe('rejected: its pthread workers did not start within 1500 ms');
  });
});
