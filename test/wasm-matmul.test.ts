import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoRAMLP, disableWasmMatMulFastPath, enableWasmMatMulFastPath, initBackend, wasmMatMulFastPathEnabled } from '../src/index.js';
import { maxRelDiff } from './helpers.js';

describe('the optional wasm BatchMatMul override', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });
  afterAll(() => disableWasmMatMulFastPath());

  it('gives the stock kernel\'s results for transposed, batched and plain operands, leaking nothing', () => {
    const a = tf.randomNormal([6, 5], 0, 1, 'float32', 1) as tf.Tensor2D;
    const b = tf.randomNormal([5, 4], 0, 1, 'float32', 2) as tf.Tensor2D;
    const aT = tf.transpose(a);
    const bT = tf.transpose(b);
    const a3 = tf.randomNormal([2, 3, 5], 0, 1, 'float32', 3) as tf.Tensor3D;
    const cases = () => [
      tf.matMul(a, b),
      tf.matMul(aT, b, true, false),
      tf.matMul(a, bT, false, true),
      tf.matMul(aT, bT, true, true),
      tf.matMul(a3, b as unknown as tf.Tensor3D),
    ];
    const stock = cases();
    enableWasmMatMulFastPath();
    expect(wasmMatMulFastPathEnabled()).toBe(true);
    const before = tf.memory().numTensors;
    const fast = cases();
    expect(tf.memory().numTensors).toBe(before + fast.length); // only the outputs
    fast.forEach((f, i) => {
      expect(f.shape).toEqual(stock[i].shape);
      expect(maxRelDiff(f, stock[i])).toBeLessThan(1e-6);
    });
    disableWasmMatMulFastPath();
    expect(wasmMatMulFastPathEnabled()).toBe(false);
    tf.dispose([a, b, aT, bT, a3, ...stock, ...fast]);
  });

  it('leaves plain-autodiff gradients unchanged', () => {
    const model = new LoRAMLP([8, 6, 3], { rank: 2, seed: 1 });
    model.gradientPath = 'autodiff';
    for (const l of model.layers) {
      const nb = tf.randomNormal(l.B.shape, 0, 0.3, 'float32', 4);
      l.B.assign(nb as tf.Tensor2D);
      nb.dispose();
    }
    const x = tf.randomNormal([5, 8], 0, 1, 'float32', 5);
    const grads = () => {
      const { value, grads: g } = tf.variableGrads(() => tf.sum(tf.square(model.apply(x))) as tf.Scalar, model.trainableVariables());
      value.dispose();
      return model.trainableVariables().map((v) => g[v.name]);
    };
    const stock = grads();
    enableWasmMatMulFastPath();
    const fast = grads();
    disableWasmMatMulFastPath();
    fast.forEach((g, i) => expect(maxRelDiff(g, stock[i])).toBeLessThan(1e-5));
    tf.dispose([x, ...stock, ...fast]);
    model.dispose();
  });
});
