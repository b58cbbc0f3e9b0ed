#!/usr/bin/env -S npx tsx
/**
 * `npm run bench [-- --json] [-- --quick]`: speed and memory of LoRA training on the active
 * backend, in one process so that ratios are comparable. Prints tables (or JSON).
 *
 * Shape: the reference's demo 1, 512 → 2048 → 2048 → 128, batch 32, rank 8, Adam.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  LoRAMLP,
  MLP,
  backendSummary,
  disableWasmMatMulFastPath,
  enableWasmMatMulFastPath,
  initBackend,
  timeIt,
  type GradientPath,
  type Model,
} from '../src/index.js';

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const RUNS = quick ? 5 : 15;
const DIMS = [512, 2048, 2048, 128];
const BATCH = 32;
const RANK = 8;
const say = (line = '') => {
  if (!json) console.log(line);
};

interface Row {
  [key: string]: string | number;
}

function table(title: string, rows: Row[]): void {
  if (json || rows.length === 0) return;
  const cols = Object.keys(rows[0]);
  const cell = (v: string | number) => (typeof v === 'number' ? (Number.isInteger(v) ? v.toLocaleString('en-US') : v.toFixed(2)) : v);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(cell(r[c])).length)));
  say(`\n${title}`);
  say(cols.map((c, i) => c.padEnd(width[i])).join('  '));
  say(width.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) say(cols.map((c, i) => (typeof r[c] === 'number' ? String(cell(r[c])).padStart(width[i]) : String(r[c]).padEnd(width[i]))).join('  '));
}

/** Median time of one matMul of the given shapes (a fresh output, read back). */
async function matMulMs(aShape: number[], bShape: number[], transposeA = false, transposeB = false): Promise<number> {
  const a = tf.randomNormal(aShape);
  const b = tf.randomNormal(bShape);
  const t = await timeIt(async () => {
    const y = tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, transposeA, transposeB);
    await y.data();
    y.dispose();
  }, RUNS + 5, 3);
  tf.dispose([a, b]);
  return t.medianMs;
}

/** Median time of one Adam step of `model` on a fixed minibatch. */
async function stepMs(model: Model, x: tf.Tensor2D, y: tf.Tensor2D): Promise<number> {
  const optimizer = tf.train.adam(1e-3);
  const variables = model.trainableVariables();
  const t = await timeIt(async () => {
    const loss = optimizer.minimize(() => tf.mean(tf.squaredDifference(model.apply(x, { training: true }), y)) as tf.Scalar, true, variables);
    await loss?.data();
    loss?.dispose();
  }, RUNS, 3);
  optimizer.dispose();
  return t.medianMs;
}

/**
 * Memory of training: tensors and bytes around 20 steps, counted after one warm-up step
 * (Adam creates its slots lazily, the fused path builds its Wᵀ cache on first use).
 */
async function memoryProfile(model: Model, x: tf.Tensor2D, y: tf.Tensor2D) {
  const variables = model.trainableVariables();
  const loss = () => tf.mean(tf.squaredDifference(model.apply(x, { training: true }), y)) as tf.Scalar;
  const start = tf.memory();
  const warm = tf.train.adam(1e-3);
  warm.minimize(loss, false, variables);
  warm.dispose();
  const cacheBytes = tf.memory().numBytes - start.numBytes; // what stays after one step: the frozen Wᵀ cache
  const before = tf.memory();
  const optimizer = tf.train.adam(1e-3);
  optimizer.minimize(loss, false, variables);
  const state = await optimizer.getWeights();
  const optimizerStateBytes = state.reduce((n, w) => n + w.tensor.size * 4, 0);
  state[0].tensor.dispose(); // getWeights() makes a fresh scalar for the iteration count
  const afterFirst = tf.memory();
  for (let i = 0; i < 20; i++) optimizer.minimize(loss, false, variables);
  const after20 = tf.memory();
  optimizer.dispose();
  const after = tf.memory();
  return {
    trainable: variables.reduce((n, v) => n + v.size, 0),
    optimizerStateBytes,
    transposeCacheBytes: cacheBytes,
    tensorsBefore: before.numTensors,
    tensorsAfterFirstStep: afterFirst.numTensors,
    tensorsAfter20Steps: after20.numTensors,
    tensorsAfterDispose: after.numTensors,
    bytesBefore: before.numBytes,
    bytesAfterDispose: after.numBytes,
  };
}

/**
 * Median time of each variant, measured in interleaved rounds (v1, v2, …, v1, v2, …) so that
 * a shared machine's drift hits every variant alike and their ratios stay stable.
 */
