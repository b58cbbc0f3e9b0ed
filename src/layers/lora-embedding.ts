import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { ResolvedLoRAConfig } from '../core/lora-adapter.js';
import { type Rng, randomNormal } from '../util/random.js';
import { type ActiveFactors, type LoRALayerArgs, LoRALayer } from './lora-layer.js';

interface EmbeddingInternals {
  embeddings: tfl.LayerVariable;
  inputDim: number;
  outputDim: number;
}

/**
 * A tfjs `Embedding` layer with LoRA adapters, in PEFT's form:
 * `E[ids] + s·A[ids]·B`, A `[vocab, r]`, B `[r, dim]` (PEFT's `lora_embedding_A` is Aᵀ,
 * `lora_embedding_B` is Bᵀ). As in PEFT, A starts at zero and B random, and no dropout
 * is applied (an embedding's input is an index, not a vector).
 *
 * The gradient of a row lookup is a segment sum, which wasm lacks; lora-tfjs registers it
 * (`runtime/wasm-kernels.ts`), so this layer trains on every backend.
 */
export class LoRAEmbedding extends LoRALayer {
  static readonly className = 'LoRAEmbedding';

  constructor(args: LoRALayerArgs) {
    super(args);
  }

  private get embedding(): EmbeddingInternals {
    return this.base as unknown as EmbeddingInternals;
  }

  protected factorShapes(rank: number): [number[], number[]] {
    const { inputDim, outputDim } = this.embedding;
    return [[inputDim, rank], [rank, outputDim]];
  }

  protected initialFactors(config: ResolvedLoRAConfig, rng: Rng): [tf.Tensor, tf.Tensor] {
    const [shapeA, shapeB] = this.factorShapes(config.rank);
    // PEFT: nn.init.zeros_(lora_embedding_A); nn.init.normal_(lora_embedding_B).
    return [tf.zeros(shapeA), randomNormal(shapeB, rng, 1)];
  }

  protected baseWeightFields(): string[] {
    return ['embeddings'];
  }

  protected loraCall(x: tf.Tensor, adapter: ActiveFactors): tf.Tensor {
    const y = this.base.call(x, {}) as tf.Tensor;
    const ids = tf.reshape(x.dtype === 'int32' ? x : tf.cast(x, 'int32'), [-1]);
    const delta = tf.mul(tf.matMul(tf.gather(adapter.A, ids) as tf.Tensor2D, adapter.B as tf.Tensor2D), adapter.scale);
    return tf.add(y, tf.reshape(delta, y.shape));
  }

  protected delta(A: tf.Tensor, B: tf.Tensor, scale: number): tf.Tensor {
    return tf.mul(tf.matMul(A as tf.Tensor2D, B as tf.Tensor2D), scale);
  }
}

tf.serialization.registerClass(LoRAEmbedding);
