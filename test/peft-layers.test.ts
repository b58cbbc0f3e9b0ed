import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdapterLoadError,
  ADAPTER_WEIGHTS,
  activeAdapter,
  addLoRA,
  adapterNames,
  decodeSafetensors,
  encodeSafetensors,
  initBackend,
  loraLayers,
  mergeAndUnload,
} from '../src/index.js';
import { loadAdapter, loadLoRAModel, saveAdapter } from '../src/node/index.js';
import { Rng, randomNormal } from '../src/util/random.js';
import { PeftBridge } from './peft/bridge.js';

// A tfjs Layers model with an Embedding, two Conv2Ds and a Dense, against a PyTorch model
// whose nn.Embedding / nn.Conv2d / nn.Linear modules carry the same names and weights:
// adapters saved by real PEFT 0.21 load here with PEFT's outputs, and ours load in PEFT.

type Nested = number | Nested[];
type Outputs = Record<string, { unmerged: Record<string, Nested>; merged: Record<string, Nested> }>;

const MODULES = [
  { name: 'emb', type: 'embedding', num: 12, dim: 5 },
  { name: 'conv', type: 'conv2d', in: 3, out: 4, k: [3, 3], stride: 1, padding: 1, dilation: 1 },
  { name: 'conv2', type: 'conv2d', in: 3, out: 2, k: [3, 2], stride: 2, padding: 0, dilation: 1 },
  { name: 'fc', type: 'linear', in: 6, out: 4 },
];

let bridge: PeftBridge;
let tmp: string;
let counter = 0;
const fresh = (label: string) => join(tmp, `${String(++counter).padStart(2, '0')}-${label}`);

/** The tfjs model: one branch per module, each on its own input. */
function tfjsModel(): tfl.LayersModel {
  const init = (seed: number) => ({ kernelInitializer: tfl.initializers.glorotNormal({ seed }), biasInitializer: tfl.initializers.randomNormal({ seed: seed + 50, stddev: 0.3 }) });
  const ids = tfl.input({ shape: [4], name: 'ids' });
  const img = tfl.input({ shape: [7, 6, 3], name: 'img' });
  const vec = tfl.input({ shape: [6], name: 'vec' });
  const emb = tfl.layers.embedding({ inputDim: 12, outputDim: 5, name: 'emb', embeddingsInitializer: tfl.initializers.randomNormal({ seed: 1 }) }).apply(ids) as tfl.SymbolicTensor;
  const conv = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'conv', ...init(2) }).apply(img) as tfl.SymbolicTensor;
  const conv2 = tfl.layers.conv2d({ filters: 2, kernelSize: [3, 2], strides: 2, padding: 'valid', name: 'conv2', ...init(3) }).apply(img) as tfl.SymbolicTensor;
  const fc = tfl.layers.dense({ units: 4, name: 'fc', ...init(5) }).apply(vec) as tfl.SymbolicTensor;
  return tfl.model({ inputs: [ids, img, vec], outputs: [emb, conv, conv2, fc], name: 'branches' });
}

/** The tfjs base weights in PyTorch's layout, as a safetensors state dict for the bridge. */
function torchState(model: tfl.LayersModel, file: string): string {
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  const put = (key: string, t: tf.Tensor, perm?: number[]) => {
    const v = perm === undefined ? t : tf.transpose(t, perm);
    tensors[key] = { shape: v.shape, data: v.dataSync() as Float32Array };
    if (v !== t) v.dispose();
  };
  for (const layer of model.layers) {
    const w = layer.getWeights();
    if (w.length === 0) continue;
    const cls = layer.getClassName();
    if (cls === 'Embedding') put(`${layer.name}.weight`, w[0]);
    if (cls === 'Conv2D') put(`${layer.name}.weight`, w[0], [3, 2, 0, 1]);
    if (cls === 'Dense') put(`${layer.name}.weight`, w[0], [1, 0]);
    if (w[1] !== undefined) put(`${layer.name}.bias`, w[1]);
  }
  writeFileSync(file, encodeSafetensors(tensors));
  return file;
}

const sample = () => {
  const rng = new Rng(9);
  const ids = [[0, 3, 3, 11], [7, 1, 5, 2]];
  const img = randomNormal([2, 7, 6, 3], rng);
  const vec = randomNormal([2, 6], rng);
  const x = { emb: ids, conv: img.arraySync(), conv2: img.arraySync(), fc: vec.arraySync() };
  const tensors = [tf.tensor2d(ids, [2, 4], 'int32'), img, vec];
  return { x, tensors };
};

