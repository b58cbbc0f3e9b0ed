import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoRAMLP, MLP, combineAdapters, initBackend, lowRankShiftTask, train, type LowRankShiftTask } from '../src/index.js';
import { type Matrix, matmul, maxAbsDiff, toMatrix } from './helpers.js';

// Adapters that cover some layers (PEFT's target_modules), with per-layer ranks and alphas
// (rank_pattern / alpha_pattern) and layers trained in full (modules_to_save), checked
// against plain-JS arithmetic and through training on both gradient paths.

const DIMS = [5, 7, 6, 3];

function setValues(v: tf.Variable, seed: number, std = 0.4): void {
  const r = tf.randomNormal(v.shape, 0, std, 'float32', seed);
  v.assign(r);
  r.dispose();
}

/** The model's forward pass in plain JS from its tensors: per layer the active adapter's kind decides. */
function forwardJs(model: LoRAMLP, x: Matrix): Matrix {
  const name = model.activeAdapter;
  let h = x;
  model.layers.forEach((l, i) => {
    const kind = name === null ? undefined : l.adapterKind(name);
    let y: Matrix;
    if (kind === 'full') {
      const f = l.fullAdapter(name as string);
      y = matmul(h, toMatrix(f.weight));
      const b = f.bias ? Array.from(f.bias.dataSync()) : null;
      if (b) y = y.map((row) => row.map((v, j) => v + b[j]));
    } else {
      y = matmul(h, toMatrix(l.weight));
      const b = l.bias ? Array.from(l.bias.dataSync()) : null;
      if (b) y = y.map((row) => row.map((v, j) => v + b[j]));
      if (kind === 'lora') {
        const a = l.adapter(name as string);
        const low = matmul(matmul(h, toMatrix(a.A)), toMatrix(a.B));
        y = y.map((row, r) => row.map((v, j) => v + a.scale * low[r][j]));
      }
    }
    h = i < model.layers.length - 1 ? y.map((row) => row.map((v) => Math.max(0, v))) : y;
  });
  return h;
}

