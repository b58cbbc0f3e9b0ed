import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { LoRALinear, initBackend, loraScale } from '../src/index.js';
import { Rng, randomNormal } from '../src/util/random.js';
import { add, expectNoLeak, matmul, maxAbsDiff, maxRelDiff, scalarOf, scale, toMatrix } from './helpers.js';

/** Give an adapter a non-zero B, as training would, so merging has something to fold. */
function perturbB(layer: LoRALinear, seed = 1): void {
  const b = randomNormal<tf.Rank.R2>(layer.B.shape, new Rng(seed), 0.5);
  layer.B.assign(b);
  b.dispose();
}

describe.each(['wasm', 'cpu'] as const)('LoRALinear on %s', (backend) => {
  beforeAll(async () => {
    expect(await initBackend(backend)).toBe(backend);
  });

  it('computes y = xW + b + s·(xA)B, checked against plain-JS matrix arithmetic', async () => {
    await expectNoLeak(() => {
      const bias = tf.tensor1d([0.5, -1, 2, 0.25]);
      const layer = new LoRALinear({ inFeatures: 8, outFeatures: 4, rank: 2, alpha: 3, bias, seed: 7 });
      bias.dispose();
      perturbB(layer);
      const x = randomNormal<tf.Rank.R2>([3, 8], new Rng(11));
      const y = layer.predict(x);
      const s = 3 / 2;
      const expected = add(
        add(matmul(toMatrix(x), toMatrix(layer.weight)), [0, 1, 2].map(() => [0.5, -1, 2, 0.25])),
        scale(matmul(matmul(toMatrix(x), toMatrix(layer.A)), toMatrix(layer.B)), s),
      );
      expect(y.shape).toEqual([3, 4]);
      expect(maxAbsDiff(y, expected)).toBeLessThan(1e-4);
      tf.dispose([x, y]);
      layer.dispose();
    });
  });

  it('uses s = alpha/√r with rsLoRA and alpha/r otherwise', async () => {
    await expectNoLeak(() => {
      expect(loraScale({ alpha: 16, rank: 4, useRsLora: false })).toBe(4);
      expect(loraScale({ alpha: 16, rank: 4, useRsLora: true })).toBe(8);
      const plain = new LoRALinear({ inFeatures: 6, outFeatures: 5, rank: 4, alpha: 16, seed: 3 });
      const rs = new LoRALinear({ inFeatures: 6, outFeatures: 5, rank: 4, alpha: 16, seed: 3, useRsLora: true });
      expect(rs.scale).toBe(8);
      perturbB(plain);
      perturbB(rs);
      const x = randomNormal<tf.Rank.R2>([2, 6], new Rng(5));
      // Same W, A, B: the LoRA terms differ exactly by the ratio of the scales.
      const base = tf.matMul(x, plain.weight);
      const dPlain = tf.tidy(() => tf.sub(plain.predict(x), base));
      const dRs = tf.tidy(() => tf.sub(rs.predict(x), base));
      const doubled = tf.mul(dPlain, 2);
      expect(maxAbsDiff(doubled, dRs)).toBeLessThan(1e-4);
      doubled.dispose();
      tf.dispose([x, base, dPlain, dRs]);
      plain.dispose();
      rs.dispose();
    });
  });

  it('leaves the output equal to the base output while B is zero', async () => {
    await expectNoLeak(() => {
      const layer = new LoRALinear({ inFeatures: 8, outFeatures: 4, rank: 2 });
      const x = randomNormal<tf.Rank.R2>([3, 8], new Rng(1));
      const y = layer.predict(x);
      const base = tf.matMul(x, layer.weight);
      expect(maxAbsDiff(y, base)).toBe(0);
      tf.dispose([x, y, base]);
      layer.dispose();
    });
  });

  it('accepts [..., in] inputs and returns [..., out]', async () => {
    await expectNoLeak(() => {
      const layer = new LoRALinear({ inFeatures: 6, outFeatures: 3, rank: 2 });
      perturbB(layer);
      const x3 = randomNormal<tf.Rank.R3>([2, 5, 6], new Rng(2));
      const y3 = layer.predict(x3);
      expect(y3.shape).toEqual([2, 5, 3]);
      const flat = tf.reshape(x3, [10, 6]);
      const y2 = layer.predict(flat);
      const y3flat = tf.reshape(y3, [10, 3]);
      expect(maxAbsDiff(y3flat, y2)).toBeLessThan(1e-6);
      y3flat.dispose();
      const x1 = tf.ones([6]);
      const y1 = layer.predict(x1);
      expect(y1.shape).toEqual([3]);
      tf.dispose([x3, y3, flat, y2, x1, y1]);
      layer.dispose();
    });
  });

  it('merges a trained adapter to 1e-5 and unmerges back to 1e-6; merging twice adds nothing', async () => {
    await expectNoLeak(() => {
      const layer = new LoRALinear({ inFeatures: 64, outFeatures: 32, rank: 8, alpha: 16, seed: 4 });
      perturbB(layer, 9);
      const x = randomNormal<tf.Rank.R2>([5, 64], new Rng(8));
      const before = layer.predict(x);
      const w0 = layer.weight.clone();
      layer.merge();
      expect(layer.merged).toBe(true);
      const after = layer.predict(x);
      expect(maxRelDiff(after, before)).toBeLessThan(1e-5);
      layer.merge(); // must not add the delta a second time
      const twice = layer.predict(x);
      expect(maxRelDiff(twice, before)).toBeLessThan(1e-5);
      expect(maxAbsDiff(layer.weight, w0)).toBeGreaterThan(1e-3); // the weight really changed
      layer.unmerge();
      expect(layer.merged).toBe(false);
      expect(maxAbsDiff(layer.weight, w0)).toBeLessThan(1e-6);
      layer.unmerge(); // no-op
      expect(maxAbsDiff(layer.weight, w0)).toBeLessThan(1e-6);
      tf.dispose([x, before, after, twice, w0]);
      layer.dispose();
    });
  });

  it('fused gradients equal plain autodiff gradients (with and without input gradient, with bias)', async () => {
    await expectNoLeak(() => {
      const bias = tf.tensor1d([0.1, 0.2, 0.3, 0.4, 0.5]);
      const layer = new LoRALinear({ inFeatures: 12, outFeatures: 5, rank: 3, alpha: 6, bias, seed: 2 });
      bias.dispose();
      perturbB(layer, 3);
      const x = randomNormal<tf.Rank.R2>([7, 12], new Rng(4));
      const target = randomNormal<tf.Rank.R2>([7, 5], new Rng(6));
      const gradsFor = (path: 'fused' | 'autodiff', needsInputGrad: boolean) => {
        layer.gradientPath = path;
        const { value, grads } = tf.variableGrads(() => {
          const y = layer.apply(needsInputGrad ? tf.mul(x, 1) : x, { needsInputGrad });
          return tf.sum(tf.mul(tf.square(tf.sub(y, target)), 0.5)) as tf.Scalar;
        }, [layer.A, layer.B]);
        value.dispose();
        const dx = tf.grad((xIn: tf.Tensor) => tf.sum(tf.square(layer.apply(xIn, { needsInputGrad: true }))))(x);
        return { dA: grads[layer.A.name], dB: grads[layer.B.name], dx };
      };
      for (const needs of [true, false]) {
        const fused = gradsFor('fused', needs);
        const auto = gradsFor('autodiff', needs);
        expect(maxRelDiff(fused.dA, auto.dA)).toBeLessThan(1e-5);
        expect(maxRelDiff(fused.dB, auto.dB)).toBeLessThan(1e-5);
        expect(maxRelDiff(fused.dx, auto.dx)).toBeLessThan(1e-5);
        expect(scalarOf(() => tf.norm(fused.dA))).toBeGreaterThan(0);
        tf.dispose([fused.dA, fused.dB, fused.dx, auto.dA, auto.dB, auto.dx]);
      }
      tf.dispose([x, target]);
      layer.dispose();
    });
  });

  it('applies dropout to the adapter input only in training, with the same gradients on both paths', async () => {
    await expectNoLeak(() => {
      const make = () => {
        const l = new LoRALinear({ inFeatures: 10, outFeatures: 6, rank: 2, dropout: 0.5, seed: 5 });
        perturbB(l, 2);
        return l;
      };
      const fused = make();
      const auto = make();
      fused.gradientPath = 'fused';
      auto.gradientPath = 'autodiff';
      const x = randomNormal<tf.Rank.R2>([4, 10], new Rng(3));
      // Inference ignores dropout.
      const p1 = fused.predict(x);
      const p2 = fused.predict(x);
      expect(maxAbsDiff(p1, p2)).toBe(0);
      // Training draws a mask: the output differs from inference.
      const gradOf = (layer: LoRALinear) =>
        tf.grad((xIn: tf.Tensor) => tf.sum(tf.square(layer.apply(xIn, { training: true }))))(x);
      const gF = gradOf(fused);
      const gA = gradOf(auto); // same seed, same mask sequence
      expect(maxRelDiff(gF, gA)).toBeLessThan(1e-5);
      const t = fused.apply(x, { training: true });
      expect(maxAbsDiff(t, p1)).toBeGreaterThan(1e-4);
      tf.dispose([x, p1, p2, gF, gA, t]);
      fused.dispose();
      auto.dispose();
    });
  });

  it('supports kaiming-uniform A (PEFT) with |A| ≤ 1/√in', async () => {
    await expectNoLeak(() => {
      const layer = new LoRALinear({ inFeatures: 100, outFeatures: 10, rank: 4, init: 'kaiming' });
      const maxA = scalarOf(() => tf.max(tf.abs(layer.A)));
      expect(maxA).toBeLessThanOrEqual(0.1);
      expect(maxA).toBeGreaterThan(0.05);
      layer.dispose();
    });
  });

  it('reports parameter counts with total = frozen + trainable', () => {
    const bias = tf.zeros<tf.Rank.R1>([4]);
    const layer = new LoRALinear({ inFeatures: 8, outFeatures: 4, rank: 2, bias });
    bias.dispose();
    expect(layer.parameterCounts()).toEqual({ total: 60, trainable: 24, frozen: 36, lora: 24, saved: 0 });
    layer.dispose();
  });

  it('dispose() frees every tensor it created, and the layer refuses use afterwards', () => {
    const before = tf.memory().numTensors;
    const layer = new LoRALinear({ inFeatures: 16, outFeatures: 8, rank: 4 });
    const x = tf.ones([2, 16]);
    layer.gradientPath = 'fused';
    const g = tf.grad((xIn: tf.Tensor) => tf.sum(layer.apply(xIn)))(x); // builds the cached Wᵀ
    layer.merge();
    layer.dispose();
    tf.dispose([x, g]);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => layer.weight).toThrow(/disposed/);
  });
});
