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
  private frozenState: { source: object; biasSource: object | undefined; base: FrozenLinear } | null = null;

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
    const { kernel, units, activation } = this.dense;
    const inFeatures = kernel.shape[0] as number;
    const lead = x.shape.slice(0, -1);
    const x2 = (x.rank === 2 ? x : tf.reshape(x, [-1, inFeatures])) as tf.Tensor2D;
    // The input gradient is computed only when tfjs asks for it (lazy gradients), so a
    // layer fed by the model's inputs never pays for it under fit.
    const y = linearForward(x2, this.frozen(), { A: adapter.A as tf.Tensor2D, B: adapter.B as tf.Tensor2D, scale: adapter.scale }, { dropout: adapter.dropout, path: this.gradientPath, needsInputGrad: true });
    const shaped = x.rank === 2 ? y : tf.reshape(y, [...lead, units]);
    return activation.apply(shaped);
  }

  /**
   * The frozen weight as the forward math reads it, kept between calls so that its cached
   * Wᵀ (built by the first backward pass that needs it) is reused; rebuilt (and the old Wᵀ
   * freed) when the kernel's buffer is replaced, e.g. by `setWeights`.
   */
  private frozen(): FrozenLinear {
    const { kernel, bias } = this.dense;
    const weight = kernel.read() as tf.Tensor2D;
    const b = bias?.read() as tf.Tensor1D | undefined;
    const state = this.frozenState;
    if (state !== null && state.source === weight.dataId && state.biasSource === b?.dataId) return state.base;
    state?.base.weightT?.dispose();
    const base: FrozenLinear = { weight, bias: b };
    this.frozenState = { source: weight.dataId, biasSource: b?.dataId, base };
    return base;
  }

  protected delta(A: tf.Tensor, B: tf.Tensor, scale: number): tf.Tensor {
    return tf.mul(tf.matMul(A as tf.Tensor2D, B as tf.Tensor2D), scale);
  }

  override dispose(): ReturnType<tfl.layers.Layer['dispose']> {
    const result = super.dispose();
    if (result.refCountAfterDispose === 0) {
      this.frozenState?.base.weightT?.dispose();
      this.frozenState = null;
    }
    return result;
  }
}

tf.serialization.registerClass(LoRADense);