describe('LoRAMLP adapters on some layers, per-layer ranks, layers trained in full', () => {
  let base: MLP;
  let tensorsAtStart: number;
  beforeAll(async () => {
    await initBackend('wasm');
    tensorsAtStart = tf.memory().numTensors;
    base = new MLP(DIMS, { seed: 4 });
  });
  afterAll(() => {
    base.dispose();
    expect(tf.memory().numTensors).toBe(tensorsAtStart);
  });

  it('places each layer where the spec says, with the pattern ranks and alphas, and computes what plain JS computes', () => {
    const model = LoRAMLP.fromBase(base, { rank: 2, alpha: 4, targetModules: ['fc1', 'fc2'], rankPattern: { fc2: 3 }, alphaPattern: { fc1: 1 }, modulesToSave: ['fc3'], seed: 1 });
    expect(model.adapterLayers('default')).toEqual(['lora', 'lora', 'full']);
    expect(model.layers.map((l) => (l.adapterKind('default') === 'lora' ? [l.adapter('default').config.rank, l.adapter('default').scale] : null))).toEqual([[2, 0.5], [3, 4 / 3], null]);
    model.layers.forEach((l, i) => {
      if (l.adapterKind('default') === 'lora') setValues(l.adapter('default').B, 10 + i);
    });
    setValues(model.layers[2].fullAdapter('default').weight, 20);
    const x = tf.randomNormal([4, 5], 0, 1, 'float32', 3);
    const y = model.predict(x);
    expect(maxAbsDiff(toMatrix(y), forwardJs(model, toMatrix(x)))).toBeLessThan(1e-5);
    // A second adapter on fc2 only: the other layers run as the base while it is active.
    model.addAdapter('only_fc2', { rank: 1, targetModules: 'fc2', seed: 2 });
    setValues(model.layers[1].adapter('only_fc2').B, 30);
    model.setActiveAdapter('only_fc2');
    expect(model.layers.map((l) => l.activeAdapter)).toEqual([null, 'only_fc2', null]);
    const y2 = model.predict(x);
    expect(maxAbsDiff(toMatrix(y2), forwardJs(model, toMatrix(x)))).toBeLessThan(1e-5);
    expect(model.adapterParameterCount('only_fc2')).toBe(7 + 6);
    expect(model.adapterParameterCount('default')).toBe(2 * (5 + 7) + 3 * (7 + 6) + 6 * 3 + 3);
    expect(model.parameterCounts()).toMatchObject({ lora: 2 * 12 + 3 * 13 + 13, saved: 21, trainable: 13 });
    tf.dispose([x, y, y2]);
    model.dispose();
  });

  it('refuses a spec that selects nothing or initial weights that do not fit, before anything changes', () => {
    const model = LoRAMLP.fromBase(base, { rank: 2 });
    const before = tf.memory().numTensors;
    expect(() => model.addAdapter('x', { targetModules: ['q_proj'] })).toThrow('LoRAMLP: targetModules = ["q_proj"] match no layer; the layers are ["fc1", "fc2", "fc3"]');
    expect(() => model.addAdapter('x', { targetModules: 'fc[', rank: 1 })).toThrow(/targetModules = "fc\[" is invalid/);
    expect(() => model.addAdapter('x', { targetModules: ['fc1'] }, [null, null, null])).not.toThrow(); // null entries: fresh factors
    model.deleteAdapter('x');
    const A = tf.zeros<tf.Rank.R2>([5, 2]);
    const B = tf.zeros<tf.Rank.R2>([2, 7]);
    expect(() => model.addAdapter('y', { targetModules: ['fc1'], rank: 2 }, [null, { A, B }, null])).toThrow('LoRAMLP: initial[1] = { A: a tensor of shape [5, 2], B: a tensor of shape [2, 7] } is invalid; expected null (the adapter does not cover fc2)');
    expect(model.adapterNames()).toEqual(['default']);
    tf.dispose([A, B]);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  describe.each(['fused', 'autodiff'] as const)('training on the %s gradient path', (path) => {
    let task: LowRankShiftTask;
    beforeAll(() => {
      task = lowRankShiftTask({ dims: DIMS, shiftRank: 1, samples: 96, seed: 5 });
    });
    afterAll(() => task.dispose());

    it('trains exactly the active adapter: LoRA factors of covered layers and the full copy, nothing else', async () => {
      const model = LoRAMLP.fromBase(task.base, { rank: 2, targetModules: ['fc2'], modulesToSave: ['fc3'], seed: 1 });
      model.addAdapter('other', { rank: 1, seed: 2 });
      model.gradientPath = path;
      const l = model.layers;
      expect(model.trainableVariables()).toEqual([l[1].adapter('default').A, l[1].adapter('default').B, l[2].fullAdapter('default').weight, l[2].fullAdapter('default').bias]);
      const frozen = l.map((layer) => [Array.from(layer.weight.dataSync()), Array.from(layer.bias!.dataSync())]);
      const other = l.map((layer) => Array.from(layer.adapter('other').B.dataSync()));
      const fullBefore = Array.from(l[2].fullAdapter('default').weight.dataSync());
      const { losses } = await train(model, { x: task.x, y: task.yShifted, steps: 25, learningRate: 1e-2, seed: 1 });
      expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
      l.forEach((layer, i) => {
        expect(Array.from(layer.weight.dataSync()), `base W ${i}`).toEqual(frozen[i][0]);
        expect(Array.from(layer.bias!.dataSync()), `base b ${i}`).toEqual(frozen[i][1]);
        expect(Array.from(layer.adapter('other').B.dataSync()), `other ${i}`).toEqual(other[i]);
      });
      expect(Array.from(l[2].fullAdapter('default').weight.dataSync())).not.toEqual(fullBefore);
      expect(Array.from(l[1].adapter('default').B.dataSync()).some((v) => v !== 0)).toBe(true);
      model.dispose();
    });
  });

  it('merging a full copy swaps it in and unmerging restores the base bit for bit; mixed batches mix both kinds', () => {
    const model = LoRAMLP.fromBase(base, { rank: 2, targetModules: ['fc1'], modulesToSave: ['fc3'], seed: 3, adapterName: 'a' });
    model.addAdapter('b', { rank: 3, targetModules: ['fc2', 'fc3'], seed: 4 });
    model.addAdapter('c', { rank: 1, targetModules: ['fc2'], modulesToSave: ['fc3'], seed: 5 }); // a second full copy of fc3
    setValues(model.layers[2].fullAdapter('c').weight, 45);
    setValues(model.layers[0].adapter('a').B, 40);
    setValues(model.layers[2].fullAdapter('a').weight, 41);
    setValues(model.layers[2].fullAdapter('a').bias!, 42);
    setValues(model.layers[1].adapter('b').B, 43);
    setValues(model.layers[2].adapter('b').B, 44);
    const x = tf.randomNormal([8, 5], 0, 1, 'float32', 8);
    const wBefore = model.layers.map((l) => Array.from(l.weight.dataSync()));
    const bBefore = model.layers.map((l) => Array.from(l.bias!.dataSync()));
    model.setActiveAdapter('a');
    const unmerged = model.predict(x);
    model.merge();
    const merged = model.predict(x);
    expect(maxAbsDiff(merged, unmerged)).toBeLessThan(1e-5);
    expect(Array.from(model.layers[2].weight.dataSync())).toEqual(Array.from(model.layers[2].fullAdapter('a').weight.dataSync()));
    model.unmerge();
    expect(model.layers.map((l) => Array.from(l.weight.dataSync()))[2]).toEqual(wBefore[2]); // exact: the base was kept aside
    expect(model.layers.map((l) => Array.from(l.bias!.dataSync()))).toEqual(bBefore);
    const rows = ['b', 'a', null, 'c', 'a', 'b', 'c', null];
    const mixed = model.predict(x, { adapters: rows });
    rows.forEach((n, i) => {
      model.setActiveAdapter(n);
      const row = x.slice([i, 0], [1, 5]);
      const alone = model.predict(row);
      const got = mixed.slice([i, 0], [1, 3]);
      expect(maxAbsDiff(got, alone), `row ${i} (${n})`).toBeLessThan(1e-5);
      tf.dispose([row, alone, got]);
    });
    expect(() => combineAdapters(model, [{ name: 'a', weight: 1 }], 'c')).toThrow(/trains fc3 in full, which has no low-rank form to combine/);
    tf.dispose([x, unmerged, merged, mixed]);
    model.dispose();
  });

  it('deleting an adapter frees its full copies too, and a layer whose active copy is gone runs as the base', () => {
    const model = LoRAMLP.fromBase(base, { rank: 2, targetModules: ['fc1'], modulesToSave: ['fc3'], seed: 7 });
    setValues(model.layers[2].fullAdapter('default').weight, 60);
    const x = tf.randomNormal([3, 5], 0, 1, 'float32', 9);
    const plain = base.predict(x);
    const before = tf.memory().numTensors;
    model.deleteAdapter('default');
    expect(tf.memory().numTensors).toBe(before - 4); // A and B of fc1, the weight and bias of fc3's copy
    expect(model.layers.map((l) => [l.activeAdapter, l.adapterNames()])).toEqual([[null, []], [null, []], [null, []]]);
    expect(model.trainableVariables()).toEqual([]);
    const y = model.predict(x);
    expect(maxAbsDiff(toMatrix(y), toMatrix(plain))).toBe(0);
    // The same on one layer: the active full copy deleted, the layer is its base again.
    const layer = model.layers[1];
    layer.addFullAdapter('f');
    expect(layer.activeAdapter).toBe('f');
    layer.deleteAdapter('f');
    expect(layer.activeAdapter).toBe(null);
    expect(layer.trainableVariables()).toEqual([]);
    tf.dispose([x, plain, y]);
    model.dispose();
  });

  it('refuses a fresh full copy while another adapter is merged (it would copy the merged weight), and bad options, changing nothing', () => {
    const model = LoRAMLP.fromBase(base, { rank: 2, seed: 8, adapterName: 'a' });
    model.layers.forEach((l, i) => setValues(l.adapter('a').B, 70 + i));
    model.merge();
    const before = tf.memory().numTensors;
    expect(() => model.addAdapter('b', { targetModules: ['fc1'], modulesToSave: ['fc2'] })).toThrow('LoRALinear fc2: adapter "a" is merged; call unmerge() before adding a full copy of the layer (it copies the unmerged base)');
    expect(model.adapterNames()).toEqual(['a']);
    expect(tf.memory().numTensors).toBe(before);
    model.unmerge();
    const unmerged = tf.memory().numTensors;
    expect(unmerged).toBe(before - 3); // while merged, each layer keeps its unmerged weight (for an exact unmerge)
    expect(() => model.addAdapter('b', null as never)).toThrow('LoRAMLP: config = null is invalid; expected an options object');
    expect(() => new LoRAMLP([3, 4], { adapterName: '' })).toThrow('LoRAMLP: adapterName = "" is invalid; expected a non-empty adapter name');
    expect(() => LoRAMLP.fromBase(base, { adapterName: 5 as never })).toThrow('LoRAMLP: adapterName = 5 is invalid; expected a non-empty adapter name');
    expect(tf.memory().numTensors).toBe(unmerged);
    model.dispose();
  });

  it('combines sources that cover different layers layer by layer, exactly (cat)', () => {
    const model = LoRAMLP.fromBase(base, { rank: 2, alpha: 3, targetModules: ['fc1', 'fc2'], adapterName: 'p', seed: 5 });
    model.addAdapter('q', { rank: 1, alpha: 2, targetModules: ['fc2', 'fc3'], seed: 6 });
    model.layers.forEach((l, i) => {
      for (const n of ['p', 'q']) if (l.adapterKind(n) === 'lora') setValues(l.adapter(n).B, 50 + i * 2 + (n === 'p' ? 0 : 1));
    });
    const r = combineAdapters(model, [{ name: 'p', weight: 0.5 }, { name: 'q', weight: 2 }], 'mix');
    expect(r.ranks).toEqual([2, 3, 1]);
    expect(model.adapterLayers('mix')).toEqual(['lora', 'lora', 'lora']);
    model.layers.forEach((l, i) => {
      const delta = (n: string): Matrix | null => {
        if (l.adapterKind(n) !== 'lora') return null;
        const t = tf.tidy(() => tf.mul(tf.matMul(l.adapter(n).A, l.adapter(n).B), l.adapter(n).scale));
        const m = toMatrix(t);
        t.dispose();
        return m;
      };
      const [p, q, mix] = [delta('p'), delta('q'), delta('mix') as Matrix];
      const want = mix.map((row, a) => row.map((_, b) => 0.5 * (p?.[a][b] ?? 0) + 2 * (q?.[a][b] ?? 0)));
      expect(maxAbsDiff(mix, want), `layer ${i}`).toBeLessThan(1e-5);
    });
    model.dispose();
  });
});
