import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { ResolvedLoRAConfig } from '../core/lora-adapter.js';
import { type FrozenLinear, type GradientPath, linearForward } from '../core/lora-forward.js';
import { type Rng, randomNormal, randomUniform } from '../util/random.js';
import { type ActiveFactors, type LoRALayerArgs, LoRALayer } from './lora-layer.js';

interface DenseInternals {
  kernel: tfl.LayerVariable;
  bias: tfl.LayerVariable | null;
  units: number;
  activation: { apply(x: tf.Tensor): tf.Tensor; getClassName(): string };
}

/**
 * A tfjs `Dense` layer with LoRA adapters: `activation(x·W + b + s·(dropout(x)·A)·B)`, A
 * `[in, r]`, B `[r, units]`, for inputs of any rank ≥ 2 (`[batch, …, in]`).
 *
 * On wasm and cpu the adapter's gradient takes the fused path of `core/lora-forward.ts`
 * (untransposed matMuls only, Wᵀ cached), as `LoRALinear` does.
 */
export class LoRADense extends LoRALayer {
  static readonly className = 'LoRADense';
  /** How gradients are computed: `auto` picks the fused path on wasm/cpu. */
  gradientPath: GradientPath = 'auto';
  private cache: { source: object; weightT: tf.Tensor2D } | null = null;

  constructor(args: LoRALayerArgs) {
    super(args);
  }

  private get dense(): DenseInternals {
    return this.base as unknown as DenseInternals;
  }

  protected factorShapes(rank: number): [number[], number[]] {
    const [inFeatures, units] = this.dense.kernel.shape as number[];
    return [[inFeatures, rank], [rank, units]];
  }

  protected initialFactors(config: ResolvedLoRAConfig, rng: Rng): [tf.Tensor, tf.Tensor] {
    const [shapeA, shapeB] = this.factorShapes(config.rank);
    const A =
      config.init === 'gaussian'
        ? randomNormal(shapeA, rng, 1 / Math.sqrt(config.rank))
        : randomUniform(shapeA, rng, 1 / Math.sqrt(shapeA[0])); // PEFT's kaiming-uniform (a = √5)
    return [A, tf.zeros(shapeB)];
  }

  protected baseWeightFields(): string[] {
    return this.dense.bias === null ? ['kernel'] : ['kernel', 'bias'];
  }

  protected loraCall(x: tf.Tensor, adapter: ActiveFactors): tf.Tensor {
    const { kernel, bias, units, activation } = this.dense;
    const inFeatures = kernel.shape[0] as number;
    const lead = x.shape.slice(0, -1);
    const x2 = (x.rank === 2 ? x : tf.reshape(x, [-1, inFeatures])) as tf.Tensor2D;
    const weight = kernel.read() as tf.Tensor2D;
    const frozen: FrozenLinear = { weight, bias: bias?.read() as tf.Tensor1D | undefined, weightT: this.cachedTranspose(weight) };
    const y = linearForward(
      x2,
      frozen,
      { A: adapter.A as tf.Tensor2D, B: adapter.B as tf.Tensor2D, scale: adapter.scale },
      { dropout: adapter.dropout, path: this.gradientPath, needsInputGrad: !(adapter.training && this.inputsAreModelInputs()) },
    );
    // linearForward builds Wᵀ (kept) the first time a backward pass needs it.
    if (frozen.weightT !== undefined && this.cache?.weightT !== frozen.weightT) this.cache = { source: weight.dataId, weightT: frozen.weightT };
    const shaped = x.rank === 2 ? y : tf.reshape(y, [...lead, units]);
    return activation.apply(shaped);
  }

  /** The cached Wᵀ of the current kernel, if any (dropped when the kernel is replaced). */
  private cachedTranspose(weight: tf.Tensor2D): tf.Tensor2D | undefined {
    if (this.cache === null) return undefined;
    if (this.cache.source === weight.dataId && !this.cache.weightT.isDisposed) return this.cache.weightT;
    this.cache.weightT.dispose();
    this.cache = null;
    return undefined;
  }

  protected delta(A: tf.Tensor, B: tf.Tensor, scale: number): tf.Tensor {
    return tf.mul(tf.matMul(A as tf.Tensor2D, B as tf.Tensor2D), scale);
  }

  override dispose(): ReturnType<tfl.layers.Layer['dispose']> {
    const result = super.dispose();
    if (result.refCountAfterDispose === 0) {
      this.cache?.weightT.dispose();
      this.cache = null;
    }
    return result;
  }
}

tf.serialization.registerClass(LoRADense);
