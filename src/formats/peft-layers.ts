import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { type ModuleRole, patternValue, resolveRoles } from '../core/targets.js';
import { activeAdapter, adaptModel, adapterNames, loraLayers, setActiveAdapter } from '../layers/add-lora.js';
import { BASE_FACTORIES, type LayerAdapterSpec, LoRALayer, baseClassOf, baseConfigOf, checkAdapterName, kernelShapeOf } from '../layers/lora-layer.js';
import { checkModel, modelLayers, refreshTrainableWeights } from '../layers/model-graph.js';
import { describe } from '../util/validate.js';
import {
  AdapterLoadError,
  KEY_ROOT,
  type LoadAdapterOptions,
  PEFT_METADATA,
  type PeftAdapter,
  type SaveAdapterOptions,
  adapterWeights,
  checkFiniteTensor,
  checkPrefix,
  checkScale,
  mostCommon,
  peftConfig,
  readAdapter,
  tensorWriter,
} from './peft.js';
import type { EncodableTensor } from './safetensors.js';

/**
 * PEFT adapter files for tfjs Layers models. A layer's path (`dense_1`, `block.up`) is its
 * PyTorch module name, so an adapter moves to and from a torch model whose modules carry
 * the same names (nn.Linear, nn.Embedding, nn.Conv2d). Layouts, ours → PyTorch's:
 * - Dense: A `[in, r]` → `lora_A.weight [r, in]`; B `[r, out]` → `lora_B.weight [out, r]`;
 *   kernel `[in, out]` → `weight [out, in]`.
 * - Embedding: A `[vocab, r]` → `lora_embedding_A [r, vocab]`; B `[r, dim]` →
 *   `lora_embedding_B [dim, r]`; embeddings `[vocab, dim]` → `weight`, unchanged.
 * - Conv2D (NHWC ↔ NCHW): A `[kh, kw, in, r]` → `lora_A.weight [r, in, kh, kw]`; B `[r, out]`
 *   → `lora_B.weight [out, r, 1, 1]`; kernel `[kh, kw, in, out]` → `weight [out, in, kh, kw]`.
 */

/** One tensor of a layer's adapter: our shape, the permutation to PyTorch's, PyTorch's shape. */
interface Entry {
  suffix: string;
  ours: number[];
  perm?: number[];
  torch: number[];
}

function loraEntries(cls: string, kernel: number[], r: number): [Entry, Entry] {
  if (cls === 'Embedding') {
    const [vocab, dim] = kernel;
    return [
      { suffix: 'lora_embedding_A', ours: [vocab, r], perm: [1, 0], torch: [r, vocab] },
      { suffix: 'lora_embedding_B', ours: [r, dim], perm: [1, 0], torch: [dim, r] },
    ];
  }
  if (cls === 'Conv2D') {
    const [kh, kw, inC, outC] = kernel;
    return [
      { suffix: 'lora_A.weight', ours: [kh, kw, inC, r], perm: [3, 2, 0, 1], torch: [r, inC, kh, kw] },
      { suffix: 'lora_B.weight', ours: [r, outC], perm: [1, 0], torch: [outC, r, 1, 1] },
    ];
  }
  const [inF, outF] = kernel;
  return [
    { suffix: 'lora_A.weight', ours: [inF, r], perm: [1, 0], torch: [r, inF] },
    { suffix: 'lora_B.weight', ours: [r, outF], perm: [1, 0], torch: [outF, r] },
  ];
}

/** A full copy's tensors (`modules_to_save`), in the layer's base-weight order. */
function fullEntries(cls: string, layer: LoRALayer | tfl.layers.Layer, kernel: number[]): Entry[] {
  const names = layer instanceof LoRALayer ? layer.baseWeightNames() : layer.weights.map((w) => w.originalName.slice(w.originalName.lastIndexOf('/') + 1));
  return names.map((n): Entry => {
    if (n === 'bias') return { suffix: 'bias', ours: [kernel[kernel.length - 1]], torch: [kernel[kernel.length - 1]] };
    if (cls === 'Embedding') return { suffix: 'weight', ours: kernel, torch: kernel };
    if (cls === 'Conv2D') return { suffix: 'weight', ours: kernel, perm: [3, 2, 0, 1], torch: [kernel[3], kernel[2], kernel[0], kernel[1]] };
    return { suffix: 'weight', ours: kernel, perm: [1, 0], torch: [kernel[1], kernel[0]] };
  });
}

const SUPPORTED = new Set(Object.keys(BASE_FACTORIES));

/**
 * PEFT 0.21 builds a Conv2d adapter's lora_A without the base's dilation (tuners/lora/layer.py,
 * `conv_layer(in, r, kernel_size, stride, padding)`): on a dilated convolution its adapter
 * computes something else (or fails on a shape mismatch). Such adapters cannot move between
 * PEFT and lora-tfjs, whose lora_A uses the base's dilation, so they are refused both ways.
 */
