import * as tf from '@tensorflow/tfjs-core';
import { LoRAMLP } from '../core/lora-mlp.js';
import { MLP } from '../core/mlp.js';
import { type DecodedTensor, type EncodableTensor, type EncodeDtype, decodeSafetensors, encodeSafetensors } from './safetensors.js';
import { describe, invalid } from '../util/validate.js';

/**
 * Base networks as PyTorch saves them (`safetensors.torch.save_file(model.state_dict())`):
 * a stack of `nn.Linear` layers, each `<name>.weight [out, in]` (+ `<name>.bias [out]`),
 * ReLU between them. A state dict holds no activations: that they are ReLUs is assumed
 * (as in the reference's model), and two `nn.Sequential` Linear layers with no module
 * between them are refused. Named as the reference's `SimpleLinearModel` (`fc1`, `fc2`, …), as an
 * `nn.Sequential` (`0`, `2`, `4`, … with the activations between), or nested in a larger
 * model (`mlp.fc1`, …). The layers keep those names, which adapter files use.
 */

/** Options of {@link mlpFromTorchSafetensors}. */
export interface TorchMLPReadOptions {
  /** Read only the keys under this module path, e.g. `"mlp."` (keys outside it are ignored). */
  prefix?: string;
  /**
   * The layers' module names below `prefix`, in forward order. Needed only when the names
   * do not say the order themselves (`fcN` and `nn.Sequential` indices do).
   */
  layers?: readonly string[];
}

/** Options of {@link mlpToTorchSafetensors}. */
export interface TorchMLPWriteOptions {
  /** Put every key under this module path, e.g. `"mlp."`. */
  prefix?: string;
  /** Tensor dtype in the file (default F32; F16 / BF16 round to nearest even, as PyTorch). */
  dtype?: EncodeDtype;
}

const WHERE = 'mlpFromTorchSafetensors';

/** An MLP from a PyTorch state dict in safetensors form. Checked before anything is allocated. */
export function mlpFromTorchSafetensors(bytes: Uint8Array, options: TorchMLPReadOptions = {}): MLP {
  if (options === null || typeof options !== 'object') invalid(WHERE, 'options', options, 'an options object');
  const prefix = options.prefix ?? '';
  if (typeof prefix !== 'string' || (prefix !== '' && !prefix.endsWith('.'))) invalid(WHERE, 'prefix', prefix, 'a module path ending in "." (e.g. "mlp.") or ""');
  const { tensors } = decodeSafetensors(bytes);
  const scoped = [...tensors.keys()].filter((k) => k.startsWith(prefix));
  const local = (k: string) => k.slice(prefix.length);
  const weightNames = scoped.filter((k) => k.endsWith('.weight') && tensors.get(k)!.shape.length === 2).map((k) => local(k).slice(0, -'.weight'.length));
  if (weightNames.length === 0) {
    invalid(WHERE, 'file', [...tensors.keys()].slice(0, 20), `2-D tensors named ${prefix}<layer>.weight (e.g. ${prefix}fc1.weight or ${prefix}0.weight)`);
  }
  const order = options.layers !== undefined ? checkLayers(options.layers, weightNames, prefix) : inferOrder(weightNames, prefix);
  const known = new Set(order.flatMap((n) => [`${prefix}${n}.weight`, `${prefix}${n}.bias`]));
  const unexpected = scoped.filter((k) => !known.has(k));
  if (unexpected.length > 0) {
    invalid(WHERE, 'file', unexpected.slice(0, 20), `only the weights and biases of linear layers ${describe(order.map((n) => prefix + n))} (unexpected keys; pass { prefix } to read part of a larger model)`);
  }
  const layers = order.map((n) => ({ name: n, w: tensors.get(`${prefix}${n}.weight`) as DecodedTensor, b: tensors.get(`${prefix}${n}.bias`) }));
  const hasBias = layers[0].b !== undefined;
  layers.forEach(({ name, w, b }, i) => {
    const key = `${prefix}${name}`;
    if (i > 0 && w.shape[1] !== layers[i - 1].w.shape[0]) {
      invalid(WHERE, `${key}.weight`, { shape: w.shape }, `a tensor [out, ${layers[i - 1].w.shape[0]}] (its input must be ${prefix}${layers[i - 1].name}'s output)`);
    }
    if ((b !== undefined) !== hasBias) invalid(WHERE, `${key}.bias`, b === undefined ? undefined : { shape: b.shape }, hasBias ? 'a bias (the first layer has one, so every layer needs one)' : 'no bias (the first layer has none)');
    if (b !== undefined && (b.shape.length !== 1 || b.shape[0] !== w.shape[0])) invalid(WHERE, `${key}.bias`, { shape: b.shape }, `a tensor of shape [${w.shape[0]}]`);
  });
  // A NaN or ±Infinity weight would silently poison every output: refused, before allocating.
  for (const { name, w, b } of layers) {
    for (const [suffix, t] of [['weight', w], ['bias', b]] as const) {
      if (t === undefined) continue;
      const i = t.data.findIndex((v) => !Number.isFinite(v));
      if (i >= 0) {
        const widened = t.dtype === 'F64' ? "; F64 values beyond float32's range become ±Infinity" : '';
        throw new Error(`${WHERE}: ${prefix}${name}.${suffix} = a tensor of shape [${t.shape.join(', ')}] holding ${t.data[i]} at index ${i} is invalid; expected finite values${widened}`);
      }
    }
  }
  const weights = layers.map(({ w, b }) => ({
    W: tf.tidy(() => tf.transpose(tf.tensor2d(w.data, w.shape as [number, number]))) as tf.Tensor2D,
    b: b === undefined ? undefined : tf.tensor1d(b.data),
  }));
  try {
    return MLP.fromWeights(weights, { names: order.map((n) => prefix + n) });
  } finally {
    tf.dispose(weights.flatMap((l) => (l.b === undefined ? [l.W] : [l.W, l.b])));
  }
}

