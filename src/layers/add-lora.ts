import * as tfl from '@tensorflow/tfjs-layers';
import { type LoRAConfig, resolveLoRAConfig } from '../core/lora-adapter.js';
import type { ParameterCounts } from '../core/params.js';
import { type ModuleRole, type TargetSpec, patternValue, resolveRoles } from '../core/targets.js';
import { type PlannedTensor, checkAllocation, elementsOf } from '../runtime/memory-budget.js';
import { describe, invalid } from '../util/validate.js';
import { warn } from '../util/warnings.js';
import { type LayerAdapterSpec, LoRALayer, baseClassOf, baseConfigOf, checkAdapterName, kernelShapeOf } from './lora-layer.js';
import { LoRAConv2D } from './lora-conv2d.js';
import { LoRADense } from './lora-dense.js';
import { LoRAEmbedding } from './lora-embedding.js';
import { type LayerEntry, checkModel, checkNotFitting, copyWeights, editConfig, modelFromConfig, modelLayers, refreshTrainableWeights } from './model-graph.js';

/**
 * LoRA for any tfjs Layers model, in one place (PEFT's `LoraModel`): which layers a config
 * targets, replacing them by LoRA layers in a rebuilt model, and the model-wide adapter
 * operations (add, switch, disable, delete, count).
 */

/** `addLoRA`'s config: PEFT's `LoraConfig` vocabulary, camelCase. */
export interface LayersLoRAConfig extends LoRAConfig, TargetSpec {
  /** Name of the adapter (default `"default"`, as PEFT). */
  adapterName?: string;
}

/** The LoRA layer class for each standard layer class lora-tfjs adapts. */
const LORA_CLASS: Readonly<Record<string, string>> = {
  Dense: LoRADense.className,
  Embedding: LoRAEmbedding.className,
  Conv2D: LoRAConv2D.className,
};

/** Layer paths and what `config` makes of each, checked before anything changes. */
interface Plan {
  adapterName: string;
  specs: Map<string, LayerAdapterSpec>;
  /** Emitted only once the call is known to go ahead (a refused call warns about nothing). */
  warnings: string[];
}

const CONFIG_FIELDS = new Set(['rank', 'alpha', 'dropout', 'useRsLora', 'init', 'seed', 'targetModules', 'excludeModules', 'rankPattern', 'alphaPattern', 'modulesToSave', 'adapterName']);

function plan(where: string, model: tfl.LayersModel, config: LayersLoRAConfig): Plan {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    const hint = typeof config === 'string' ? ` (the adapter's name goes in config.adapterName: ${where}(model, { adapterName: ${describe(config)}, … }))` : '';
    throw new Error(`${where}: config = ${describe(config)} is invalid; expected an options object${hint}`);
  }
  const unknown = Object.keys(config).filter((k) => !CONFIG_FIELDS.has(k));
  if (unknown.length > 0) throw new Error(`${where}: config has unknown field(s) ${describe(unknown)}; expected only ${[...CONFIG_FIELDS].join(', ')}`);
  const adapterName = checkAdapterName(where, config.adapterName ?? 'default');
  const resolved = resolveLoRAConfig(where, config);
  const leaves = modelLayers(model);
  const names = leaves.map((l) => l.path);
  const roles: ModuleRole[] = resolveRoles(where, names, config, (name) => baseClassOf(leaves[names.indexOf(name)].layer) === 'Dense');
  const specs = new Map<string, LayerAdapterSpec>();
  const warnings: string[] = [];
  let index = 0;
  leaves.forEach(({ path, layer }, i) => {
    const role = roles[i];
    if (role === null) return;
    const cls = baseClassOf(layer);
    if (LORA_CLASS[cls] === undefined) {
      const field = role === 'full' ? 'modulesToSave' : 'targetModules';
      throw new Error(`${where}: ${field} selects layer ${describe(path)}, a ${cls}; lora-tfjs adapts ${Object.keys(LORA_CLASS).join(', ')} layers`);
    }
    const { dataFormat: format, dilationRate: dilation } = baseConfigOf(layer) as { dataFormat?: string; dilationRate?: number | number[] };
    if (cls === 'Conv2D' && (Array.isArray(dilation) ? dilation.some((d) => d !== 1) : dilation !== undefined && dilation !== 1)) {
      throw new Error(
        `${where}: layer ${describe(path)} is a Conv2D with dilationRate ${JSON.stringify(dilation)}, which lora-tfjs cannot adapt: tfjs 4.22 has no gradient for a dilated convolution (so the adapter could not train), and PEFT's Conv2d LoRA ignores dilation (so no adapter file could be exchanged)`,
      );
    }
    if (cls === 'Conv2D' && format === 'channelsFirst') {
      // Checked here, not only when the layer builds: a failed rebuild would leak its weights.
      throw new Error(`${where}: layer ${describe(path)} has dataFormat = "channelsFirst", which is not supported; expected "channelsLast" (tfjs runs convolutions in NHWC)`);
    }
    if (layer instanceof LoRALayer && layer.adapterNames().includes(adapterName)) {
      throw new Error(`${where}: layer ${describe(path)} already has an adapter named ${describe(adapterName)}; choose another adapterName or delete it first`);
    }
    if (role === 'full') {
      specs.set(path, { name: adapterName, kind: 'full' });
      return;
    }
    const rank = patternValue(where, 'rankPattern', config.rankPattern, path, resolved.rank);
    const alpha = patternValue(where, 'alphaPattern', config.alphaPattern, path, resolved.alpha);
    // Each layer's A gets its own seed, so two same-shaped layers do not start identical.
    const layerConfig = resolveLoRAConfig(`${where} (layer ${path})`, { ...resolved, rank, alpha, seed: resolved.seed + index++ });
    const [inFeatures, outFeatures] = fanInOut(layer, cls);
    if (rank > Math.min(inFeatures, outFeatures)) {
      warnings.push(`${where}: rank ${rank} on layer ${path} (${inFeatures} → ${outFeatures}) exceeds min(in, out) = ${Math.min(inFeatures, outFeatures)}; it adds parameters but no capacity`);
    }
    specs.set(path, { name: adapterName, kind: 'lora', ...layerConfig });
  });
  return { adapterName, specs, warnings };
}

