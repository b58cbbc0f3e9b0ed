/**
 * Hostile and careless input to the tfjs Layers integration (issue 10): nothing crashes the
 * process, nothing comes back silently wrong, nothing is lost. Every refused call must name
 * the argument (or the function), allocate nothing, and leave the model exactly as it was:
 * same outputs on a fixed input, same adapters, same active adapter, same trainable weights
 * (by identity), same number of tensors; and tf ops still run afterwards.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  LoRALayer,
  activeAdapter,
  addAdapter,
  addLoRA,
  adapterNames,
  deleteAdapter,
  initBackend,
  loraLayers,
  mergeAndUnload,
  setActiveAdapter,
  setMemoryLimit,
  setWarningHandler,
  unload,
} from '../../src/index.js';
import { layersMlp, seeded } from '../helpers.js';

const mlp = layersMlp;

/** The same network as a functional model (fit trains it directly, not through an inner model). */
function functional(): tfl.LayersModel {
  const input = tfl.input({ shape: [6] });
  const h = tfl.layers.dense({ units: 5, activation: 'relu', name: 'fc1', ...seeded(1) }).apply(input) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 3, name: 'head', ...seeded(3) }).apply(h) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out });
}

/** Give every LoRA factor non-zero values, as training would (B starts at zero). */
function perturb(model: tfl.LayersModel): void {
  let seed = 11;
  for (const { layer } of loraLayers(model)) {
    for (const name of layer.adapterNames()) {
      if (layer.adapterSpec(name).kind !== 'lora') continue;
      for (const v of layer.adapterVariables(name)) {
        const r = tf.randomNormal(v.shape as number[], 0, 0.3, 'float32', seed++);
        v.write(r);
        r.dispose();
      }
    }
  }
}

const X = (): tf.Tensor => tf.tensor2d([[0.5, -1, 2, 0.25, -0.75, 1.5], [1, 0, -2, 3, 0.1, -0.4]]);

function outputs(model: tfl.LayersModel): number[] {
  return tf.tidy(() => [...(model.predict(X()) as tf.Tensor).dataSync()]);
}

/**
 * An adapter whose B is zero computes the base up to float rounding: the LoRA path runs
 * x·W + b and s·(x·A)·B as separate ops where tfjs's Dense fuses bias and activation.
 */
function expectClose(a: number[], b: number[]): void {
  expect(a).toHaveLength(b.length);
  a.forEach((v, i) => expect(Math.abs(v - b[i])).toBeLessThan(1e-6));
}

interface State {
  out: number[];
  names: string[] | null;
  active: string | null;
  trainable: tfl.LayerVariable[];
  weights: Map<string, number[]>;
  numTensors: number;
}

/** Everything a refused call must leave as it was. */
function state(model: tfl.LayersModel): State {
  const adapted = loraLayers(model).length > 0;
  return {
    out: outputs(model),
    names: adapted ? adapterNames(model) : null,
    active: adapted ? activeAdapter(model) : null,
    trainable: [...model.trainableWeights],
    weights: new Map(model.weights.map((w) => [w.originalName, [...w.read().dataSync()]])),
    numTensors: tf.memory().numTensors,
  };
}

function expectUnchanged(model: tfl.LayersModel, before: State): void {
  const after = state(model);
  expect(after.out).toEqual(before.out);
  expect(after.names).toEqual(before.names);
  expect(after.active).toBe(before.active);
  expect(after.trainable.length).toBe(before.trainable.length);
  after.trainable.forEach((w, i) => expect(w).toBe(before.trainable[i]));
  expect([...after.weights.keys()]).toEqual([...before.weights.keys()]);
  for (const [k, v] of before.weights) expect(after.weights.get(k), k).toEqual(v);
  expect(after.numTensors).toBe(before.numTensors);
}

/** `fn` throws `message`, allocates nothing and changes nothing in `model`. */
function expectRefused(model: tfl.LayersModel, fn: () => unknown, message: RegExp): void {
  const before = state(model);
  expect(fn).toThrow(message);
  expectUnchanged(model, before);
  expectTfRuns();
}