/**
 * A model's base weights as PyTorch's state dict in safetensors form (`<name>.weight
 * [out, in]`, `<name>.bias`), named by the model's layer names. For a `LoRAMLP`, its
 * frozen base (adapters are saved separately with `saveAdapter`); refused while merged.
 */
export function mlpToTorchSafetensors(model: MLP | LoRAMLP, options: TorchMLPWriteOptions = {}): Uint8Array {
  const where = 'mlpToTorchSafetensors';
  if (!(model instanceof MLP) && !(model instanceof LoRAMLP)) invalid(where, 'model', model, 'an MLP or a LoRAMLP');
  if (options === null || typeof options !== 'object') invalid(where, 'options', options, 'an options object');
  const prefix = options.prefix ?? '';
  if (typeof prefix !== 'string' || (prefix !== '' && !prefix.endsWith('.'))) invalid(where, 'prefix', prefix, 'a module path ending in "." (e.g. "mlp.") or ""');
  const dtype = options.dtype ?? 'F32';
  if (model instanceof LoRAMLP && model.merged) {
    throw new Error(`${where}: adapter ${describe(model.mergedAdapter)} is merged into the weights; call unmerge() to export the frozen base`);
  }
  const layers = model instanceof MLP ? model.layers.map((l) => ({ W: l.W as tf.Tensor2D, b: l.b as tf.Tensor1D | undefined })) : model.layers.map((l) => ({ W: l.weight, b: l.bias }));
  const tensors: Record<string, EncodableTensor> = {};
  layers.forEach(({ W, b }, i) => {
    const name = `${prefix}${model.names[i]}`;
    const wt = tf.transpose(W);
    tensors[`${name}.weight`] = { shape: wt.shape, data: wt.dataSync() as Float32Array, dtype };
    wt.dispose();
    if (b !== undefined) tensors[`${name}.bias`] = { shape: b.shape, data: b.dataSync() as Float32Array, dtype };
  });
  return encodeSafetensors(tensors, { format: 'pt' });
}

/** The forward order of layers whose names say it: `fc1…fcN`, or `nn.Sequential` indices. */
function inferOrder(names: string[], prefix: string): string[] {
  const fc = names.map((n) => /^fc(\d+)$/.exec(n));
  if (fc.every((m) => m !== null)) {
    const sorted = fc.map((m) => Number((m as RegExpExecArray)[1])).sort((a, b) => a - b);
    sorted.forEach((n, i) => {
      if (n !== i + 1) invalid(WHERE, 'layer names', sorted.map((j) => `${prefix}fc${j}`), `consecutive layers ${prefix}fc1, ${prefix}fc2, …`);
    });
    return sorted.map((n) => `fc${n}`);
  }
  if (names.every((n) => /^(0|[1-9]\d*)$/.test(n))) {
    const order = names.map(Number).sort((a, b) => a - b);
    // An MLP has a ReLU between layers; in an nn.Sequential that is a module between them.
    const adjacent = order.findIndex((n, i) => i > 0 && n === order[i - 1] + 1);
    if (adjacent > 0) {
      invalid(WHERE, 'layer names', order.map((j) => `${prefix}${j}`), `nn.Sequential indices with a module between consecutive Linear layers (${prefix}${order[adjacent - 1]} and ${prefix}${order[adjacent]} are adjacent, so nothing sits between them; lora-tfjs's MLP puts a ReLU there)`);
    }
    return order.map(String);
  }
  // Nested one level further (e.g. "mlp.fc1" with no prefix given): say which prefix to pass.
  const parents = new Set(names.map((n) => n.slice(0, n.lastIndexOf('.') + 1)));
  const hint = parents.size === 1 && !parents.has('') ? `; these look nested: pass { prefix: ${JSON.stringify(prefix + [...parents][0])} }` : '';
  return invalid(WHERE, 'layer names', names.map((n) => prefix + n), `names that give the layer order (fc1, fc2, … or 0, 1, 2, … as nn.Sequential), or pass { layers: [...] } in forward order${hint}`);
}

function checkLayers(layers: unknown, found: string[], prefix: string): string[] {
  const ok = Array.isArray(layers) && layers.length > 0 && layers.every((n) => typeof n === 'string') && new Set(layers).size === layers.length;
  if (!ok) invalid(WHERE, 'layers', layers, 'a non-empty array of distinct layer names in forward order');
  const missing = (layers as string[]).filter((n) => !found.includes(n));
  if (missing.length > 0) invalid(WHERE, 'layers', layers, `names of 2-D weights in the file (no ${describe(missing.map((n) => `${prefix}${n}.weight`))}; the file has ${describe(found.map((n) => prefix + n))})`);
  return [...(layers as string[])];
}
