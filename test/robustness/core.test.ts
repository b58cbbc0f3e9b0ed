import * as tf from '@tensorflow/tfjs-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  LoRALinear,
  LoRAMLP,
  MLP,
  NonFiniteLossError,
  combineAdapters,
  evaluate,
  groupRows,
  maxAbsDiff,
  parameterCounts,
  parameterEfficiencyTable,
  timeIt,
  initBackend,
  lowRankShiftTask,
  memoryLimits,
  randomRegression,
  setMemoryLimit,
  train,
} from '../../src/index.js';
import {
  accuracyVsParametersFigure,
  barFigure,
  classCounts,
  heatmapFigure,
  lossCurvesFigure,
  plotlyBundle,
  rankSweepFigure,
  showPlot,
} from '../../src/notebook/index.js';
import { trainLike } from '../helpers.js';

/**
 * A careless or hostile caller: every call here must fail with the library's message
 * (argument, value, expectation), before anything changes, leaving no tensor behind and
 * the backend usable. The numbers a failed call must not touch are compared bit for bit.
 */

const DIMS = [4, 6, 3];

/** Every value the model computes on a fixed input, and every variable it holds. */
function snapshot(model: LoRAMLP): { out: Float32Array; vars: Float32Array[]; names: string[]; active: string | null; perLayer: string[][] } {
  const x = tf.tensor2d(Array.from({ length: 5 * DIMS[0] }, (_, i) => Math.sin(i + 1)), [5, DIMS[0]]);
  const y = model.predict(x);
  const out = y.dataSync().slice() as Float32Array;
  tf.dispose([x, y]);
  const vars = model.layers.flatMap((l) => [l.weight, ...(l.bias ? [l.bias] : []), ...l.adapterNames().flatMap((n) => (l.adapterKind(n) === 'lora' ? [l.adapter(n).A, l.adapter(n).B] : [l.fullAdapter(n).weight]))]).map((t) => t.dataSync().slice() as Float32Array);
  return { out, vars, names: model.adapterNames(), active: model.activeAdapter, perLayer: model.layers.map((l) => l.adapterNames()) };
}

/** Assert `fn` throws an error containing `message`, changes nothing in `model`, and leaks nothing. */
async function refuses(model: LoRAMLP | null, fn: () => unknown, message: string | RegExp): Promise<void> {
  const before = model === null ? null : snapshot(model);
  const tensors = tf.memory().numTensors;
  let error: unknown = null;
  try {
    await fn();
  } catch (err) {
    error = err;
  }
  expect(error, 'the call must throw').toBeInstanceOf(Error);
  if (typeof message === 'string') expect((error as Error).message).toContain(message);
  else expect((error as Error).message).toMatch(message);
  expect(tf.memory().numTensors, 'no tensor left behind').toBe(tensors);
  if (model !== null) expect(snapshot(model)).toEqual(before);
  // The backend still runs ops (a wasm abort would poison every later op).
  const probe = tf.tidy(() => tf.add(tf.scalar(1), tf.scalar(2)));
  expect(probe.dataSync()[0]).toBe(3);
  probe.dispose();
}

function weightsOf(model: LoRAMLP): Float32Array[] {
  return model.trainableVariables().map((v) => v.dataSync().slice() as Float32Array);
}

