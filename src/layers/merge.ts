import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { type PlannedTensor, checkAllocation, elementsOf } from '../runtime/memory-budget.js';
import { describe, invalid } from '../util/validate.js';
import { activeAdapter, adapterNames, loraLayers, originalTrainableFlags } from './add-lora.js';
import { LoRALayer } from './lora-layer.js';
import { type LayerEntry, checkModel, checkNotFitting, copyWeights, editConfig, modelFromConfig, modelLayers } from './model-graph.js';

/**
 * Back to plain tfjs: a model made only of standard layers, with an adapter folded into
 * the weights (`mergeAndUnload`) or without any (`unload`). The result needs nothing from
 * lora-tfjs: `tf.loadLayersModel` reads it in a process that never imports it.
 */

export interface MergeOptions {
  /** The adapter to fold in (default: the active one). */
  adapterName?: string;
}

/**
 * A plain model equal to the adapted one running `adapterName` (default: the active
 * adapter): W + s·A·B in every LoRA layer (a full copy's weights for `modulesToSave`), the
 * base where a layer lacks the adapter. Layers get back the `trainable` flags they had
 * before `addLoRA`. The adapted model is left as it was.
 */
export function mergeAndUnload(model: tfl.LayersModel, options: MergeOptions = {}): tfl.LayersModel {
  const where = 'mergeAndUnload';
  checkModel(where, model);
  if (options === null || typeof options !== 'object' || Array.isArray(options)) invalid(where, 'options', options, '{ adapterName? }');
  if (loraLayers(model).length === 0) throw new Error(`${where}: the model has no LoRA layers; it is already a plain model`);
  if (options.adapterName !== undefined && typeof options.adapterName !== 'string') {
    invalid(where, 'adapterName', options.adapterName, `one of the model's adapters ${describe(adapterNames(model))}, or undefined for the active one`);
  }
  checkNotFitting(where, model);
  const name = options.adapterName ?? activeAdapter(model);
  if (options.adapterName !== undefined && !adapterNames(model).includes(options.adapterName)) {
    throw new Error(`mergeAndUnload: adapterName = ${describe(options.adapterName)} is not an adapter of the model; it has ${describe(adapterNames(model))}`);
  }
  return plainModel('mergeAndUnload', model, name);
}

/** The base model back: every LoRA layer replaced by its frozen base layer, adapters dropped. */
export function unload(model: tfl.LayersModel): tfl.LayersModel {
  checkModel('unload', model);
  checkNotFitting('unload', model);
  return plainModel('unload', model, null);
}

/**
 * What building the plain model allocates: a merged kernel per layer carrying the adapter
 * (plus A·B and s·A·B, alive while one layer merges), and every weight of the new model
 * while tfjs builds it (freed once the merged or shared buffers are written in).
 */
function mergeTensors(layers: ReadonlyMap<string, tfl.layers.Layer>, adapter: string | null): PlannedTensor[] {
  const planned: PlannedTensor[] = [];
  let rebuilt = 0;
  let largestDelta = 0;
  for (const [path, layer] of layers) {
    if (!(layer instanceof LoRALayer)) {
      rebuilt += layer.weights.reduce((n, w) => n + elementsOf(w.shape as number[]), 0);
      continue;
    }
    rebuilt += layer.baseParameterCount();
    if (adapter === null || !layer.adapterNames().includes(adapter) || layer.adapterSpec(adapter).kind !== 'lora') continue;
    const kernel = elementsOf(layer.kernelShape());
    planned.push({ what: `layer ${path}'s merged kernel`, elements: kernel });
    largestDelta = Math.max(largestDelta, kernel);
  }
  planned.push({ what: 'A·B and s·A·B while one layer merges (temporary)', elements: 2 * largestDelta }, { what: "the new model's weights (temporary)", elements: rebuilt });
  return planned;
}

function plainModel(where: string, model: tfl.LayersModel, adapter: string | null): tfl.LayersModel {
  if (loraLayers(model).length === 0) throw new Error(`${where}: the model has no LoRA layers; it is already a plain model`);
  const layers = new Map(modelLayers(model).map(({ path, layer }) => [path, layer]));
  const flags = originalTrainableFlags(model);
  checkAllocation(where, mergeTensors(layers, adapter));
  // Merged values first: a non-finite adapter fails here, before any model is built.
  const merged = new Map<string, tf.Tensor[]>();
  try {
    for (const [path, layer] of layers) {
      if (layer instanceof LoRALayer) merged.set(path, layer.mergedWeights(adapter !== null && layer.adapterNames().includes(adapter) ? adapter : null, where));
    }
    const edited = editConfig(model.getConfig(), (path, entry): LayerEntry => {
      const layer = layers.get(path);
      const trainable = flags.get(path) ?? true;
      if (layer instanceof LoRALayer) {
        const base = layer.baseLayer();
        return { ...entry, className: base.className, config: { ...base.config, trainable } };
      }
      return { ...entry, config: { ...entry.config, trainable } };
    });
    const plain = modelFromConfig(model, edited);
    for (const { path, layer } of modelLayers(plain)) {
      const old = layers.get(path) as tfl.layers.Layer;
      const values = merged.get(path);
      if (values === undefined) {
        copyWeights(old, layer);
        continue;
      }
      const names = (old as LoRALayer).baseWeightNames();
      copyWeights(old, layer, new Map(names.map((n, i) => [n, values[i]])));
    }
    return plain;
  } finally {
    for (const values of merged.values()) tf.dispose(values);
  }
}