function expectTfRuns(): void {
  const y = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).dataSync());
  expect([...y]).toEqual([4, 6]);
}

/** Collect lora-tfjs warnings while `fn` runs. */
function collectWarnings<T>(fn: () => T): { result: T; warnings: string[] } {
  const warnings: string[] = [];
  const previous = setWarningHandler((m) => warnings.push(m));
  try {
    return { result: fn(), warnings };
  } finally {
    setWarningHandler(previous);
  }
}

beforeAll(async () => {
  expect(await initBackend('wasm')).toBe('wasm');
});

afterEach(() => {
  setMemoryLimit(null);
});

describe('Layers robustness: huge sizes are refused before anything is allocated', () => {
  it('rank 1e9 (beyond a typed array) throws on wasm instead of aborting; the process keeps running tf ops', () => {
    const base = mlp();
    const { warnings } = collectWarnings(() => expectRefused(base, () => addLoRA(base, { rank: 1e9 }), /^addLoRA: layer fc1's lora_A.default would need 6,000,000,000 values \(22.4 GiB\), but a typed array holds at most 4,294,967,296 values; nothing was allocated$/));
    // A refused call does not also warn about the rank it refused.
    expect(warnings).toEqual([]);
    base.dispose();
  });

  it('rank 1e8 (fits a typed array, not the 4 GiB wasm heap) is refused with the bytes needed and the limit', () => {
    const base = mlp();
    expectRefused(base, () => addLoRA(base, { rank: 1e8 }), /^addLoRA: needs [\d.]+ GiB of tensors \(layer fc1's lora_A.default 2.2 GiB, .*\) on top of the .* in use, more than 3.8 GiB \(the wasm backend's heap/);
    base.dispose();
  });

  it("rank 1e6 is refused where its factors cannot fit (1000 → 1000: A alone is 4 GB), and accepted with PEFT's warning where they can", () => {
    const wide = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [1000], units: 1000, name: 'wide' })] });
    const before = tf.memory().numTensors;
    expect(() => addLoRA(wide, { rank: 1e6 })).toThrow(/^addLoRA: needs 7.5 GiB of tensors \(layer wide's lora_A.default 3.7 GiB, layer wide's lora_B.default 3.7 GiB, .*the wasm backend's heap/);
    expect(tf.memory().numTensors).toBe(before);
    wide.dispose();
    // PEFT allows rank > min(in, out): kept, with the warning, when it fits.
    const base = mlp();
    const { result: lora, warnings } = collectWarnings(() => addLoRA(base, { rank: 8 }));
    expect(warnings).toHaveLength(3);
    expect(warnings[0]).toMatch(/addLoRA: rank 8 on layer fc1 \(6 → 5\) exceeds min\(in, out\) = 5; it adds parameters but no capacity/);
    expectClose(outputs(lora), outputs(base));
    lora.dispose();
    base.dispose();
  });

  it('the whole model is planned at once: with setMemoryLimit, adapters that fit layer by layer but not together are refused (addLoRA, addAdapter)', () => {
    const base = mlp();
    // Room for the rebuilt weights and fc1's factors, not for all three layers'.
    const rebuilt = (6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3) * 4;
    const fc1 = (6 * 64 + 64 * 5) * 4;
    setMemoryLimit(tf.memory().numBytes + rebuilt + fc1 + 100);
    const { warnings } = collectWarnings(() =>
      expectRefused(base, () => addLoRA(base, { rank: 64 }), /^addLoRA: needs .* \(layer fc1's lora_A.default 1.5 KiB, layer fc1's lora_B.default 1.3 KiB, layer fc2's lora_A.default .*, layer head's lora_B.default .*\) on top of the .* in use, more than .* \(the limit set with setMemoryLimit \(.*\)\); nothing was allocated$/),
    );
    expect(warnings).toEqual([]);
    setMemoryLimit(null);

    const lora = addLoRA(base, { rank: 2 });
    perturb(lora);
    setMemoryLimit(tf.memory().numBytes + 1000);
    expectRefused(lora, () => addAdapter(lora, { adapterName: 'big', rank: 64 }), /^addAdapter: needs .* \(layer fc1's lora_A.big .*, layer head's lora_B.big .*\) .*the limit set with setMemoryLimit/);
    // Not even the first layer got the adapter.
    for (const { layer } of loraLayers(lora)) expect(layer.adapterNames()).toEqual(['default']);
    // modules_to_save copies count too.
    setMemoryLimit(tf.memory().numBytes + 20);
    expectRefused(lora, () => addAdapter(lora, { adapterName: 'copy', targetModules: ['fc1'], modulesToSave: ['head'], rank: 1 }), /layer head's modules_to_save.copy copy 60 bytes/);
    setMemoryLimit(null);
    lora.dispose();
    base.dispose();
  });

  it('mergeAndUnload and unload are refused when the new model cannot fit', () => {
    const base = mlp();
    const lora = addLoRA(base, { rank: 2 });
    perturb(lora);
    setMemoryLimit(tf.memory().numBytes + 100);
    expectRefused(lora, () => mergeAndUnload(lora), /^mergeAndUnload: needs .* \(layer fc1's merged kernel 120 bytes, .*the new model's weights \(temporary\) .*\) .*the limit set with setMemoryLimit/);
    expectRefused(lora, () => unload(lora), /^unload: needs .*the new model's weights \(temporary\)/);
    setMemoryLimit(null);
    const merged = mergeAndUnload(lora);
    expect(merged.layers.map((l) => l.getClassName())).toEqual(['Dense', 'Dense', 'Dense']);
    merged.dispose();
    lora.dispose();
    base.dispose();
  });

  it('a model config (e.g. an edited model.json) with an absurd adapter rank is refused by the layer, not built', () => {
    const base = mlp();
    const lora = addLoRA(base, { rank: 2 });
    type Config = { layers: Array<{ config: { adapters: Array<Record<string, unknown>> } }> };
    const fresh = (edit: Record<string, unknown>): Config => {
      // A new copy each time: tfjs's fromConfig consumes the object it is given.
      const c = JSON.parse(JSON.stringify(lora.getConfig())) as Config;
      c.layers[0].config.adapters[0] = { ...c.layers[0].config.adapters[0], ...edit };
      return c;
    };
    const config = fresh({ rank: 1e9 });
    const before = tf.memory().numTensors;
    expect(() => tfl.Sequential.fromConfig(tfl.Sequential, config as never)).toThrow(/^LoRADense fc1: layer fc1's lora_A.default \[6, 1000000000\] would need 6,000,000,000 values .*nothing was allocated$/);
    // Malformed specs are refused by the constructor, before any weight exists.
    const malformed: Array<[Record<string, unknown>, RegExp]> = [
      [{ rank: '4' }, /^LoRADense fc1 \(adapter default\): rank = "4" is invalid; expected a positive integer/],
      [{ rank: 2, alpha: Number.NaN }, /^LoRADense fc1 \(adapter default\): alpha = NaN is invalid/],
      [{ rank: 2, kind: 'bogus' }, /^LoRADense fc1: adapter "default"'s kind = "bogus" is invalid; expected "lora" or "full"/],
      [{ rank: 2, name: 'a/b' }, /^LoRADense fc1: adapterName = "a\/b" is invalid/],
    ];
    for (const [edit, message] of malformed) {
      expect(() => tfl.Sequential.fromConfig(tfl.Sequential, fresh(edit) as never)).toThrow(message);
    }
    expect(tf.memory().numTensors).toBe(before);
    // The layer-level addAdapter checks its spec and its size too.
    const layer = loraLayers(lora)[1].layer;
    expect(() => layer.addAdapter({ ...(layer.adapterSpec('default') as object), name: 'huge', rank: 1e9 } as never)).toThrow(/^LoRADense fc2: layer fc2's lora_A.huge \[5, 1000000000\] would need/);
    expect(() => layer.addAdapter({ name: 'x', kind: 'lora', rank: 0 } as never)).toThrow(/^LoRADense fc2 \(adapter x\): rank = 0 is invalid/);
    expect(layer.adapterNames()).toEqual(['default']);
    expect(tf.memory().numTensors).toBe(before);
    expectTfRuns();
    lora.dispose();
    base.dispose();
  });
});

describe('Layers robustness: every layer is checked before any is changed', () => {
  it('addAdapter with a config invalid for the second layer only leaves the first layer as it was', () => {
    const base = mlp();
    const lora = addLoRA(base, { rank: 2 });
    perturb(lora);
    addAdapter(lora, { adapterName: 'only-head', targetModules: ['head'], rank: 1 });
    const cases: Array<[object, RegExp]> = [
      [{ adapterName: 'b', rankPattern: { fc2: 0 } }, /^addAdapter: rankPattern\["fc2"\] = 0 is invalid; expected a positive integer/],
      [{ adapterName: 'b', rankPattern: { fc2: 1e9 } }, /^addAdapter: layer fc2's lora_A.b would need 5,000,000,000 values .*nothing was allocated$/],
      [{ adapterName: 'b', alphaPattern: { fc2: 1e308 } }, /^addAdapter \(layer fc2\): scale alpha \/ rank \(1e\+308 \/ 4\) = 2\.5e\+307 is invalid; expected a finite, non-zero float32/],
      [{ adapterName: 'only-head' }, /^addAdapter: layer "head" already has an adapter named "only-head"/],
    ];
    for (const [config, message] of cases) expectRefused(lora, () => addAdapter(lora, config), message);
    expect(loraLayers(lora).map(({ layer }) => layer.adapterNames())).toEqual([['default'], ['default'], ['default', 'only-head']]);
    lora.dispose();
    base.dispose();
  });

  it('setActiveAdapter and deleteAdapter with unknown or wrongly typed names change nothing; deleting the active adapter runs the base', () => {
    const base = mlp();
    const lora = addLoRA(base, { rank: 2 });
    addAdapter(lora, { adapterName: 'b', targetModules: ['fc2'], rank: 1 });
    perturb(lora);
    lora.compile({ optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError' });
    expectRefused(lora, () => setActiveAdapter(lora, 'zzz'), /^setActiveAdapter: name = "zzz" is not an adapter of the model; it has \["default", "b"\]/);
    for (const name of [42, undefined, {}, ['b']]) {
      expectRefused(lora, () => setActiveAdapter(lora, name as never), /^setActiveAdapter: name = .* is invalid; expected null \(the base alone\) or one of the model's adapters \["default", "b"\]/);
    }
    expectRefused(lora, () => deleteAdapter(lora, 'zzz'), /^deleteAdapter: name = "zzz" is not an adapter of the model/);
    for (const name of [null, 42, undefined]) {
      expectRefused(lora, () => deleteAdapter(lora, name as never), /^deleteAdapter: name = .* is invalid; expected the name of one of the model's adapters/);
    }
    // Deleting the active adapter is allowed (as in PEFT): its variables are freed, the base runs.
    const before = tf.memory().numTensors;
    deleteAdapter(lora, 'default');
    expect(tf.memory().numTensors).toBe(before - 6);
    expect(activeAdapter(lora)).toBeNull();
    expect(adapterNames(lora)).toEqual(['b']);
    expectClose(outputs(lora), outputs(base));
    expect(lora.trainableWeights).toEqual([]);
    lora.dispose();
    base.dispose();
  });

  it('a merge refused on the last layer leaves every layer (and the base) as it was', () => {
    const base = mlp();
    const baseBefore = state(base);
    const lora = addLoRA(base, { rank: 2 });
    perturb(lora);
    const [, B] = loraLayers(lora)[2].layer.adapterVariables('default');
    const nan = tf.tidy(() => tf.fill(B.shape as number[], Number.NaN));
    B.write(nan);
    nan.dispose();
    expectRefused(lora, () => mergeAndUnload(lora), /^mergeAndUnload: layer head: adapter "default" holds non-finite values; refusing to merge it, as PEFT's safe_merge does/);
    expectUnchanged(base, { ...baseBefore, numTensors: tf.memory().numTensors });
    lora.dispose();
    base.dispose();
  });
});

describe('Layers robustness: disposed, wrongly typed and null inputs', () => {
  it('addLoRA refuses null models and configs, wrongly typed or non-finite fields, and unusable adapter names', () => {
    const base = mlp();
    const cases: Array<[unknown, unknown, RegExp]> = [
      [null, {}, /^addLoRA: model = null is invalid; expected a tf.LayersModel/],
      [undefined, {}, /^addLoRA: model = undefined is invalid; expected a tf.LayersModel/],
      [{}, {}, /^addLoRA: model = \{\} is invalid; expected a tf.LayersModel/],
      [base, null, /^addLoRA: config = null is invalid; expected an options object$/],
      [base, undefined, /^addLoRA: config = undefined is invalid/],
      [base, 'default', /^addLoRA: config = "default" is invalid; expected an options object \(the adapter's name goes in config.adapterName/],
      [base, [], /^addLoRA: config = \[\] is invalid/],
      [base, { rank: null }, /^addLoRA: rank = null is invalid; expected a positive integer/],
      [base, { rank: '4' }, /^addLoRA: rank = "4" is invalid; expected a positive integer/],
      [base, { rank: 0 }, /^addLoRA: rank = 0 is invalid/],
      [base, { rank: -2 }, /^addLoRA: rank = -2 is invalid/],
      [base, { rank: Number.NaN }, /^addLoRA: rank = NaN is invalid/],
      [base, { rank: Number.POSITIVE_INFINITY }, /^addLoRA: rank = Infinity is invalid/],
      [base, { alpha: Number.POSITIVE_INFINITY }, /^addLoRA: alpha = Infinity is invalid; expected a finite number > 0/],
      [base, { alpha: null }, /^addLoRA: alpha = null is invalid/],
      // Finite in JS, Infinity as float32: every output would be NaN.
      [base, { alpha: 1e308 }, /^addLoRA.*: scale alpha \/ rank \(1e\+308 \/ \d+\) = .* is invalid; expected a finite, non-zero float32/],
      [base, { dropout: 1 }, /^addLoRA: dropout = 1 is invalid; expected a number in \[0, 1\)/],
      [base, { dropout: null }, /^addLoRA: dropout = null is invalid/],
      [base, { useRsLora: 'yes' }, /^addLoRA: useRsLora = "yes" is invalid; expected a boolean/],
      [base, { init: 'bogus' }, /^addLoRA: init = "bogus" is invalid/],
      [base, { seed: 0.5 }, /^addLoRA: seed = 0.5 is invalid/],
      [base, { targetModules: 42 }, /^addLoRA: targetModules = 42 is invalid; expected an array of module names, or one regular expression string/],
      [base, { targetModules: {} }, /^addLoRA: targetModules = \{\} is invalid/],
      [base, { rnak: 4 }, /^addLoRA: config has unknown field\(s\) \["rnak"\]/],
      [base, { adapterName: '' }, /^addLoRA: adapterName = "" is invalid; expected a name of letters, digits/],
      [base, { adapterName: 42 }, /^addLoRA: adapterName = 42 is invalid/],
      [base, { adapterName: {} }, /^addLoRA: adapterName = \{\} is invalid/],
      // "/" would split the weight name tfjs saves ("fc1/lora_A.a/b") and break reloading.
      [base, { adapterName: 'a/b' }, /^addLoRA: adapterName = "a\/b" is invalid/],
      [base, { adapterName: ' x' }, /^addLoRA: adapterName = " x" is invalid/],
    ];
    for (const [model, config, message] of cases) expectRefused(base, () => addLoRA(model as tfl.LayersModel, config as never), message);
    // {} and null optional fields (PEFT's None) mean the defaults.
    for (const config of [{}, { targetModules: null, modulesToSave: null, rankPattern: null, adapterName: null }]) {
      const lora = addLoRA(base, config as never);
      expect(adapterNames(lora)).toEqual(['default']);
      expectClose(outputs(lora), outputs(base));
      lora.dispose();
    }
    base.dispose();
  });

  it('a disposed model is refused by every operation, with no leak', () => {
    const plain = mlp();
    plain.dispose();
    const before = tf.memory().numTensors;
    expect(() => addLoRA(plain, {})).toThrow(/^addLoRA: model = "sequential_\d+" is invalid; expected a model that has not been disposed \(the model was freed by dispose\(\)\)$/);
    const base = mlp();
    const lora = addLoRA(base, { rank: 2 });
    addAdapter(lora, { adapterName: 'b', rank: 1 });
    lora.dispose();
    const afterDispose = tf.memory().numTensors;
    const calls: Array<[string, () => unknown]> = [
      ['setActiveAdapter', () => setActiveAdapter(lora, 'b')],
      ['setActiveAdapter', () => setActiveAdapter(lora, null)],
      ['addAdapter', () => addAdapter(lora, { adapterName: 'c' })],
      ['deleteAdapter', () => deleteAdapter(lora, 'b')],
      ['mergeAndUnload', () => mergeAndUnload(lora)],
      ['unload', () => unload(lora)],
      ['addLoRA', () => addLoRA(lora, { adapterName: 'c' })],
      ['adapterNames', () => adapterNames(lora)],
    ];
    for (const [where, call] of calls) expect(call, where).toThrow(new RegExp(`^${where}: model = "sequential_\\d+" is invalid; expected a model that has not been disposed`));
    expect(tf.memory().numTensors).toBe(afterDispose);
    // The base model shares buffers with the adapted one: disposing one leaves the other whole.
    expect(outputs(base)).toHaveLength(6);
    base.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expectTfRuns();
  });

  it('addLoRA twice: on a plain model, two independent models; on an adapted one, a second adapter of the same name is refused', () => {
    const base = mlp();
    const a = addLoRA(base, { rank: 2, seed: 1 });
    const b = addLoRA(base, { rank: 2, seed: 2 });
    perturb(a);
    expectClose(outputs(b), outputs(base));
    expect(outputs(a)).not.toEqual(outputs(base));
    expectRefused(a, () => addLoRA(a, { rank: 2 }), /^addLoRA: layer "fc1" already has an adapter named "default"; choose another adapterName or delete it first/);
    a.dispose();
    expectClose(outputs(b), outputs(base));
    b.dispose();
    base.dispose();
  });

  it('adapter operations on a model without LoRA layers, and wrongly typed merge options, are refused', () => {
    const base = mlp();
    expectRefused(base, () => mergeAndUnload(base), /^mergeAndUnload: the model has no LoRA layers; it is already a plain model/);
    expectRefused(base, () => unload(base), /^unload: the model has no LoRA layers/);
    expectRefused(base, () => addAdapter(base, { adapterName: 'x' }), /^addAdapter: the model has no LoRA layers; create them with addLoRA/);
    expectRefused(base, () => setActiveAdapter(base, null), /^setActiveAdapter: the model has no LoRA layers/);
    expectRefused(base, () => deleteAdapter(base, 'default'), /^deleteAdapter: the model has no LoRA layers/);
    const lora = addLoRA(base, { rank: 2 });
    perturb(lora);
    expectRefused(lora, () => addAdapter(lora, 'b' as never), /^addAdapter: config = "b" is invalid; expected an options object \(the adapter's name goes in config.adapterName: addAdapter\(model, \{ adapterName: "b", … \}\)\)/);
    expectRefused(lora, () => mergeAndUnload(lora, null as never), /^mergeAndUnload: options = null is invalid; expected \{ adapterName\? \}/);
    expectRefused(lora, () => mergeAndUnload(lora, 'default' as never), /^mergeAndUnload: options = "default" is invalid/);
    expectRefused(lora, () => mergeAndUnload(lora, { adapterName: 42 as never }), /^mergeAndUnload: adapterName = 42 is invalid; expected one of the model's adapters \["default"\]/);
    expectRefused(lora, () => mergeAndUnload(lora, { adapterName: null as never }), /^mergeAndUnload: adapterName = null is invalid/);
    expectRefused(lora, () => mergeAndUnload(lora, { adapterName: 'zzz' }), /^mergeAndUnload: adapterName = "zzz" is not an adapter of the model/);
    lora.dispose();
    base.dispose();
  });
});

describe('Layers robustness: merge safety', () => {
  function adapted(): { base: tfl.Sequential; lora: tfl.LayersModel } {
    const base = mlp();
    const lora = addLoRA(base, { targetModules: ['fc1', 'fc2'], modulesToSave: ['head'], rank: 2 });
    perturb(lora);
    return { base, lora };
  }

  function write(v: tfl.LayerVariable, values: number[] | number): void {
    const t = tf.tidy(() => (typeof values === 'number' ? tf.fill(v.shape as number[], values) : tf.tensor(values, v.shape as number[])));
    v.write(t);
    t.dispose();
  }

  it('an adapter whose delta holds NaN or Infinity is refused (as PEFT safe_merge), base and adapter untouched', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const { base, lora } = adapted();
      const baseOut = outputs(base);
      const [A, B] = loraLayers(lora)[1].layer.adapterVariables('default');
      write(B, [bad, ...new Array<number>(B.shape.reduce((a: number, b) => a * (b as number), 1) - 1).fill(0.1)]);
      void A;
      expectRefused(lora, () => mergeAndUnload(lora), /^mergeAndUnload: layer fc2: adapter "default" holds non-finite values; refusing to merge it/);
      expect(outputs(base)).toEqual(baseOut);
      // The base alone (unload) has nothing non-finite in it, and still comes back.
      const plain = unload(lora);
      expect(outputs(plain)).toEqual(baseOut);
      plain.dispose();
      lora.dispose();
      base.dispose();
    }
  });

  it('finite factors whose merged weight overflows float32 are refused', () => {
    const base = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [1], units: 1, name: 'd', useBias: false })] });
    const k = tf.tensor2d([[3e38]]);
    base.layers[0].setWeights([k]);
    k.dispose();
    const lora = addLoRA(base, { rank: 1, alpha: 1 });
    const [A, B] = loraLayers(lora)[0].layer.adapterVariables('default');
    write(A, 1);
    write(B, 3e38); // ΔW = 3e38 is finite; W + ΔW is not
    const before = tf.memory().numTensors;
    expect(() => mergeAndUnload(lora)).toThrow(/^mergeAndUnload: layer d: merging adapter "default" overflows float32 \(W \+ ΔW has values beyond ±3.4e38\); refusing to merge it/);
    expect(tf.memory().numTensors).toBe(before);
    expect([...(base.layers[0].getWeights()[0] as tf.Tensor).dataSync()]).toEqual([Math.fround(3e38)]);
    lora.dispose();
    base.dispose();
  });

  it('a modules_to_save copy starts equal to the base (not zero), and a diverged (NaN) copy is refused', () => {
    const { base, lora } = adapted();
    const head = loraLayers(lora).find((l) => l.path === 'head')!.layer as LoRALayer;
    const [copyKernel, copyBias] = head.adapterVariables('default');
    const [kernel, bias] = base.layers[2].getWeights();
    expect([...copyKernel.read().dataSync()]).toEqual([...kernel.dataSync()]);
    expect([...copyBias.read().dataSync()]).toEqual([...bias.dataSync()]);
    // So an adapted model whose B factors are zero computes exactly the base.
    const fresh = addLoRA(base, { targetModules: ['fc1'], modulesToSave: ['fc2', 'head'], rank: 2 });
    expectClose(outputs(fresh), outputs(base));
    fresh.dispose();
    write(copyBias, Number.NaN);
    expectRefused(lora, () => mergeAndUnload(lora), /^mergeAndUnload: layer head: adapter "default" \(a full copy, modules_to_save\) holds non-finite values; refusing to merge it/);
    lora.dispose();
    base.dispose();
  });
});

describe('Layers robustness: adapter changes while fit runs', () => {
  type Attempt = [string, (model: tfl.LayersModel) => unknown];
  const attempts: Attempt[] = [
    ['setActiveAdapter', (m) => setActiveAdapter(m, 'other')],
    ['setActiveAdapter', (m) => setActiveAdapter(m, null)],
    ['deleteAdapter', (m) => deleteAdapter(m, 'default')],
    ['addAdapter', (m) => addAdapter(m, { adapterName: 'third', rank: 1 })],
    ['mergeAndUnload', (m) => mergeAndUnload(m)],
    ['unload', (m) => unload(m)],
    ['addLoRA', (m) => addLoRA(m, { adapterName: 'fourth', rank: 1 })],
  ];

  for (const [kind, make] of [['Sequential', mlp], ['functional', functional]] as const) {
    it(`${kind}: every change from an onBatchEnd callback is refused; the fit completes, trains, and leaks nothing`, async () => {
      const base = make();
      const lora = addLoRA(base, { rank: 2 });
      addAdapter(lora, { adapterName: 'other', rank: 1 });
      const optimizer = tf.train.adam(0.01);
      lora.compile({ optimizer, loss: 'meanSquaredError' });
      const x = tf.randomNormal([16, 6], 0, 1, 'float32', 1);
      const y = tf.randomNormal([16, 3], 0, 1, 'float32', 2);
      await lora.fit(x, y, { epochs: 1, batchSize: 8, verbose: 0 }); // creates the optimizer's slots
      const trainable = [...lora.trainableWeights];
      const weightsBefore = trainable.map((w) => [...w.read().dataSync()]);
      const numTensors = tf.memory().numTensors;
      const errors: string[] = [];
      await lora.fit(x, y, {
        epochs: 2,
        batchSize: 4,
        verbose: 0,
        callbacks: {
          onBatchEnd: async () => {
            for (const [, attempt] of attempts) {
              try {
                attempt(lora);
                errors.push('accepted');
              } catch (e) {
                errors.push((e as Error).message);
              }
            }
          },
        },
      });
      expect(errors).toHaveLength(attempts.length * 8);
      errors.forEach((message, i) => {
        const where = attempts[i % attempts.length][0];
        expect(message).toBe(`${where}: model ${JSON.stringify(lora.name)} is being trained by fit() / fitDataset(); changing or copying its adapters mid-training is refused. Call ${where} after fit resolves`);
      });
      expect(tf.memory().numTensors).toBe(numTensors);
      expect(adapterNames(lora)).toEqual(['default', 'other']);
      expect(activeAdapter(lora)).toBe('default');
      lora.trainableWeights.forEach((w, i) => expect(w).toBe(trainable[i]));
      // The fit trained the active adapter throughout.
      expect(trainable.every((w, i) => [...w.read().dataSync()].some((v, j) => v !== weightsBefore[i][j]))).toBe(true);
      expect(trainable.every((w) => [...w.read().dataSync()].every(Number.isFinite))).toBe(true);
      // Once fit has resolved, the same calls go through.
      setActiveAdapter(lora, 'other');
      expect(activeAdapter(lora)).toBe('other');
      const merged = mergeAndUnload(lora);
      merged.dispose();
      deleteAdapter(lora, 'default');
      expect(adapterNames(lora)).toEqual(['other']);
      expectTfRuns();
      tf.dispose([x, y]);
      optimizer.dispose();
      lora.dispose();
      base.dispose();
    });
  }

  it('fitDataset is guarded the same way', async () => {
    const base = mlp();
    const lora = addLoRA(base, { rank: 2 });
    lora.compile({ optimizer: tf.train.sgd(0.01), loss: 'meanSquaredError' });
    const xs = tf.randomNormal([8, 6], 0, 1, 'float32', 3);
    const ys = tf.randomNormal([8, 3], 0, 1, 'float32', 4);
    const dataset = {
      async iterator() {
        let done = false;
        return {
          async next() {
            if (done) return { value: undefined, done: true };
            done = true;
            return { value: { xs: xs.clone(), ys: ys.clone() }, done: false };
          },
        };
      },
      size: 1,
    };
    const errors: string[] = [];
    await lora.fitDataset(dataset as never, {
      epochs: 1,
      verbose: 0,
      callbacks: {
        onBatchEnd: async () => {
          try {
            setActiveAdapter(lora, null);
          } catch (e) {
            errors.push((e as Error).message);
          }
        },
      },
    });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^setActiveAdapter: model .* is being trained by fit\(\) \/ fitDataset\(\)/);
    expect(activeAdapter(lora)).toBe('default');
    tf.dispose([xs, ys]);
    lora.dispose();
    base.dispose();
  });
});