describe('robustness: the core API under careless and hostile input', () => {
  let tensorsAtStart = 0;
  let model: LoRAMLP;
  let x: tf.Tensor2D;
  let y: tf.Tensor2D;

  beforeAll(async () => {
    await initBackend('wasm');
    tensorsAtStart = tf.memory().numTensors;
    model = new LoRAMLP(DIMS, { rank: 2, seed: 3, baseInit: 'kaiming' });
    trainLike(model, 'default', 1);
    x = tf.randomNormal([64, DIMS[0]], 0, 1, 'float32', 5) as tf.Tensor2D;
    y = tf.randomNormal([64, DIMS[2]], 0, 1, 'float32', 6) as tf.Tensor2D;
  });
  afterEach(() => setMemoryLimit(null));
  afterAll(() => {
    model.dispose();
    tf.dispose([x, y]);
    expect(tf.memory().numTensors).toBe(tensorsAtStart);
  });

  describe('sizes that cannot fit are refused before anything is allocated, and the backend survives', () => {
    it('names the tensor, the bytes it needs and the limit (wasm heap, typed-array length)', async () => {
      expect(memoryLimits().label).toContain('wasm');
      await refuses(null, () => new LoRALinear({ inFeatures: 1e9, outFeatures: 1, rank: 1 }), /LoRALinear linear \(1000000000 → 1\): needs 18\.6 GiB of tensors \(base weight \[1000000000, 1\] 3\.7 GiB, XNNPACK's packed copy of it 3\.7 GiB, .*more than 3\.8 GiB \(the wasm backend's heap/);
      await refuses(null, () => new MLP([4, 4, 1e9]), 'MLP [4, 4, 1000000000]: fc2 weight [4, 1000000000] would need 4,000,000,000 values (14.9 GiB), but one tensor may take at most 3.8 GiB');
      await refuses(null, () => new LoRAMLP([4, 4, 1e9]), 'LoRAMLP [4, 4, 1000000000]: fc2 weight [4, 1000000000] would need 4,000,000,000 values');
      await refuses(null, () => new LoRAMLP([4, 4], { rank: 1e9 }), 'fc1 A [4, 1000000000] would need 4,000,000,000 values');
      await refuses(null, () => new LoRAMLP([4, 2 ** 31]), 'a typed array holds at most 4,294,967,296 values');
      await refuses(null, () => randomRegression({ samples: 1e9, inputDim: 4, outputDim: 1 }), 'randomRegression: x [1000000000, 4] would need');
      await refuses(null, () => lowRankShiftTask({ dims: [4, 25_000, 25_000, 4], shiftRank: 1, samples: 8 }), /lowRankShiftTask: needs 4\.7 GiB of tensors \(base fc1 weight \[4, 25000\] 390\.6 KiB, .*base fc2 weight \[25000, 25000\] 2\.3 GiB/);
      await refuses(model, () => model.addAdapter('huge', { rank: 5e8 }), 'LoRAMLP: fc1 A [4, 500000000] would need 2,000,000,000 values (7.5 GiB)');
    });

    it('a batch whose activations cannot fit is refused by the forward pass', async () => {
      const wide = new LoRAMLP([2, 20_000], { rank: 1 });
      const big = tf.zeros([100_000, 2]);
      await refuses(null, () => wide.predict(big), 'forward pass: the output [100000, 20000] would need 2,000,000,000 values (7.5 GiB)');
      tf.dispose(big);
      wide.dispose();
    });

    it('setMemoryLimit caps every backend, counting what is already allocated; null removes the cap', async () => {
      // (The model is compared after the limit is lifted: under it, even a forward pass is refused.)
      const before = snapshot(model);
      const inUse = tf.memory().numBytes;
      setMemoryLimit(inUse + 1000);
      await refuses(null, () => new LoRAMLP([16, 16]), /on top of the .* in use, more than .* \(the limit set with setMemoryLimit/);
      await refuses(null, () => model.addAdapter('over', { rank: 200 }), 'the limit set with setMemoryLimit');
      setMemoryLimit(tf.memory().numBytes + 150); // fc1's merged weight is 96 bytes, and XNNPACK packs a copy
      await refuses(null, () => model.merge(), "LoRALinear fc1.merge: needs 192 bytes of tensors (the merged weight 96 bytes, XNNPACK's packed copy of it 96 bytes)");
      expect(model.merged).toBe(false);
      setMemoryLimit(null);
      expect(snapshot(model)).toEqual(before);
      const fits = new LoRAMLP([16, 16]);
      fits.dispose();
      expect(() => setMemoryLimit(-1)).toThrow('setMemoryLimit: bytes = -1 is invalid; expected a positive integer number of bytes, or null for no limit');
      expect(() => setMemoryLimit(NaN)).toThrow('setMemoryLimit: bytes = NaN is invalid');
    });
  });

  describe('no silently wrong results', () => {
    it('evaluate needs one target row per input row (no broadcasting) and live tensors', async () => {
      const y1 = tf.zeros([1, DIMS[2]]);
      await refuses(model, () => evaluate(model, x, y1), 'evaluate: y = a tensor of shape [1, 3] is invalid; expected a tensor of shape [64, 3] (one target row per row of x)');
      const x3 = tf.zeros([2, 4, 4]);
      const y2 = tf.zeros([2, 3]);
      await refuses(model, () => evaluate(model, x3, y2), 'evaluate: x = a tensor of shape [2, 4, 4] is invalid; expected a tensor of shape [n, 4]');
      tf.dispose([y1, x3, y2]);
    });

    it('a mixed batch refuses an undefined adapter entry instead of using the active adapter', async () => {
      const rows = tf.zeros([3, DIMS[0]]);
      await refuses(model, () => model.predict(rows, { adapters: [undefined as never, null, null] }), 'LoRAMLP.predict: adapters[0] = undefined is invalid; expected an adapter name from ["default"] or null');
      await refuses(model, () => model.predict(rows, { adapters: ['default', null] }), 'LoRAMLP.predict: adapters = ["default", null] is invalid; expected an array of 3 adapter names or nulls');
      rows.dispose();
    });
  });

  describe('merging never destroys the base', () => {
    it('refuses an adapter holding NaN (as PEFT safe_merge), on any layer, leaving every layer unmerged', async () => {
      const m = new LoRAMLP(DIMS, { rank: 2, seed: 4 });
      trainLike(m, 'default', 2);
      const B = m.layers[1].adapter().B;
      const poisoned = tf.tidy(() => tf.where(tf.equal(tf.range(0, B.size).reshape(B.shape), 3), tf.fill(B.shape, NaN), B));
      B.assign(poisoned as tf.Tensor2D);
      poisoned.dispose();
      await refuses(m, () => m.merge(), 'LoRALinear fc2: merging adapter "default" would put NaN or ±Infinity into the weight');
      expect(m.layers.map((l) => l.merged)).toEqual([false, false]);
      m.dispose();
    });

    it('refuses a delta that overflows float32 (finite factors, huge scale)', async () => {
      const m = new LoRAMLP(DIMS, { rank: 1, alpha: 1e30, seed: 4 });
      trainLike(m, 'default', 2);
      const big = tf.tidy(() => tf.mul(m.layers[0].adapter().B, 1e20));
      m.layers[0].adapter().B.assign(big as tf.Tensor2D);
      big.dispose();
      await refuses(m, () => m.merge(), 'LoRALinear fc1: merging adapter "default" would put NaN or ±Infinity into the weight');
      m.dispose();
    });

    it('unmerge restores the base bit for bit, even at alpha = 1e6 (no W + ΔW − ΔW rounding), for LoRA and full copies', () => {
      const m = new LoRAMLP(DIMS, { rank: 2, alpha: 1e6, seed: 5, baseInit: 'kaiming' });
      trainLike(m, 'default', 3);
      m.addAdapter('full', { targetModules: ['fc1'], modulesToSave: ['fc2'] });
      trainLike(m, 'full', 4);
      const original = m.layers.map((l) => [l.weight.dataSync().slice(), l.bias?.dataSync().slice()]);
      const tensors = tf.memory().numTensors;
      for (const name of ['default', 'full']) {
        m.setActiveAdapter(name);
        m.merge();
        // The merge did change the weight (by a lot at this alpha).
        expect(Array.from(m.layers[0].weight.dataSync())).not.toEqual(Array.from(original[0][0] as Float32Array));
        m.unmerge();
        m.layers.forEach((l, i) => {
          expect(l.weight.dataSync()).toEqual(original[i][0]);
          expect(l.bias?.dataSync()).toEqual(original[i][1]);
        });
        expect(tf.memory().numTensors).toBe(tensors);
      }
      m.dispose();
    });
  });

  describe('training stops at the first non-finite step without applying it', () => {
    it('refuses data holding NaN or Infinity before the first step, naming the row', async () => {
      const bad = tf.tidy(() => tf.concat([x.slice([0, 0], [10, 4]), tf.tensor2d([[0, NaN, 0, 0]]), x.slice([11, 0], [53, 4])])) as tf.Tensor2D;
      await refuses(model, () => train(model, { x: bad, y, steps: 3 }), 'train: x = a tensor of shape [64, 4] is invalid; expected finite values (row 10 holds NaN or ±Infinity)');
      const badY = tf.tidy(() => tf.concat([y.slice([0, 0], [63, 3]), tf.tensor2d([[Infinity, 0, 0]])])) as tf.Tensor2D;
      await refuses(model, () => train(model, { x, y: badY, steps: 3 }), 'train: y = a tensor of shape [64, 3] is invalid; expected finite values (row 63 holds NaN or ±Infinity)');
      tf.dispose([bad, badY]);
    });

    it('learningRate 1e9 diverges: NonFiniteLossError names the step, weights are those after the step before', async () => {
      const m = new LoRAMLP([4, 32, 32, 3], { rank: 4, seed: 9 });
      trainLike(m, 'default', 5);
      const data = randomRegression({ samples: 64, inputDim: 4, outputDim: 3, seed: 2 });
      await train(m, { x: data.x, y: data.y, steps: 1 }); // builds the cached Wᵀ the fused backward pass keeps
      const start = weightsOf(m);
      const afterStep: Float32Array[][] = [];
      const tensors = tf.memory().numTensors;
      let error: unknown = null;
      try {
        await train(m, { x: data.x, y: data.y, steps: 50, learningRate: 1e9, onStep: () => afterStep.push(weightsOf(m)) });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(NonFiniteLossError);
      const e = error as NonFiniteLossError;
      expect(e.step).toBe(afterStep.length);
      expect(e.step).toBeGreaterThan(0); // it did train (and blow up) first
      expect(e.message).toContain(`train: the loss of step ${e.step} is`);
      expect(e.message).toContain(`the weights are those after step ${e.step - 1}`);
      expect(weightsOf(m)).toEqual(afterStep[afterStep.length - 1]);
      expect(weightsOf(m)).not.toEqual(start);
      expect(weightsOf(m).every((w) => w.every(Number.isFinite))).toBe(true);
      expect(tf.memory().numTensors).toBe(tensors);
      // The lock was released: the model accepts state changes again.
      m.setActiveAdapter(null);
      m.setActiveAdapter('default');
      m.dispose();
      tf.dispose([data.x, data.y]);
    });
  });

  describe('every option is checked before the first step', () => {
    it('a bad onStep, an unknown option, a disposed tensor or a non-model change nothing', async () => {
      await refuses(model, () => train(model, { x, y, steps: 2, onStep: 5 as never }), 'train: onStep = 5 is invalid; expected a function (step, loss) => void');
      await refuses(model, () => train(model, { x, y, steps: 2, learningrate: 0.1 } as never), 'train: options = ["learningrate"] is invalid; expected only the fields x, y, steps');
      await refuses(model, () => train(model, { x, y, steps: 2, schedule: 'linear' as never }), 'train: schedule = "linear" is invalid');
      await refuses(model, () => train(null as never, { x, y, steps: 1 }), 'train: model = null is invalid');
      const gone = tf.zeros([8, 4]) as tf.Tensor2D;
      gone.dispose();
      await refuses(model, () => train(model, { x: gone, y, steps: 1 }), 'train: x = a disposed tensor of shape [8, 4] is invalid; expected a live float32 tensor of shape [n, 4]');
      const ints = tf.zeros([64, 4], 'int32') as tf.Tensor2D;
      await refuses(model, () => train(model, { x: ints, y, steps: 1 }), 'train: x = an int32 tensor of shape [64, 4] is invalid');
      ints.dispose();
    });

    it('addAdapter / replaceAdapter with a bad factor on the last layer leave every layer as it was', async () => {
      const A0 = tf.zeros([4, 2]) as tf.Tensor2D;
      const B0 = tf.zeros([2, 6]) as tf.Tensor2D;
      const A1 = tf.zeros([6, 2]) as tf.Tensor2D;
      const B1 = tf.zeros([2, 3]) as tf.Tensor2D;
      B1.dispose();
      await refuses(model, () => model.addAdapter('z', { rank: 2 }, [{ A: A0, B: B0 }, { A: A1, B: B1 }]), 'LoRALinear fc2: B = a disposed tensor of shape [2, 3] is invalid; expected a live float32 tensor of shape [2, 3]');
      await refuses(model, () => model.replaceAdapter('default', { rank: 2 }, [{ A: A0, B: B0 }, { A: A1, B: B1 }]), 'LoRALinear fc2: B = a disposed tensor');
      const int = tf.zeros([2, 3], 'int32') as tf.Tensor2D;
      await refuses(model, () => model.addAdapter('z', { rank: 2 }, [{ A: A0, B: B0 }, { A: A1, B: int }]), 'LoRALinear fc2: B = an int32 tensor of shape [2, 3] is invalid');
      tf.dispose([A0, B0, A1, int]);
    });

    it('a layer switched off by hand is brought back in line by the model before merging, not left half merged', () => {
      const m = new LoRAMLP(DIMS, { rank: 2, seed: 6 });
      trainLike(m, 'default', 6);
      m.layers[0].setActiveAdapter(null);
      m.merge();
      expect(m.layers.map((l) => l.mergedAdapter)).toEqual(['default', 'default']);
      m.unmerge();
      expect(m.layers.map((l) => l.merged)).toEqual([false, false]);
      m.dispose();
    });
  });

  describe('no state changes while train() runs, and no second concurrent train()', () => {
    it('merge, switch, add, delete, replace and dispose from onStep are refused, on the model and on its layers', async () => {
      const m = new LoRAMLP(DIMS, { rank: 2, seed: 7 });
      m.addAdapter('other', { rank: 1 });
      await train(m, { x, y, steps: 1 }); // builds the cached Wᵀ the fused backward pass keeps
      const refused: string[] = [];
      const attempt = (f: () => unknown) => {
        try {
          f();
          refused.push('ALLOWED');
        } catch (err) {
          refused.push((err as Error).message);
        }
      };
      const tensors = tf.memory().numTensors;
      const result = await train(m, {
        x,
        y,
        steps: 2,
        onStep: (step) => {
          if (step !== 0) return;
          attempt(() => m.merge());
          attempt(() => m.setActiveAdapter('other'));
          attempt(() => m.deleteAdapter('other'));
          attempt(() => m.addAdapter('new'));
          attempt(() => m.replaceAdapter('other', { rank: 1 }));
          attempt(() => m.dispose());
          attempt(() => m.layers[0].merge());
          attempt(() => m.layers[1].setActiveAdapter(null));
          attempt(() => m.layers[1].dispose());
        },
      });
      expect(result.losses).toHaveLength(2);
      expect(refused).toHaveLength(9);
      for (const msg of refused) expect(msg).toMatch(/cannot .* while train\(\) is updating this model; call it after train\(\) resolves/);
      expect(refused[0]).toBe('LoRAMLP: cannot merge while train() is updating this model; call it after train() resolves');
      expect(m.adapterNames()).toEqual(['default', 'other']);
      expect(m.activeAdapter).toBe('default');
      expect(tf.memory().numTensors).toBe(tensors);
      // Released afterwards.
      m.merge();
      m.unmerge();
      m.dispose();
    });

    it('a second train() on the same model while the first runs is refused; the first completes', async () => {
      const m = new LoRAMLP(DIMS, { rank: 2, seed: 8 });
      await train(m, { x, y, steps: 1 });
      const tensors = tf.memory().numTensors;
      const first = train(m, { x, y, steps: 3 });
      await expect(train(m, { x, y, steps: 3 })).rejects.toThrow('train: this model is already being trained by another train() call; await it before starting another');
      expect((await first).losses).toHaveLength(3);
      expect(tf.memory().numTensors).toBe(tensors);
      m.dispose();
    });
  });

  describe('disposed, wrongly typed and null inputs get the library message', () => {
    it('tensors: disposed, int32 and string weights, inputs and factors', async () => {
      const w = tf.zeros([2, 2]) as tf.Tensor2D;
      w.dispose();
      await refuses(null, () => new LoRALinear({ inFeatures: 2, outFeatures: 2, weight: w }), 'LoRALinear: weight = a disposed tensor of shape [2, 2] is invalid; expected a live float32 tensor of shape [2, 2]');
      const wi = tf.zeros([2, 2], 'int32') as tf.Tensor2D;
      await refuses(null, () => new LoRALinear({ inFeatures: 2, outFeatures: 2, weight: wi }), 'LoRALinear: weight = an int32 tensor of shape [2, 2] is invalid');
      const ws = tf.tensor2d([['a', 'b'], ['c', 'd']] as never, [2, 2], 'string') as tf.Tensor2D;
      await refuses(null, () => new LoRAMLP([2, 2], { weights: [{ weight: ws }] }), 'LoRAMLP: weights[0].weight = a string tensor of shape [2, 2] is invalid');
      await refuses(null, () => MLP.fromWeights([{ W: w }]), 'MLP.fromWeights: layers[0].W');
      tf.dispose([wi, ws]);
      const gone = tf.zeros([3, 4]);
      gone.dispose();
      await refuses(model, () => model.predict(gone), 'LoRAMLP: x = a disposed tensor of shape [3, 4] is invalid; expected a live tensor of shape [..., 4]');
      await refuses(model, () => model.apply(gone), 'LoRAMLP: x = a disposed tensor');
      await refuses(model, () => model.layers[0].apply(gone), 'LoRALinear: x = a disposed tensor');
      await refuses(model, () => evaluate(model, gone, y), 'evaluate: x = a disposed tensor');
    });

    it('null and wrongly typed options, names and hyper-parameters', async () => {
      const x2 = tf.zeros([2, 4]);
      await refuses(model, () => model.apply(x2, null as never), 'LoRAMLP.apply: options = null is invalid; expected an options object { training? }');
      await refuses(model, () => model.layers[0].apply(x2, null as never), 'LoRALinear fc1.apply: options = null is invalid');
      await refuses(model, () => model.predict(x2, null as never), 'LoRAMLP.predict: options = null is invalid');
      x2.dispose();
      await refuses(null, () => new LoRAMLP(DIMS, null as never), 'LoRAMLP: options = null is invalid; expected an options object');
      await refuses(null, () => new LoRAMLP(DIMS, { rank: null as never }), 'LoRAMLP: rank = null is invalid; expected a value (leave the field out for its default)');
      await refuses(null, () => new LoRAMLP(DIMS, { alpha: null as never }), 'alpha = null is invalid');
      await refuses(model, () => model.addAdapter('n', null as never), 'LoRAMLP: config = null is invalid; expected an options object');
      await refuses(model, () => combineAdapters(model, [{ name: 'default', weight: 1 }], 'c', null as never), 'combineAdapters: options = null is invalid');
      for (const name of ['', 42, {}, ' padded', 'tab\there', 'x'.repeat(257)]) {
        await refuses(model, () => model.addAdapter(name as never), 'LoRAMLP: name = ');
        await refuses(null, () => new LoRAMLP(DIMS, { adapterName: name as never }), 'LoRAMLP: adapterName = ');
        await refuses(null, () => new LoRALinear({ inFeatures: 2, outFeatures: 2, adapterName: name as never }), 'LoRALinear: adapterName = ');
      }
      await refuses(null, () => new LoRAMLP(DIMS, { adapterName: 'x'.repeat(300) }), /adapterName = "x{80}…" \(300 characters\) is invalid/);
    });

    it('gradientPath must be one of auto, fused, autodiff on every class', async () => {
      const mlp = new MLP(DIMS);
      await refuses(model, () => ((model as { gradientPath: string }).gradientPath = 'bogus'), 'LoRAMLP: gradientPath = "bogus" is invalid; expected one of "auto", "fused", "autodiff"');
      await refuses(model, () => ((model.layers[1] as { gradientPath: string }).gradientPath = 'bogus'), 'LoRALinear fc2: gradientPath = "bogus" is invalid');
      expect(() => ((mlp as { gradientPath: string }).gradientPath = 'bogus')).toThrow('MLP: gradientPath = "bogus" is invalid');
      expect(mlp.gradientPath).toBe('auto');
      expect(model.layers.map((l) => l.gradientPath)).toEqual(['auto', 'auto']);
      mlp.dispose();
    });

    it('an alpha whose scale is not a finite, non-zero float32 is refused (1e308 would make every output Infinity)', async () => {
      await refuses(null, () => new LoRALinear({ inFeatures: 2, outFeatures: 2, rank: 1, alpha: 1e308 }), 'LoRALinear: scale alpha / rank (1e+308 / 1) = 1e+308 is invalid; expected a finite, non-zero float32 (about 1.2e-38 to 3.4e38); change alpha or rank');
      await refuses(null, () => new LoRALinear({ inFeatures: 2, outFeatures: 2, rank: 1, alpha: 1e-300 }), 'LoRALinear: scale alpha / rank (1e-300 / 1) = 1e-300 is invalid');
      await refuses(model, () => model.addAdapter('a', { rank: 2, alpha: 1e39 }), 'scale alpha / rank (1e+39 / 2) = 5e+38 is invalid');
    });

    it('huge and cyclic arrays give a short message, not a 500 KB one or a stack overflow', async () => {
      let long: Error | null = null;
      try {
        new MLP(Array(100_000).fill(0));
      } catch (err) {
        long = err as Error;
      }
      expect(long?.message).toContain('MLP: dims = [0, 0, 0, 0, 0, 0, 0, 0, … (100000 entries)] is invalid; expected an array of 2 to 10,000 positive integers');
      expect(long?.message.length).toBeLessThan(300);
      const cyclic: unknown[] = [1];
      cyclic.push(cyclic);
      await refuses(null, () => new MLP(cyclic as never), 'MLP: dims = [1, [circular]] is invalid');
      await refuses(null, () => new LoRAMLP([4, 1.5, 2]), 'LoRAMLP: dims = [4, 1.5, 2] is invalid');
    });
  });

  describe('combineAdapters refuses non-finite results', () => {
    it('weights that overflow float32, or a NaN source, add nothing', async () => {
      const m = new LoRAMLP(DIMS, { rank: 2, seed: 10 });
      trainLike(m, 'default', 7);
      m.addAdapter('b', { rank: 1 });
      trainLike(m, 'b', 8);
      await refuses(m, () => combineAdapters(m, [{ name: 'default', weight: 1e308 }, { name: 'b', weight: 1 }], 'c'), 'combineAdapters: the combination of "default" × 1e+308, "b" × 1 is not finite on layer fc1');
      await refuses(m, () => combineAdapters(m, [{ name: 'default', weight: 1e308 }], 'c', { method: 'svd', rank: 1 }), 'is not finite on layer fc1');
      const nan = tf.fill(m.layers[1].adapter('b').B.shape, NaN);
      m.layers[1].adapter('b').B.assign(nan as tf.Tensor2D);
      nan.dispose();
      await refuses(m, () => combineAdapters(m, [{ name: 'default', weight: 1 }, { name: 'b', weight: 1 }], 'c'), 'is not finite on layer fc2');
      await refuses(m, () => combineAdapters(m, [{ name: 'b', weight: 1 }], 'c', { method: 'svd', rank: 1 }), 'is not finite on layer fc2');
      expect(m.adapterNames()).toEqual(['default', 'b']);
      m.dispose();
    });
  });

  describe('helpers refuse what would give a meaningless number', () => {
    it('figure builders refuse misaligned or missing data instead of drawing a shifted or empty chart', async () => {
      await refuses(null, () => lossCurvesFigure([{ name: 'a', x: [1, 2, 3], y: [1, 2] }], 't'), 'lossCurvesFigure: series[0].y = [1, 2] is invalid; expected an array of 3 entries');
      await refuses(null, () => lossCurvesFigure(null as never, 't'), 'lossCurvesFigure: series = null is invalid; expected an array');
      await refuses(null, () => barFigure(['a', 'b'], [{ name: 's', values: [1] }], 't', 'y'), 'barFigure: series[0].values = [1] is invalid; expected an array of 2 entries');
      await refuses(null, () => heatmapFigure([[1, 2]], ['r1', 'r2'], ['c1', 'c2'], 't', 'c'), 'heatmapFigure: values = [[1, 2]] is invalid; expected an array of 2 entries');
      await refuses(null, () => rankSweepFigure([{ name: 's', ranks: [1, 2], losses: [0.1, '0.2' as never] }], null, 't'), 'rankSweepFigure: series[0].losses[1] = "0.2" is invalid; expected a number');
      await refuses(null, () => accuracyVsParametersFigure([{ name: 'a', parameters: 10 } as never], 't'), 'accuracyVsParametersFigure: points[0] = { name: "a", parameters: 10 } is invalid');
      await refuses(null, () => showPlot(null as never), 'showPlot: figure = null is invalid; expected a Plotly figure');
      const fig = lossCurvesFigure([{ name: 'a', y: [1, 2] }], 't');
      await refuses(null, () => plotlyBundle(fig, { id: '"><script>', plotly: null }), `plotlyBundle: id = ${JSON.stringify('"><script>')} is invalid; expected an HTML id`);
      await refuses(null, () => classCounts(Int32Array.from([1, 12])), 'classCounts: labels[1] = 12 is invalid; expected a digit label 0–9');
    });

    it('maxAbsDiff refuses tensors of different shapes (broadcasting would compare one row against all)', async () => {
      const a = tf.zeros([2, 3]);
      const b = tf.ones([1, 3]);
      await refuses(null, () => maxAbsDiff(a, b), "maxAbsDiff: b = a tensor of shape [1, 3] is invalid; expected a tensor of a's shape [2, 3]");
      tf.dispose([a, b]);
    });

    it('null models, options and counts get the usual message', async () => {
      await refuses(null, () => evaluate(null as never, x, y), 'evaluate: model = null is invalid; expected a model');
      await refuses(null, () => parameterCounts(null as never), 'parameterCounts: target = null is invalid');
      await refuses(null, () => combineAdapters(null as never, [], 'c'), 'combineAdapters: model = null is invalid; expected a LoRAMLP');
      await refuses(null, () => parameterEfficiencyTable([512, 2048, 128], [4, 0]), 'parameterEfficiencyTable: ranks[1] = 0 is invalid; expected a positive integer');
      await refuses(null, () => parameterEfficiencyTable(null as never, [4]), 'parameterEfficiencyTable: dims = null is invalid');
      await refuses(null, () => groupRows(['a', undefined as never]), 'groupRows: rowAdapters[1] = undefined is invalid; expected an adapter name or null');
      await refuses(null, () => randomRegression(null as never), 'randomRegression: options = null is invalid');
      await refuses(null, () => timeIt(null as never), 'timeIt: fn = null is invalid; expected a function');
      await refuses(null, () => timeIt(() => 1, 0), 'timeIt: runs = 0 is invalid; expected a positive integer');
    });
  });

  describe('what a hostile review found (each case once let a call corrupt the backend, leak or change state)', () => {
    it('forward passes plan their peak (≈5 outputs for LoRA, 3 for dense) and the mixed-batch path too', async () => {
      const lin = new LoRALinear({ inFeatures: 2, outFeatures: 20_000, rank: 1 });
      const mlp = new MLP([2, 20_000, 1]);
      const mixed = new LoRAMLP([2, 20_000, 1], { rank: 1 });
      const x15 = tf.zeros([15_000, 2]);
      const x30 = tf.zeros([30_000, 2]);
      // 15,000 × 20,000 fits as one output (1.1 GiB) but not with its temporaries: it once poisoned the heap.
      await refuses(null, () => lin.predict(x15), 'forward pass: needs 5.6 GiB of tensors (the output [15000, 20000] 1.1 GiB, temporary 1 of its size');
      await refuses(null, () => mlp.predict(x30), "forward pass: needs 6.7 GiB of tensors (layer fc1's output [30000, 20000] 2.2 GiB");
      await refuses(null, () => mixed.predict(x30, { adapters: Array(30_000).fill('default') }), 'LoRALinear fc1.predictMixed: needs 11.2 GiB');
      tf.dispose([x15, x30]);
      lin.dispose();
      mlp.dispose();
      mixed.dispose();
    });

    it('train plans one step (moments, gradients, snapshot, activations) before the tape starts: no leak', async () => {
      const m = new LoRAMLP([8, 16, 300], { rank: 2 });
      const xs = tf.randomNormal([20, 8]) as tf.Tensor2D;
      const ys = tf.randomNormal([20, 300]) as tf.Tensor2D;
      setMemoryLimit(tf.memory().numBytes + 25_576);
      await refuses(null, () => train(m, { x: xs, y: ys, steps: 1 }), /^train: needs .* \(Adam's moments .*one step's activations \(batch 20\)/);
      setMemoryLimit(null);
      tf.dispose([xs, ys]);
      m.dispose();
    });

    it('a model refused under any memory limit leaks nothing (sweep)', () => {
      const tensors = tf.memory().numTensors;
      let refusedCount = 0;
      for (let extra = 0; extra <= 80_000; extra += 2_000) {
        setMemoryLimit(tf.memory().numBytes + extra);
        try {
          new LoRAMLP([2, 1000, 4], { baseInit: 'kaiming', rank: 2 }).dispose();
        } catch (err) {
          refusedCount++;
          expect((err as Error).message).toContain('the limit set with setMemoryLimit');
        }
        setMemoryLimit(null);
        expect(tf.memory().numTensors, `limit + ${extra}`).toBe(tensors);
      }
      expect(refusedCount).toBeGreaterThan(5);
    });

    it('a learning rate that is Infinity in float32, and a subnormal scale, are refused', async () => {
      await refuses(model, () => train(model, { x, y, steps: 1, learningRate: 1e39 }), 'train: learningRate = 1e+39 is invalid; expected a rate that is finite in float32');
      await refuses(null, () => new LoRALinear({ inFeatures: 2, outFeatures: 2, rank: 1, alpha: 1e-39 }), 'LoRALinear: scale alpha / rank (1e-39 / 1) = 1e-39 is invalid');
    });

    it('an async onStep that rejects makes train reject (not an unhandled rejection), lock released', async () => {
      const m = new LoRAMLP(DIMS, { rank: 2, seed: 12 });
      await train(m, { x, y, steps: 1 });
      const tensors = tf.memory().numTensors;
      await expect(train(m, { x, y, steps: 3, onStep: async () => Promise.reject(new Error('from onStep')) })).rejects.toThrow('from onStep');
      expect(tf.memory().numTensors).toBe(tensors);
      m.merge();
      m.unmerge();
      m.dispose();
    });

    it('data disposed from onStep is refused at the next step with the library message', async () => {
      const m = new LoRAMLP(DIMS, { rank: 2, seed: 13 });
      const xs = tf.clone(x);
      await train(m, { x, y, steps: 1 });
      const tensors = tf.memory().numTensors;
      await expect(train(m, { x: xs, y, steps: 3, onStep: () => xs.dispose() })).rejects.toThrow('train: x = a disposed tensor of shape [64, 4] is invalid');
      expect(tf.memory().numTensors).toBe(tensors - 1); // xs, disposed by the callback
      m.dispose();
    });

    it('a disposed MLP refuses every use; an MLP being trained refuses dispose', async () => {
      const mlp = new MLP(DIMS);
      await train(mlp, { x, y, steps: 1 });
      let refused = '';
      await train(mlp, {
        x,
        y,
        steps: 1,
        onStep: () => {
          try {
            mlp.dispose();
          } catch (err) {
            refused = (err as Error).message;
          }
        },
      });
      expect(refused).toBe('MLP: cannot dispose the model while train() is updating this model; call it after train() resolves');
      mlp.dispose();
      const x2 = tf.zeros([2, 4]);
      await refuses(null, () => mlp.predict(x2), 'MLP: this model has been disposed');
      await refuses(null, () => mlp.clone(), 'MLP: this model has been disposed');
      await refuses(null, () => mlp.parameterCounts(), 'MLP: this model has been disposed');
      await refuses(null, () => train(mlp, { x, y, steps: 1 }), 'MLP: this model has been disposed');
      x2.dispose();
      mlp.dispose(); // twice is fine
    });

    it('layer-level changes cannot make a model-level call change some layers and then throw', async () => {
      const m = new LoRAMLP(DIMS, { rank: 2, seed: 14 });
      m.layers[1].addAdapter('x');
      await refuses(m, () => m.addAdapter('x'), 'LoRAMLP: name = "x" is invalid; expected a name no layer uses (layer fc2 already has an adapter "x"');
      m.layers[1].deleteAdapter('x');
      m.addAdapter('b', { rank: 1 });
      m.layers[1].setActiveAdapter('b');
      m.layers[1].merge();
      await refuses(m, () => m.deleteAdapter('b'), 'LoRAMLP: adapter "b" is merged (in fc2); call unmerge() before deleting it');
      await refuses(m, () => m.replaceAdapter('b', { rank: 1 }), 'LoRAMLP: adapter "b" is merged (in fc2); call unmerge() before replacing it');
      m.unmerge();
      m.layers[1].dispose();
      await refuses(null, () => m.addAdapter('z'), 'LoRAMLP: layer fc2 has been disposed; the model cannot be used any more');
      await refuses(null, () => m.setActiveAdapter(null), 'LoRAMLP: layer fc2 has been disposed');
      await refuses(null, () => m.deleteAdapter('default'), 'LoRAMLP: layer fc2 has been disposed');
      expect(m.adapterNames()).toEqual(['default', 'b']);
      expect(m.layers[0].adapterNames()).toEqual(['default', 'b']);
      m.dispose();
    });

    it('predictMixed checks its row groups (out of range, repeated, wrong types)', async () => {
      const layer = model.layers[0];
      const rows = tf.zeros([2, 4]) as tf.Tensor2D;
      await refuses(model, () => layer.predictMixed(rows, null as never), 'LoRALinear fc1.predictMixed: groups = null is invalid');
      await refuses(model, () => layer.predictMixed(rows, { names: ['default'], rows: [Int32Array.from([5])] }), 'LoRALinear fc1.predictMixed: groups.rows[0] = an Int32Array is invalid; expected row indices in [0, 2)');
      await refuses(model, () => layer.predictMixed(rows, { names: ['default', 'default'], rows: [Int32Array.from([0]), Int32Array.from([0])] }), 'expected each row in one group only (row 0 is in two)');
      rows.dispose();
    });

    it('null fields are refused, not read as the default', async () => {
      await refuses(model, () => train(model, { x, y, steps: 1, batchSize: null as never }), 'train: batchSize = null is invalid; expected a value (leave the field out for its default)');
      await refuses(null, () => new LoRALinear({ inFeatures: 2, outFeatures: 2, name: null as never }), 'LoRALinear: name = null is invalid');
      await refuses(null, () => new MLP(DIMS, { seed: null as never }), 'MLP: seed = null is invalid');
      await refuses(model, () => combineAdapters(model, [{ name: 'default', weight: 1 }], 'c', { method: null as never }), 'combineAdapters: method = null is invalid');
      await refuses(model, () => combineAdapters(model, [{ name: 'default', weight: 1 }], 'c', { rank: 2 }), "combineAdapters: rank = 2 is invalid; expected undefined with method 'cat'");
      await refuses(null, () => randomRegression({ samples: 4, inputDim: 2, outputDim: 1, seed: null as never }), 'randomRegression: seed = null is invalid');
      const x2 = tf.zeros([2, 4]);
      await refuses(model, () => model.apply(x2, { training: 'yes' as never }), 'LoRAMLP.apply: training = "yes" is invalid; expected a boolean');
      x2.dispose();
      const pat = new LoRAMLP(DIMS, { rank: 2, rankPattern: null as never, targetModules: null as never });
      expect(pat.adapterLayers('default')).toEqual(['lora', 'lora']);
      pat.dispose();
    });

    it('an SVD combination whose finite factors overflow float32 is refused', async () => {
      const m = new LoRAMLP(DIMS, { rank: 1, seed: 15 });
      const big = (t: tf.Variable) => {
        const v = tf.fill(t.shape, 1e20);
        t.assign(v as never);
        v.dispose();
      };
      for (const l of m.layers) {
        big(l.adapter().A);
        big(l.adapter().B);
      }
      await refuses(m, () => combineAdapters(m, [{ name: 'default', weight: 1 }], 'c', { method: 'svd', rank: 1 }), 'is not finite on layer fc1');
      m.dispose();
    });

    it('a full copy with a NaN bias is not merged, and a refused merge keeps nothing', async () => {
      const base = new MLP(DIMS, { seed: 3 }); // with biases
      const m = LoRAMLP.fromBase(base, { rank: 2, seed: 16, targetModules: ['fc1'], modulesToSave: ['fc2'] });
      base.dispose();
      const bias = m.layers[1].fullAdapter('default').bias as tf.Variable;
      const nan = tf.tidy(() => tf.concat([tf.zeros([2]), tf.tensor1d([NaN])]));
      bias.assign(nan as tf.Tensor1D);
      nan.dispose();
      await refuses(m, () => m.merge(), 'LoRALinear fc2: merging adapter "default" would put NaN or ±Infinity into the weight');
      expect(m.merged).toBe(false);
      m.dispose();
    });

    it('replaceAdapter and addFullAdapter check memory before replacing anything', async () => {
      const m = new LoRAMLP(DIMS, { rank: 2, seed: 17 });
      setMemoryLimit(tf.memory().numBytes + 100);
      await refuses(null, () => m.replaceAdapter('default', { rank: 50 }), 'the limit set with setMemoryLimit');
      await refuses(null, () => m.layers[0].replaceAdapter('default', { rank: 50 }), 'LoRALinear fc1: needs');
      await refuses(null, () => m.layers[0].addFullAdapter('full'), 'LoRALinear fc1: needs');
      setMemoryLimit(null);
      expect(m.layers.map((l) => l.adapter('default').config.rank)).toEqual([2, 2]);
      expect(m.layers[0].adapterNames()).toEqual(['default']);
      m.dispose();
    });
  });
});
