import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  LoRAConv2D,
  LoRADense,
  LoRAEmbedding,
  LoRALayer,
  activeAdapter,
  addAdapter,
  addLoRA,
  adapterNames,
  deleteAdapter,
  initBackend,
  layersParameterCounts,
  loraLayers,
  mergeAndUnload,
  modelLayers,
  setActiveAdapter,
  unload,
} from '../src/index.js';
// The file:// handler for model.save, as an app gets it from lora-tfjs/node.
import '../src/node/index.js';
import { Rng, randomNormal } from '../src/util/random.js';
import { layersMlp, maxRelDiff, seeded } from './helpers.js';

/** Values of a tensor as a plain array (the tensor is left alone). */
const values = (t: tf.Tensor): number[] => [...t.dataSync()];

/** Give every LoRA factor of a model random values, as training would (B is zero at first). */
function perturb(model: tfl.LayersModel, seed = 1): void {
  const rng = new Rng(seed);
  for (const { layer } of loraLayers(model)) {
    for (const name of layer.adapterNames()) {
      for (const v of layer.adapterVariables(name)) {
        const r = randomNormal(v.shape as number[], rng, 0.3);
        v.write(r);
        r.dispose();
      }
    }
  }
}

function snapshot(weights: tfl.LayerVariable[]): Map<string, Float32Array> {
  return new Map(weights.map((w) => [w.originalName, w.read().dataSync().slice() as Float32Array]));
}

function expectSame(a: Map<string, Float32Array>, b: Map<string, Float32Array>): void {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [k, v] of a) expect(Buffer.from(b.get(k)!.buffer).equals(Buffer.from(v.buffer)), k).toBe(true);
}

/** The base weights of every layer of an adapted model (never trainable). */
function frozenWeights(model: tfl.LayersModel): tfl.LayerVariable[] {
  return modelLayers(model).flatMap(({ layer }) => {
    if (!(layer instanceof LoRALayer)) return layer.weights;
    const adapters = new Set(layer.adapterNames().flatMap((n) => layer.adapterVariables(n)));
    return layer.weights.filter((w) => !adapters.has(w));
  });
}

const mlp = layersMlp;

/** Counts tensors around `fn` after disposing whatever models it returns. */
async function leakFree(fn: () => Promise<tfl.LayersModel[]> | tfl.LayersModel[]): Promise<void> {
  const before = tf.memory().numTensors;
  const models = await fn();
  for (const m of models) m.dispose();
  expect(tf.memory().numTensors).toBe(before);
}

const normal = (shape: number[], seed: number, std = 1) => randomNormal(shape, new Rng(seed), std);

describe.each(['wasm', 'cpu'] as const)('LoRA layers on %s: outputs against hand computation', (backend) => {
  beforeAll(async () => {
    expect(await initBackend(backend)).toBe(backend);
  });

  it('Dense on [batch, seq, features]: act(x·W + b + s·(x·A)·B)', async () => {
    await leakFree(() => {
      const base = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [3, 6], units: 4, activation: 'relu', name: 'd', ...seeded(4) })] });
      const lora = addLoRA(base, { rank: 2, alpha: 3 });
      perturb(lora);
      const layer = lora.layers[0] as LoRADense;
      expect(layer).toBeInstanceOf(LoRADense);
      const [A, B] = layer.adapterVariables('default').map((v) => v.read());
      const [W, b] = (base.layers[0].getWeights() as tf.Tensor[]).map((t) => t.arraySync() as number[][]);
      const x = normal([2, 3, 6], 5);
      const y = tf.tidy(() => lora.predict(x) as tf.Tensor);
      expect(y.shape).toEqual([2, 3, 4]);
      const xa = x.arraySync() as number[][][];
      const Aa = A.arraySync() as number[][];
      const Ba = B.arraySync() as number[][];
      const ya = y.arraySync() as number[][][];
      const s = 3 / 2;
      for (let i = 0; i < 2; i++) {
        for (let t = 0; t < 3; t++) {
          const row = xa[i][t];
          const xA = [0, 1].map((r) => row.reduce((acc, v, k) => acc + v * Aa[k][r], 0));
          for (let j = 0; j < 4; j++) {
            const pre = row.reduce((acc, v, k) => acc + v * W[k][j], 0) + (b as unknown as number[])[j] + s * xA.reduce((acc, v, r) => acc + v * Ba[r][j], 0);
            expect(ya[i][t][j]).toBeCloseTo(Math.max(0, pre), 4);
          }
        }
      }
      tf.dispose([x, y]);
      return [base, lora];
    });
  });

  it('Embedding: E[ids] + s·A[ids]·B, PEFT init (A zero, B random) leaves the output unchanged', async () => {
    await leakFree(() => {
      const base = tfl.sequential({ layers: [tfl.layers.embedding({ inputShape: [4], inputDim: 10, outputDim: 3, name: 'emb', embeddingsInitializer: tfl.initializers.randomNormal({ seed: 7 }) })] });
      const ids = tf.tensor2d([[1, 2, 2, 9], [0, 5, 1, 3]], [2, 4], 'int32');
      const lora = addLoRA(base, { targetModules: ['emb'], rank: 2, alpha: 4 });
      const layer = lora.layers[0] as LoRAEmbedding;
      expect(layer).toBeInstanceOf(LoRAEmbedding);
      const [A0, B0] = layer.adapterVariables('default').map((v) => v.read());
      expect(A0.shape).toEqual([10, 2]);
      expect(B0.shape).toEqual([2, 3]);
      expect(values(A0).every((v) => v === 0)).toBe(true);
      expect(values(B0).some((v) => v !== 0)).toBe(true);
      const y0 = tf.tidy(() => lora.predict(ids) as tf.Tensor);
      const yBase = tf.tidy(() => base.predict(ids) as tf.Tensor);
      expect(values(y0)).toEqual(values(yBase));
      perturb(lora);
      const [A, B] = layer.adapterVariables('default').map((v) => v.read().arraySync() as number[][]);
      const E = base.layers[0].getWeights()[0].arraySync() as number[][];
      const y = tf.tidy(() => lora.predict(ids) as tf.Tensor);
      const ya = y.arraySync() as number[][][];
      const idsA = ids.arraySync() as number[][];
      idsA.forEach((row, i) =>
        row.forEach((id, t) => {
          for (let j = 0; j < 3; j++) expect(ya[i][t][j]).toBeCloseTo(E[id][j] + 2 * (A[id][0] * B[0][j] + A[id][1] * B[1][j]), 4);
        }),
      );
      tf.dispose([ids, y0, yBase, y]);
      return [base, lora];
    });
  });

  it.each([
    { kernel: [3, 3], strides: 1, padding: 'same', dilation: 1 },
    { kernel: [3, 2], strides: 2, padding: 'valid', dilation: 1 },
    { kernel: [2, 2], strides: 2, padding: 'same', dilation: 1 },
  ] as const)('Conv2D $kernel stride $strides $padding dilation $dilation: conv(x, W) + b + s·conv₁ₓ₁(conv(x, A), B)', async ({ kernel, strides, padding, dilation }) => {
    await leakFree(() => {
      const base = tfl.sequential({
        layers: [tfl.layers.conv2d({ inputShape: [7, 6, 3], filters: 4, kernelSize: [...kernel], strides, padding, dilationRate: dilation, activation: 'relu', name: 'conv', ...seeded(8) })],
      });
      const lora = addLoRA(base, { targetModules: 'conv', rank: 2, alpha: 6 });
      const layer = lora.layers[0] as LoRAConv2D;
      expect(layer).toBeInstanceOf(LoRAConv2D);
      perturb(lora);
      const [A, B] = layer.adapterVariables('default').map((v) => v.read());
      expect(A.shape).toEqual([kernel[0], kernel[1], 3, 2]);
      expect(B.shape).toEqual([2, 4]);
      const [W, b] = base.layers[0].getWeights();
      const x = normal([2, 7, 6, 3], 9);
      const y = tf.tidy(() => lora.predict(x) as tf.Tensor);
      const s = 6 / 2;
      // Plain-JS convolution, TensorFlow's padding rule.
      const ref = naiveConv(x.arraySync() as number[][][][], W.arraySync() as number[][][][], strides, padding, dilation);
      const h = naiveConv(x.arraySync() as number[][][][], A.arraySync() as number[][][][], strides, padding, dilation);
      const Ba = B.arraySync() as number[][];
      const ba = b.arraySync() as number[];
      const ya = y.arraySync() as number[][][][];
      expect(y.shape).toEqual([2, ref[0].length, ref[0][0].length, 4]);
      let checked = 0;
      ref.forEach((img, n) =>
        img.forEach((row, i) =>
          row.forEach((px, j) =>
            px.forEach((v, o) => {
              const lora = h[n][i][j].reduce((acc, hv, r) => acc + hv * Ba[r][o], 0);
              expect(ya[n][i][j][o]).toBeCloseTo(Math.max(0, v + ba[o] + s * lora), 4);
              checked++;
            }),
          ),
        ),
      );
      expect(checked).toBeGreaterThan(0);
      tf.dispose([x, y]);
      return [base, lora];
    });
  });
});

