import * as tf from '@tensorflow/tfjs-core';
import { Rng, randomNormal, randomUniform } from '../util/random.js';
import { checkOneOf, checkPositiveFinite, checkPositiveInt, checkProbability, invalid } from '../util/validate.js';

/** How the down-projection A is initialised (B always starts at zero). */
export type LoRAInit = 'gaussian' | 'kaiming';

/** Hyper-parameters of one LoRA adapter. */
export interface LoRAConfig {
  /** Rank r of the update ΔW = A·B (default 4, as the reference). */
  rank?: number;
  /** Scale numerator: s = alpha / r, or alpha / √r with `useRsLora` (default 1, as the reference). */
  alpha?: number;
  /** Dropout applied to the adapter's input while training (default 0). */
  dropout?: number;
  /** rsLoRA scaling s = alpha / √r, which keeps updates stable at high rank. */
  useRsLora?: boolean;
  /** `gaussian`: A ~ N(0, 1)/√r as the reference; `kaiming`: PEFT's kaiming-uniform (a = √5). */
  init?: LoRAInit;
  /** Seed for A's initial values and the dropout masks. */
  seed?: number;
}

/** A resolved config: every field present and checked. */
export type ResolvedLoRAConfig = Required<LoRAConfig>;

/**
 * One adapter's state: the trainable factors and their scale. A is `[in, r]` and B is
 * `[r, out]` (TensorFlow.js layout: y = x·W + s·(x·A)·B).
 */
export interface LoRAAdapter {
  readonly name: string;
  readonly config: ResolvedLoRAConfig;
  readonly scale: number;
  readonly A: tf.Variable<tf.Rank.R2>;
  readonly B: tf.Variable<tf.Rank.R2>;
  /** Draws the seeds of this adapter's dropout masks, so training runs repeat exactly. */
  readonly rng: Rng;
}

export const LORA_DEFAULTS: ResolvedLoRAConfig = {
  rank: 4,
  alpha: 1,
  dropout: 0,
  useRsLora: false,
  init: 'gaussian',
  seed: 0,
};

/**
 * Check a LoRA config and fill in the defaults. A rank above min(in, out) is allowed, as
 * in PEFT (it adds parameters but no capacity); the layer warns about it.
 */
export function resolveLoRAConfig(where: string, config: LoRAConfig): ResolvedLoRAConfig {
  if (config === null || typeof config !== 'object') invalid(where, 'config', config, 'an options object');
  // Only the adapter's own fields: callers pass wider option objects (a layer's options).
  const { rank, alpha, dropout, useRsLora, init, seed } = config;
  const c: ResolvedLoRAConfig = { ...LORA_DEFAULTS, ...stripUndefined({ rank, alpha, dropout, useRsLora, init, seed }) };
  checkPositiveInt(where, 'rank', c.rank);
  checkPositiveFinite(where, 'alpha', c.alpha);
  checkProbability(where, 'dropout', c.dropout);
  if (typeof c.useRsLora !== 'boolean') invalid(where, 'useRsLora', c.useRsLora, 'a boolean');
  checkOneOf(where, 'init', c.init, ['gaussian', 'kaiming'] as const);
  if (!Number.isInteger(c.seed)) invalid(where, 'seed', c.seed, 'an integer');
  // The scale multiplies float32 tensors: one that rounds to Infinity or 0 there would
  // silently turn every output into ±Infinity/NaN, or switch the adapter off.
  // (Subnormal scales are refused too: wasm's XNNPACK flushes them to zero.)
  const s = Math.fround(loraScale(c));
  if (!Number.isFinite(s) || Math.abs(s) < 2 ** -126) {
    const formula = c.useRsLora ? 'alpha / √rank' : 'alpha / rank';
    invalid(where, `scale ${formula} (${c.alpha} / ${c.useRsLora ? `√${c.rank}` : c.rank})`, loraScale(c), 'a finite, non-zero float32 (about 1.2e-38 to 3.4e38); change alpha or rank');
  }
  return c;
}

/** s = alpha / r, or alpha / √r for rsLoRA. */
export function loraScale(config: Pick<ResolvedLoRAConfig, 'alpha' | 'rank' | 'useRsLora'>): number {
  if (config === null || typeof config !== 'object') invalid('loraScale', 'config', config, 'an object { alpha, rank, useRsLora }');
  checkPositiveInt('loraScale', 'rank', config.rank);
  checkPositiveFinite('loraScale', 'alpha', config.alpha);
  return config.useRsLora ? config.alpha / Math.sqrt(config.rank) : config.alpha / config.rank;
}

/** Given factors for a new adapter (copied): A `[in, r]`, B `[r, out]`. */
export interface AdapterFactors {
  A: tf.Tensor2D;
  B: tf.Tensor2D;
}

/**
 * Allocate an adapter. Without `initial`: A random, B zero, so the layer's output starts
 * unchanged. With it: copies of the given factors (shapes checked by the caller).
 */
export function createAdapter(
  name: string,
  config: ResolvedLoRAConfig,
  inFeatures: number,
  outFeatures: number,
  initial?: AdapterFactors,
): LoRAAdapter {
  const rng = new Rng(config.seed);
  const r = config.rank;
  if (initial !== undefined) {
    return { name, config, scale: loraScale(config), A: tf.variable(initial.A, true), B: tf.variable(initial.B, true), rng };
  }
  const initialA =
    config.init === 'gaussian'
      ? randomNormal<tf.Rank.R2>([inFeatures, r], rng, 1 / Math.sqrt(r))
      : // PEFT: kaiming_uniform_(a=√5) on lora_A [r, in] → U(-1/√in, 1/√in).
        randomUniform<tf.Rank.R2>([inFeatures, r], rng, 1 / Math.sqrt(inFeatures));
  const A = tf.variable(initialA, true);
  initialA.dispose();
  const initialB = tf.zeros<tf.Rank.R2>([r, outFeatures]);
  const B = tf.variable(initialB, true);
  initialB.dispose();
  return { name, config, scale: loraScale(config), A, B, rng };
}

/** Given weights for a full trainable copy of a layer (PEFT's `modules_to_save`), copied. */
export interface FullWeights {
  /** `[in, out]`. */
  weight: tf.Tensor2D;
  /** `[out]`, when the layer has a bias. */
  bias?: tf.Tensor1D;
}

/**
 * A full trainable copy of a layer's weight and bias, used instead of the frozen base while
 * its adapter is active (PEFT's `modules_to_save`: e.g. a classifier head trained in full).
 */
export interface FullAdapter {
  readonly name: string;
  readonly weight: tf.Variable<tf.Rank.R2>;
  readonly bias?: tf.Variable<tf.Rank.R1>;
}

/** Number of values in A and B. */
export function adapterParameterCount(adapter: LoRAAdapter): number {
  if (adapter === null || typeof adapter !== 'object' || typeof adapter.A?.size !== 'number' || typeof adapter.B?.size !== 'number') invalid('adapterParameterCount', 'adapter', adapter, 'an adapter { A, B } (from layer.adapter())');
  return adapter.A.size + adapter.B.size;
}

export function disposeAdapter(adapter: LoRAAdapter): void {
  adapter.A.dispose();
  adapter.B.dispose();
}

/** A full copy from given weights (copied). */
export function createFullAdapter(name: string, initial: FullWeights): FullAdapter {
  return { name, weight: tf.variable(initial.weight, true), bias: initial.bias === undefined ? undefined : tf.variable(initial.bias, true) };
}

export function disposeFullAdapter(adapter: FullAdapter): void {
  adapter.weight.dispose();
  adapter.bias?.dispose();
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
