import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  LoRALinear,
  LoRAMLP,
  MLP,
  evaluate,
  initBackend,
  lowRankShiftTask,
  mse,
  randomRegression,
  train,
  type LowRankShiftTask,
} from '../src/index.js';
import { expectNoLeak, maxRelDiff, scalarOf, trainLike } from './helpers.js';

const PATHS = ['fused', 'autodiff'] as const;

/** A tf.Variable an optimizer may update. */
function isTrainableVariable(t: tf.Tensor | undefined): boolean {
  return t instanceof tf.Variable && t.trainable;
}

/** `got` holds exactly the variables of `want`, the same objects in the same order, all trainable. */
function expectExactly(got: tf.Variable[], want: Array<tf.Variable | undefined>, what: string): void {
  expect(got.length, `${what}: count`).toBe(want.length);
  got.forEach((v, i) => {
    expect(v === want[i], `${what}: [${i}] is ${v.name}, expected ${want[i]?.name}`).toBe(true);
    expect(isTrainableVariable(v), `${what}: [${i}] trainable`).toBe(true);
  });
}

/** Every variable an adapter of `layer` holds (active or not): A and B, or a full copy's weight and bias. */
function adapterVariables(layer: LoRALinear): tf.Variable[] {
  return layer.adapterNames().flatMap((n) => {
    if (layer.adapterKind(n) === 'lora') return [layer.adapter(n).A, layer.adapter(n).B];
    const f = layer.fullAdapter(n);
    return f.bias === undefined ? [f.weight] : [f.weight, f.bias];
  });
}

/** The frozen base of every layer (weight, bias) is no trainable variable. */
function expectFrozen(layers: readonly LoRALinear[], what: string): void {
  layers.forEach((l, i) => {
    expect(isTrainableVariable(l.weight), `${what}: layer ${i} weight`).toBe(false);
    if (l.bias !== undefined) expect(isTrainableVariable(l.bias), `${what}: layer ${i} bias`).toBe(false);
  });
}

/** The trainable variables registered in the engine. */
function trainableInEngine(): Set<tf.Variable> {
  return new Set(Object.values(tf.engine().registeredVariables).filter((v) => v.trainable));
}

/** A copy of every variable registered in the engine, by name. */
function engineSnapshot(): Map<string, Float32Array> {
  return new Map(Object.entries(tf.engine().registeredVariables).map(([k, v]) => [k, (v.dataSync() as Float32Array).slice()]));
}

