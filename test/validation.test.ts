import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoRALinear, LoRAMLP, MLP, evaluate, initBackend, lowRankShiftTask, setWarningHandler, train } from '../src/index.js';
import { describe as show } from '../src/util/validate.js';

/** Assert `fn` throws `message` and allocated nothing before throwing. */
function rejects(fn: () => unknown, message: string | RegExp): void {
  const before = tf.memory().numTensors;
  expect(fn).toThrow(message);
  expect(tf.memory().numTensors).toBe(before);
}

describe('bad input is refused before anything is allocated or changed', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  const base = { inFeatures: 8, outFeatures: 4 };

  it('rank must be a positive integer; above min(in, out) it is accepted with a warning naming the layer', () => {
    rejects(() => new LoRALinear({ ...base, rank: 0 }), 'LoRALinear: rank = 0 is invalid; expected a positive integer');
    rejects(() => new LoRALinear({ ...base, rank: 2.5 }), 'rank = 2.5 is invalid');
    rejects(() => new LoRALinear({ ...base, rank: '2' as never }), 'rank = "2" is invalid');
    rejects(() => new LoRAMLP([8, 16, 2], { rank: -3 }), 'LoRAMLP (fc1: 8 → 16): rank = -3 is invalid');
    // PEFT accepts a rank above min(in, out) (the reference's demo 4 uses 32 on 512 → 16): so do we, saying so once per layer.
    const warnings: string[] = [];
    const previous = setWarningHandler((m) => warnings.push(m));
    try {
      const layer = new LoRALinear({ ...base, rank: 5 });
      expect(layer.rank).toBe(5);
      layer.dispose();
      const model = new LoRAMLP([8, 16, 2], { rank: 3 });
      model.dispose();
    } finally {
      setWarningHandler(previous);
    }
    expect(warnings).toEqual([
      'LoRALinear linear: rank 5 exceeds min(in, out) = 4 (8 → 4); it adds parameters but no capacity',
      'LoRALinear fc2: rank 3 exceeds min(in, out) = 2 (16 → 2); it adds parameters but no capacity',
    ]);
  });

  it('alpha must be finite and > 0; dropout in [0, 1); init and sizes known', () => {
    rejects(() => new LoRALinear({ ...base, alpha: 0 }), 'LoRALinear: alpha = 0 is invalid; expected a finite number > 0');
    rejects(() => new LoRALinear({ ...base, alpha: -1 }), 'alpha = -1 is invalid');
    rejects(() => new LoRALinear({ ...base, alpha: Infinity }), 'alpha = Infinity is invalid');
    rejects(() => new LoRALinear({ ...base, alpha: NaN }), 'alpha = NaN is invalid');
    rejects(() => new LoRALinear({ ...base, dropout: 1 }), 'LoRALinear: dropout = 1 is invalid; expected a number in [0, 1)');
    rejects(() => new LoRALinear({ ...base, dropout: -0.1 }), 'dropout = -0.1 is invalid');
    rejects(() => new LoRALinear({ ...base, init: 'xavier' as never }), 'init = "xavier" is invalid; expected one of "gaussian", "kaiming"');
    rejects(() => new LoRALinear({ inFeatures: 0, outFeatures: 4 }), 'LoRALinear: inFeatures = 0 is invalid');
    rejects(() => new MLP([8]), 'MLP: dims = [8] is invalid');
    rejects(() => new LoRAMLP([8, -2, 3]), 'LoRAMLP: dims = [8, -2, 3] is invalid');
  });

  it('a weight or bias of the wrong shape names both shapes', () => {
    const w = tf.zeros<tf.Rank.R2>([4, 8]);
    const b = tf.zeros<tf.Rank.R1>([8]);
    rejects(() => new LoRALinear({ ...base, weight: w }), 'LoRALinear: weight = a tensor of shape [4, 8] is invalid; expected a live float32 tensor of shape [8, 4]');
    rejects(() => new LoRALinear({ ...base, bias: b }), 'bias = a tensor of shape [8] is invalid; expected a live float32 tensor of shape [4]');
    tf.dispose([w, b]);
  });

  it('an input whose last dimension is not inFeatures', () => {
    const layer = new LoRALinear({ ...base, rank: 2 });
    const model = new LoRAMLP([8, 6, 2], { rank: 2 });
    const x = tf.zeros([3, 5]);
    rejects(() => layer.predict(x), 'LoRALinear: x = a tensor of shape [3, 5] is invalid; expected a tensor of shape [..., 8]');
    rejects(() => model.predict(x), 'LoRAMLP: x = a tensor of shape [3, 5] is invalid; expected a tensor of shape [..., 8]');
    rejects(() => layer.predict([1, 2] as never), 'LoRALinear: x = [1, 2] is invalid');
    tf.dispose(x);
    layer.dispose();
    model.dispose();
  });

  it('merge state: no double merge, no switching or training while merged, no merge without an adapter', async () => {
    const layer = new LoRALinear({ ...base, rank: 2 });
    layer.addAdapter('other', { rank: 1 });
    layer.merge();
    rejects(() => layer.setActiveAdapter('other'), /cannot switch to adapter "other" while "default" is merged; call unmerge\(\) first/);
    layer.unmerge();
    layer.setActiveAdapter(null);
    rejects(() => layer.merge(), 'no adapter is active');
    rejects(() => layer.setActiveAdapter('nope'), 'LoRALinear: adapter name = "nope" is invalid; expected null or one of ["default", "other"]');
    layer.dispose();

    const task = lowRankShiftTask({ dims: [8, 6, 2], shiftRank: 1, samples: 16, seed: 1 });
    const model = LoRAMLP.fromBase(task.base, { rank: 2 });
    model.merge();
    await expect(train(model, { x: task.x, y: task.yShifted, steps: 1 })).rejects.toThrow('call unmerge() before training');
    model.unmerge();
    await expect(train(model, { x: task.x, y: task.yShifted, steps: 0 })).rejects.toThrow('train: steps = 0 is invalid');
    await expect(train(model, { x: task.x, y: task.yShifted })).rejects.toThrow('exactly one of steps and epochs');
    await expect(train(model, { x: task.x, y: task.yShifted, steps: 1, batchSize: 17 })).rejects.toThrow(
      'train: batchSize = 17 is invalid; expected a positive integer no larger than the number of samples (16)',
    );
    await expect(train(model, { x: task.x, y: task.x, steps: 1 })).rejects.toThrow('train: y = a tensor of shape [16, 8] is invalid; expected a live float32 tensor of shape [16, 2]');
    await expect(train(model, { x: task.x, y: task.yShifted, steps: 1, learningRate: -1 })).rejects.toThrow('learningRate = -1 is invalid');
    rejects(() => evaluate(model, task.x, task.x), 'evaluate: y = a tensor of shape [16, 8] is invalid');
    model.dispose();
    task.dispose();
  });

  afterAll(() => undefined);
});