function checkPeftConv(where: string, path: string, layer: tfl.layers.Layer, error: (m: string) => Error): void {
  const d = baseConfigOf(layer).dilationRate as number | number[] | undefined;
  const dilated = Array.isArray(d) ? d.some((v) => v !== 1) : d !== undefined && d !== 1;
  if (dilated) throw error(`${where}: layer ${describe(path)} is a Conv2D with dilationRate ${JSON.stringify(d)}; PEFT's Conv2d LoRA ignores dilation (its lora_A is undilated), so its adapter cannot be exchanged with PEFT`);
}

// ---- saving --------------------------------------------------------------------------------

/** Adapter `adapterName` (default: the active one) of a Layers model in PEFT's layout. */
export function serializeLayersAdapter(model: tfl.LayersModel, options: SaveAdapterOptions = {}): PeftAdapter {
  const where = 'serializeAdapter';
  checkModel(where, model);
  if (options === null || typeof options !== 'object') throw new Error(`${where}: options = ${describe(options)} is invalid; expected an options object`);
  const prefix = checkPrefix(where, options.prefix);
  const dtype = options.dtype ?? 'F32';
  if (!['F32', 'F16', 'BF16'].includes(dtype)) throw new Error(`${where}: dtype = ${describe(dtype)} is invalid; expected "F32", "F16" or "BF16"`);
  const layers = loraLayers(model);
  if (layers.length === 0) throw new Error(`${where}: the model has no LoRA layers; create them with addLoRA(model, config)`);
  const names = adapterNames(model);
  const name = options.adapterName ?? activeAdapter(model) ?? (names.length === 1 ? names[0] : null);
  if (name === null) throw new Error(`${where}: no adapter is active; pass { adapterName } (one of ${describe(names)})`);
  if (!names.includes(name)) throw new Error(`${where}: adapterName = ${describe(name)} is not an adapter of the model; it has ${describe(names)}`);
  const holders = layers.filter(({ layer }) => layer.adapterNames().includes(name));
  const lora = holders.filter(({ layer }) => layer.adapterSpec(name).kind === 'lora');
  const full = holders.filter(({ layer }) => layer.adapterSpec(name).kind === 'full');
  if (lora.length === 0) throw new Error(`${where}: adapter ${describe(name)} has no LoRA layer (only full copies of ${describe(full.map((l) => l.path))}); PEFT cannot load an adapter that targets no module`);
  const specs = lora.map(({ layer }) => layer.adapterSpec(name) as Extract<LayerAdapterSpec, { kind: 'lora' }>);
  for (const field of ['useRsLora', 'dropout'] as const) {
    const values = new Set(specs.map((c) => c[field]));
    if (values.size > 1) throw new Error(`${where}: adapter ${describe(name)} has different ${field} values per layer (${describe([...values])}); PEFT's config holds one`);
  }
  const ranks = specs.map((c) => c.rank);
  const alphas = specs.map((c) => c.alpha);
  const tensors: Record<string, EncodableTensor> = {};
  const put = tensorWriter(where, name, dtype, tensors);
  const write = (module: string, entries: Entry[], vars: tfl.LayerVariable[]) =>
    entries.forEach((e, i) => put(`${KEY_ROOT}${module}.${e.suffix}`, vars[i].read(), e.perm, e.torch));
  for (const { path, layer } of lora) if (baseClassOf(layer) === 'Conv2D') checkPeftConv(where, path, layer, (m) => new Error(m));
  for (const [i, { path, layer }] of lora.entries()) write(prefix + path, loraEntries(baseClassOf(layer), layer.kernelShape(), ranks[i]), layer.adapterVariables(name));
  for (const { path, layer } of full) write(prefix + path, fullEntries(baseClassOf(layer), layer, layer.kernelShape()), layer.adapterVariables(name));
  const config = peftConfig({
    r: mostCommon(ranks),
    alpha: mostCommon(alphas),
    dropout: specs[0].dropout,
    useRsLora: specs[0].useRsLora,
    targets: lora.map((l) => prefix + l.path),
    ranks,
    alphas,
    modulesToSave: full.map((l) => prefix + l.path),
  });
  const sizes = Object.fromEntries(modelLayers(model).filter(({ layer }) => SUPPORTED.has(baseClassOf(layer))).map(({ path, layer }) => [prefix + path, kernelShapeOf(layer)]));
  return { weights: adapterWeights(tensors, config, sizes, name), config };
}

// ---- loading -------------------------------------------------------------------------------

