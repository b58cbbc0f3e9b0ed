import * as tfl from '@tensorflow/tfjs-layers';
import type * as tf from '@tensorflow/tfjs-core';
import * as tfc from '@tensorflow/tfjs-core';
import { describe, invalid } from '../util/validate.js';

/**
 * Walking and rebuilding tfjs Layers models, for any architecture tfjs can serialize
 * (Sequential, functional graphs with skips and several inputs/outputs, models nested as
 * layers). A layer is named by its path: `dense_1`, or `encoder.dense_1` inside a nested
 * model called `encoder` — the dotted module names PEFT uses.
 */

/** A layer that holds weights (not an input, not a nested model), with its path. */
export interface ModelLayer {
  path: string;
  layer: tfl.layers.Layer;
}

type ConfigDict = tf.serialization.ConfigDict;

/** One entry of a model config's `layers` list. */
export interface LayerEntry {
  className: string;
  config: ConfigDict;
  [key: string]: unknown;
}

function isContainer(layer: tfl.layers.Layer): layer is tfl.LayersModel {
  return layer instanceof tfl.LayersModel;
}

/** Every leaf layer of `model`, depth first in the model's layer order. */
export function modelLayers(model: tfl.LayersModel, prefix = ''): ModelLayer[] {
  const out: ModelLayer[] = [];
  for (const layer of model.layers) {
    const path = `${prefix}${layer.name}`;
    if (isContainer(layer)) out.push(...modelLayers(layer, `${path}.`));
    else if (layer.getClassName() !== 'InputLayer') out.push({ path, layer });
  }
  return out;
}

/** Throw unless `model` is a built tfjs LayersModel. */
export function checkModel(where: string, model: unknown): tfl.LayersModel {
  if (!(model instanceof tfl.LayersModel)) {
    invalid(where, 'model', model, 'a tf.LayersModel (from tf.sequential, tf.model or tf.loadLayersModel)');
  }
  const m = model as tfl.LayersModel;
  if (m.outputs == null || m.outputs.length === 0) {
    throw new Error(`${where}: model ${describe(m.name)} is not built; give its first layer an inputShape (or call model.build / predict once) before adapting it`);
  }
  const disposed = disposedPart(m);
  if (disposed !== null) {
    throw new Error(`${where}: model = ${describe(m.name)} is invalid; expected a model that has not been disposed (${disposed} was freed by dispose())`);
  }
  return m;
}

/** What of a model has been disposed (the model itself, a layer or a weight), or null. */
function disposedPart(model: tfl.LayersModel): string | null {
  const refCount = (l: tfl.layers.Layer) => (l as unknown as { _refCount: number | null })._refCount;
  if (refCount(model) === 0) return 'the model';
  for (const { path, layer } of modelLayers(model)) {
    if (refCount(layer) === 0) return `layer ${describe(path)}`;
    for (const w of layer.weights) {
      if ((w as unknown as { val?: tf.Variable }).val?.isDisposed === true) return `weight ${describe(w.originalName)}`;
    }
  }
  return null;
}

/**
 * Throw while tfjs's `fit` / `fitDataset` trains `model` (e.g. from a callback): switching,
 * adding, deleting or merging adapters then would interleave with the optimizer's updates
 * (it would step freed or swapped variables, or copy a model halfway through training).
 */
export function checkNotFitting(where: string, model: tfl.LayersModel): void {
  // A Sequential trains through its inner functional model, which carries the flag.
  const inner = (model as unknown as { model?: tfl.LayersModel }).model;
  const fitting = [model, inner].some((m) => m != null && (m as unknown as { isTraining?: unknown }).isTraining === true);
  if (fitting) {
    throw new Error(`${where}: model ${describe(model.name)} is being trained by fit() / fitDataset(); changing or copying its adapters mid-training is refused. Call ${where} after fit resolves`);
  }
}

/**
 * A copy of a model config with each leaf entry passed through `edit(path, entry)` (which
 * returns the entry to keep, possibly changed). Nested models are edited in place.
 */
export function editConfig(config: ConfigDict, edit: (path: string, entry: LayerEntry) => LayerEntry, prefix = ''): ConfigDict {
  const layers = (config.layers as unknown as LayerEntry[]).map((entry) => {
    const name = entry.config.name as string;
    const path = `${prefix}${name}`;
    if (Array.isArray((entry.config as { layers?: unknown }).layers)) {
      return { ...entry, config: editConfig(entry.config, edit, `${path}.`) };
    }
    if (entry.className === 'InputLayer') return entry;
    return edit(path, entry);
  });
  return { ...config, layers: layers as never };
}