function ours(model: tfl.LayersModel, tensors: tf.Tensor[]): Record<string, Nested> {
  const ys = tf.tidy(() => model.predict(tensors) as tf.Tensor[]);
  const out = Object.fromEntries(MODULES.map((m, i) => [m.name, ys[i].arraySync() as Nested]));
  tf.dispose(ys);
  return out;
}

function flat(v: Nested): number[] {
  return Array.isArray(v) ? v.flatMap(flat) : [v];
}

/** max |a − b| over the largest |b|, per module; all must be below `tol`. */
function expectClose(a: Record<string, Nested>, b: Record<string, Nested>, tol = 1e-5): void {
  for (const m of MODULES) {
    const x = flat(a[m.name]);
    const y = flat(b[m.name]);
    expect(x.length, m.name).toBe(y.length);
    const peak = Math.max(...y.map(Math.abs), 1e-12);
    const diff = Math.max(...x.map((v, i) => Math.abs(v - y[i])));
    expect(diff / peak, m.name).toBeLessThan(tol);
  }
}

beforeAll(async () => {
  expect(await initBackend('wasm')).toBe('wasm');
  bridge = new PeftBridge();
  tmp = mkdtempSync(join(tmpdir(), 'lora-peft-layers-'));
});

afterAll(() => {
  bridge?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('PEFT adapters for tfjs Layers models (Embedding, Conv2D, Dense), against real PEFT', () => {
  it('an adapter saved by PEFT loads into the tfjs model with PEFT’s outputs, unmerged and merged (1e-5)', async () => {
    const base = tfjsModel();
    const state = torchState(base, `${fresh('state')}.safetensors`);
    const dir = fresh('from-peft');
    const { x, tensors } = sample();
    const before = tf.memory().numTensors;
    const config = { target_modules: ['emb', 'conv', 'conv2', 'fc'], r: 2, lora_alpha: 6, rank_pattern: { conv2: 3 }, alpha_pattern: { fc: 1.5 }, use_rslora: true };
    const saved = await bridge.call<{ outputs: Outputs; warnings: string[] }>('save_peft', { base: { kind: 'modules', modules: MODULES, state }, adapters: [{ name: 'default', config, seed: 4 }], dir, x });
    expect(saved.warnings).toEqual([]);
    const lora = loadLoRAModel(base, dir);
    const specs = Object.fromEntries(loraLayers(lora).map(({ path, layer }) => [path, layer.adapterSpec('default')]));
    expect(specs.conv2).toMatchObject({ rank: 3, alpha: 6, useRsLora: true });
    expect(specs.fc).toMatchObject({ rank: 2, alpha: 1.5, useRsLora: true });
    expectClose(ours(lora, tensors), saved.outputs.default.unmerged);
    // Loaded again into the adapted model (as a second adapter): it becomes the active one.
    const twice = loadLoRAModel(lora, dir, { adapterName: 'again' });
    expect(adapterNames(twice)).toEqual(['default', 'again']);
    expectClose(ours(twice, tensors), saved.outputs.default.unmerged);
    twice.dispose();
    const merged = mergeAndUnload(lora);
    expectClose(ours(merged, tensors), saved.outputs.default.merged);
    // The base model's own output is not the adapted one: the adapter does something.
    expect(() => expectClose(ours(base, tensors), saved.outputs.default.unmerged)).toThrow();
    lora.dispose();
    merged.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(tensors);
    base.dispose();
  });

  it('our adapter (with a full copy of fc) loads in PEFT on the torch model with our outputs, and with no warning', async () => {
    const base = tfjsModel();
    const state = torchState(base, `${fresh('state')}.safetensors`);
    const { x, tensors } = sample();
    const lora = addLoRA(base, { targetModules: ['emb', 'conv'], modulesToSave: ['fc', 'conv2'], rank: 2, alpha: 4, rankPattern: { emb: 1 }, alphaPattern: { conv: 3 }, useRsLora: true });
    const rng = new Rng(21);
    for (const { layer } of loraLayers(lora)) {
      for (const v of layer.adapterVariables('default')) {
        const r = randomNormal(v.shape as number[], rng, 0.3);
        v.write(r);
        r.dispose();
      }
    }
    const dir = fresh('ours');
    saveAdapter(lora, dir);
    const file = decodeSafetensors(readFileSync(join(dir, ADAPTER_WEIGHTS)));
    expect([...file.tensors.keys()].sort()).toEqual(
      [
        'base_model.model.conv.lora_A.weight',
        'base_model.model.conv.lora_B.weight',
        'base_model.model.conv2.bias',
        'base_model.model.conv2.weight',
        'base_model.model.emb.lora_embedding_A',
        'base_model.model.emb.lora_embedding_B',
        'base_model.model.fc.bias',
        'base_model.model.fc.weight',
      ].sort(),
    );
    expect(file.tensors.get('base_model.model.conv.lora_A.weight')!.shape).toEqual([2, 3, 3, 3]);
    expect(file.tensors.get('base_model.model.conv.lora_B.weight')!.shape).toEqual([4, 2, 1, 1]);
    expect(file.tensors.get('base_model.model.emb.lora_embedding_A')!.shape).toEqual([1, 12]);
    expect(file.tensors.get('base_model.model.emb.lora_embedding_B')!.shape).toEqual([5, 1]);
    const loaded = await bridge.call<{ outputs: Outputs; warnings: string[]; config: { ranks: Record<string, number>; modules_to_save: string[] } }>('load_ours', {
      base: { kind: 'modules', modules: MODULES, state },
      adapters: [{ name: 'default', dir }],
      x,
    });
    expect(loaded.warnings).toEqual([]);
    expect(loaded.config.ranks).toMatchObject({ emb: 1, conv: 2 });
    expect(loaded.config.modules_to_save).toEqual(['conv2', 'fc']);
    expect(file.tensors.get('base_model.model.conv2.weight')!.shape).toEqual([2, 3, 3, 2]);
    const mine = ours(lora, tensors);
    expectClose(loaded.outputs.default.unmerged, mine);
    expectClose(loaded.outputs.default.merged, mine);

    // And back: the same files load into the adapted model in place, as a second adapter.
    loadAdapter(lora, dir, { adapterName: 'again' });
    expect(adapterNames(lora)).toEqual(['default', 'again']);
    for (const { layer } of loraLayers(lora)) {
      layer.adapterVariables('again').forEach((v, i) => expect([...v.read().dataSync()]).toEqual([...layer.adapterVariables('default')[i].read().dataSync()]));
    }
    // Loading over the active adapter replaces it and keeps it active.
    loadAdapter(lora, dir);
    expect(activeAdapter(lora)).toBe('default');
    expectClose(ours(lora, tensors), mine);
    tf.dispose(tensors);
    lora.dispose();
    base.dispose();
  });

  it('refuses an adapter whose shapes or targets do not fit, changing nothing', async () => {
    const base = tfjsModel();
    const state = torchState(base, `${fresh('state')}.safetensors`);
    const dir = fresh('wrong');
    const other = MODULES.map((m) => (m.name === 'conv' ? { ...m, k: [1, 1], padding: 0 } : m));
    // The same names on a torch model whose conv is 1×1: the kernel shapes differ.
    await bridge.call('save_peft', { base: { kind: 'modules', modules: other }, adapters: [{ name: 'default', config: { target_modules: ['conv'], r: 2, lora_alpha: 2 } }], dir, x: sample().x });
    const before = tf.memory().numTensors;
    expect(() => loadLoRAModel(base, dir)).toThrow(AdapterLoadError);
    expect(() => loadLoRAModel(base, dir)).toThrow(/conv.lora_A.weight has shape \[2, 3, 1, 1\] but this model needs \[2, 3, 3, 3\]/);
    const lora = addLoRA(base, { targetModules: ['fc'], rank: 1 });
    expect(() => loadAdapter(lora, dir, { adapterName: 'x' })).toThrow(/shape/);
    expect(adapterNames(lora)).toEqual(['default']);
    lora.dispose();
    expect(tf.memory().numTensors).toBe(before);
    void state;
    base.dispose();
  });

  it('refuses a PEFT adapter that targets a dilated Conv2D (PEFT builds its lora_A undilated)', async () => {
    const dir = fresh('dilated');
    const modules = [{ name: 'dil', type: 'conv2d', in: 2, out: 2, k: [3, 3], stride: 1, padding: 0, dilation: 1 }];
    await bridge.call('save_peft', { base: { kind: 'modules', modules }, adapters: [{ name: 'default', config: { target_modules: ['dil'], r: 1, lora_alpha: 1 } }], dir, x: { dil: [[[[0, 0], [0, 0], [0, 0]], [[0, 0], [0, 0], [0, 0]], [[0, 0], [0, 0], [0, 0]]]] } });
    const img = tfl.input({ shape: [8, 8, 2] });
    const out = tfl.layers.conv2d({ filters: 2, kernelSize: 3, dilationRate: 2, name: 'dil' }).apply(img) as tfl.SymbolicTensor;
    const base = tfl.model({ inputs: img, outputs: out });
    const before = tf.memory().numTensors;
    expect(() => loadLoRAModel(base, dir)).toThrow(/layer "dil" is a Conv2D with dilationRate \[2,2\]; PEFT's Conv2d LoRA ignores dilation/);
    expect(tf.memory().numTensors).toBe(before);
    base.dispose();
  });
});
