import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { ResolvedLoRAConfig } from '../core/lora-adapter.js';
import { type Rng, randomNormal, randomUniform } from '../util/random.js';
import { type ActiveFactors, type LoRALayerArgs, LoRALayer } from './lora-layer.js';

interface Conv2DInternals {
  kernel: tfl.LayerVariable;
  bias: tfl.LayerVariable | null;
  filters: number;
  kernelSize: number[];
  strides: number[];
  padding: 'valid' | 'same' | 'causal';
  dataFormat: 'channelsFirst' | 'channelsLast';
  dilationRate: number | number[];
  activation: { apply(x: tf.Tensor): tf.Tensor };
}

/**
 * A tfjs `Conv2D` layer with LoRA adapters, in PEFT's form: A is a kh×kw convolution from
 * the input channels to r channels with the base's strides, padding and dilation; B a 1×1
 * convolution from r to the output channels. `activation(conv(x, W) + b + s·conv₁ₓ₁(conv(dropout(x), A), B))`.
 * Kernels are tfjs's `[kh, kw, in, out]` (PyTorch's `[out, in, kh, kw]` on disk).
 */
export class LoRAConv2D extends LoRALayer {
  static readonly className = 'LoRAConv2D';

  constructor(args: LoRALayerArgs) {
    super(args);
  }

  private get conv(): Conv2DInternals {
    return this.base as unknown as Conv2DInternals;
  }

  protected override checkBase(): void {
    if (this.conv.dataFormat === 'channelsFirst') {
      throw new Error(`LoRAConv2D ${this.name}: dataFormat = "channelsFirst" is not supported; expected "channelsLast" (tfjs runs convolutions in NHWC)`);
    }
  }

  protected factorShapes(rank: number): [number[], number[]] {
    const [kh, kw, inC, outC] = this.conv.kernel.shape as number[];
    return [[kh, kw, inC, rank], [rank, outC]];
  }

  protected initialFactors(config: ResolvedLoRAConfig, rng: Rng): [tf.Tensor, tf.Tensor] {
    const [shapeA, shapeB] = this.factorShapes(config.rank);
    const fanIn = shapeA[0] * shapeA[1] * shapeA[2];
    const A =
      config.init === 'gaussian'
        ? randomNormal(shapeA, rng, 1 / Math.sqrt(config.rank))
        : randomUniform(shapeA, rng, 1 / Math.sqrt(fanIn)); // PEFT's kaiming-uniform (a = √5)
    return [A, tf.zeros(shapeB)];
  }

  protected baseWeightFields(): string[] {
    return this.conv.bias === null ? ['kernel'] : ['kernel', 'bias'];
  }

  private convolve(x: tf.Tensor4D, kernel: tf.Tensor4D): tf.Tensor4D {
    const { strides, padding, dilationRate } = this.conv;
    const dilations = (typeof dilationRate === 'number' ? [dilationRate, dilationRate] : dilationRate) as [number, number];
    return tf.conv2d(x, kernel, strides as [number, number], padding as 'same' | 'valid', 'NHWC', dilations);
  }

  protected loraCall(x: tf.Tensor, adapter: ActiveFactors): tf.Tensor {
    const { kernel, bias, activation } = this.conv;
    const x4 = x as tf.Tensor4D;
    const xd = adapter.dropout === null ? x4 : (tf.dropout(x4, adapter.dropout.rate, undefined, adapter.dropout.seed) as tf.Tensor4D);
    let y: tf.Tensor = this.convolve(x4, kernel.read() as tf.Tensor4D);
    if (bias !== null) y = tf.add(y, bias.read());
    const h = this.convolve(xd, adapter.A as tf.Tensor4D);
    const [n, oh, ow, r] = h.shape;
    // The 1×1 convolution B is a matMul over the flattened positions.
    const up = tf.reshape(tf.matMul(tf.reshape(h, [n * oh * ow, r]), adapter.B as tf.Tensor2D), [n, oh, ow, -1]);
    return activation.apply(tf.add(y, tf.mul(up, adapter.scale)));
  }

  protected delta(A: tf.Tensor, B: tf.Tensor, scale: number): tf.Tensor {
    const [kh, kw, inC, r] = A.shape;
    const outC = B.shape[1] as number;
    return tf.mul(tf.reshape(tf.matMul(tf.reshape(A, [kh * kw * inC, r]) as tf.Tensor2D, B as tf.Tensor2D), [kh, kw, inC, outC]), scale);
  }
}

tf.serialization.registerClass(LoRAConv2D);
