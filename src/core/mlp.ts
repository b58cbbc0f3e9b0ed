import * as tf from '@tensorflow/tfjs-core';
import { Dense } from './dense.js';
import type { GradientPath } from './lora-forward.js';
import type { Model } from './model.js';
import { layerSeed } from './model.js';
import type { ParameterCounts } from './params.js';
import { Rng } from '../util/random.js';
import { withRows } from './rows.js';
import { checkDims, checkInteger, checkLiveTensor, checkModuleNames, checkNoNullFields, checkOneOf, checkOptions, describe, invalid } from '../util/validate.js';
import { checkAllocation, outputAndTemporaries } from '../runtime/memory-budget.js';

/** A dense layer's forward pass holds up to 3 output-sized tensors (x·W, +b, relu). */
const DENSE_TEMPORARIES = 3;
import { linearTensors } from './lora-linear.js';
import { assertNotTraining } from './training-lock.js';

/** Options of {@link MLP}. */
export interface MLPOptions {
  /** Seed of the initial weights (default 0). */
  seed?: number;
  /**
   * `uniform`: W, b ~ U(−1/√in, 1/√in), PyTorch's nn.Linear default (the reference's).
   * `he`: W ~ N(0, 2/in), b = 0, which keeps activations at unit scale through ReLUs.
   */
  init?: 'uniform' | 'he';
  /** Layers with a bias (default true); false is PyTorch's `nn.Linear(…, bias=False)`. */
  bias?: boolean;
  /**
   * Each layer's module name, as PyTorch names it (default `fc1`, `fc2`, …): the names
   * adapter files and state dicts use (`mlp.fc1`, or `0`, `2`, … for `nn.Sequential`).
   */
  names?: readonly string[];
}

/**
 * The reference's `SimpleLinearModel`: Linear layers with bias, ReLU between, every
 * parameter trainable. The full fine-tuning baseline.
 */
export class MLP implements Model {
  readonly dims: readonly number[];
  readonly layers: readonly Dense[];
  /** Module name of each layer (see {@link MLPOptions.names}). */
  readonly names: readonly string[];
  private path: GradientPath = 'auto';
  private disposed = false;

  /** How gradients are computed: `auto` picks the fused path on wasm/cpu. */
  get gradientPath(): GradientPath {
    return this.path;
  }

  set gradientPath(path: GradientPath) {
    this.path = checkOneOf('MLP', 'gradientPath', path, ['auto', 'fused', 'autodiff'] as const);
  }

  constructor(dims: readonly number[], options: MLPOptions = {}) {
    if (options === null || typeof options !== 'object') invalid('MLP', 'options', options, 'an options object');
    checkNoNullFields('MLP', options);
    checkDims('MLP', dims);
    const seed = checkInteger('MLP', 'seed', options.seed ?? 0);
    const init = checkOneOf('MLP', 'init', options.init ?? 'uniform', ['uniform', 'he'] as const);
    const bias = options.bias ?? true;
    if (typeof bias !== 'boolean') invalid('MLP', 'bias', bias, 'a boolean');
    this.names = checkModuleNames('MLP', options.names, dims.length - 1);
    checkAllocation(`MLP ${describe(dims)}`, dims.slice(1).flatMap((out, i) => linearTensors(dims[i], out, false, this.names[i], bias)));
    this.dims = [...dims];
    this.layers = dims.slice(1).map((out, i) => new Dense(dims[i], out, new Rng(layerSeed(seed, i)), init, bias));
  }