/**
 * The tensors an adapter adds to a model: A and B of each LoRA layer, the full copies of
 * each `modulesToSave` layer (they share the base's buffers until the first training step
 * replaces them, so they are counted as the memory training will need).
 */
function adapterTensors(model: tfl.LayersModel, specs: ReadonlyMap<string, LayerAdapterSpec>): PlannedTensor[] {
  const layers = new Map(modelLayers(model).map(({ path, layer }) => [path, layer]));
  const planned: PlannedTensor[] = [];
  for (const [path, spec] of specs) {
    const layer = layers.get(path);
    if (layer === undefined) throw new Error(`internal error: the adapter plan names a layer ${path} the model lacks`);
    if (spec.kind === 'full') {
      const weights = layer instanceof LoRALayer ? layer.baseParameterCount() : layer.weights.reduce((n, w) => n + elementsOf(w.shape as number[]), 0);
      planned.push({ what: `layer ${path}'s modules_to_save.${spec.name} copy`, elements: weights });
      continue;
    }
    const [fanIn, fanOut] = fanInOut(layer, baseClassOf(layer));
    planned.push({ what: `layer ${path}'s lora_A.${spec.name}`, elements: fanIn * spec.rank }, { what: `layer ${path}'s lora_B.${spec.name}`, elements: spec.rank * fanOut });
  }
  return planned;
}

/** The values of every weight of a model (what rebuilding it from its config allocates). */
function modelElements(model: tfl.LayersModel): number {
  return modelLayers(model).reduce((n, { layer }) => n + layer.weights.reduce((m, w) => m + elementsOf(w.shape as number[]), 0), 0);
}

function fanInOut(layer: tfl.layers.Layer, cls: string): [number, number] {
  const shape = kernelShapeOf(layer);
  if (cls === 'Conv2D') return [shape[0] * shape[1] * shape[2], shape[3]];
  return [shape[0], shape[1]];
}

/** Original `trainable` flags of the layers of adapted models, restored by `unload`. */
const originalTrainable = new WeakMap<tfl.LayersModel, ReadonlyMap<string, boolean>>();

/** The flags a layer had before lora-tfjs froze it (true when unknown, e.g. after a reload). */
export function originalTrainableFlags(model: tfl.LayersModel): ReadonlyMap<string, boolean> {
  return originalTrainable.get(model) ?? new Map();
}

/**
 * A new model whose targeted layers carry a LoRA adapter (or, for `modulesToSave`, a full
 * trainable copy); every other weight is frozen. The input model is left as it was: the
 * new one shares its weight buffers until training replaces them.
 *
 * On a model that already has adapters, the new adapter is added beside them (the active
 * adapter does not change); layers newly targeted are converted.
 *
 * @example
 * const lora = addLoRA(model, { targetModules: ['dense_1', 'dense_2'], rank: 8, alpha: 16 });
 * lora.compile({ optimizer: tf.train.adam(1e-3), loss: 'meanSquaredError' });
 * await lora.fit(x, y, { epochs: 5 });
 */