/** NHWC convolution in plain JS: x [n, h, w, c], k [kh, kw, c, o]. */
function naiveConv(x: number[][][][], k: number[][][][], stride: number, padding: 'same' | 'valid', dilation: number): number[][][][] {
  const [H, Wd] = [x[0].length, x[0][0].length];
  const [kh, kw] = [k.length, k[0].length];
  const [ekh, ekw] = [(kh - 1) * dilation + 1, (kw - 1) * dilation + 1];
  const out = (size: number, ek: number) => (padding === 'same' ? Math.ceil(size / stride) : Math.ceil((size - ek + 1) / stride));
  const [oh, ow] = [out(H, ekh), out(Wd, ekw)];
  const padTotal = (size: number, o: number, ek: number) => Math.max((o - 1) * stride + ek - size, 0);
  const [pt, pl] = padding === 'same' ? [Math.floor(padTotal(H, oh, ekh) / 2), Math.floor(padTotal(Wd, ow, ekw) / 2)] : [0, 0];
  const C = x[0][0][0].length;
  const O = k[0][0][0].length;
  return x.map((img) =>
    Array.from({ length: oh }, (_, i) =>
      Array.from({ length: ow }, (_, j) =>
        Array.from({ length: O }, (_, o) => {
          let acc = 0;
          for (let a = 0; a < kh; a++) {
            for (let c2 = 0; c2 < kw; c2++) {
              const r = i * stride + a * dilation - pt;
              const q = j * stride + c2 * dilation - pl;
              if (r < 0 || r >= H || q < 0 || q >= Wd) continue;
              for (let c = 0; c < C; c++) acc += img[r][q][c] * k[a][c2][c][o];
            }
          }
          return acc;
        }),
      ),
    ),
  );
}

/** A functional model with two inputs, a skip connection, a nested model and two outputs. */
function graph(): tfl.LayersModel {
  const a = tfl.input({ shape: [6], name: 'a' });
  const b = tfl.input({ shape: [4], name: 'b' });
  const inner = tfl.sequential({
    name: 'block',
    layers: [tfl.layers.dense({ inputShape: [8], units: 8, activation: 'relu', name: 'up', ...seeded(11) }), tfl.layers.dense({ units: 8, name: 'down', ...seeded(12) })],
  });
  const ha = tfl.layers.dense({ units: 8, activation: 'relu', name: 'in_a', ...seeded(13) }).apply(a) as tfl.SymbolicTensor;
  const hb = tfl.layers.dense({ units: 8, name: 'in_b', ...seeded(14) }).apply(b) as tfl.SymbolicTensor;
  const h = tfl.layers.add().apply([ha, hb]) as tfl.SymbolicTensor;
  const skip = tfl.layers.add().apply([h, inner.apply(h) as tfl.SymbolicTensor]) as tfl.SymbolicTensor;
  const norm = tfl.layers.layerNormalization({ name: 'norm' }).apply(skip) as tfl.SymbolicTensor;
  const out1 = tfl.layers.dense({ units: 3, name: 'out1', ...seeded(15) }).apply(norm) as tfl.SymbolicTensor;
  const out2 = tfl.layers.dense({ units: 2, activation: 'sigmoid', name: 'out2', ...seeded(16) }).apply(skip) as tfl.SymbolicTensor;
  return tfl.model({ inputs: [a, b], outputs: [out1, out2], name: 'graph' });
}