describe('how a refused value is shown in a message', () => {
  it('plain objects by their fields (bounded, cycle-safe, no getter run), other objects by their class', () => {
    const circular: Record<string, unknown> = { a: 1 };
    circular.self = circular;
    expect(show(circular)).toBe('{ a: 1, self: [circular] }');
    // The same object twice side by side is not a cycle.
    const shared = { x: 1 };
    expect(show({ p: shared, q: shared })).toBe('{ p: { x: 1 }, q: { x: 1 } }');
    expect(show({ a: { b: { c: { d: { e: 1, f: 2 } } } } })).toBe('{ a: { b: { c: { d: {2 fields} } } } }');
    expect(show(Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, i])))).toBe('{ k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, … (10 fields) }');
    expect(show({ 'two words': 1 })).toBe('{ "two words": 1 }');
    expect(show({ ['k'.repeat(1000)]: 1 }).length).toBeLessThan(100);
    let ran = false;
    expect(show({ get g() { ran = true; return 1; } })).toBe('{ g: [getter] }');
    expect(ran).toBe(false);
    expect(show(new Map())).toBe('a Map');
    expect(show(new Int32Array(2))).toBe('an Int32Array');
    expect(show(new Uint8Array(2))).toBe('a Uint8Array');
    const hostile = new Proxy({}, { getPrototypeOf() { throw new Error('trap'); }, ownKeys() { throw new Error('trap'); } });
    expect(show(hostile)).toBe('an object that cannot be inspected');
    const deep = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`k${i}`, Object.fromEntries(Array.from({ length: 8 }, (__, j) => [`j${j}`, 'x'.repeat(80)]))]));
    expect(show(deep).length).toBeLessThanOrEqual(401);
  });
});