export function addLoRA(model: tfl.LayersModel, config: LayersLoRAConfig): tfl.LayersModel {
  const where = 'addLoRA';
  checkModel(where, model);
  checkNotFitting(where, model);
  const { adapterName, specs, warnings } = plan(where, model, config);
  checkAdaptAllocation(where, model, specs);
  for (const w of warnings) warn(w);
  return adaptModel(model, adapterName, specs, where);
}

/**
 * Refuse, before anything is allocated, an adaptation whose tensors cannot fit: the new
 * adapters, plus every weight of the rebuilt model (tfjs allocates them while it builds,
 * and frees them once the original's buffers are shared in).
 */
function checkAdaptAllocation(where: string, model: tfl.LayersModel, specs: ReadonlyMap<string, LayerAdapterSpec>): void {
  checkAllocation(where, [...adapterTensors(model, specs), { what: "the rebuilt model's weights (temporary)", elements: modelElements(model) }]);
}

/**
 * The rebuild behind `addLoRA`: a new model where each layer path in `specs` carries that
 * adapter (specs already checked against the layers), every other layer frozen.
 */
export function adaptModel(model: tfl.LayersModel, adapterName: string, specs: ReadonlyMap<string, LayerAdapterSpec>, where = 'adaptModel'): tfl.LayersModel {
  checkAdaptAllocation(where, model, specs);
  const before = new Map(modelLayers(model).map(({ path, layer }) => [path, layer]));
  const active = activeAdapter(model);
  const flags = new Map(originalTrainableFlags(model));

  const edited = editConfig(model.getConfig(), (path, entry): LayerEntry => {
    const layer = before.get(path);
    if (layer !== undefined && !flags.has(path)) flags.set(path, layer.trainable);
    const spec = specs.get(path);
    if (entry.className in LORA_CLASS_NAMES) {
      if (spec === undefined) return entry;
      const adapters = [...(entry.config.adapters as unknown as LayerAdapterSpec[]), spec];
      return { ...entry, config: { ...entry.config, adapters: adapters as never } };
    }
    if (spec === undefined) return { ...entry, config: { ...entry.config, trainable: false } };
    const { name, trainable: _t, batchInputShape, ...rest } = entry.config;
    void _t;
    return {
      ...entry,
      className: LORA_CLASS[entry.className],
      config: {
        name,
        trainable: true,
        ...(batchInputShape != null ? { batchInputShape } : {}),
        base: { className: entry.className, config: { ...rest, name } } as never,
        adapters: [spec] as never,
        // A layer new to a model whose adapter `active` it lacks runs its base.
        activeAdapter: active === null || active === adapterName ? adapterName : null,
      },
    };
  });
  const adapted = modelFromConfig(model, edited);
  for (const { path, layer } of modelLayers(adapted)) {
    const old = before.get(path);
    if (old === undefined) throw new Error(`internal error: the rebuilt model has a layer ${path} the original lacks`);
    copyWeights(old, layer);
    // A new full copy was made from the rebuilt base (zeros): give it the real base.
    const spec = specs.get(path);
    if (spec?.kind === 'full' && layer instanceof LoRALayer) layer.syncFullCopy(spec.name);
  }
  originalTrainable.set(adapted, flags);
  return adapted;
}

const LORA_CLASS_NAMES: Readonly<Record<string, true>> = Object.fromEntries(Object.values(LORA_CLASS).map((c) => [c, true]));

/** The LoRA layers of a model, with their paths. */
export function loraLayers(model: tfl.LayersModel): Array<{ path: string; layer: LoRALayer }> {
  checkModel('loraLayers', model);
  return modelLayers(model).flatMap(({ path, layer }) => (layer instanceof LoRALayer ? [{ path, layer }] : []));
}

function checkAdapted(where: string, model: unknown): Array<{ path: string; layer: LoRALayer }> {
  const layers = loraLayers(checkModel(where, model));
  if (layers.length === 0) throw new Error(`${where}: the model has no LoRA layers; create them with addLoRA(model, config)`);
  return layers;
}

/** Every adapter name in the model, in the order first seen. */
export function adapterNames(model: tfl.LayersModel): string[] {
  const names = new Set<string>();
  for (const { layer } of checkAdapted('adapterNames', model)) for (const n of layer.adapterNames()) names.add(n);
  return [...names];
}

