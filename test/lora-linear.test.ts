import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { LoRALinear, initBackend, loraScale } from '../src/index.js';
import { type FrozenLinear, linearForward } from '../src/core/lora-forward.js';
import { Rng, randomNormal } from '../src/util/random.js';
import { type Matrix, add, expectNoLeak, matmul, maxAbsDiff, maxRelDiff, scalarOf, scale, toMatrix, transpose } from './helpers.js';

/** Give an adapter a non-zero B, as training would, so merging has something to fold. */
function perturbB(layer: LoRALinear, seed = 1): void {
  const b = randomNormal<tf.Rank.R2>(layer.B.shape, new Rng(seed), 0.5);
  layer.B.assign(b);
  b.dispose();
}

/**
 * Plain-JS gradients of L = Σ y ⊙ G for y = x·W + b + s·(xd·A)·B, where xd = dropout(x) is
 * x·keep/(1 − rate) (keep = 1 where xd ≠ 0): dy = G, so
 *   dA = s·xdᵀ·(G·Bᵀ)   dB = s·(xd·A)ᵀ·G   dx = G·Wᵀ + (keep/(1 − rate)) ⊙ (s·G·Bᵀ·Aᵀ).
 */
function referenceGrads(xd: Matrix, W: Matrix, A: Matrix, B: Matrix, s: number, G: Matrix, rate: number): { dA: Matrix; dB: Matrix; dx: Matrix } {
  const g = scale(matmul(G, transpose(B)), s); // [n, r]
  const dA = matmul(transpose(xd), g);
  const dB = scale(matmul(transpose(matmul(xd, A)), G), s);
  const dxd = matmul(g, transpose(A));
  const dx = add(matmul(G, transpose(W)), dxd.map((row, i) => row.map((v, j) => (xd[i][j] === 0 ? 0 : v / (1 - rate)))));
  return { dA, dB, dx };
}

/** max |t − m| / max |m|, a tensor against a plain-JS matrix. */
function relTo(t: tf.Tensor, m: Matrix): number {
  const want = tf.tensor2d(m);
  const d = maxRelDiff(t, want);
  want.dispose();
  return d;
}

