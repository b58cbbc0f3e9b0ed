import * as tf from '@tensorflow/tfjs-core';
import {
  type AdapterFactors,
  type LoRAAdapter,
  type LoRAConfig,
  adapterParameterCount,
  createAdapter,
  disposeAdapter,
  resolveLoRAConfig,
} from './lora-adapter.js';
import { type GradientPath, type FrozenLinear, linearForward } from './lora-forward.js';
import { type RowGroups, mixedLowRankDelta } from './mixed-batch.js';
import type { ParameterCounts } from './params.js';
import { Rng, randomNormal } from '../util/random.js';
import { withRows } from './rows.js';
import { checkPositiveInt, checkShape, describe, invalid } from '../util/validate.js';

/** Options of {@link LoRALinear}: the layer's sizes and base weights, plus its first adapter. */
export interface LoRALinearOptions extends LoRAConfig {
  inFeatures: number;
  outFeatures: number;
  /** Frozen base weight `[in, out]` (copied). Default: seeded N(0, 1), as the reference. */
  weight?: tf.Tensor2D;
  /** Frozen bias `[out]` (copied). Default: none. */
  bias?: tf.Tensor1D;
  /** Seed of the random base weight when `weight` is not given (default: `seed`). */
  weightSeed?: number;
  /** Name of the first adapter (default `"default"`, as PEFT). */
  adapterName?: string;
  /** Create no adapter at all (add them later with `addAdapter`). */
  noAdapter?: boolean;
}

/** Options of a forward pass. */
export interface ForwardOptions {
  /** Apply dropout on the adapter input (training only). */
  training?: boolean;
  /** False when nothing upstream trains, so the gradient w.r.t. the input is never computed. */
  needsInputGrad?: boolean;
}

const WHERE = 'LoRALinear';

/**
 * A linear layer with a frozen base weight and low-rank adapters:
 * `y = x·W + b + s·(dropout(x)·A)·B`.
 *
 * The layer holds state only (base tensors, adapters, which one is active or merged);
 * the arithmetic lives in `lora-forward.ts`.
 */