/** The adapter the model runs and trains, or null when adapters are disabled (base only). */
export function activeAdapter(model: tfl.LayersModel): string | null {
  checkModel('activeAdapter', model);
  for (const { layer } of loraLayers(model)) if (layer.activeAdapter !== null) return layer.activeAdapter;
  return null;
}

/**
 * Run and train adapter `name` (layers without it run their base), or null to disable
 * adapters. A compiled model trains the new adapter's weights at its next `fit`.
 */
export function setActiveAdapter(model: tfl.LayersModel, name: string | null): void {
  const where = 'setActiveAdapter';
  const layers = checkAdapted(where, model);
  if (name !== null && typeof name !== 'string') invalid(where, 'name', name, `null (the base alone) or one of the model's adapters ${describe(adapterNames(model))}`);
  checkNotFitting(where, model);
  if (name !== null && !layers.some(({ layer }) => layer.adapterNames().includes(name))) {
    throw new Error(`setActiveAdapter: name = ${describe(name)} is not an adapter of the model; it has ${describe(adapterNames(model))}`);
  }
  for (const { layer } of layers) layer.setActiveAdapter(name !== null && layer.adapterNames().includes(name) ? name : null);
  refreshTrainableWeights(model);
}

/**
 * Add an adapter to layers that are already LoRA layers (in place). To adapt layers that
 * are not, use `addLoRA`, which returns a new model.
 */
export function addAdapter(model: tfl.LayersModel, config: LayersLoRAConfig): string {
  const where = 'addAdapter';
  checkAdapted(where, model);
  checkNotFitting(where, model);
  const { adapterName, specs, warnings } = plan(where, model, config);
  const layers = new Map(modelLayers(model).map(({ path, layer }) => [path, layer]));
  const plain = [...specs.keys()].filter((p) => !(layers.get(p) instanceof LoRALayer));
  if (plain.length > 0) {
    throw new Error(`${where}: layers ${describe(plain)} are not LoRA layers yet; use addLoRA(model, config), which returns a new model with them converted`);
  }
  for (const [path, spec] of specs) (layers.get(path) as LoRALayer).checkNewAdapter(spec);
  // Every layer's tensors at once: a model whose adapters do not fit is refused as a whole.
  checkAllocation(where, adapterTensors(model, specs));
  for (const w of warnings) warn(w);
  const added: LoRALayer[] = [];
  try {
    for (const [path, spec] of specs) {
      const layer = layers.get(path) as LoRALayer;
      layer.addAdapter(spec);
      added.push(layer);
    }
  } catch (e) {
    // Nothing is expected to fail after the checks above; if something does, undo.
    for (const layer of added) layer.deleteAdapter(adapterName);
    throw e;
  }
  refreshTrainableWeights(model);
  return adapterName;
}

/** Delete adapter `name` from every layer that has it (the model runs its base if it was active). */
export function deleteAdapter(model: tfl.LayersModel, name: string): void {
  const where = 'deleteAdapter';
  const layers = checkAdapted(where, model);
  if (typeof name !== 'string') invalid(where, 'name', name, `the name of one of the model's adapters ${describe(adapterNames(model))}`);
  checkNotFitting(where, model);
  const holders = layers.filter(({ layer }) => layer.adapterNames().includes(name));
  if (holders.length === 0) throw new Error(`deleteAdapter: name = ${describe(name)} is not an adapter of the model; it has ${describe(adapterNames(model))}`);
  for (const { layer } of holders) layer.deleteAdapter(name);
  refreshTrainableWeights(model);
}

/**
 * Parameter counts of a Layers model: `trainable` is what `fit` updates now, `lora` every
 * LoRA factor, `saved` every full copy (`modulesToSave`), `frozen` the rest.
 */
export function layersParameterCounts(model: tfl.LayersModel): ParameterCounts {
  checkModel('layersParameterCounts', model);
  const size = (w: tfl.LayerVariable) => (w.shape as number[]).reduce((a, b) => a * b, 1);
  let total = 0;
  let frozen = 0;
  let lora = 0;
  let saved = 0;
  const trainable = model.trainableWeights.reduce((n, w) => n + size(w), 0);
  for (const { layer } of modelLayers(model)) {
    for (const w of layer.weights) total += size(w);
    if (!(layer instanceof LoRALayer)) {
      for (const w of layer.nonTrainableWeights) frozen += size(w);
      continue;
    }
    frozen += layer.baseParameterCount();
    for (const name of layer.adapterNames()) {
      const n = layer.adapterVariables(name).reduce((s, w) => s + size(w), 0);
      if (layer.adapterSpec(name).kind === 'lora') lora += n;
      else saved += n;
    }
  }
  return { total, trainable, frozen, lora, saved };
}