/** A new model of the same kind as `model` from an edited config. */
export function modelFromConfig(model: tfl.LayersModel, config: ConfigDict): tfl.LayersModel {
  // fastWeightInit: the weights are copied in afterwards, so skip random initialisation.
  if (model instanceof tfl.Sequential) return tfl.Sequential.fromConfig(tfl.Sequential, config, {}, true) as tfl.LayersModel;
  return tfl.LayersModel.fromConfig(tfl.LayersModel, config, {}, true) as tfl.LayersModel;
}

/** A weight's name within its layer (`kernel`, `lora_A.default`, …). */
export function shortName(w: tfl.LayerVariable): string {
  return w.originalName.slice(w.originalName.lastIndexOf('/') + 1);
}

/**
 * Copy weights from `from` into `to` by their names within the layer. Weights of `to`
 * with no counterpart keep their values (a new adapter); a weight of `from` with no
 * counterpart is an error. Buffers are shared, not copied (tf.Variable.assign).
 */
export function copyWeights(from: tfl.layers.Layer, to: tfl.layers.Layer, values?: ReadonlyMap<string, tf.Tensor>): void {
  const targets = new Map(to.weights.map((w) => [shortName(w), w]));
  const sources = values ?? new Map(from.weights.map((w) => [shortName(w), w.read()]));
  for (const [name, value] of sources) {
    const target = targets.get(name);
    if (target === undefined) {
      throw new Error(`internal error: layer ${to.name} has no weight ${describe(name)} to receive ${from.name}'s (it has ${describe([...targets.keys()])})`);
    }
    target.write(value);
  }
}

/**
 * Make a compiled model train its current trainable weights at the next fit/trainOnBatch.
 * tfjs keeps the list it collected at `compile()`, and its optimizers keep per-weight state
 * (Adam's moments) by *position* in that list: after a switch, adapter B would be updated
 * with adapter A's moments (silently, when the shapes agree). So when the list changes,
 * the optimizer's per-weight state restarts, as with a freshly compiled model.
 */
export function refreshTrainableWeights(model: tfl.LayersModel): void {
  const inner = (model as unknown as { model?: tfl.LayersModel }).model;
  for (const m of [model, inner]) {
    if (m == null) continue;
    const compiled = m as unknown as { collectedTrainableWeights?: tfl.LayerVariable[]; optimizer?: tf.Optimizer };
    if (compiled.collectedTrainableWeights == null) continue;
    const now = m.trainableWeights;
    const before = compiled.collectedTrainableWeights;
    if (now.length === before.length && now.every((w, i) => w === before[i])) continue;
    compiled.collectedTrainableWeights = now;
    if (compiled.optimizer != null) resetOptimizerState(compiled.optimizer);
  }
}

interface SlotEntry {
  originalName: string;
  variable: tf.Variable;
}

/** Drop an optimizer's per-weight slots and restart its step count (tfjs 4 optimizers). */
export function resetOptimizerState(optimizer: tf.Optimizer): void {
  const o = optimizer as unknown as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    const value = o[key];
    if (!Array.isArray(value) || value.length === 0) continue;
    const slots = value as unknown[];
    const isSlot = (e: unknown) => e != null && typeof e === 'object' && typeof (e as SlotEntry).originalName === 'string' && (e as SlotEntry).variable != null;
    if (!slots.every((e) => e == null || isSlot(e))) continue;
    for (const e of slots) {
      const v = (e as SlotEntry | null)?.variable;
      if (v != null && !v.isDisposed) v.dispose();
    }
    o[key] = [];
  }
  // Adam / Adamax bias correction restarts with the moments.
  for (const [acc, beta] of [['accBeta1', 'beta1'], ['accBeta2', 'beta2']] as const) {
    const v = o[acc] as tf.Variable | undefined;
    // A disposed optimizer (freed while the model lives on) has nothing to restart.
    if (v != null && typeof v.assign === 'function' && !v.isDisposed && typeof o[beta] === 'number') assignScalar(v, o[beta] as number);
  }
  const iteration = o.iteration as tf.Variable | undefined;
  if (iteration != null && typeof iteration.assign === 'function' && !iteration.isDisposed) assignScalar(iteration, 0);
  if (typeof o.iterations_ === 'number') o.iterations_ = 0;
}

function assignScalar(v: tf.Variable, value: number): void {
  const t = tfc.scalar(value);
  v.assign(t);
  t.dispose(); // the variable keeps the buffer
}