export class LoRALinear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** How gradients are computed: `auto` picks the fused path on wasm/cpu. */
  gradientPath: GradientPath = 'auto';

  private base: FrozenLinear;
  private readonly adapters = new Map<string, LoRAAdapter>();
  private activeName: string | null = null;
  private mergedName: string | null = null;
  private disposed = false;

  constructor(options: LoRALinearOptions) {
    if (options === null || typeof options !== 'object') invalid(WHERE, 'options', options, 'an options object');
    const inFeatures = checkPositiveInt(WHERE, 'inFeatures', options.inFeatures);
    const outFeatures = checkPositiveInt(WHERE, 'outFeatures', options.outFeatures);
    if (options.weight !== undefined) checkShape(WHERE, 'weight', options.weight, [inFeatures, outFeatures]);
    if (options.bias !== undefined) checkShape(WHERE, 'bias', options.bias, [outFeatures]);
    const adapterName = options.adapterName ?? 'default';
    const config = options.noAdapter ? null : resolveLoRAConfig(WHERE, options, inFeatures, outFeatures);
    const weightSeed = options.weightSeed ?? config?.seed ?? 0;
    if (!Number.isInteger(weightSeed)) invalid(WHERE, 'weightSeed', weightSeed, 'an integer');

    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const weight =
      options.weight !== undefined
        ? tf.keep(tf.clone(options.weight))
        : tf.keep(randomNormal<tf.Rank.R2>([inFeatures, outFeatures], new Rng(weightSeed)));
    const bias = options.bias !== undefined ? tf.keep(tf.clone(options.bias)) : undefined;
    this.base = { weight, bias };
    if (config !== null) {
      this.adapters.set(adapterName, createAdapter(adapterName, config, inFeatures, outFeatures));
      this.activeName = adapterName;
    }
  }

  // ---- state ---------------------------------------------------------------------------

  /** The frozen base weight `[in, out]` (with the merged adapter folded in while merged). */
  get weight(): tf.Tensor2D {
    this.assertLive();
    return this.base.weight;
  }

  /** The frozen bias `[out]`, if any. */
  get bias(): tf.Tensor1D | undefined {
    this.assertLive();
    return this.base.bias;
  }

  /** The name of the adapter used by forward passes and training, or null (base only). */
  get activeAdapter(): string | null {
    return this.activeName;
  }

  /** The name of the adapter folded into the weight, or null. */
  get mergedAdapter(): string | null {
    return this.mergedName;
  }

  get merged(): boolean {
    return this.mergedName !== null;
  }

  /** Names of the adapters held, in insertion order. */
  adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  /** The adapter called `name` (default: the active one). */
  adapter(name?: string): LoRAAdapter {
    this.assertLive();
    const key = name ?? this.activeName;
    if (key === null) throw new Error(`${WHERE}: no adapter is active; pass a name or call setActiveAdapter()`);
    const found = this.adapters.get(key);
    if (found === undefined) invalid(WHERE, 'adapter name', key, `one of ${describe(this.adapterNames())}`);
    return found;
  }

  /** Down-projection A `[in, r]` of the active adapter. */
  get A(): tf.Variable<tf.Rank.R2> {
    return this.adapter().A;
  }

  /** Up-projection B `[r, out]` of the active adapter. */
  get B(): tf.Variable<tf.Rank.R2> {
    return this.adapter().B;
  }

  /** Rank of the active adapter. */
  get rank(): number {
    return this.adapter().config.rank;
  }

  /** Scale s of the active adapter. */
  get scale(): number {
    return this.adapter().scale;
  }

  /**
   * Add an adapter: fresh (A random, B zero), or with given factors (copied). It becomes
   * active if none is.
   */
  addAdapter(name: string, config: LoRAConfig = {}, initial?: AdapterFactors): LoRAAdapter {
    this.assertLive();
    if (typeof name !== 'string' || name === '') invalid(WHERE, 'name', name, 'a non-empty string');
    if (this.adapters.has(name)) invalid(WHERE, 'name', name, 'a name not already used by an adapter of this layer');
    const resolved = this.checkAdapter(config, initial);
    const adapter = createAdapter(name, resolved, this.inFeatures, this.outFeatures, initial);
    this.adapters.set(name, adapter);
    if (this.activeName === null && this.mergedName === null) this.activeName = name;
    return adapter;
  }

  /** Replace adapter `name` (not merged) by a new one, in place: it stays active if it was. */
  replaceAdapter(name: string, config: LoRAConfig = {}, initial?: AdapterFactors): LoRAAdapter {
    const old = this.adapter(name);
    if (this.mergedName === name) throw new Error(`${WHERE}: adapter ${describe(name)} is merged; call unmerge() before replacing it`);
    const resolved = this.checkAdapter(config, initial);
    const adapter = createAdapter(name, resolved, this.inFeatures, this.outFeatures, initial);
    this.adapters.set(name, adapter); // Map keeps the original insertion position
    disposeAdapter(old);
    return adapter;
  }

  /** Check a config (and given factors) against this layer before anything is allocated. */
  checkAdapter(config: LoRAConfig, initial?: AdapterFactors) {
    const resolved = resolveLoRAConfig(WHERE, config, this.inFeatures, this.outFeatures);
    if (initial !== undefined) {
      checkShape(WHERE, 'A', initial.A, [this.inFeatures, resolved.rank]);
      checkShape(WHERE, 'B', initial.B, [resolved.rank, this.outFeatures]);
    }
    return resolved;
  }

  /** Make `name` the adapter forward passes use; null runs the base alone. */
  setActiveAdapter(name: string | null): void {
    this.assertLive();
    if (name !== null && !this.adapters.has(name)) {
      invalid(WHERE, 'adapter name', name, `null or one of ${describe(this.adapterNames())}`);
    }
    if (this.mergedName !== null && name !== this.mergedName) {
      throw new Error(
        `${WHERE}: cannot switch to adapter ${describe(name)} while ${describe(this.mergedName)} is merged; call unmerge() first`,
      );
    }
    this.activeName = name;
  }

  /** Remove an adapter and free its tensors. */
  deleteAdapter(name: string): void {
    const adapter = this.adapter(name);
    if (this.mergedName === name) {
      throw new Error(`${WHERE}: adapter ${describe(name)} is merged; call unmerge() before deleting it`);
    }
    this.adapters.delete(name);
    if (this.activeName === name) this.activeName = null;
    disposeAdapter(adapter);
  }

  /** The active adapter's variables: what an optimizer may update. */
  trainableVariables(): tf.Variable[] {
    this.assertLive();
    if (this.activeName === null) return [];
    const a = this.adapter();
    return [a.A, a.B];
  }

  /** Counts: frozen = W (+ bias), lora = every adapter, trainable = the active adapter. */
  parameterCounts(): ParameterCounts {
    this.assertLive();
    const frozen = this.base.weight.size + (this.base.bias?.size ?? 0);
    let lora = 0;
    for (const a of this.adapters.values()) lora += adapterParameterCount(a);
    const trainable = this.activeName === null ? 0 : adapterParameterCount(this.adapter());
    return { total: frozen + lora, trainable, frozen, lora };
  }

  // ---- forward -------------------------------------------------------------------------

  /**
   * Forward pass for training code: returns a new tensor and records gradients. `x` is
   * `[..., in]`; the result is `[..., out]`.
   */
  apply(x: tf.Tensor, options: ForwardOptions = {}): tf.Tensor {
    this.assertLive();
    this.checkInput(x);
    const useAdapter = this.activeName !== null && this.activeName !== this.mergedName;
    const adapter = useAdapter ? this.adapter() : null;
    return withRows(x, this.outFeatures, (rows) => {
      const dropout =
        adapter !== null && options.training === true && adapter.config.dropout > 0
          ? { rate: adapter.config.dropout, seed: adapter.rng.int(2 ** 31) }
          : null;
      return linearForward(rows, this.base, adapter, {
        dropout,
        path: this.gradientPath,
        needsInputGrad: options.needsInputGrad ?? true,
      });
    });
  }

  /** Inference: no dropout, nothing recorded for gradients. */
  predict(x: tf.Tensor): tf.Tensor {
    return this.apply(x, { training: false });
  }

  /**
   * Inference on a mixed batch: rows `[n, in]` grouped by adapter (see `groupRows`). The
   * base matMul runs once for all rows; each adapter's low-rank product once for its rows.
   */
  predictMixed(rows: tf.Tensor2D, groups: RowGroups): tf.Tensor2D {
    this.assertLive();
    this.checkInput(rows);
    if (this.mergedName !== null) {
      throw new Error(`${WHERE}: adapter ${describe(this.mergedName)} is merged into the weight; call unmerge() before mixing adapters in a batch`);
    }
    const adapters = groups.names.map((n) => this.adapter(n));
    return tf.tidy(() => {
      const base = linearForward(rows, this.base, null, { dropout: null, path: 'autodiff', needsInputGrad: false });
      return tf.add(base, mixedLowRankDelta(rows, groups, adapters, this.outFeatures)) as tf.Tensor2D;
    });
  }

  // ---- merging -------------------------------------------------------------------------

  /**
   * Fold the active adapter into the weight (W ← W + s·A·B) so the forward pass does no
   * LoRA matmul. Merging a merged layer is a no-op: the delta is never added twice.
   */
  merge(): void {
    this.assertLive();
    if (this.mergedName !== null) return;
    if (this.activeName === null) throw new Error(`${WHERE}: no adapter is active, so there is nothing to merge`);
    const adapter = this.adapter();
    this.replaceWeight(tf.tidy(() => tf.add(this.base.weight, deltaWeight(adapter))));
    this.mergedName = adapter.name;
  }

  /** Take the merged adapter back out of the weight (W ← W − s·A·B). No-op when unmerged. */
  unmerge(): void {
    this.assertLive();
    if (this.mergedName === null) return;
    const adapter = this.adapter(this.mergedName);
    this.replaceWeight(tf.tidy(() => tf.sub(this.base.weight, deltaWeight(adapter))));
    this.mergedName = null;
  }

  /** Free every tensor the layer holds. Using it afterwards throws. */
  dispose(): void {
    if (this.disposed) return;
    this.base.weight.dispose();
    this.base.weightT?.dispose();
    this.base.bias?.dispose();
    for (const a of this.adapters.values()) disposeAdapter(a);
    this.adapters.clear();
    this.disposed = true;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private replaceWeight(next: tf.Tensor2D): void {
    this.base.weight.dispose();
    this.base.weightT?.dispose();
    this.base = { ...this.base, weight: tf.keep(next), weightT: undefined };
  }

  private checkInput(x: tf.Tensor): void {
    if (!(x instanceof tf.Tensor)) invalid(WHERE, 'x', x, `a tensor of shape [..., ${this.inFeatures}]`);
    if (x.rank < 1 || x.shape[x.rank - 1] !== this.inFeatures) {
      invalid(WHERE, 'x', x, `a tensor of shape [..., ${this.inFeatures}] (last dimension = inFeatures)`);
    }
  }

  private assertLive(): void {
    if (this.disposed) throw new Error(`${WHERE}: this layer has been disposed`);
  }
}

/** s·A·B, the adapter's weight update `[in, out]`. */
export function deltaWeight(adapter: Pick<LoRAAdapter, 'A' | 'B' | 'scale'>): tf.Tensor2D {
  return tf.tidy(() => tf.mul(tf.matMul(adapter.A, adapter.B), adapter.scale));
}
