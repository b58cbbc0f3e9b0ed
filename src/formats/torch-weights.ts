import * as tf from '@tensorflow/tfjs-core';
import { MLP } from '../core/mlp.js';
import { decodeSafetensors, encodeSafetensors, type EncodableTensor } from './safetensors.js';
import { invalid } from '../util/validate.js';

/**
 * Base networks as PyTorch saves them (`safetensors.torch.save_file(model.state_dict())`):
 * the reference's `SimpleLinearModel` has `fc1.weight [out, in]`, `fc1.bias [out]`, `fc2.…`.
 * Loading one gives an `MLP` (W transposed to `[in, out]`) to put PEFT adapters on.
 */

const LAYER_KEY = /^(.*?)fc(\d+)\.weight$/;

/** An MLP from a PyTorch state dict in safetensors form (keys `[prefix]fcN.weight` / `.bias`). */
export function mlpFromTorchSafetensors(bytes: Uint8Array, options: { prefix?: string } = {}): MLP {
  const where = 'mlpFromTorchSafetensors';
  const { tensors } = decodeSafetensors(bytes);
  const prefix = options.prefix ?? '';
  const indices = [...tensors.keys()]
    .map((k) => LAYER_KEY.exec(k))
    .filter((m): m is RegExpExecArray => m !== null && m[1] === prefix)
    .map((m) => Number(m[2]))
    .sort((a, b) => a - b);
  if (indices.length === 0) invalid(where, 'file', [...tensors.keys()], `tensors named ${prefix}fc1.weight, ${prefix}fc1.bias, …`);
  indices.forEach((n, i) => {
    if (n !== i + 1) invalid(where, 'layer names', indices.map((j) => `${prefix}fc${j}`), `consecutive layers ${prefix}fc1, ${prefix}fc2, …`);
  });
  const layers = indices.map((n) => {
    const w = tensors.get(`${prefix}fc${n}.weight`)!;
    const b = tensors.get(`${prefix}fc${n}.bias`);
    if (w.shape.length !== 2) invalid(where, `${prefix}fc${n}.weight`, { shape: w.shape }, 'a 2-D tensor [out, in]');
    if (b === undefined) invalid(where, `${prefix}fc${n}.bias`, undefined, 'a bias for every layer');
    if (b.shape.length !== 1 || b.shape[0] !== w.shape[0]) invalid(where, `${prefix}fc${n}.bias`, { shape: b.shape }, `a tensor of shape [${w.shape[0]}]`);
    return { w, b };
  });
  const weights = layers.map(({ w, b }) => ({
    W: tf.tidy(() => tf.transpose(tf.tensor2d(w.data, w.shape as [number, number]))) as tf.Tensor2D,
    b: tf.tensor1d(b.data),
  }));
  try {
    return MLP.fromWeights(weights);
  } finally {
    tf.dispose(weights.flatMap((l) => [l.W, l.b]));
  }
}

/** An MLP's weights as PyTorch's state dict in safetensors form (`fcN.weight [out, in]`, `fcN.bias`). */
export function mlpToTorchSafetensors(mlp: MLP): Uint8Array {
  const tensors: Record<string, EncodableTensor> = {};
  mlp.layers.forEach((l, i) => {
    const wt = tf.transpose(l.W);
    tensors[`fc${i + 1}.weight`] = { shape: wt.shape, data: wt.dataSync() as Float32Array };
    wt.dispose();
    tensors[`fc${i + 1}.bias`] = { shape: l.b.shape, data: l.b.dataSync() as Float32Array };
  });
  return encodeSafetensors(tensors, { format: 'pt' });
}