const sameBits = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe.each(['wasm', 'cpu'] as const)('training on %s', (backend) => {
  let task: LowRankShiftTask;

  beforeAll(async () => {
    await initBackend(backend);
    task = lowRankShiftTask({ dims: [16, 32, 8], shiftRank: 2, samples: 256, seed: 3 });
  });
  afterAll(() => task.dispose());

  it.each(PATHS)('lowers the loss on the teacher–student task on the %s path, leaving frozen tensors (and every other variable) bit-identical while A and B change', async (path) => {
    const model = LoRAMLP.fromBase(task.base, { rank: 4, alpha: 8, seed: 1 });
    model.gradientPath = path;
    expect(model.gradientPath).toBe(path);
    expect(model.layers.map((l) => l.gradientPath)).toEqual(model.layers.map(() => path));
    const engineBefore = engineSnapshot();
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
    // The engine's variables: the same ones (Adam's state freed), and only the adapter's changed, all of it.
    const engineAfter = engineSnapshot();
    expect([...engineAfter.keys()].sort()).toEqual([...engineBefore.keys()].sort());
    const trained = new Set(model.trainableVariables().map((v) => v.name));
    expect(trained.size).toBe(2 * model.layers.length);
    for (const [name, before] of engineBefore) expect(sameBits(engineAfter.get(name)!, before), `${name} ${trained.has(name) ? 'changed' : 'unchanged'}`).toBe(!trained.has(name));
    model.dispose();
  });

  it.each(PATHS)('trainableVariables() is exactly the active adapter’s A and B of each layer (===, in order; %s path), and no frozen tensor is a trainable variable', async (path) => {
    await expectNoLeak(() => {
      const engineBefore = trainableInEngine();
      const fresh = new LoRAMLP([6, 5, 4, 3], { rank: 2, seed: 1 }); // no biases
      const based = LoRAMLP.fromBase(task.base, { rank: 2, seed: 2 }); // with biases
      for (const [what, m] of [['new', fresh], ['fromBase', based]] as const) {
        m.gradientPath = path;
        expect(m.layers.every((l) => l.gradientPath === path)).toBe(true);
        expect(m.layers.every((l) => l.bias !== undefined)).toBe(m === based);
        const first = m.layers[0];
        const second = m.layers[1];
        const last = m.layers[m.layers.length - 1];
        const own = (name: string) => m.layers.flatMap((l) => [l.adapter(name).A, l.adapter(name).B]);
        expectExactly(m.trainableVariables(), own('default'), `${what} default`);
        expectFrozen(m.layers, `${what} default`);
        // A second adapter on one layer: nothing changes until it is active.
        m.addAdapter('b', { rank: 1, targetModules: [m.names[1]] });
        expectExactly(m.trainableVariables(), own('default'), `${what} default beside b`);
        m.setActiveAdapter('b');
        expectExactly(m.trainableVariables(), [second.adapter('b').A, second.adapter('b').B], `${what} b`);
        // LoRA on the first layer, a full copy (modulesToSave) of the last.
        m.addAdapter('full', { rank: 2, targetModules: [m.names[0]], modulesToSave: [m.names[m.names.length - 1]] });
        m.setActiveAdapter('full');
        const copy = last.fullAdapter('full');
        expect(copy.bias === undefined).toBe(m === fresh);
        expectExactly(m.trainableVariables(), [first.adapter('full').A, first.adapter('full').B, copy.weight, ...(m === based ? [copy.bias] : [])], `${what} full`);
        m.setActiveAdapter('default');
        expectExactly(m.trainableVariables(), own('default'), `${what} default again`);
        m.setActiveAdapter(null);
        expect(m.trainableVariables(), `${what} none active`).toEqual([]);
        expectFrozen(m.layers, `${what} after switching`);
      }
      const none = LoRAMLP.fromBase(task.base, { noAdapter: true });
      expect(none.trainableVariables()).toEqual([]);
      expectFrozen(none.layers, 'noAdapter');
      // The trainable variables the models added to the engine are exactly their adapters' (a trainable W would be one more).
      const added = [...trainableInEngine()].filter((v) => !engineBefore.has(v));
      const adapters = new Set([fresh, based].flatMap((m) => m.layers.flatMap(adapterVariables)));
      expect(added.length).toBe(adapters.size);
      expect(added.every((v) => adapters.has(v))).toBe(true);
      fresh.dispose();
      based.dispose();
      none.dispose();
    });
  });

  it('LoRALinear.trainableVariables() is exactly the active adapter’s variables on both paths; its weight and bias are not trainable', async () => {
    await expectNoLeak(() => {
      const engineBefore = trainableInEngine();
      const bias = tf.tensor1d([0.5, -1, 2]);
      const layer = new LoRALinear({ inFeatures: 4, outFeatures: 3, rank: 2, bias, seed: 1 });
      bias.dispose();
      layer.addAdapter('b', { rank: 1 });
      const full = layer.addFullAdapter('f');
      for (const path of PATHS) {
        layer.gradientPath = path;
        expect(layer.gradientPath).toBe(path);
        layer.setActiveAdapter('default');
        expectExactly(layer.trainableVariables(), [layer.adapter('default').A, layer.adapter('default').B], `${path} default`);
        layer.setActiveAdapter('b');
        expectExactly(layer.trainableVariables(), [layer.adapter('b').A, layer.adapter('b').B], `${path} b`);
        layer.setActiveAdapter('f');
        expectExactly(layer.trainableVariables(), [full.weight, full.bias], `${path} full copy`);
        layer.setActiveAdapter(null);
        expect(layer.trainableVariables()).toEqual([]);
        expectFrozen([layer], path);
      }
      const added = [...trainableInEngine()].filter((v) => !engineBefore.has(v));
      expect(added.length).toBe(6);
      expect(added.every((v) => adapterVariables(layer).includes(v))).toBe(true);
      layer.dispose();
    });
  });

  it('the cosine schedule sets Adam’s rate to 0.5·lr·(1 + cos(πk/T)) at step k, so the last steps barely move the weights; constant keeps lr', async () => {
    // The rate each step really uses: Adam reads its learningRate in applyGradients.
    const rates: number[] = [];
    const original = tf.AdamOptimizer.prototype.applyGradients;
    const spy = vi.spyOn(tf.AdamOptimizer.prototype, 'applyGradients').mockImplementation(function (this: tf.AdamOptimizer, grads) {
      rates.push((this as unknown as { learningRate: number }).learningRate);
      original.call(this, grads);
    });
    const lr = 0.02;
    const run = async (schedule: 'constant' | 'cosine', length: { steps: number } | { epochs: number; batchSize: number }) => {
      rates.length = 0;
      const model = LoRAMLP.fromBase(task.base, { rank: 2, alpha: 4, seed: 3 });
      // B starts at zero (so A's first gradient is zero): watch every factor.
      const values = () => Float32Array.from(model.trainableVariables().flatMap((v) => Array.from(v.dataSync())));
      let prev = values();
      const moves: number[] = []; // max |Δ| over A and B, per step
      const { losses } = await train(model, {
        x: task.x, y: task.yShifted, learningRate: lr, schedule, seed: 1, ...length,
        onStep: () => {
          const now = values();
          moves.push(now.reduce((m, v, i) => Math.max(m, Math.abs(v - prev[i])), 0));
          prev = now;
        },
      });
      const final = model.trainableVariables().map((v) => Array.from(v.dataSync()));
      model.dispose();
      return { rates: [...rates], moves, losses, final };
    };
    const cosineRate = (k: number, T: number) => 0.5 * lr * (1 + Math.cos((Math.PI * k) / T));
    const tensorsBefore = tf.memory().numTensors;
    try {
      const T = 20;
      const cosine = await run('cosine', { steps: T });
      expect(cosine.rates).toHaveLength(T);
      cosine.rates.forEach((r, k) => expect(r, `step ${k}`).toBeCloseTo(cosineRate(k, T), 12));
      const constant = await run('constant', { steps: T });
      expect(constant.rates).toEqual(new Array(T).fill(lr));
      // With epochs, T counts every batch of every epoch: 256 samples in batches of 100, 3 per epoch.
      const epochs = await run('cosine', { epochs: 2, batchSize: 100 });
      expect(epochs.rates).toHaveLength(6);
      epochs.rates.forEach((r, k) => expect(r, `epoch step ${k}`).toBeCloseTo(cosineRate(k, 6), 12));
      // What the rate does to the weights: the first step is the same (rate lr), the last one is tiny with cosine only.
      expect(cosine.moves[0]).toBe(constant.moves[0]);
      expect(cosine.moves[T - 1] / cosine.moves[0]).toBeLessThan(0.05);
      expect(constant.moves[T - 1] / constant.moves[0]).toBeGreaterThan(0.5);
      expect(cosine.losses[0]).toBe(constant.losses[0]);
      expect(cosine.losses).not.toEqual(constant.losses);
      expect(cosine.final).not.toEqual(constant.final);
    } finally {
      spy.mockRestore();
    }
    expect(tf.AdamOptimizer.prototype.applyGradients).toBe(original);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });

  it('evaluate() runs without dropout: it equals the MSE of predict exactly, repeats, and differs from a training-mode pass', async () => {
    await expectNoLeak(() => {
      const model = LoRAMLP.fromBase(task.base, { rank: 4, alpha: 8, dropout: 0.5, seed: 2 });
      trainLike(model, 'default', 3); // a non-zero B, so the adapter (and its dropout) matters
      const { xTest: x, yTestShifted: y } = task;
      const loss = evaluate(model, x, y);
      expect(evaluate(model, x, y)).toBe(loss);
      expect(scalarOf(() => mse(model.predict(x), y))).toBe(loss);
      expect(scalarOf(() => mse(model.apply(x, { training: false }), y))).toBe(loss);
      // In plain JS, from predict's values.
      const p = tf.tidy(() => model.predict(x));
      const pv = p.dataSync();
      const yv = y.dataSync();
      p.dispose();
      const plain = Array.from(pv).reduce((acc, v, i) => acc + (v - yv[i]) ** 2, 0) / pv.length;
      expect(Math.abs(loss - plain) / plain).toBeLessThan(1e-5);
      // A training-mode pass draws dropout masks: another loss, and another each time.
      const t1 = scalarOf(() => mse(model.apply(x, { training: true }), y));
      const t2 = scalarOf(() => mse(model.apply(x, { training: true }), y));
      expect(Math.abs(t1 - loss) / loss).toBeGreaterThan(1e-3);
      expect(t2).not.toBe(t1);
      // And the adapter matters: the base alone gives another loss.
      model.setActiveAdapter(null);
      expect(Math.abs(evaluate(model, x, y) - loss) / loss).toBeGreaterThan(1e-3);
      model.dispose();
    });
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