async function interleaved(variants: ReadonlyArray<() => Promise<void>>, rounds: number, warmup = 3): Promise<number[]> {
  const samples = variants.map(() => [] as number[]);
  for (const v of variants) for (let i = 0; i < warmup; i++) await v();
  for (let r = 0; r < rounds; r++) {
    for (const [i, v] of variants.entries()) {
      const t = performance.now();
      await v();
      samples[i].push(performance.now() - t);
    }
  }
  return samples.map((s) => s.sort((p, q) => p - q)[s.length >> 1]);
}

/** One Adam step of `model` (own optimizer, gradient path set for the call). */
function stepper(model: LoRAMLP | MLP, path: GradientPath, x: tf.Tensor2D, y: tf.Tensor2D, kernelOverride = false) {
  const optimizer = tf.train.adam(1e-3);
  const variables = model.trainableVariables();
  const run = async () => {
    model.gradientPath = path;
    if (kernelOverride) enableWasmMatMulFastPath();
    try {
      const loss = optimizer.minimize(() => tf.mean(tf.squaredDifference(model.apply(x, { training: true }), y)) as tf.Scalar, true, variables);
      await loss?.data();
      loss?.dispose();
    } finally {
      if (kernelOverride) disableWasmMatMulFastPath();
    }
  };
  return { run, dispose: () => optimizer.dispose() };
}

