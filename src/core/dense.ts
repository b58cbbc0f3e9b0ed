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
  /** The bias, or undefined for a bias-free layer (PyTorch's `nn.Linear(…, bias=False)`). */
  readonly b: tf.Variable<tf.Rank.R1> | undefined;

  constructor(inFeatures: number, outFeatures: number, rng: Rng, init: 'uniform' | 'he' = 'uniform', bias = true) {
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const bound = 1 / Math.sqrt(inFeatures);
    const w =
      init === 'he'
        ? randomNormal<tf.Rank.R2>([inFeatures, outFeatures], rng, Math.sqrt(2 / inFeatures))
        : randomUniform<tf.Rank.R2>([inFeatures, outFeatures], rng, bound);
    this.W = tf.variable(w, true);
    w.dispose();
    if (bias) {
      const b = init === 'he' ? tf.zeros<tf.Rank.R1>([outFeatures]) : randomUniform<tf.Rank.R1>([outFeatures], rng, bound);
      this.b = tf.variable(b, true);
      b.dispose();
    } else {
      this.b = undefined;
    }
  }

  /** x `[n, in]` → `[n, out]`. */
  apply(x: tf.Tensor2D, path: GradientPath, needsInputGrad: boolean): tf.Tensor2D {
    return denseForward(x, this.W, this.b, path, needsInputGrad);
  }

  /** W and b (when present): what an optimizer updates. */
  variables(): tf.Variable[] {
    return this.b === undefined ? [this.W] : [this.W, this.b];
  }

  dispose(): void {
    this.W.dispose();
    this.b?.dispose();
  }
}

/** x·W + b for trainable W and b, on the gradient path `path` resolves to. */
export function denseForward(x: tf.Tensor2D, W: tf.Tensor2D, b: tf.Tensor1D | undefined, path: GradientPath, needsInputGrad: boolean): tf.Tensor2D {
  if (resolveGradientPath(path) === 'fused') return fusedDense(x, W, b, needsInputGrad);
  return tf.tidy((): tf.Tensor2D => {
    const y = tf.matMul(x, W) as tf.Tensor2D;
    return b === undefined ? y : (tf.add(y, b) as tf.Tensor2D);
  });
}

/**
 * x·W + b whose backward pass avoids transposed matMuls: dW = (xᵀ)·dy with x transposed
 * explicitly (x is thin), and dx = (W·dyᵀ)ᵀ, so the large W is never transposed.
 */
function fusedDense(x: tf.Tensor2D, W: tf.Tensor2D, b: tf.Tensor1D | undefined, needsInputGrad: boolean): tf.Tensor2D {
  const hasBias = b !== undefined;
  const f = withCustomGrad((inputs, save) => {
    const Win = inputs[0] as tf.Tensor2D;
    save([Win, x]); // unsaved intermediates are freed before the backward pass
    const y = tf.matMul(x, Win);
    return {
      value: hasBias ? tf.add(y, inputs[1]) : y,
      gradFunc: (dy, [Wsaved, xSaved]) => {
        const grads: tf.Tensor[] = [tf.matMul(tf.transpose(xSaved), dy as tf.Tensor2D)];
        if (hasBias) grads.push(tf.sum(dy, 0));
        if (needsInputGrad) grads.push(tf.transpose(tf.matMul(Wsaved as tf.Tensor2D, tf.transpose(dy))));
        return grads;
      },
    };
  });
  return f([W, ...(hasBias ? [b] : []), ...(needsInputGrad ? [x] : [])]) as tf.Tensor2D;
}