/** The dropout mask actually drops some entries and keeps others (else it would prove nothing). */
function expectMixedMask(xd: Matrix): void {
  const flat = xd.flat();
  expect(flat.filter((v) => v === 0).length).toBeGreaterThan(flat.length / 5);
  expect(flat.filter((v) => v !== 0).length).toBeGreaterThan(flat.length / 5);
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

  it('under dropout, linearForward gives the gradients of A, B and x through dropout(x) on both paths, with and without input gradient (plain-JS reference)', async () => {
    await expectNoLeak(() => {
      // r ≠ in ≠ out, s ≠ 1, so a transposed, dropped or rescaled term shows.
      const [n, inF, outF, r] = [6, 9, 5, 3];
      const rng = new Rng(21);
      const weight = randomNormal<tf.Rank.R2>([inF, outF], rng);
      const bias = randomNormal<tf.Rank.R1>([outF], rng);
      const A = randomNormal<tf.Rank.R2>([inF, r], rng);
      const B = randomNormal<tf.Rank.R2>([r, outF], rng);
      const x = randomNormal<tf.Rank.R2>([n, inF], rng);
      const G = randomNormal<tf.Rank.R2>([n, outF], rng); // dL/dy
      const s = 1.75;
      const rate = 0.4;
      const seed = 1234;
      // The mask linearForward draws: tf.dropout with the same seed.
      const xdT = tf.dropout(x, rate, undefined, seed);
      const xd = toMatrix(xdT);
      xdT.dispose();
      expectMixedMask(xd);
      const [Wm, Am, Bm, Gm] = [weight, A, B, G].map(toMatrix);
      const bm = Array.from(bias.dataSync());
      const want = referenceGrads(xd, Wm, Am, Bm, s, Gm, rate);
      const wantY = add(add(matmul(toMatrix(x), Wm), xd.map(() => bm)), scale(matmul(matmul(xd, Am), Bm), s));
      const got: Record<string, tf.Tensor[]> = {};
      for (const path of ['fused', 'autodiff'] as const) {
        for (const needsInputGrad of [true, false]) {
          const base: FrozenLinear = { weight, bias };
          const options = { dropout: { rate, seed }, path, needsInputGrad };
          const y = linearForward(x, base, { A, B, scale: s }, options);
          expect(relTo(y, wantY), `${path} y`).toBeLessThan(1e-5); // the same mask as xd
          const loss = (a: tf.Tensor, b: tf.Tensor, xIn: tf.Tensor) =>
            tf.sum(tf.mul(linearForward(xIn as tf.Tensor2D, base, { A: a as tf.Tensor2D, B: b as tf.Tensor2D, scale: s }, options), G)) as tf.Scalar;
          const grads = needsInputGrad ? tf.grads(loss)([A, B, x]) : tf.grads((a: tf.Tensor, b: tf.Tensor) => loss(a, b, x))([A, B]);
          const what = `${path}, needsInputGrad ${needsInputGrad}`;
          expect(relTo(grads[0], want.dA), `dA ${what}`).toBeLessThan(1e-5);
          expect(relTo(grads[1], want.dB), `dB ${what}`).toBeLessThan(1e-5);
          if (needsInputGrad) expect(relTo(grads[2], want.dx), `dx ${what}`).toBeLessThan(1e-5);
          got[`${path} ${needsInputGrad}`] = grads;
          tf.dispose([y, ...(base.weightT === undefined ? [] : [base.weightT])]); // the fused path caches Wᵀ
        }
      }
      // And the two paths agree with each other.
      for (const needs of [true, false]) {
        const f = got[`fused ${needs}`];
        const a = got[`autodiff ${needs}`];
        f.forEach((g, i) => expect(maxRelDiff(g, a[i]), `input ${i}, needsInputGrad ${needs}`).toBeLessThan(1e-5));
      }
      tf.dispose([weight, bias, A, B, x, G, ...Object.values(got).flat()]);
    });
  });

  it('under dropout, LoRALinear.apply({ training: true }) gives A, B and x gradients through the layer’s own mask, equal on both paths (plain-JS reference)', async () => {
    await expectNoLeak(() => {
      const [n, inF, outF, rank, rate] = [5, 10, 6, 3, 0.5];
      const bias = tf.tensor1d([0.3, -0.2, 0.1, 0.5, -0.4, 0.25]);
      // Three identically seeded layers draw the same mask sequence; `ref` only draws the seeds.
      const make = () => {
        const l = new LoRALinear({ inFeatures: inF, outFeatures: outF, rank, alpha: 4.5, dropout: rate, bias, seed: 5 });
        perturbB(l, 2);
        return l;
      };
      const fused = make();
      const auto = make();
      const ref = make();
      bias.dispose();
      fused.gradientPath = 'fused';
      auto.gradientPath = 'autodiff';
      const x = randomNormal<tf.Rank.R2>([n, inF], new Rng(3));
      const G = randomNormal<tf.Rank.R2>([n, outF], new Rng(4));
      const [Wm, Am, Bm, Gm] = [ref.weight, ref.A, ref.B, G].map(toMatrix);
      const s = ref.scale;
      expect(s).toBe(1.5);
      /** The reference gradients for the mask of the layers' next training call. */
      const nextReference = () => {
        const xdT = tf.dropout(x, rate, undefined, ref.adapter().rng.int(2 ** 31));
        const xd = toMatrix(xdT);
        xdT.dispose();
        expectMixedMask(xd);
        return referenceGrads(xd, Wm, Am, Bm, s, Gm, rate);
      };
      for (const needsInputGrad of [true, false]) {
        const want = nextReference();
        const factorGrads = [fused, auto].map((layer) => {
          const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(x, { training: true, needsInputGrad }), G)) as tf.Scalar, [layer.A, layer.B]);
          value.dispose();
          const out = [grads[layer.A.name], grads[layer.B.name]];
          const what = `${layer.gradientPath}, needsInputGrad ${needsInputGrad}`;
          expect(relTo(out[0], want.dA), `dA ${what}`).toBeLessThan(1e-5);
          expect(relTo(out[1], want.dB), `dB ${what}`).toBeLessThan(1e-5);
          return out;
        });
        factorGrads[0].forEach((g, i) => expect(maxRelDiff(g, factorGrads[1][i])).toBeLessThan(1e-5));
        tf.dispose(factorGrads.flat());
      }
      // The input gradient, through the next mask.
      const want = nextReference();
      const dxs = [fused, auto].map((layer) => tf.grad((xIn: tf.Tensor) => tf.sum(tf.mul(layer.apply(xIn, { training: true }), G)))(x));
      dxs.forEach((dx, i) => expect(relTo(dx, want.dx), `dx ${i === 0 ? 'fused' : 'autodiff'}`).toBeLessThan(1e-5));
      expect(maxRelDiff(dxs[0], dxs[1])).toBeLessThan(1e-5);
      tf.dispose([x, G, ...dxs]);
      for (const l of [fused, auto, ref]) l.dispose();
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
