import * as tf from '@tensorflow/tfjs-core';

/**
 * Run `f` on x `[..., in]` viewed as rows `[n, in]`, and give the result back the leading
 * dimensions `[..., out]`. MatMul on wasm only takes its fast (XNNPACK) path for 2-D
 * operands; a 3-D input runs ~30x slower, so every layer flattens first.
 */
export function withRows(x: tf.Tensor, outFeatures: number, f: (rows: tf.Tensor2D) => tf.Tensor2D): tf.Tensor {
  if (x.rank === 2) return f(x as tf.Tensor2D);
  return tf.tidy(() => {
    const inFeatures = x.shape[x.rank - 1];
    const y = f(tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D);
    return tf.reshape(y, [...x.shape.slice(0, -1), outFeatures]);
  });
}
