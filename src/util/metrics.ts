import * as tf from '@tensorflow/tfjs-core';
import { checkLiveTensor, describe, invalid } from './validate.js';

/** max |a − b| over all elements, as a number (frees its temporaries). */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  checkLiveTensor('maxAbsDiff', 'a', a, 'a live tensor');
  checkLiveTensor('maxAbsDiff', 'b', b, `a live tensor of shape ${describe(a.shape)}`);
  // Broadcasting would compare a row against every row and return a meaningless number.
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) invalid('maxAbsDiff', 'b', b, `a tensor of a's shape ${describe(a.shape)}`);
  const t = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = t.dataSync()[0];
  t.dispose();
  return v;
}

/** The Frobenius (L2) norm of a tensor, as a number. */
export function norm(a: tf.Tensor): number {
  checkLiveTensor('norm', 'a', a, 'a live tensor');
  const t = tf.tidy(() => tf.norm(a));
  const v = t.dataSync()[0];
  t.dispose();
  return v;
}

/** The first `n` values of a tensor, rounded for printing. */
export function sample(a: tf.Tensor, n = 5, digits = 4): number[] {
  checkLiveTensor('sample', 'a', a, 'a live tensor');
  return Array.from(a.dataSync().slice(0, n), (v) => Number(v.toFixed(digits)));
}
