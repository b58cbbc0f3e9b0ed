import * as tf from '@tensorflow/tfjs-core';
import { FORWARD_TEMPORARIES, checkAllocation, outputAndTemporaries } from '../runtime/memory-budget.js';

/**
 * Run `f` on x `[..., in]` viewed as rows `[n, in]`, and give the result back the leading
 * dimensions `[..., out]`. MatMul on wasm only takes its fast (XNNPACK) path for 2-D
 * operands; a 3-D input runs ~30x slower, so every layer flattens first.
 */
export function withRows(x: tf.Tensor, outFeatures: number, f: (rows: tf.Tensor2D) => tf.Tensor2D): tf.Tensor {
  // A huge batch through a wide layer must be refused, not abort the wasm heap.
  const n = x.size / Math.max(1, x.shape[x.rank - 1]);
  checkAllocation('forward pass', outputAndTemporaries(`the output [${n}, ${outFeatures}]`, n * outFeatures, FORWARD_TEMPORARIES));
  if (x.rank === 2) return f(x as tf.Tensor2D);
  return tf.tidy(() => {
    const inFeatures = x.shape[x.rank - 1];
    const y = f(tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D);
    return tf.reshape(y, [...x.shape.slice(0, -1), outFeatures]);
  });
}
