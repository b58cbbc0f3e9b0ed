import * as tf from '@tensorflow/tfjs-core';

/** max |a − b| over all elements, as a number (frees its temporaries). */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  const t = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = t.dataSync()[0];
  t.dispose();
  return v;
}

/** The Frobenius (L2) norm of a tensor, as a number. */
export function norm(a: tf.Tensor): number {
  const t = tf.tidy(() => tf.norm(a));
  const v = t.dataSync()[0];
  t.dispose();
  return v;
}

/** The first `n` values of a tensor, rounded for printing. */
export function sample(a: tf.Tensor, n = 5, digits = 4): number[] {
  return Array.from(a.dataSync().slice(0, n), (v) => Number(v.toFixed(digits)));
}