describe.each(['wasm', 'cpu'] as const)('Training adapted models on %s', (backend) => {
  beforeAll(async () => {
    expect(await initBackend(backend)).toBe(backend);
  });

  it('fused and autodiff gradients agree (A, B and the input), with a trained non-zero B', async () => {
    await leakFree(() => {
      const base = tfl.sequential({
        layers: [
          tfl.layers.dense({ inputShape: [2, 6], units: 5, activation: 'relu', name: 'd1', ...seeded(21) }),
          tfl.layers.dense({ units: 4, activation: 'tanh', name: 'd2', ...seeded(22) }),
        ],
      });
      const lora = addLoRA(base, { rank: 3, alpha: 5 });
      perturb(lora, 3);
      const x = normal([4, 2, 6], 23);
      const vars = lora.trainableWeights.map((w) => w.read() as tf.Variable);
      expect(vars).toHaveLength(4);
      const gradsOf = (path: 'fused' | 'autodiff') => {
        for (const { layer } of loraLayers(lora)) (layer as LoRADense).gradientPath = path;
        return tf.tidy(() => {
          const { grads } = tf.variableGrads(() => tf.sum(tf.square(lora.apply(x, { training: true }) as tf.Tensor)) as tf.Scalar, vars);
          const dx = tf.grad((xi: tf.Tensor) => tf.sum(tf.square(lora.apply(xi) as tf.Tensor)))(x);
          return [...vars.map((v) => grads[v.name]), dx];
        });
      };
      const fused = gradsOf('fused');
      const auto = gradsOf('autodiff');
      fused.forEach((g, i) => {
        expect(values(g).some((v) => v !== 0)).toBe(true);
        expect(maxRelDiff(g, auto[i])).toBeLessThan(1e-5);
      });
      tf.dispose([x, ...fused, ...auto]);
      return [base, lora];
    });
  });

  it('fit trains exactly the adapters: frozen weights bit-identical, even after recompiling and trainable toggles', async () => {
    await leakFree(async () => {
      const base = mlp();
      const lora = addLoRA(base, { targetModules: ['fc1', 'fc2'], rank: 2, alpha: 4 });
      const frozen = snapshot(frozenWeights(lora));
      const baseBefore = snapshot(base.weights);
      const expected = loraLayers(lora).flatMap(({ layer }) => layer.adapterVariables('default'));
      expect(lora.trainableWeights).toEqual(expected);
      const counts = layersParameterCounts(lora);
      expect(counts).toEqual({ total: 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3 + (6 * 2 + 2 * 5) + (5 * 2 + 2 * 4), trainable: 6 * 2 + 2 * 5 + 5 * 2 + 2 * 4, frozen: 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3, lora: 40, saved: 0 });
      // Toggling trainable and compiling twice (Sequential rebuilds its inner model) must not unfreeze anything.
      lora.trainable = false;
      expect(lora.trainableWeights).toEqual([]);
      lora.trainable = true;
      const sgd = tf.train.sgd(0.1);
      lora.compile({ optimizer: sgd, loss: 'meanSquaredError' });
      const optimizer = tf.train.adam(0.05);
      lora.compile({ optimizer, loss: 'meanSquaredError' });
      expect(lora.trainableWeights).toEqual(expected);
      const x = normal([16, 6], 24);
      const y = normal([16, 3], 25);
      const A0 = snapshot(expected);
      const history = await lora.fit(x, y, { epochs: 15, batchSize: 8, shuffle: false, verbose: 0 });
      const loss = history.history.loss as number[];
      expect(loss[loss.length - 1]).toBeLessThan(loss[0] * 0.9);
      await lora.trainOnBatch(x, y);
      expectSame(snapshot(frozenWeights(lora)), frozen);
      expectSame(snapshot(base.weights), baseBefore); // the input model is untouched
      const changed = snapshot(expected);
      for (const [k, v] of A0) expect(Buffer.from(changed.get(k)!.buffer).equals(Buffer.from(v.buffer)), k).toBe(false);
      tf.dispose([x, y]);
      optimizer.dispose();
      sgd.dispose();
      return [base, lora];
    });
  });

  it('trains LoRA on an Embedding and a Conv2D with fit (their gradients need kernels wasm lacks); the bases stay bit-identical', async () => {
    await leakFree(async () => {
      const ids = tfl.input({ shape: [5], name: 'ids', dtype: 'int32' });
      const img = tfl.input({ shape: [6, 6, 2], name: 'img' });
      const e = tfl.layers.flatten().apply(tfl.layers.embedding({ inputDim: 9, outputDim: 3, name: 'emb', embeddingsInitializer: tfl.initializers.randomNormal({ seed: 3 }) }).apply(ids)) as tfl.SymbolicTensor;
      const c = tfl.layers.flatten().apply(tfl.layers.conv2d({ filters: 3, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', name: 'conv', ...seeded(4) }).apply(img)) as tfl.SymbolicTensor;
      const out = tfl.layers.dense({ units: 2, name: 'out', ...seeded(5) }).apply(tfl.layers.concatenate().apply([e, c])) as tfl.SymbolicTensor;
      const base = tfl.model({ inputs: [ids, img], outputs: out });
      const lora = addLoRA(base, { targetModules: ['emb', 'conv'], rank: 2, alpha: 2 });
      const frozen = snapshot(frozenWeights(lora));
      const trainable = snapshot(lora.trainableWeights);
      expect(trainable.size).toBe(4);
      const optimizer = tf.train.adam(0.05);
      lora.compile({ optimizer, loss: 'meanSquaredError' });
      const xs = [tf.tensor2d([[1, 2, 3, 4, 5], [0, 0, 8, 8, 1], [2, 2, 2, 7, 6], [5, 4, 3, 2, 1]], [4, 5], 'int32'), normal([4, 6, 6, 2], 61)];
      const y = normal([4, 2], 62);
      const history = await lora.fit(xs, y, { epochs: 12, verbose: 0, shuffle: false });
      const loss = history.history.loss as number[];
      expect(loss[loss.length - 1]).toBeLessThan(loss[0] * 0.8);
      expectSame(snapshot(frozenWeights(lora)), frozen);
      const after = snapshot(lora.trainableWeights);
      for (const [k, v] of trainable) expect(Buffer.from(after.get(k)!.buffer).equals(Buffer.from(v.buffer)), k).toBe(false);
      tf.dispose([...xs, y]);
      optimizer.dispose();
      return [base, lora];
    });
  });

  it('fitDataset and the autodiff gradient path train the same adapters as fit on the fused path', async () => {
    await leakFree(async () => {
      const x = normal([8, 6], 63);
      const y = normal([8, 3], 64);
      const run = async (path: 'fused' | 'autodiff', viaDataset: boolean) => {
        const base = mlp();
        const lora = addLoRA(base, { rank: 2, alpha: 4, seed: 9 });
        perturb(lora, 7);
        for (const { layer } of loraLayers(lora)) (layer as LoRADense).gradientPath = path;
        const optimizer = tf.train.sgd(0.1);
        lora.compile({ optimizer, loss: 'meanSquaredError' });
        if (viaDataset) {
          // The smallest dataset tfjs-layers accepts: an async iterator of { xs, ys } batches.
          let served = 0;
          const dataset = {
            size: 1,
            iterator: async () => ({ next: async () => (served++ % 2 === 0 ? { value: { xs: x.clone(), ys: y.clone() }, done: false } : { value: null, done: true }) }),
          };
          await lora.fitDataset(dataset as never, { epochs: 3, verbose: 0 });
        } else {
          await lora.fit(x, y, { epochs: 3, batchSize: 8, shuffle: false, verbose: 0 });
        }
        const weights = lora.trainableWeights.map((w) => w.read().clone());
        optimizer.dispose();
        lora.dispose();
        base.dispose();
        return weights;
      };
      const fused = await run('fused', false);
      const auto = await run('autodiff', false);
      const dataset = await run('fused', true);
      fused.forEach((w, i) => {
        expect(maxRelDiff(auto[i], w)).toBeLessThan(1e-5);
        expect(maxRelDiff(dataset[i], w)).toBeLessThan(1e-5);
      });
      tf.dispose([x, y, ...fused, ...auto, ...dataset]);
      return [];
    });
  });

  it('adapts a functional model with two inputs, a skip, a nested model and two outputs', async () => {
    await leakFree(async () => {
      const base = graph();
      const lora = addLoRA(base, { targetModules: '.*(up|down|out1|in_a)', rank: 2, alpha: 2 });
      const kinds = Object.fromEntries(modelLayers(lora).filter(({ layer }) => layer.weights.length > 0).map(({ path, layer }) => [path, layer.getClassName()]));
      expect(kinds).toEqual({ in_a: 'LoRADense', in_b: 'Dense', 'block.up': 'LoRADense', 'block.down': 'LoRADense', norm: 'LayerNormalization', out1: 'LoRADense', out2: 'Dense' });
      const xs = [normal([5, 6], 31), normal([5, 4], 32)];
      const before = tf.tidy(() => base.predict(xs) as tf.Tensor[]);
      const start = tf.tidy(() => lora.predict(xs) as tf.Tensor[]);
      // B = 0: the same function (the base's fused matMul+bias kernel rounds differently on wasm).
      start.forEach((t, i) => expect(maxRelDiff(t, before[i])).toBeLessThan(1e-6));
      const frozen = snapshot(frozenWeights(lora));
      lora.compile({ optimizer: tf.train.adam(0.05), loss: ['meanSquaredError', 'binaryCrossentropy'] });
      const ys = [normal([5, 3], 33), tf.tidy(() => tf.sigmoid(normal([5, 2], 34)))];
      await lora.fit(xs, ys, { epochs: 5, verbose: 0, shuffle: false });
      expectSame(snapshot(frozenWeights(lora)), frozen);
      const after = tf.tidy(() => lora.predict(xs) as tf.Tensor[]);
      expect(maxRelDiff(after[0], before[0])).toBeGreaterThan(1e-3);
      const merged = mergeAndUnload(lora);
      expect(modelLayers(merged).filter(({ layer }) => layer.weights.length > 0).map(({ layer }) => layer.getClassName())).toEqual(['Dense', 'Dense', 'Dense', 'Dense', 'LayerNormalization', 'Dense', 'Dense']);
      const fromMerged = tf.tidy(() => merged.predict(xs) as tf.Tensor[]);
      fromMerged.forEach((t, i) => expect(maxRelDiff(t, after[i])).toBeLessThan(1e-5));
      tf.dispose([...xs, ...ys, ...before, ...start, ...after, ...fromMerged]);
      (lora.optimizer as tf.Optimizer).dispose();
      return [base, lora, merged];
    });
  });
});

describe('Adapters on a Layers model (wasm)', () => {
  beforeAll(async () => {
    expect(await initBackend('wasm')).toBe('wasm');
  });

  it('add, switch, disable and delete adapters; a compiled model trains whichever is active, with fresh optimizer state', async () => {
    await leakFree(async () => {
      const base = mlp();
      const lora = addLoRA(base, { targetModules: ['fc1', 'fc2'], rank: 2, adapterName: 'a' });
      expect(addAdapter(lora, { targetModules: ['fc2'], rank: 3, adapterName: 'b' })).toBe('b');
      expect(adapterNames(lora)).toEqual(['a', 'b']);
      expect(activeAdapter(lora)).toBe('a');
      const [fc1, fc2] = loraLayers(lora).map((l) => l.layer);
      const optimizer = tf.train.adam(0.05);
      lora.compile({ optimizer, loss: 'meanSquaredError' });
      const x = normal([12, 6], 41);
      const y = normal([12, 3], 42);
      await lora.fit(x, y, { epochs: 3, verbose: 0 });
      expect((optimizer as unknown as { accumulatedFirstMoment: unknown[] }).accumulatedFirstMoment).toHaveLength(4);

      setActiveAdapter(lora, 'b');
      expect(lora.trainableWeights).toEqual(fc2.adapterVariables('b'));
      expect(fc1.activeAdapter).toBeNull(); // fc1 has no "b": it runs its base
      expect((optimizer as unknown as { accumulatedFirstMoment: unknown[] }).accumulatedFirstMoment).toHaveLength(0);
      const aBefore = snapshot(fc1.adapterVariables('a').concat(fc2.adapterVariables('a')));
      const bBefore = snapshot(fc2.adapterVariables('b'));
      await lora.fit(x, y, { epochs: 2, verbose: 0 });
      expectSame(snapshot(fc1.adapterVariables('a').concat(fc2.adapterVariables('a'))), aBefore);
      expect(values(fc2.adapterVariables('b')[1].read()).some((v) => v !== 0)).toBe(true);
      expect(snapshot(fc2.adapterVariables('b')).get(fc2.adapterVariables('b')[0].originalName)).not.toEqual(bBefore.get(fc2.adapterVariables('b')[0].originalName));

      // Disabled: the base model's output exactly, nothing trainable.
      setActiveAdapter(lora, null);
      expect(lora.trainableWeights).toEqual([]);
      const yBase = tf.tidy(() => base.predict(x) as tf.Tensor);
      const yOff = tf.tidy(() => lora.predict(x) as tf.Tensor);
      expect(values(yOff)).toEqual(values(yBase));

      setActiveAdapter(lora, 'a');
      deleteAdapter(lora, 'a');
      expect(adapterNames(lora)).toEqual(['b']);
      expect(activeAdapter(lora)).toBeNull();
      expect(() => setActiveAdapter(lora, 'a')).toThrow(/not an adapter of the model; it has \["b"\]/);
      expect(() => deleteAdapter(lora, 'zzz')).toThrow(/"zzz" is not an adapter/);
      tf.dispose([x, y, yBase, yOff]);
      optimizer.dispose();
      return [base, lora];
    });
  });

  it('switching adapters after the optimizer was freed (model kept) leaks nothing; weight names are the layer path', async () => {
    await leakFree(() => {
      const base = mlp();
      const lora = addLoRA(base, { targetModules: ['fc1'], rank: 2 });
      const optimizer = tf.train.adam(1e-3);
      lora.compile({ optimizer, loss: 'meanSquaredError' });
      optimizer.dispose();
      const n = tf.memory().numTensors;
      setActiveAdapter(lora, null);
      setActiveAdapter(lora, 'default');
      expect(tf.memory().numTensors).toBe(n);
      expect(lora.trainableWeights.map((w) => w.originalName)).toEqual(['fc1/lora_A.default', 'fc1/lora_B.default']);
      // The runtime name is the same, made unique per process by tfjs (`_1`, …).
      lora.trainableWeights.forEach((w) => expect(w.name).toMatch(new RegExp(`^${w.originalName.replace('.', '\\.')}(_\\d+)?$`)));
      return [base, lora];
    });
  });

  it('modulesToSave trains a full copy of the head; merging uses the copy; unload gives the base back', async () => {
    await leakFree(async () => {
      const base = mlp();
      const lora = addLoRA(base, { targetModules: ['fc1'], modulesToSave: ['head'], rank: 2 });
      const head = loraLayers(lora).find((l) => l.path === 'head')!.layer;
      expect(head.adapterSpec('default')).toEqual({ name: 'default', kind: 'full' });
      expect(layersParameterCounts(lora)).toMatchObject({ lora: 6 * 2 + 2 * 5, saved: 4 * 3 + 3, trainable: 6 * 2 + 2 * 5 + 4 * 3 + 3 });
      const frozen = snapshot(frozenWeights(lora));
      const optimizer = tf.train.adam(0.05);
      lora.compile({ optimizer, loss: 'meanSquaredError' });
      const x = normal([12, 6], 43);
      const y = normal([12, 3], 44);
      await lora.fit(x, y, { epochs: 4, verbose: 0 });
      expectSame(snapshot(frozenWeights(lora)), frozen);
      const [copyKernel] = head.adapterVariables('default');
      expect(maxRelDiff(copyKernel.read(), base.layers[2].getWeights()[0])).toBeGreaterThan(1e-4);
      const merged = mergeAndUnload(lora);
      expect(values(merged.layers[2].getWeights()[0])).toEqual(values(copyKernel.read()));
      const yLora = tf.tidy(() => lora.predict(x) as tf.Tensor);
      const yMerged = tf.tidy(() => merged.predict(x) as tf.Tensor);
      expect(maxRelDiff(yMerged, yLora)).toBeLessThan(1e-5);
      const plain = unload(lora);
      const yPlain = tf.tidy(() => plain.predict(x) as tf.Tensor);
      const yBase = tf.tidy(() => base.predict(x) as tf.Tensor);
      expect(values(yPlain)).toEqual(values(yBase));
      expect(plain.layers.map((l) => l.trainable)).toEqual([true, true, true]);
      tf.dispose([x, y, yLora, yMerged, yPlain, yBase]);
      optimizer.dispose();
      return [base, lora, merged, plain];
    });
  });

  it('rankPattern / alphaPattern give per-layer ranks and scales; seeds differ per layer', async () => {
    await leakFree(() => {
      const base = mlp();
      const lora = addLoRA(base, { rank: 2, alpha: 4, rankPattern: { fc2: 3 }, alphaPattern: { head: 9 } });
      const specs = Object.fromEntries(loraLayers(lora).map(({ path, layer }) => [path, layer.adapterSpec('default')]));
      expect(specs.fc1).toMatchObject({ rank: 2, alpha: 4 });
      expect(specs.fc2).toMatchObject({ rank: 3, alpha: 4 });
      expect(specs.head).toMatchObject({ rank: 2, alpha: 9 });
      const seeds = Object.values(specs).map((s) => (s as { seed: number }).seed);
      expect(new Set(seeds).size).toBe(3);
      return [base, lora];
    });
  });
});

describe('Saving and loading adapted and merged models (wasm)', () => {
  let dir: string;
  beforeAll(async () => {
    expect(await initBackend('wasm')).toBe('wasm');
    dir = mkdtempSync(join(tmpdir(), 'lora-layers-'));
    return () => rmSync(dir, { recursive: true, force: true });
  });

  it('model.save / tf.loadLayersModel round-trip an adapted model with two adapters (file:// and memory)', async () => {
    await leakFree(async () => {
      const base = graph();
      const lora = addLoRA(base, { targetModules: ['in_a', 'up', 'out1'], rank: 2, adapterName: 'a' });
      addAdapter(lora, { targetModules: ['up'], rank: 1, adapterName: 'b', modulesToSave: ['out1'] });
      perturb(lora, 5);
      setActiveAdapter(lora, 'b');
      const xs = [normal([3, 6], 51), normal([3, 4], 52)];
      const expected = tf.tidy(() => lora.predict(xs) as tf.Tensor[]);
      await lora.save(`file://${join(dir, 'adapted')}`);
      const loaded = await tfl.loadLayersModel(`file://${join(dir, 'adapted', 'model.json')}`);
      expect(adapterNames(loaded)).toEqual(['a', 'b']);
      expect(activeAdapter(loaded)).toBe('b');
      const got = tf.tidy(() => loaded.predict(xs) as tf.Tensor[]);
      got.forEach((t, i) => expect(values(t)).toEqual(values(expected[i])));
      // Every weight, adapters included, came back exactly.
      const names = (m: tfl.LayersModel) => m.weights.map((w) => w.originalName).sort();
      expect(names(loaded)).toEqual(names(lora));
      const lw = new Map(loaded.weights.map((w) => [w.originalName, values(w.read())]));
      for (const w of lora.weights) expect(lw.get(w.originalName), w.originalName).toEqual(values(w.read()));
      // The freeze survives a reload: only adapter b trains.
      expect(loaded.trainableWeights.map((w) => w.originalName).sort()).toEqual(lora.trainableWeights.map((w) => w.originalName).sort());
      setActiveAdapter(loaded, 'a');
      setActiveAdapter(lora, 'a');
      const gotA = tf.tidy(() => loaded.predict(xs) as tf.Tensor[]);
      const expA = tf.tidy(() => lora.predict(xs) as tf.Tensor[]);
      gotA.forEach((t, i) => expect(values(t)).toEqual(values(expA[i])));
      tf.dispose([...xs, ...expected, ...got, ...gotA, ...expA]);
      return [base, lora, loaded];
    });
  });

  it('the merged export loads in a process that never imports lora-tfjs, with the adapted output (1e-5)', async () => {
    await leakFree(async () => {
      const base = graph();
      const lora = addLoRA(base, { targetModules: 'all-linear', modulesToSave: ['out2'], rank: 2, alpha: 3 });
      perturb(lora, 6);
      const merged = mergeAndUnload(lora);
      const target = join(dir, 'merged');
      await merged.save(`file://${target}`);
      const topology = JSON.parse(readFileSync(join(target, 'model.json'), 'utf8'));
      expect(JSON.stringify(topology.modelTopology)).not.toMatch(/LoRA/);
      const xs = [normal([4, 6], 53), normal([4, 4], 54)];
      const expected = tf.tidy(() => lora.predict(xs) as tf.Tensor[]);
      const script = join(dir, 'plain.cjs');
      writeFileSync(
        script,
        `const tf = require('@tensorflow/tfjs');
const fs = require('fs');
const path = require('path');
(async () => {
  await tf.setBackend('cpu');
  const dir = ${JSON.stringify(target)};
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const data = fs.readFileSync(path.join(dir, 'weights.bin'));
  const model = await tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0].weights,
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) }));
  const xs = JSON.parse(process.argv[2]).map((x) => tf.tensor(x));
  const ys = model.predict(xs);
  process.stdout.write(JSON.stringify({ loaded: Object.keys(require.cache).filter((k) => /lora-tfjs|\\/src\\/layers/.test(k)), ys: ys.map((y) => y.arraySync()) }));
})();
`,
      );
      const out = execFileSync(process.execPath, [script, JSON.stringify(xs.map((x) => x.arraySync()))], { cwd: process.cwd(), env: { ...process.env, NODE_PATH: join(process.cwd(), 'node_modules') } });
      const result = JSON.parse(out.toString()) as { loaded: string[]; ys: number[][][] };
      expect(result.loaded).toEqual([]);
      result.ys.forEach((y, i) => {
        const t = tf.tensor(y);
        expect(maxRelDiff(t, expected[i])).toBeLessThan(1e-5);
        t.dispose();
      });
      tf.dispose([...xs, ...expected]);
      return [base, lora, merged];
    });
  });
});

describe('Bad input to the Layers-model API (wasm): clear errors, nothing changed', () => {
  beforeAll(async () => {
    expect(await initBackend('wasm')).toBe('wasm');
  });

  it('refuses what it cannot adapt, naming the argument, before any change', async () => {
    await leakFree(() => {
      const base = graph();
      const before = snapshot(base.weights);
      const numTensors = tf.memory().numTensors;
      const cases: Array<[unknown, unknown, RegExp]> = [
        [{}, { rank: 2 }, /addLoRA: model = .* is invalid; expected a tf.LayersModel/],
        [base, null, /config = null is invalid/],
        [base, { targetModules: ['nope'] }, /targetModules = \["nope"\] match no layer.*the layers are \[.*"in_a".*"block.up"/],
        [base, { targetModules: ['norm'] }, /targetModules selects layer "norm", a LayerNormalization; lora-tfjs adapts Dense, Embedding, Conv2D layers/],
        [base, { targetModules: ['in_a'], modulesToSave: ['norm'] }, /modulesToSave selects layer "norm", a LayerNormalization/],
        [base, { targetModules: ['in_a'], modulesToSave: ['ghost'] }, /modulesToSave = \["ghost"\] is invalid/],
        [base, { rank: 0 }, /rank = 0 is invalid; expected a positive integer/],
        [base, { rank: 1.5 }, /rank = 1.5 is invalid/],
        [base, { alpha: -1 }, /alpha = -1 is invalid/],
        [base, { alpha: Number.NaN }, /alpha = NaN is invalid/],
        [base, { dropout: 1 }, /dropout = 1 is invalid/],
        [base, { adapterName: 'bad name!' }, /adapterName = "bad name!" is invalid/],
        [base, { rankPattern: { in_a: 0 } }, /rankPattern\["in_a"\] = 0 is invalid/],
        [base, { targetModules: '(' }, /targetModules = "\(" is invalid/],
      ];
      for (const [model, config, message] of cases) {
        expect(() => addLoRA(model as tfl.LayersModel, config as never)).toThrow(message);
      }
      expect(tf.memory().numTensors).toBe(numTensors);
      expectSame(snapshot(base.weights), before);
      const unbuilt = tfl.sequential();
      expect(() => addLoRA(unbuilt, { rank: 1 })).toThrow(/is not built; give its first layer an inputShape/);
      const channelsFirst = tfl.sequential({ layers: [tfl.layers.conv2d({ inputShape: [3, 8, 8], filters: 2, kernelSize: 3, dataFormat: 'channelsFirst', name: 'cf' })] });
      expect(() => addLoRA(channelsFirst, { targetModules: ['cf'], rank: 1 })).toThrow(/layer "cf" has dataFormat = "channelsFirst", which is not supported/);
      const dilated = tfl.sequential({ layers: [tfl.layers.conv2d({ inputShape: [8, 8, 2], filters: 2, kernelSize: 3, dilationRate: 2, name: 'dil' })] });
      expect(() => addLoRA(dilated, { targetModules: ['dil'], rank: 1 })).toThrow(/layer "dil" is a Conv2D with dilationRate \[2,2\], which lora-tfjs cannot adapt: tfjs 4.22 has no gradient for a dilated convolution/);
      dilated.dispose();
      unbuilt.dispose();
      channelsFirst.dispose();
      expect(tf.memory().numTensors).toBe(numTensors);
      return [base];
    });
  });

  it('an adapted model refuses a second adapter of the same name, adapter ops on plain layers, and non-finite merges', async () => {
    await leakFree(() => {
      const base = mlp();
      const lora = addLoRA(base, { targetModules: ['fc1'], rank: 2 });
      expect(() => addLoRA(lora, { targetModules: ['fc1'], rank: 2 })).toThrow(/layer "fc1" already has an adapter named "default"/);
      expect(() => addAdapter(lora, { targetModules: ['fc1'] })).toThrow(/already has an adapter named "default"/);
      expect(() => addAdapter(lora, { targetModules: ['fc2'], adapterName: 'x' })).toThrow(/layers \["fc2"\] are not LoRA layers yet; use addLoRA/);
      expect(() => addAdapter(base, { adapterName: 'x' })).toThrow(/addAdapter: the model has no LoRA layers; create them with addLoRA/);
      expect(adapterNames(lora)).toEqual(['default']);
      expect(() => mergeAndUnload(lora, { adapterName: 'zzz' })).toThrow(/adapterName = "zzz" is not an adapter of the model/);
      expect(() => mergeAndUnload(base)).toThrow(/no LoRA layers; it is already a plain model/);
      expect(() => unload(base)).toThrow(/no LoRA layers/);
      // A NaN in an adapter: refused before any model is built; the adapter stays as it was.
      const [A] = loraLayers(lora)[0].layer.adapterVariables('default');
      const withNaN = tf.tidy(() => tf.concat([tf.fill([1, 2], Number.NaN), tf.zeros([5, 2])]));
      A.write(withNaN);
      withNaN.dispose();
      const numTensors = tf.memory().numTensors;
      expect(() => mergeAndUnload(lora)).toThrow(/adapter "default" holds non-finite values; refusing to merge it/);
      expect(tf.memory().numTensors).toBe(numTensors);
      // A second adapted model from an adapted one: both adapters, the first left alone.
      const twice = addLoRA(lora, { targetModules: ['fc1', 'fc2'], rank: 1, adapterName: 'second' });
      expect(adapterNames(twice)).toEqual(['default', 'second']);
      expect(adapterNames(lora)).toEqual(['default']);
      expect(activeAdapter(twice)).toBe('default');
      expect(loraLayers(twice).find((l) => l.path === 'fc2')!.layer.activeAdapter).toBeNull();
      return [base, lora, twice];
    });
  });
});

describe("the README's Layers-model snippet", () => {
  beforeAll(async () => {
    expect(await initBackend('wasm')).toBe('wasm');
  });

  it('runs as written, as an app that imports lora-tfjs and @tensorflow/tfjs-layers would', async () => {
    const root = process.cwd();
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const m = /<!-- snippet: layers-model\.mts -->\n```ts\n([\s\S]*?)```/.exec(readme);
    expect(m, 'README.md has the snippet').not.toBeNull();
    const dir = mkdtempSync(join(tmpdir(), 'lora-readme-layers-'));
    try {
      mkdirSync(join(dir, 'node_modules'));
      symlinkSync(root, join(dir, 'node_modules', 'lora-tfjs'));
      symlinkSync(join(root, 'node_modules', '@tensorflow'), join(dir, 'node_modules', '@tensorflow'));
      writeFileSync(join(dir, 'snippet.mts'), m![1]);
      const out = execFileSync(join(root, 'node_modules', '.bin', 'tsx'), ['snippet.mts'], { cwd: dir, encoding: 'utf8', timeout: 180_000, env: { ...process.env, LORA_BACKEND: 'wasm' } });
      expect(out).toMatch(/lora: 320/);
      expect(out).toMatch(/saved: 260/);
      expect(out).toMatch(/trainable: 580/);
      const merged = await tfl.loadLayersModel(`file://${join(dir, 'merged', 'model.json')}`);
      expect(merged.layers.map((l) => l.getClassName())).toEqual(['Dense', 'Dense']);
      const adapted = await tfl.loadLayersModel(`file://${join(dir, 'adapted', 'model.json')}`);
      expect(adapted.layers.map((l) => l.getClassName())).toEqual(['LoRADense', 'LoRADense']);
      const x = normal([3, 16], 60);
      const a = tf.tidy(() => adapted.predict(x) as tf.Tensor);
      const b = tf.tidy(() => merged.predict(x) as tf.Tensor);
      expect(maxRelDiff(b, a)).toBeLessThan(1e-5);
      tf.dispose([x, a, b]);
      merged.dispose();
      adapted.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});

describe('Behaviours a subtle bug would break (wasm)', () => {
  beforeAll(async () => {
    expect(await initBackend('wasm')).toBe('wasm');
  });

  /** input → Dense pre → nested model block (Dense up) → Dense out: LoRA on pre and up. */
  function nested(): tfl.LayersModel {
    const x = tfl.input({ shape: [6] });
    const block = tfl.sequential({ name: 'block', layers: [tfl.layers.dense({ inputShape: [5], units: 4, activation: 'tanh', name: 'up', ...seeded(71) })] });
    const pre = tfl.layers.dense({ units: 5, activation: 'relu', name: 'pre', ...seeded(72) }).apply(x) as tfl.SymbolicTensor;
    const out = tfl.layers.dense({ units: 3, name: 'out', ...seeded(73) }).apply(block.apply(pre) as tfl.SymbolicTensor) as tfl.SymbolicTensor;
    return tfl.model({ inputs: x, outputs: out });
  }

  it('layers in front of a nested model get their gradient under fit (fused = autodiff, step by step)', async () => {
    await leakFree(async () => {
      const x = normal([8, 6], 74);
      const y = normal([8, 3], 75);
      const trained = async (path: 'fused' | 'autodiff') => {
        const base = nested();
        const lora = addLoRA(base, { targetModules: ['pre', 'up'], rank: 2, alpha: 2 });
        perturb(lora, 8);
        for (const { layer } of loraLayers(lora)) (layer as LoRADense).gradientPath = path;
        const before = lora.trainableWeights.map((w) => w.read().clone());
        const optimizer = tf.train.sgd(0.5);
        lora.compile({ optimizer, loss: 'meanSquaredError' });
        await lora.fit(x, y, { epochs: 3, batchSize: 8, shuffle: false, verbose: 0 });
        const after = lora.trainableWeights.map((w) => w.read().clone());
        const names = lora.trainableWeights.map((w) => w.originalName);
        optimizer.dispose();
        lora.dispose();
        base.dispose();
        return { before, after, names };
      };
      const fused = await trained('fused');
      const auto = await trained('autodiff');
      expect(fused.names).toEqual(['pre/lora_A.default', 'pre/lora_B.default', 'up/lora_A.default', 'up/lora_B.default']);
      fused.after.forEach((w, i) => {
        expect(maxRelDiff(w, fused.before[i]), `${fused.names[i]} trains`).toBeGreaterThan(1e-3);
        expect(maxRelDiff(w, auto.after[i]), fused.names[i]).toBeLessThan(1e-5);
      });
      tf.dispose([x, y, ...fused.before, ...fused.after, ...auto.before, ...auto.after]);
      return [];
    });
  });

  it('the default gradient path is the fused one on wasm (explicit transposes, no transposed matMuls), and the input gradient works in training mode', async () => {
    await leakFree(async () => {
      const base = mlp();
      const lora = addLoRA(base, { rank: 2 });
      perturb(lora, 9);
      const x = normal([4, 6], 76);
      const kernelsOf = async () =>
        (await tf.profile(() => {
          const g = tf.grad((xi: tf.Tensor) => tf.sum(lora.apply(xi, { training: true }) as tf.Tensor))(x);
          g.dispose();
        })).kernels.map((k) => k.name);
      expect((loraLayers(lora)[0].layer as LoRADense).gradientPath).toBe('auto');
      const fusedKernels = await kernelsOf();
      const dxFused = tf.grad((xi: tf.Tensor) => tf.sum(lora.apply(xi, { training: true }) as tf.Tensor))(x);
      for (const { layer } of loraLayers(lora)) (layer as LoRADense).gradientPath = 'autodiff';
      const autoKernels = await kernelsOf();
      const dxAuto = tf.grad((xi: tf.Tensor) => tf.sum(lora.apply(xi, { training: true }) as tf.Tensor))(x);
      expect(fusedKernels).toContain('Transpose');
      expect(autoKernels).not.toContain('Transpose');
      expect(maxRelDiff(dxFused, dxAuto)).toBeLessThan(1e-5);
      tf.dispose([x, dxFused, dxAuto]);
      return [base, lora];
    });
  });

  it('a replaced base kernel invalidates the cached Wᵀ of the fused input gradient', async () => {
    await leakFree(async () => {
      const base = mlp();
      const lora = addLoRA(base, { rank: 2 });
      perturb(lora, 10);
      const x = normal([4, 6], 77);
      const dx = () => tf.grad((xi: tf.Tensor) => tf.sum(tf.square(lora.apply(xi) as tf.Tensor)))(x);
      const first = dx(); // builds the cache
      const fc2 = loraLayers(lora)[1].layer;
      const kernel = fc2.weights.find((w) => w.originalName === 'fc2/kernel')!;
      const replacement = normal(kernel.shape as number[], 78);
      kernel.write(replacement);
      replacement.dispose();
      const fused = dx();
      for (const { layer } of loraLayers(lora)) (layer as LoRADense).gradientPath = 'autodiff';
      const auto = dx();
      expect(maxRelDiff(fused, auto)).toBeLessThan(1e-5);
      expect(maxRelDiff(fused, first)).toBeGreaterThan(1e-3);
      tf.dispose([x, first, fused, auto]);
      return [base, lora];
    });
  });

  it('dropout touches only the adapter input, only while training, with a new mask each call (Dense and Conv2D)', async () => {
    await leakFree(() => {
      const dense = mlp();
      const conv = tfl.sequential({ layers: [tfl.layers.conv2d({ inputShape: [6, 6, 2], filters: 3, kernelSize: 3, padding: 'same', name: 'c', ...seeded(79) })] });
      for (const [base, x] of [
        [dense, normal([5, 6], 80)],
        [conv, normal([2, 6, 6, 2], 81)],
      ] as const) {
        const lora = addLoRA(base, { targetModules: base === dense ? 'all-linear' : ['c'], rank: 2, dropout: 0.5 });
        // B = 0: with dropout on the adapter input only, a training call is the base exactly.
        const yBase = tf.tidy(() => base.predict(x) as tf.Tensor);
        const yTrain0 = tf.tidy(() => lora.apply(x, { training: true }) as tf.Tensor);
        expect(maxRelDiff(yTrain0, yBase)).toBeLessThan(1e-6);
        perturb(lora, 11);
        const yEval1 = tf.tidy(() => lora.predict(x) as tf.Tensor);
        const yEval2 = tf.tidy(() => lora.predict(x) as tf.Tensor);
        expect(values(yEval1)).toEqual(values(yEval2));
        const yTrain1 = tf.tidy(() => lora.apply(x, { training: true }) as tf.Tensor);
        const yTrain2 = tf.tidy(() => lora.apply(x, { training: true }) as tf.Tensor);
        expect(maxRelDiff(yTrain1, yEval1)).toBeGreaterThan(1e-3);
        expect(maxRelDiff(yTrain1, yTrain2)).toBeGreaterThan(1e-3);
        tf.dispose([x, yBase, yTrain0, yEval1, yEval2, yTrain1, yTrain2]);
        lora.dispose();
      }
      return [dense, conv];
    });
  });

  it('init "kaiming" is PEFT’s U(±1/√fan_in) (fan_in = in, or in·kh·kw for a convolution)', async () => {
    await leakFree(() => {
      const dense = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [400], units: 30, name: 'd' })] });
      const conv = tfl.sequential({ layers: [tfl.layers.conv2d({ inputShape: [8, 8, 16], filters: 4, kernelSize: 3, name: 'c' })] });
      const d = addLoRA(dense, { rank: 8, init: 'kaiming' });
      const c = addLoRA(conv, { targetModules: ['c'], rank: 8, init: 'kaiming' });
      for (const [model, fanIn] of [[d, 400], [c, 16 * 9]] as const) {
        const A = values(loraLayers(model)[0].layer.adapterVariables('default')[0].read());
        const peak = Math.max(...A.map(Math.abs));
        expect(peak).toBeLessThanOrEqual(1 / Math.sqrt(fanIn));
        expect(peak).toBeGreaterThan(0.95 / Math.sqrt(fanIn));
      }
      return [dense, conv, d, c];
    });
  });

  it('adapter bookkeeping: a second addLoRA keeps trained values, merging a non-active adapter, no silent activation, unload keeps frozen flags, Adam restarts', async () => {
    await leakFree(async () => {
      const base = mlp();
      base.layers[1].trainable = false; // the user's own choice, kept by unload
      const a = addLoRA(base, { targetModules: ['fc1'], rank: 2, adapterName: 'a' });
      perturb(a, 12);
      const b = addLoRA(a, { targetModules: ['fc2'], rank: 2, adapterName: 'b' });
      const fc1a = (m: tfl.LayersModel) => loraLayers(m).find((l) => l.path === 'fc1')!.layer.adapterVariables('a').map((v) => values(v.read()));
      expect(fc1a(b)).toEqual(fc1a(a));
      perturb(b, 13);
      // Merging "b" while "a" is active: the merged model runs b (fc2) and the base elsewhere.
      expect(activeAdapter(b)).toBe('a');
      const merged = mergeAndUnload(b, { adapterName: 'b' });
      const x = normal([4, 6], 82);
      setActiveAdapter(b, 'b');
      const yB = tf.tidy(() => b.predict(x) as tf.Tensor);
      const yMerged = tf.tidy(() => merged.predict(x) as tf.Tensor);
      expect(maxRelDiff(yMerged, yB)).toBeLessThan(1e-5);
      setActiveAdapter(b, 'a');
      // Deleting b and adding c to fc2 does not make fc2 run c while the model runs a.
      deleteAdapter(b, 'b');
      addAdapter(b, { targetModules: ['fc2'], rank: 1, adapterName: 'c' });
      expect(activeAdapter(b)).toBe('a');
      expect(loraLayers(b).find((l) => l.path === 'fc2')!.layer.activeAdapter).toBeNull();
      const plain = unload(b);
      expect(plain.layers.map((l) => l.trainable)).toEqual([true, false, true]);
      // A switch on a compiled model restarts Adam: moments and bias correction.
      const optimizer = tf.train.adam(0.01, 0.8, 0.9);
      b.compile({ optimizer, loss: 'meanSquaredError' });
      const y = normal([4, 3], 83);
      await b.fit(x, y, { epochs: 2, verbose: 0 });
      const o = optimizer as unknown as { accBeta1: tf.Variable; accBeta2: tf.Variable };
      expect(o.accBeta1.dataSync()[0]).toBeCloseTo(0.8 ** 3, 6);
      setActiveAdapter(b, 'c');
      expect(o.accBeta1.dataSync()[0]).toBeCloseTo(0.8, 6);
      expect(o.accBeta2.dataSync()[0]).toBeCloseTo(0.9, 6);
      tf.dispose([x, y, yB, yMerged]);
      optimizer.dispose();
      return [base, a, b, merged, plain];
    });
  });

  it('refuses unknown config fields and non-models in every entry point, naming them', async () => {
    await leakFree(() => {
      const base = mlp();
      expect(() => addLoRA(base, { rnak: 4 } as never)).toThrow(/config has unknown field\(s\) \["rnak"\]/);
      expect(() => activeAdapter(null as never)).toThrow(/activeAdapter: model = null is invalid; expected a tf.LayersModel/);
      expect(() => loraLayers({} as never)).toThrow(/loraLayers: model = .* is invalid/);
      expect(() => setActiveAdapter(undefined as never, 'a')).toThrow(/setActiveAdapter: model = undefined is invalid/);
      return [base];
    });
  });
});
