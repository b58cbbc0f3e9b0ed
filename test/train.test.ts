import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LoRAMLP,
  MLP,
  evaluate,
  initBackend,
  lowRankShiftTask,
  randomRegression,
  train,
  type LowRankShiftTask,
} from '../src/index.js';
import { maxRelDiff, scalarOf } from './helpers.js';

describe.each(['wasm', 'cpu'] as const)('training on %s', (backend) => {
  let task: LowRankShiftTask;

  beforeAll(async () => {
    await initBackend(backend);
    task = lowRankShiftTask({ dims: [16, 32, 8], shiftRank: 2, samples: 256, seed: 3 });
  });
  afterAll(() => task.dispose());

  it('lowers the loss on the teacher–student task, leaving frozen tensors bit-identical while A and B change', async () => {
    const model = LoRAMLP.fromBase(task.base, { rank: 4, alpha: 8, seed: 1 });
    const frozenBefore = model.layers.map((l) => [Array.from(l.weight.dataSync()), Array.from(l.bias!.dataSync())]);
    const aBefore = model.layers.map((l) => Array.from(l.A.dataSync()));
    const initial = evaluate(model, task.xTest, task.yTestShifted);
    // One step first: the backward pass caches Wᵀ of the layers that pass a gradient on
    // (kept until the model is disposed), which is not a leak.
    await train(model, { x: task.x, y: task.yShifted, steps: 1, batchSize: 32, learningRate: 1e-2 });
    const tensorsBefore = tf.memory().numTensors;
    const result = await train(model, { x: task.x, y: task.yShifted, steps: 150, batchSize: 32, learningRate: 1e-2 });
    expect(tf.memory().numTensors).toBe(tensorsBefore); // no leak across 150 steps + optimizer freed
    const final = evaluate(model, task.xTest, task.yTestShifted);
    expect(result.losses).toHaveLength(150);
    expect(final).toBeLessThan(0.3 * initial);
    model.layers.forEach((l, i) => {
      expect(Array.from(l.weight.dataSync())).toEqual(frozenBefore[i][0]);
      expect(Array.from(l.bias!.dataSync())).toEqual(frozenBefore[i][1]);
      expect(Array.from(l.A.dataSync())).not.toEqual(aBefore[i]);
      expect(scalarOf(() => tf.max(tf.abs(l.B)))).toBeGreaterThan(0);
    });
    model.dispose();
  });

  it('repeats exactly with the same seed, and differs with another', async () => {
    const run = async (seed: number) => {
      const model = LoRAMLP.fromBase(task.base, { rank: 2, seed: 5 });
      const r = await train(model, { x: task.x, y: task.yShifted, steps: 10, seed });
      model.dispose();
      return r.losses;
    };
    const a = await run(1);
    expect(await run(1)).toEqual(a);
    expect(await run(2)).not.toEqual(a);
  });

  it('leaks nothing across 20 steps (counted after a warm-up step) and epochs cover every sample', async () => {
    const model = LoRAMLP.fromBase(task.base, { rank: 2, dropout: 0.1 });
    await train(model, { x: task.x, y: task.yShifted, steps: 1 });
    const before = tf.memory().numTensors;
    await train(model, { x: task.x, y: task.yShifted, steps: 20 });
    expect(tf.memory().numTensors).toBe(before);
    const steps: number[] = [];
    await train(model, { x: task.x, y: task.yShifted, epochs: 2, batchSize: 100, onStep: (s) => steps.push(s) });
    expect(steps).toEqual([0, 1, 2, 3, 4, 5]); // 256 samples → batches of 100, 100, 56, twice
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('full fine-tuning trains every MLP parameter, with fused gradients equal to autodiff', async () => {
    const grads = (path: 'fused' | 'autodiff') => {
      const mlp = new MLP([16, 32, 8], { seed: 4 });
      mlp.gradientPath = path;
      const { value, grads } = tf.variableGrads(
        () => tf.mean(tf.squaredDifference(mlp.apply(task.x), task.yShifted)) as tf.Scalar,
        mlp.trainableVariables(),
      );
      const out = mlp.trainableVariables().map((v) => grads[v.name]);
      value.dispose();
      mlp.dispose();
      return out;
    };
    const before = tf.memory().numTensors;
    const fused = grads('fused');
    const auto = grads('autodiff');
    expect(fused).toHaveLength(4);
    fused.forEach((g, i) => expect(maxRelDiff(g, auto[i])).toBeLessThan(1e-5));
    tf.dispose([...fused, ...auto]);
    expect(tf.memory().numTensors).toBe(before);

    const mlp = new MLP([16, 32, 8], { seed: 4 });
    const w0 = Array.from(mlp.layers[0].W.dataSync());
    const initial = evaluate(mlp, task.x, task.yShifted);
    await train(mlp, { x: task.x, y: task.yShifted, steps: 100, learningRate: 1e-2 });
    expect(evaluate(mlp, task.x, task.yShifted)).toBeLessThan(initial);
    expect(Array.from(mlp.layers[0].W.dataSync())).not.toEqual(w0);
    mlp.dispose();
  });

  it('reproduces the reference demo 3 degeneracy: an unscaled N(0,1) base gives huge losses', async () => {
    const data = randomRegression({ samples: 200, inputDim: 64, outputDim: 10, seed: 0 });
    const lora = new LoRAMLP([64, 256, 10], { rank: 8 });
    const loss = evaluate(lora, data.x, data.y);
    expect(loss).toBeGreaterThan(1e3); // activations grow ~√width per N(0,1) layer
    lora.dispose();
    tf.dispose([data.x, data.y]);
  });
});