async function main(): Promise<void> {
  const backend = await initBackend();
  const results: Record<string, unknown> = { backend: backendSummary(), node: process.version, dims: DIMS, batch: BATCH, rank: RANK };
  say(`lora-tfjs benchmark — backend: ${backendSummary()}, Node ${process.version}, ${DIMS.join('→')}, batch ${BATCH}, rank ${RANK}, median of ${RUNS} runs`);

  // 1. matMul throughput: the shapes a step needs, and the layouts autodiff would use.
  const shapes: Array<{ name: string; a: number[]; b: number[]; tA?: boolean; tB?: boolean; floor?: boolean }> = [
    { name: 'fwd layer 1  x·W1', a: [BATCH, 512], b: [512, 2048], floor: true },
    { name: 'fwd layer 2  h·W2', a: [BATCH, 2048], b: [2048, 2048], floor: true },
    { name: 'fwd layer 3  h·W3', a: [BATCH, 2048], b: [2048, 128], floor: true },
    { name: 'bwd dx 3     dy·W3ᵀ (cached)', a: [BATCH, 128], b: [128, 2048], floor: true },
    { name: 'bwd dx 2     dy·W2ᵀ (cached)', a: [BATCH, 2048], b: [2048, 2048], floor: true },
    { name: 'autodiff dx  dy·W2 transposeB', a: [BATCH, 2048], b: [2048, 2048], tB: true },
    { name: 'autodiff dW  hᵀ·dy transposeA', a: [BATCH, 2048], b: [BATCH, 2048], tA: true },
    { name: '3-D input    [2,16,2048]·W2', a: [2, 16, 2048], b: [2048, 2048] },
  ];
  const mm: Row[] = [];
  for (const s of shapes) {
    const ms = await matMulMs(s.a, s.b, s.tA, s.tB);
    const m = s.tA ? s.a[s.a.length - 1] : s.a.slice(0, -1).reduce((p, v) => p * v, 1);
    const k = s.tA ? s.a[0] : s.a[s.a.length - 1];
    const n = s.tB ? s.b[0] : s.b[1];
    mm.push({ matMul: s.name, 'a': `[${s.a}]`, 'b': `[${s.b}]`, ms, 'GFLOP/s': (2 * m * k * n) / (ms * 1e6) });
  }
  table('matMul throughput (this backend\'s ceiling)', mm);
  results.matMul = mm;

  // Models for sections 2 and 3.
  const x = tf.randomNormal([BATCH, 512], 0, 1, 'float32', 1) as tf.Tensor2D;
  const y = tf.randomNormal([BATCH, 128], 0, 1, 'float32', 2) as tf.Tensor2D;
  const lora = new LoRAMLP(DIMS, { rank: RANK, alpha: 16, baseInit: 'kaiming' });
  const full = new MLP(DIMS);
  // 2. Forward passes (measured before training, on a fresh heap): a trained-looking adapter (B ≠ 0), unmerged and merged copies of one model.
  for (const l of lora.layers) {
    const nb = tf.randomNormal(l.B.shape, 0, 0.01, 'float32', 3);
    l.B.assign(nb as tf.Tensor2D);
    nb.dispose();
  }
  const merged = new LoRAMLP(DIMS, { rank: RANK, alpha: 16, baseInit: 'kaiming' });
  merged.layers.forEach((l, i) => l.B.assign(lora.layers[i].B));
  merged.merge();
  const baseOnly = new LoRAMLP(DIMS, { rank: RANK, alpha: 16, baseInit: 'kaiming' });
  baseOnly.setActiveAdapter(null);
  const run = (m: Model) => async () => {
    const out = m.predict(x);
    await out.data();
    out.dispose();
  };
  const [base, fUnmerged, fMerged] = await interleaved([run(baseOnly), run(lora), run(merged)], RUNS * 3);
  table('forward pass, batch 32 (interleaved runs)', [
    { forward: 'base (no adapter)', ms: base, 'x base': 1 },
    { forward: 'LoRA r=8, unmerged', ms: fUnmerged, 'x base': fUnmerged / base },
    { forward: 'LoRA r=8, merged', ms: fMerged, 'x base': fMerged / base },
  ]);
  results.forward = { baseMs: base, unmergedMs: fUnmerged, mergedMs: fMerged };
  merged.dispose();
  baseOnly.dispose();

  // 3. Training steps. The floor: the matMuls a LoRA step must do, on the same operands' shapes.
  const floorOps = shapes.filter((q) => q.floor).map((q) => [tf.randomNormal(q.a), tf.randomNormal(q.b)] as const);
  const floorRun = async () => {
    for (const [a, b] of floorOps) {
      const out = tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D);
      await out.data();
      out.dispose();
    }
  };
  const variants = [
    { name: 'LoRA r=8, fused gradient (default on wasm)', s: stepper(lora, 'fused', x, y) },
    { name: 'LoRA r=8, plain autodiff', s: stepper(lora, 'autodiff', x, y) },
    ...(backend === 'wasm' ? [{ name: 'LoRA r=8, autodiff + BatchMatMul override', s: stepper(lora, 'autodiff', x, y, true) }] : []),
    { name: 'full fine-tuning, fused gradient', s: stepper(full, 'fused', x, y) },
    { name: 'full fine-tuning, plain autodiff', s: stepper(full, 'autodiff', x, y) },
    ...(backend === 'wasm' ? [{ name: 'full fine-tuning, autodiff + BatchMatMul override', s: stepper(full, 'autodiff', x, y, true) }] : []),
  ];
  const times = await interleaved([floorRun, ...variants.map((v) => v.s.run)], quick ? 3 : 9);
  const floor = times[0];
  const stepMsOf = (name: string) => times[1 + variants.findIndex((v) => v.name === name)];
  variants.forEach((v) => v.s.dispose());
  floorOps.forEach((pair) => tf.dispose([...pair]));
  lora.gradientPath = 'auto';
  full.gradientPath = 'auto';
  const loraFused = stepMsOf('LoRA r=8, fused gradient (default on wasm)');
  const loraNaive = stepMsOf('LoRA r=8, plain autodiff');
  const fullFused = stepMsOf('full fine-tuning, fused gradient');
  const steps: Row[] = [
    ...variants.map((v, i) => ({ step: v.name, ms: times[i + 1], 'x floor': times[i + 1] / floor })),
    { step: 'matMul floor (fwd ×3 + dx of layers 2, 3)', ms: floor, 'x floor': 1 },
  ];
  table('train step: one Adam step on a fixed minibatch (interleaved rounds)', steps);
  results.steps = Object.fromEntries(steps.map((r) => [r.step, r.ms]));
  results.stepFloorMs = floor;

  const ranks: Row[] = [];
  for (const r of [1, 2, 4, 8, 16, 32]) {
    const m = new LoRAMLP(DIMS, { rank: r, alpha: 2 * r, baseInit: 'kaiming' });
    const ms = await stepMs(m, x, y);
    ranks.push({ rank: r, trainable: m.parameterCounts().trainable, 'step ms': ms, 'x floor': ms / floor });
    m.dispose();
  }
  table('LoRA step by rank (fused)', ranks);
  results.ranks = ranks;

  // 4. Memory.
  // Fresh models, so the first step's one-off allocations (Wᵀ cache, Adam slots) are seen.
  const freshLora = new LoRAMLP(DIMS, { rank: RANK, alpha: 16, baseInit: 'kaiming' });
  const memLora = await memoryProfile(freshLora, x, y);
  freshLora.dispose();
  const freshFull = new MLP(DIMS);
  const memFull = await memoryProfile(freshFull, x, y);
  freshFull.dispose();
  const mb = (n: number) => `${(n / 2 ** 20).toFixed(2)} MiB`;
  const memRow = (name: string, m: typeof memLora) => ({
    model: name,
    trainable: m.trainable,
    'Adam state': mb(m.optimizerStateBytes),
    'Wᵀ cache': mb(m.transposeCacheBytes),
    'tensors before': m.tensorsBefore,
    'during': m.tensorsAfter20Steps,
    'after': m.tensorsAfterDispose,
    'bytes before': mb(m.bytesBefore),
    'bytes after': mb(m.bytesAfterDispose),
  });
  table('memory: 20 training steps after a warm-up step (optimizer freed at the end)', [memRow('LoRA r=8', memLora), memRow('full fine-tuning', memFull)]);
  results.memory = { lora: memLora, full: memFull };

  // 5. Mixed-adapter batch: 4 adapters (rank 8) + base rows, batch 80, vs one pass per adapter over its rows.
  const multi = new LoRAMLP(DIMS, { rank: RANK, alpha: 16, baseInit: 'kaiming', adapterName: 'a0' });
  for (let i = 1; i < 4; i++) multi.addAdapter(`a${i}`, { rank: RANK, alpha: 16, seed: i });
  const rowNames = Array.from({ length: 80 }, (_, i) => (i % 5 === 4 ? null : `a${i % 5}`));
  const xm = tf.randomNormal([80, 512], 0, 1, 'float32', 9) as tf.Tensor2D;
  const groupsOf = [...new Set(rowNames)].map((n) => ({ n, idx: tf.tensor1d(rowNames.flatMap((m, i) => (m === n ? [i] : [])), 'int32') }));
  const subBatches = groupsOf.map((g) => ({ n: g.n, x: tf.gather(xm, g.idx) as tf.Tensor2D }));
  const mixedRun = async () => {
    const out = multi.predict(xm, { adapters: rowNames });
    await out.data();
    out.dispose();
  };
  const separateRun = async () => {
    for (const b of subBatches) {
      multi.setActiveAdapter(b.n);
      const out = multi.predict(b.x);
      await out.data();
      out.dispose();
    }
    multi.setActiveAdapter('a0');
  };
  const [tMixed, tSeparate] = await interleaved([mixedRun, separateRun], RUNS * 2);
  table('mixed-adapter batch: 80 rows, 4 adapters (r=8) + base rows, 16 rows each', [
    { forward: 'one mixed pass (base matMul once)', ms: tMixed, 'x mixed': 1 },
    { forward: '5 passes, one per adapter over its rows', ms: tSeparate, 'x mixed': tSeparate / tMixed },
  ]);
  results.mixedBatch = { mixedMs: tMixed, separateMs: tSeparate };
  tf.dispose([xm, ...groupsOf.map((g) => g.idx), ...subBatches.map((b) => b.x)]);
  multi.dispose();

  // 6. Targets.
  const targets = [
    { target: 'LoRA fused step ≤ 1.25× its matMul floor', value: loraFused / floor, limit: 1.25, pass: loraFused / floor <= 1.25 },
    { target: 'LoRA fused step ≥ 3.5× faster than plain autodiff', value: loraNaive / loraFused, limit: 3.5, pass: loraNaive / loraFused >= 3.5 },
    { target: 'LoRA step ≤ 0.5× full fine-tuning step (both fused)', value: loraFused / fullFused, limit: 0.5, pass: loraFused / fullFused <= 0.5 },
    { target: 'merged forward within 5 % of base', value: fMerged / base, limit: 1.05, pass: Math.abs(fMerged / base - 1) <= 0.05 },
    { target: 'unmerged forward ≤ 1.15× base at rank 8', value: fUnmerged / base, limit: 1.15, pass: fUnmerged / base <= 1.15 },
    { target: 'no tensor leak over 20 steps (LoRA, full)', value: memLora.tensorsAfterDispose - memLora.tensorsBefore + memFull.tensorsAfterDispose - memFull.tensorsBefore, limit: 0, pass: memLora.tensorsAfterDispose === memLora.tensorsBefore && memFull.tensorsAfterDispose === memFull.tensorsBefore },
  ];
  table(`targets (${backend})`, targets.map((t) => ({ target: t.target, measured: t.value, limit: t.limit, result: t.pass ? 'PASS' : 'FAIL' })));
  results.targets = targets;

  lora.dispose();
  full.dispose();
  tf.dispose([x, y]);
  if (json) console.log(JSON.stringify(results, null, 2));
}

main().catch((err: unknown) => {
  console.error(`bench: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
