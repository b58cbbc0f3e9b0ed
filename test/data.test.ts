import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { LoRAMLP, MLP, Rng, evaluate, initBackend, lowRankShiftTask, randomRegression, train } from '../src/index.js';

describe('seeded data and models', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('Rng repeats exactly, and its normals have unit variance', () => {
    const a = new Rng(5).normalArray(20000);
    expect(Array.from(new Rng(5).normalArray(20000))).toEqual(Array.from(a));
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    const variance = a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
    expect(Array.from(new Rng(1).permutation(10)).sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('randomRegression is seeded and shaped as asked', () => {
    const d1 = randomRegression({ samples: 7, inputDim: 3, outputDim: 2, seed: 4 });
    const d2 = randomRegression({ samples: 7, inputDim: 3, outputDim: 2, seed: 4 });
    expect(d1.x.shape).toEqual([7, 3]);
    expect(d1.y.shape).toEqual([7, 2]);
    expect(Array.from(d1.x.dataSync())).toEqual(Array.from(d2.x.dataSync()));
    tf.dispose([d1.x, d1.y, d2.x, d2.y]);
    expect(() => randomRegression({ samples: 0, inputDim: 3, outputDim: 2 })).toThrow('randomRegression: samples = 0 is invalid');
  });

  it('lowRankShiftTask: each delta has exactly the requested rank; tasks share the base; dispose frees all', () => {
    const before = tf.memory().numTensors;
    const task = lowRankShiftTask({ dims: [12, 10, 6], shiftRank: 2, samples: 20, tasks: 2, seed: 1 });
    expect(task.tasks).toHaveLength(2);
    for (const t of task.tasks) {
      for (const d of t.deltas) {
        // rank via the singular values of ΔᵀΔ: exactly two are non-negligible.
        const eig = tf.tidy(() => tf.linalg.qr(tf.matMul(d, d, true, false))[1]);
        const diag = tf.tidy(() => tf.abs(tf.stack(Array.from({ length: eig.shape[0] }, (_, i) => eig.slice([i, i], [1, 1]).reshape([])))));
        const values = Array.from(diag.dataSync()).sort((a, b) => b - a);
        expect(values[1]).toBeGreaterThan(1e-3 * values[0]);
        expect(values[2]).toBeLessThan(1e-4 * values[0]);
        tf.dispose([eig, diag]);
      }
    }
    expect(maxAbs(task.yShifted, task.tasks[0].y)).toBe(0);
    expect(maxAbs(task.tasks[0].y, task.tasks[1].y)).toBeGreaterThan(0.01);
    // the base really produced yBase
    const again = task.base.predict(task.x);
    expect(maxAbs(again, task.yBase)).toBe(0);
    again.dispose();
    task.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('MLP.clone is independent; the cosine schedule trains and repeats', async () => {
    const task = lowRankShiftTask({ dims: [8, 16, 4], shiftRank: 1, samples: 64, seed: 2 });
    const copy = task.base.clone();
    const w = Array.from(task.base.layers[0].W.dataSync());
    expect(Array.from(copy.layers[0].W.dataSync())).toEqual(w);
    await train(copy, { x: task.x, y: task.yShifted, steps: 5 });
    expect(Array.from(task.base.layers[0].W.dataSync())).toEqual(w);
    expect(Array.from(copy.layers[0].W.dataSync())).not.toEqual(w);
    const run = async () => {
      const m = LoRAMLP.fromBase(task.base, { rank: 1, seed: 3 });
      const r = await train(m, { x: task.x, y: task.yShifted, steps: 40, learningRate: 1e-2, schedule: 'cosine' });
      const loss = evaluate(m, task.x, task.yShifted);
      m.dispose();
      return { losses: r.losses, loss };
    };
    const a = await run();
    expect((await run()).losses).toEqual(a.losses);
    expect(a.loss).toBeLessThan(a.losses[0]);
    await expect(train(copy, { x: task.x, y: task.yShifted, steps: 1, schedule: 'linear' as never })).rejects.toThrow(
      'train: schedule = "linear" is invalid; expected one of "constant", "cosine"',
    );
    copy.dispose();
    task.dispose();
    const small = new MLP([2, 3]);
    expect(small.parameterCounts().trainable).toBe(9);
    small.dispose();
  });
});

function maxAbs(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}