/** A Layers-model adapter read and checked, its tensors in our layout, nothing changed yet. */
export interface PreparedLayersAdapter {
  readonly name: string;
  /** Per layer path: the adapter spec and its variables' values (`[A, B]` or the full copy). */
  readonly layers: ReadonlyMap<string, { spec: LayerAdapterSpec; values: tf.Tensor[] }>;
}

/**
 * Read a PEFT adapter against a Layers model (plain or adapted) and check everything: the
 * config, the key set, every shape, finiteness. Allocates the tensors; changes nothing.
 */
export function prepareLayersAdapter(model: tfl.LayersModel, adapter: { weights: Uint8Array; config: unknown }, options: LoadAdapterOptions = {}): PreparedLayersAdapter {
  checkModel('loadAdapter', model);
  const { name, prefix, config, content } = readAdapter(adapter, options);
  try {
    checkAdapterName('loadAdapter', name);
  } catch (err) {
    throw new AdapterLoadError((err as Error).message.replace(/^loadAdapter: /, ''));
  }
  const leaves = modelLayers(model);
  const torchNames = leaves.map((l) => prefix + l.path);
  checkSizes(leaves, torchNames, content.metadata[PEFT_METADATA.layers]);
  let roles: ModuleRole[];
  try {
    roles = resolveRoles('adapter_config.json', torchNames, { targetModules: config.targetModules, excludeModules: config.excludeModules ?? undefined, modulesToSave: config.modulesToSave ?? undefined }, (n) => baseClassOf(leaves[torchNames.indexOf(n)].layer) === 'Dense');
  } catch (err) {
    throw new AdapterLoadError(`${(err as Error).message.replace(/targetModules/g, 'target_modules').replace(/excludeModules/g, 'exclude_modules').replace(/modulesToSave/g, 'modules_to_save')}${prefix === '' ? ' (pass { prefix } if this model sits inside a larger PyTorch model)' : ''}`);
  }
  const expected = new Map<string, { entry: Entry; path: string }>();
  const plans: Array<{ path: string; spec: LayerAdapterSpec; entries: Entry[] }> = [];
  roles.forEach((role, i) => {
    if (role === null) return;
    const { path, layer } = leaves[i];
    const cls = baseClassOf(layer);
    if (!SUPPORTED.has(cls)) throw new AdapterLoadError(`adapter_config.json selects ${torchNames[i]}, a ${cls}; lora-tfjs adapts ${[...SUPPORTED].join(', ')} layers`);
    if (role === 'lora' && cls === 'Conv2D') checkPeftConv('adapter_config.json', torchNames[i], layer, (m) => new AdapterLoadError(m));
    const kernel = kernelShapeOf(layer);
    let spec: LayerAdapterSpec;
    let entries: Entry[];
    if (role === 'full') {
      spec = { name, kind: 'full' };
      entries = fullEntries(cls, layer, kernel);
    } else {
      const rank = patternValue('adapter_config.json', 'rank_pattern', config.rankPattern, torchNames[i], config.r);
      const alpha = patternValue('adapter_config.json', 'alpha_pattern', config.alphaPattern, torchNames[i], config.alpha);
      checkScale(config, torchNames[i], rank, alpha);
      spec = { name, kind: 'lora', rank, alpha, dropout: config.dropout, useRsLora: config.useRsLora, init: 'gaussian', seed: 0 };
      entries = loraEntries(cls, kernel, rank);
    }
    for (const entry of entries) expected.set(`${KEY_ROOT}${torchNames[i]}.${entry.suffix}`, { entry, path });
    plans.push({ path, spec, entries });
  });
  const present = [...content.tensors.keys()];
  const missing = [...expected.keys()].filter((k) => !content.tensors.has(k));
  const unexpected = present.filter((k) => !expected.has(k));
  if (missing.length > 0 || unexpected.length > 0) {
    throw new AdapterLoadError(
      [missing.length > 0 ? `missing tensor keys: ${missing.join(', ')}` : '', unexpected.length > 0 ? `unexpected tensor keys: ${unexpected.slice(0, 20).join(', ')}${unexpected.length > 20 ? `, … (${unexpected.length} in all)` : ''}` : ''].filter(Boolean).join('; '),
    );
  }
  for (const [key, { entry }] of expected) {
    const t = content.tensors.get(key)!;
    if (t.shape.join() !== entry.torch.join()) throw new AdapterLoadError(`${key.slice(KEY_ROOT.length)} has shape [${t.shape.join(', ')}] but this model needs [${entry.torch.join(', ')}]`);
    checkFiniteTensor(key, t);
  }
  const layers = new Map<string, { spec: LayerAdapterSpec; values: tf.Tensor[] }>();
  for (const { path, spec, entries } of plans) {
    const torchName = prefix + path;
    const values = entries.map((e) =>
      tf.tidy(() => {
        const data = content.tensors.get(`${KEY_ROOT}${torchName}.${e.suffix}`)!.data;
        if (e.perm === undefined) return tf.tensor(data, e.ours);
        const permuted = e.perm.map((p) => e.ours[p]);
        return tf.reshape(tf.transpose(tf.tensor(data, permuted), inverse(e.perm)), e.ours);
      }),
    );
    layers.set(path, { spec, values });
  }
  return { name, layers };
}

