import * as tf from '@tensorflow/tfjs-core';
import { withCustomGrad } from './custom-grad.js';
import type { GradientPath } from './lora-forward.js';
import { resolveGradientPath } from './lora-forward.js';
import { Rng, randomNormal, randomUniform } from '../util/random.js';

/**
 * A fully trainable linear layer y = x·W + b (W `[in, out]`), by default initialised like
 * PyTorch's `nn.Linear`: W, b ~ U(−1/√in, 1/√in). The full fine-tuning baseline.
 */
export class Dense {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly W: tf.Variable<tf.Rank.R2>;
  readonly b: tf.Variable<tf.Rank.R1>;

  constructor(inFeatures: number, outFeatures: number, rng: Rng, init: 'uniform' | 'he' = 'uniform') {
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const bound = 1 / Math.sqrt(inFeatures);
    const w =
      init === 'he'
        ? randomNormal<tf.Rank.R2>([inFeatures, outFeatures], rng, Math.sqrt(2 / inFeatures))
        : randomUniform<tf.Rank.R2>([inFeatures, outFeatures], rng, bound);
    const b = init === 'he' ? tf.zeros<tf.Rank.R1>([outFeatures]) : randomUniform<tf.Rank.R1>([outFeatures], rng, bound);
    this.W = tf.variable(w, true);
    this.b = tf.variable(b, true);
    w.dispose();
    b.dispose();
  }

  /** x `[n, in]` → `[n, out]`. */
  apply(x: tf.Tensor2D, path: GradientPath, needsInputGrad: boolean): tf.Tensor2D {
    return resolveGradientPath(path) === 'fused'
      ? fusedDense(x, this.W, this.b, needsInputGrad)
      : tf.tidy(() => tf.add(tf.matMul(x, this.W), this.b));
  }

  dispose(): void {
    this.W.dispose();
    this.b.dispose();
  }
}

/**
 * x·W + b whose backward pass avoids transposed matMuls: dW = (xᵀ)·dy with x transposed
 * explicitly (x is thin), and dx = (W·dyᵀ)ᵀ, so the large W is never transposed.
 */
function fusedDense(x: tf.Tensor2D, W: tf.Tensor2D, b: tf.Tensor1D, needsInputGrad: boolean): tf.Tensor2D {
  const f = withCustomGrad(([Win, bIn], save) => {
    save([Win, x]); // unsaved intermediates are freed before the backward pass
    return {
      value: tf.add(tf.matMul(x, Win as tf.Tensor2D), bIn),
      gradFunc: (dy, [Wsaved, xSaved]) => {
        const dW = tf.matMul(tf.transpose(xSaved), dy as tf.Tensor2D);
        const db = tf.sum(dy, 0);
        if (!needsInputGrad) return [dW, db];
        return [dW, db, tf.transpose(tf.matMul(Wsaved as tf.Tensor2D, tf.transpose(dy)))];
      },
    };
  });
  return f(needsInputGrad ? [W, b, x] : [W, b]) as tf.Tensor2D;
}
