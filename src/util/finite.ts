import * as tf from '@tensorflow/tfjs-core';

/** True when every tensor is float32 and holds no NaN or ±Infinity (one read for all of them). */
export function allFinite(tensors: readonly tf.Tensor[]): boolean {
  if (tensors.some((t) => t.dtype !== 'float32')) return false;
  return tf.tidy(() => tf.all(tf.stack(tensors.map((t) => tf.all(tf.isFinite(t))))).dataSync()[0] === 1);
}