function inverse(perm: number[]): number[] {
  const out = new Array<number>(perm.length);
  perm.forEach((p, i) => (out[p] = i));
  return out;
}

/** The base sizes recorded in the file (tfjs kernel shapes) must be this model's. */
function checkSizes(leaves: ReadonlyArray<{ path: string; layer: tfl.layers.Layer }>, torchNames: readonly string[], recorded: string | undefined): void {
  if (recorded === undefined) return;
  let sizes: Record<string, unknown>;
  try {
    sizes = JSON.parse(recorded) as Record<string, unknown>;
  } catch {
    throw new AdapterLoadError(`adapter_model.safetensors: metadata ${PEFT_METADATA.layers} is not valid JSON`);
  }
  if (sizes === null || typeof sizes !== 'object') return;
  leaves.forEach(({ layer }, i) => {
    const n = torchNames[i];
    if (!Object.prototype.hasOwnProperty.call(sizes, n)) return;
    const ours = kernelShapeOf(layer);
    if (JSON.stringify(sizes[n]) !== JSON.stringify(ours)) throw new AdapterLoadError(`the adapter was made for ${n} with a kernel of shape ${JSON.stringify(sizes[n])} but this model's ${n} has ${JSON.stringify(ours)}`);
  });
}

/** Add a prepared adapter to the model's LoRA layers in place (all targeted layers must be LoRA layers). */
export function commitLayersAdapter(model: tfl.LayersModel, prepared: PreparedLayersAdapter): void {
  const byPath = new Map(modelLayers(model).map(({ path, layer }) => [path, layer]));
  const plain = [...prepared.layers.keys()].filter((p) => !(byPath.get(p) instanceof LoRALayer));
  if (plain.length > 0) {
    throw new AdapterLoadError(`layers ${describe(plain)} are not LoRA layers; load with loadLoRAModel(model, dir) / deserializeLoRAModel(model, adapter), which return a new model with them converted`);
  }
  // An adapter of that name is replaced, everywhere it is (as loading into a LoRAMLP does).
  const name = prepared.name;
  const holders = loraLayers(model).filter(({ layer }) => layer.adapterNames().includes(name));
  const wasActive = activeAdapter(model) === name;
  for (const { layer } of holders) layer.deleteAdapter(name);
  for (const [path, { spec, values }] of prepared.layers) {
    const layer = byPath.get(path) as LoRALayer;
    layer.addAdapter(spec);
    layer.adapterVariables(spec.name).forEach((v, i) => v.write(values[i]));
    if (wasActive) layer.setActiveAdapter(name);
  }
  refreshTrainableWeights(model);
}

/** Free a prepared adapter's tensors. */
export function disposePreparedLayers(prepared: PreparedLayersAdapter): void {
  for (const { values } of prepared.layers.values()) tf.dispose(values);
}

/** Load a PEFT adapter into an adapted model's LoRA layers, in place. Returns its name. */
export function deserializeLayersAdapter(model: tfl.LayersModel, adapter: { weights: Uint8Array; config: unknown }, options: LoadAdapterOptions = {}): string {
  const prepared = prepareLayersAdapter(model, adapter, options);
  try {
    commitLayersAdapter(model, prepared);
  } finally {
    disposePreparedLayers(prepared);
  }
  return prepared.name;
}

/**
 * PEFT's `PeftModel.from_pretrained(model, …)` for tfjs: a new model with the adapter's
 * target layers converted to LoRA layers and the adapter's weights loaded (active). The
 * input model is left as it was.
 */
export function deserializeLoRAModel(model: tfl.LayersModel, adapter: { weights: Uint8Array; config: unknown }, options: LoadAdapterOptions = {}): tfl.LayersModel {
  const prepared = prepareLayersAdapter(model, adapter, options);
  try {
    const adapted = adaptModel(model, prepared.name, new Map([...prepared.layers].map(([path, { spec }]) => [path, spec])));
    const byPath = new Map(modelLayers(adapted).map(({ path, layer }) => [path, layer]));
    for (const [path, { spec, values }] of prepared.layers) (byPath.get(path) as LoRALayer).adapterVariables(spec.name).forEach((v, i) => v.write(values[i]));
    setActiveAdapter(adapted, prepared.name);
    return adapted;
  } finally {
    disposePreparedLayers(prepared);
  }
}