  apply(x: tf.Tensor, options: { training?: boolean } = {}): tf.Tensor {
    this.assertLive();
    checkOptions('MLP.apply', 'options', options, 'an options object { training? }'); // no dropout in the baseline
    checkModelInput('MLP', x, this.dims[0]);
    return withRows(x, this.dims[this.dims.length - 1], (rows) =>
      tf.tidy(() => {
        let h = rows;
        this.layers.forEach((layer, i) => {
          const n = h.shape[0];
          checkAllocation('forward pass', outputAndTemporaries(`layer ${this.names[i]}'s output [${n}, ${layer.outFeatures}]`, n * layer.outFeatures, DENSE_TEMPORARIES));
          h = layer.apply(h, this.path, i > 0);
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
    this.assertLive();
    return this.layers.flatMap((l) => l.variables());
  }

  /**
   * An MLP with the given weights (copied): W `[in, out]` and, for a layer with a bias,
   * b `[out]`, sizes chaining (layer i's out = layer i+1's in). Either every layer has a
   * bias or none has. Checked before anything is allocated.
   */
  static fromWeights(layers: ReadonlyArray<{ W: tf.Tensor2D; b?: tf.Tensor1D }>, options: { names?: readonly string[] } = {}): MLP {
    const where = 'MLP.fromWeights';
    if (!Array.isArray(layers) || layers.length === 0) invalid(where, 'layers', layers, 'a non-empty array of { W, b }');
    layers.forEach((l, i) => {
      if (l === null || typeof l !== 'object') invalid(where, `layers[${i}]`, l, 'an object { W, b }');
    });
    const first = layers[0].W;
    if (!(first instanceof tf.Tensor) || first.rank !== 2) invalid(where, 'layers[0].W', first, 'a 2-D tensor [in, out]');
    const dims = [first.shape[0], ...layers.map((l) => (l.W instanceof tf.Tensor ? l.W.shape[1] : NaN))];
    const bias = layers[0].b !== undefined;
    layers.forEach((l, i) => {
      const okW = l.W instanceof tf.Tensor && !l.W.isDisposed && l.W.dtype === 'float32' && l.W.rank === 2 && l.W.shape[0] === dims[i];
      if (!okW) invalid(where, `layers[${i}].W`, l.W, `a float32 tensor of shape [${dims[i]}, out]`);
      if (!bias && l.b === undefined) return;
      const okB = l.b instanceof tf.Tensor && !l.b.isDisposed && l.b.dtype === 'float32' && l.b.rank === 1 && l.b.shape[0] === dims[i + 1];
      if (!okB) invalid(where, `layers[${i}].b`, l.b, bias ? `a float32 tensor of shape [${dims[i + 1]}] (layer 0 has a bias, so every layer needs one)` : 'undefined (layer 0 has no bias, so no layer may have one)');
    });
    const names = checkModuleNames(where, options.names, layers.length);
    const mlp = new MLP(dims, { bias, names });
    mlp.layers.forEach((l, i) => {
      l.W.assign(layers[i].W);
      if (l.b !== undefined) l.b.assign(layers[i].b as tf.Tensor1D);
    });
    return mlp;
  }

  /** An independent copy with the same weights (e.g. to fine-tune while keeping the original). */
  clone(): MLP {
    this.assertLive();
    const copy = new MLP(this.dims, { bias: this.layers[0].b !== undefined, names: this.names });
    copy.gradientPath = this.gradientPath;
    copy.layers.forEach((l, i) => {
      l.W.assign(this.layers[i].W);
      if (l.b !== undefined) l.b.assign(this.layers[i].b as tf.Tensor1D);
    });
    return copy;
  }

  parameterCounts(): ParameterCounts {
    this.assertLive();
    const n = this.layers.reduce((sum, l) => sum + l.W.size + (l.b?.size ?? 0), 0);
    return { total: n, trainable: n, frozen: 0, lora: 0, saved: 0 };
  }

  dispose(): void {
    if (this.disposed) return;
    assertNotTraining('MLP', this, 'dispose the model');
    for (const l of this.layers) l.dispose();
    this.disposed = true;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private assertLive(): void {
    if (this.disposed) throw new Error('MLP: this model has been disposed');
  }
}

/** Throw unless x is `[..., inFeatures]`. */
export function checkModelInput(where: string, x: unknown, inFeatures: number): void {
  checkLiveTensor(where, 'x', x, `a live tensor of shape [..., ${inFeatures}]`);
  const ok = x instanceof tf.Tensor && x.rank >= 1 && x.shape[x.rank - 1] === inFeatures;
  if (!ok) invalid(where, 'x', x, `a tensor of shape [..., ${inFeatures}]`);
}
