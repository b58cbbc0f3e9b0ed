import * as tf from '@tensorflow/tfjs-core';
import { Dense } from './dense.js';
import type { GradientPath } from './lora-forward.js';
import type { Model } from './model.js';
import { layerSeed } from './model.js';
import type { ParameterCounts } from './params.js';
import { Rng } from '../util/random.js';
import { withRows } from './rows.js';
import { checkDims, checkInteger, checkOneOf, invalid } from '../util/validate.js';

/** Options of {@link MLP}. */
export interface MLPOptions {
  /** Seed of the initial weights (default 0). */
  seed?: number;
  /**
   * `uniform`: W, b ~ U(−1/√in, 1/√in), PyTorch's nn.Linear default (the reference's).
   * `he`: W ~ N(0, 2/in), b = 0, which keeps activations at unit scale through ReLUs.
   */
  init?: 'uniform' | 'he';
}

/**
 * The reference's `SimpleLinearModel`: Linear layers with bias, ReLU between, every
 * parameter trainable. The full fine-tuning baseline.
 */
export class MLP implements Model {
  readonly dims: readonly number[];
  readonly layers: readonly Dense[];
  gradientPath: GradientPath = 'auto';

  constructor(dims: readonly number[], options: MLPOptions = {}) {
    checkDims('MLP', dims);
    const seed = checkInteger('MLP', 'seed', options.seed ?? 0);
    const init = checkOneOf('MLP', 'init', options.init ?? 'uniform', ['uniform', 'he'] as const);
    this.dims = [...dims];
    this.layers = dims.slice(1).map((out, i) => new Dense(dims[i], out, new Rng(layerSeed(seed, i)), init));
  }

  apply(x: tf.Tensor, options: { training?: boolean } = {}): tf.Tensor {
    void options; // no dropout in the baseline
    checkModelInput('MLP', x, this.dims[0]);
    return withRows(x, this.dims[this.dims.length - 1], (rows) =>
      tf.tidy(() => {
        let h = rows;
        this.layers.forEach((layer, i) => {
          h = layer.apply(h, this.gradientPath, i > 0);
          if (i < this.layers.length - 1) h = tf.relu(h);
        });
        return h;
      }),
    );
  }

  predict(x: tf.Tensor): tf.Tensor {
    return this.apply(x);
  }

  trainableVariables(): tf.Variable[] {
    return this.layers.flatMap((l) => [l.W, l.b]);
  }

  /**
   * An MLP with the given weights (copied): W `[in, out]` and b `[out]` per layer, sizes
   * chaining (layer i's out = layer i+1's in). Checked before anything is allocated.
   */
  static fromWeights(layers: ReadonlyArray<{ W: tf.Tensor2D; b: tf.Tensor1D }>): MLP {
    if (!Array.isArray(layers) || layers.length === 0) invalid('MLP.fromWeights', 'layers', layers, 'a non-empty array of { W, b }');
    const dims = [layers[0].W.shape[0], ...layers.map((l) => l.W.shape[1])];
    layers.forEach((l, i) => {
      if (!(l.W instanceof tf.Tensor) || l.W.rank !== 2 || l.W.shape[0] !== dims[i]) invalid('MLP.fromWeights', `layers[${i}].W`, l.W, `a tensor of shape [${dims[i]}, out]`);
      if (!(l.b instanceof tf.Tensor) || l.b.rank !== 1 || l.b.shape[0] !== dims[i + 1]) invalid('MLP.fromWeights', `layers[${i}].b`, l.b, `a tensor of shape [${dims[i + 1]}]`);
    });
    const mlp = new MLP(dims);
    mlp.layers.forEach((l, i) => {
      l.W.assign(layers[i].W);
      l.b.assign(layers[i].b);
    });
    return mlp;
  }

  /** An independent copy with the same weights (e.g. to fine-tune while keeping the original). */
  clone(): MLP {
    const copy = new MLP(this.dims);
    copy.gradientPath = this.gradientPath;
    copy.layers.forEach((l, i) => {
      l.W.assign(this.layers[i].W);
      l.b.assign(this.layers[i].b);
    });
    return copy;
  }

  parameterCounts(): ParameterCounts {
    const n = this.layers.reduce((sum, l) => sum + l.W.size + l.b.size, 0);
    return { total: n, trainable: n, frozen: 0, lora: 0 };
  }

  dispose(): void {
    for (const l of this.layers) l.dispose();
  }
}

/** Throw unless x is `[..., inFeatures]`. */
export function checkModelInput(where: string, x: unknown, inFeatures: number): void {
  const ok = x instanceof tf.Tensor && x.rank >= 1 && x.shape[x.rank - 1] === inFeatures;
  if (!ok) invalid(where, 'x', x, `a tensor of shape [..., ${inFeatures}]`);
}
