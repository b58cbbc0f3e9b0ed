import type * as tf from '@tensorflow/tfjs-core';
import type { ParameterCounts } from './params.js';

/** What `train` and `evaluate` need of a model. */
export interface Model {
  /** Input and output sizes, e.g. [512, 2048, 2048, 128]. */
  readonly dims: readonly number[];
  /** Forward pass that records gradients; `training` enables dropout. */
  apply(x: tf.Tensor, options?: { training?: boolean }): tf.Tensor;
  /** Inference forward pass. */
  predict(x: tf.Tensor): tf.Tensor;
  /** The variables an optimizer may update (never frozen weights). */
  trainableVariables(): tf.Variable[];
  parameterCounts(): ParameterCounts;
  /** True while an adapter is folded into the weights (training is refused then). */
  readonly merged?: boolean;
  dispose(): void;
}

/** Seed of layer `index` derived from a model seed, so layers differ but repeat exactly. */
export function layerSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 31) + Math.imul(index + 1, 0x9e3779b1)) | 0;
}
