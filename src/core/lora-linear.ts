import * as tf from '@tensorflow/tfjs-core';
import {
  type AdapterFactors,
  type FullAdapter,
  type FullWeights,
  type LoRAAdapter,
  type LoRAConfig,
  type ResolvedLoRAConfig,
  adapterParameterCount,
  createAdapter,
  createFullAdapter,
  disposeAdapter,
  disposeFullAdapter,
  resolveLoRAConfig,
} from './lora-adapter.js';
import { denseForward } from './dense.js';
import { type GradientPath, type FrozenLinear, linearForward } from './lora-forward.js';
import { type RowGroups, mixedLowRankDelta } from './mixed-batch.js';
import type { ParameterCounts } from './params.js';
import { Rng, randomNormal } from '../util/random.js';
import { withRows } from './rows.js';
import { checkAdapterName, checkFloatTensor, checkLiveTensor, checkNoNullFields, checkOneOf, checkOptions, checkPositiveInt, describe, invalid } from '../util/validate.js';
import { FORWARD_TEMPORARIES, type PlannedTensor, checkAllocation, outputAndTemporaries, packsMatMulWeights } from '../runtime/memory-budget.js';
import { assertNotTraining } from './training-lock.js';
import { allFinite } from '../util/finite.js';
import { warn } from '../util/warnings.js';

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
  /** The layer's module name, used in messages (default `"linear"`; a `LoRAMLP` passes `fc1`, …). */
  name?: string;
}

/** Options of a forward pass. */
export interface ForwardOptions {
  /** Apply dropout on the adapter input (training only). */
  training?: boolean;
  /** False when nothing upstream trains, so the gradient w.r.t. the input is never computed. */
  needsInputGrad?: boolean;
}

/** What an adapter of a layer is: low-rank factors, or a full trainable copy of the layer. */
export type AdapterKind = 'lora' | 'full';

const WHERE = 'LoRALinear';

/**
 * A linear layer with a frozen base weight and low-rank adapters:
 * `y = x·W + b + s·(dropout(x)·A)·B`.
 *
 * An adapter may instead be a full trainable copy of W and b (PEFT's `modules_to_save`),
 * used in place of the base while it is active.
 *
 * The layer holds state only (base tensors, adapters, which one is active or merged);
 * the arithmetic lives in `lora-forward.ts`.
 */
export class LoRALinear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** The module name used in messages. */
  readonly name: string;
  private path: GradientPath = 'auto';

  private base: FrozenLinear;
  /** The base as it was before the merge (restored bit for bit by unmerge). */
  private beforeMerge: FrozenLinear | null = null;
  private readonly adapters = new Map<string, LoRAAdapter>();
  private readonly fullAdapters = new Map<string, FullAdapter>();
  /** Every adapter name, both kinds, in insertion order. */
  private readonly order: string[] = [];
  private activeName: string | null = null;
  private mergedName: string | null = null;
  private disposed = false;

  constructor(options: LoRALinearOptions) {
    if (options === null || typeof options !== 'object') invalid(WHERE, 'options', options, 'an options object');
    checkNoNullFields(WHERE, options);
    const inFeatures = checkPositiveInt(WHERE, 'inFeatures', options.inFeatures);
    const outFeatures = checkPositiveInt(WHERE, 'outFeatures', options.outFeatures);
    if (options.weight !== undefined) checkFloatTensor(WHERE, 'weight', options.weight, [inFeatures, outFeatures]);
    if (options.bias !== undefined) checkFloatTensor(WHERE, 'bias', options.bias, [outFeatures]);
    const name = options.name ?? 'linear';
    if (typeof name !== 'string' || name === '' || name.length > 256) invalid(WHERE, 'name', name, 'a non-empty string of at most 256 characters');
    if (options.noAdapter !== undefined && typeof options.noAdapter !== 'boolean') invalid(WHERE, 'noAdapter', options.noAdapter, 'a boolean');
    const adapterName = options.noAdapter ? 'default' : checkAdapterName(WHERE, 'adapterName', options.adapterName ?? 'default');
    const config = options.noAdapter ? null : resolveLoRAConfig(WHERE, options);
    const weightSeed = options.weightSeed ?? config?.seed ?? 0;
    if (!Number.isInteger(weightSeed)) invalid(WHERE, 'weightSeed', weightSeed, 'an integer');
    checkAllocation(`${WHERE} ${name} (${inFeatures} → ${outFeatures})`, [
      ...linearTensors(inFeatures, outFeatures, true),
      ...(config === null ? [] : adapterTensors(inFeatures, outFeatures, config.rank)),
    ]);

    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.name = name;
    const weight =
      options.weight !== undefined
        ? tf.keep(tf.clone(options.weight))
        : tf.keep(randomNormal<tf.Rank.R2>([inFeatures, outFeatures], new Rng(weightSeed)));
    const bias = options.bias !== undefined ? tf.keep(tf.clone(options.bias)) : undefined;
    this.base = { weight, bias };
    if (config !== null) this.insert(adapterName, config, undefined);
  }

  // ---- state ---------------------------------------------------------------------------

  /** How gradients are computed: `auto` picks the fused path on wasm/cpu. */
  get gradientPath(): GradientPath {
    return this.path;
  }

  set gradientPath(path: GradientPath) {
    this.path = checkOneOf(`${WHERE} ${this.name}`, 'gradientPath', path, ['auto', 'fused', 'autodiff'] as const);
  }

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

  /** Names of the adapters held (both kinds), in insertion order. */
  adapterNames(): string[] {
    return [...this.order];
  }

  /** Whether adapter `name` is low-rank (`lora`) or a full copy (`full`); undefined when absent. */
  adapterKind(name: string): AdapterKind | undefined {
    if (this.adapters.has(name)) return 'lora';
    if (this.fullAdapters.has(name)) return 'full';
    return undefined;
  }

  /** The low-rank adapter called `name` (default: the active one). */
  adapter(name?: string): LoRAAdapter {
    this.assertLive();
    const key = name ?? this.activeName;
    if (key === null) throw new Error(`${WHERE} ${this.name}: no adapter is active; pass a name or call setActiveAdapter()`);
    const found = this.adapters.get(key);
    if (found === undefined) {
      if (this.fullAdapters.has(key)) throw new Error(`${WHERE} ${this.name}: adapter ${describe(key)} is a full copy of the layer (modules_to_save), not a low-rank adapter; use fullAdapter()`);
      invalid(WHERE, 'adapter name', key, `one of ${describe(this.adapterNames())}`);
    }
    return found;
  }

  /** The full trainable copy called `name` (PEFT's `modules_to_save`). */
  fullAdapter(name: string): FullAdapter {
    this.assertLive();
    const found = this.fullAdapters.get(name);
    if (found === undefined) invalid(WHERE, 'full adapter name', name, `one of ${describe([...this.fullAdapters.keys()])}`);
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
    this.checkNewName(name);
    const resolved = this.checkAdapter(config, initial);
    checkAllocation(`${WHERE} ${this.name}`, adapterTensors(this.inFeatures, this.outFeatures, resolved.rank, name));
    return this.insert(name, resolved, initial);
  }

  /**
   * Add a full trainable copy of the layer as adapter `name` (PEFT's `modules_to_save`):
   * a copy of the base weight and bias, or of `initial`. It becomes active if none is.
   */
  addFullAdapter(name: string, initial?: FullWeights): FullAdapter {
    this.checkNewName(name);
    this.checkFull(initial);
    checkAllocation(`${WHERE} ${this.name}`, linearTensors(this.inFeatures, this.outFeatures, false, name, this.base.bias !== undefined));
    const full = createFullAdapter(name, initial ?? { weight: this.base.weight, bias: this.base.bias });
    this.fullAdapters.set(name, full);
    this.order.push(name);
    if (this.activeName === null && this.mergedName === null) this.activeName = name;
    return full;
  }

  /** Replace adapter `name` (not merged) by a new one, in place: it stays active if it was. */
  replaceAdapter(name: string, config: LoRAConfig = {}, initial?: AdapterFactors): LoRAAdapter {
    this.assertChangeable('replace an adapter');
    const old = this.adapter(name);
    if (this.mergedName === name) throw new Error(`${WHERE} ${this.name}: adapter ${describe(name)} is merged; call unmerge() before replacing it`);
    const resolved = this.checkAdapter(config, initial);
    checkAllocation(`${WHERE} ${this.name}`, adapterTensors(this.inFeatures, this.outFeatures, resolved.rank, name));
    const adapter = this.create(name, resolved, initial);
    this.adapters.set(name, adapter); // Map keeps the original insertion position
    disposeAdapter(old);
    return adapter;
  }

  /** Check a config (and given factors) against this layer before anything is allocated. */
  checkAdapter(config: LoRAConfig, initial?: AdapterFactors): ResolvedLoRAConfig {
    const resolved = resolveLoRAConfig(`${WHERE} ${this.name}`, config);
    if (initial !== undefined) {
      if (initial === null || typeof initial !== 'object') invalid(WHERE, 'initial', initial, 'an object { A, B }');
      checkFloatTensor(`${WHERE} ${this.name}`, 'A', initial.A, [this.inFeatures, resolved.rank]);
      checkFloatTensor(`${WHERE} ${this.name}`, 'B', initial.B, [resolved.rank, this.outFeatures]);
    }
    return resolved;
  }

  /** Check the weights of a full copy against this layer. */
  checkFull(initial?: FullWeights): void {
    if (initial === undefined) {
      // A fresh copy copies the base, which holds a merged adapter's delta while merged.
      if (this.mergedName !== null) throw new Error(`${WHERE} ${this.name}: adapter ${describe(this.mergedName)} is merged; call unmerge() before adding a full copy of the layer (it copies the unmerged base)`);
      return;
    }
    if (initial === null || typeof initial !== 'object') invalid(WHERE, 'initial', initial, 'an object { weight, bias }');
    checkFloatTensor(`${WHERE} ${this.name}`, 'weight', initial.weight, [this.inFeatures, this.outFeatures]);
    if ((initial.bias === undefined) !== (this.base.bias === undefined)) {
      invalid(WHERE, 'bias', initial.bias, this.base.bias === undefined ? 'undefined (the base layer has no bias)' : `a tensor of shape [${this.outFeatures}] (the base layer has a bias)`);
    }
    if (initial.bias !== undefined) checkFloatTensor(`${WHERE} ${this.name}`, 'bias', initial.bias, [this.outFeatures]);
  }

  /** Make `name` the adapter forward passes use; null runs the base alone. */
  setActiveAdapter(name: string | null): void {
    this.assertChangeable('switch adapters');
    if (name !== null && this.adapterKind(name) === undefined) {
      invalid(WHERE, 'adapter name', name, `null or one of ${describe(this.adapterNames())}`);
    }
    if (this.mergedName !== null && name !== this.mergedName) {
      throw new Error(
        `${WHERE} ${this.name}: cannot switch to adapter ${describe(name)} while ${describe(this.mergedName)} is merged; call unmerge() first`,
      );
    }
    this.activeName = name;
  }

  /** Remove an adapter (either kind) and free its tensors. */
  deleteAdapter(name: string): void {
    this.assertChangeable('delete an adapter');
    const kind = this.adapterKind(name);
    if (kind === undefined) invalid(WHERE, 'adapter name', name, `one of ${describe(this.adapterNames())}`);
    if (this.mergedName === name) {
      throw new Error(`${WHERE} ${this.name}: adapter ${describe(name)} is merged; call unmerge() before deleting it`);
    }
    if (kind === 'lora') {
      disposeAdapter(this.adapters.get(name) as LoRAAdapter);
      this.adapters.delete(name);
    } else {
      disposeFullAdapter(this.fullAdapters.get(name) as FullAdapter);
      this.fullAdapters.delete(name);
    }
    this.order.splice(this.order.indexOf(name), 1);
    if (this.activeName === name) this.activeName = null;
  }

  /** The active adapter's variables: what an optimizer may update. */
  trainableVariables(): tf.Variable[] {
    this.assertLive();
    if (this.activeName === null) return [];
    const full = this.fullAdapters.get(this.activeName);
    if (full !== undefined) return full.bias === undefined ? [full.weight] : [full.weight, full.bias];
    const a = this.adapter();
    return [a.A, a.B];
  }

  /** Counts: frozen = W (+ bias), lora = every LoRA adapter, saved = every full copy, trainable = the active one. */
  parameterCounts(): ParameterCounts {
    this.assertLive();
    const original = this.beforeMerge ?? this.base;
    const frozen = original.weight.size + (original.bias?.size ?? 0);
    let lora = 0;
    for (const a of this.adapters.values()) lora += adapterParameterCount(a);
    let saved = 0;
    for (const f of this.fullAdapters.values()) saved += f.weight.size + (f.bias?.size ?? 0);
    const trainable = this.trainableVariables().reduce((n, v) => n + v.size, 0);
    return { total: frozen + lora + saved, trainable, frozen, lora, saved };
  }

  // ---- forward -------------------------------------------------------------------------

  /**
   * Forward pass for training code: returns a new tensor and records gradients. `x` is
   * `[..., in]`; the result is `[..., out]`.
   */
  apply(x: tf.Tensor, options: ForwardOptions = {}): tf.Tensor {
    this.assertLive();
    checkOptions(`${WHERE} ${this.name}.apply`, 'options', options, 'an options object { training?, needsInputGrad? }');
    for (const k of ['training', 'needsInputGrad'] as const) {
      if (options[k] !== undefined && typeof options[k] !== 'boolean') invalid(`${WHERE} ${this.name}.apply`, k, options[k], 'a boolean');
    }
    this.checkInput(x);
    const unmergedActive = this.activeName !== null && this.activeName !== this.mergedName ? this.activeName : null;
    const full = unmergedActive === null ? undefined : this.fullAdapters.get(unmergedActive);
    const needsInputGrad = options.needsInputGrad ?? true;
    if (full !== undefined) {
      return withRows(x, this.outFeatures, (rows) => denseForward(rows, full.weight, full.bias, this.path, needsInputGrad));
    }
    const adapter = unmergedActive === null ? null : this.adapter(unmergedActive);
    return withRows(x, this.outFeatures, (rows) => {
      const dropout =
        adapter !== null && options.training === true && adapter.config.dropout > 0
          ? { rate: adapter.config.dropout, seed: adapter.rng.int(2 ** 31) }
          : null;
      return linearForward(rows, this.base, adapter, { dropout, path: this.path, needsInputGrad });
    });
  }

  /** Inference: no dropout, nothing recorded for gradients. */
  predict(x: tf.Tensor): tf.Tensor {
    return this.apply(x, { training: false });
  }

  /**
   * Inference on a mixed batch: rows `[n, in]` grouped by adapter (see `groupRows`). The
   * base matMul runs once for all rows; the low-rank adapters' products as two matMuls for
   * the whole batch; a full copy once for the batch, kept on its own rows.
   */
  predictMixed(rows: tf.Tensor2D, groups: RowGroups): tf.Tensor2D {
    this.assertLive();
    this.checkInput(rows);
    if (this.mergedName !== null) {
      throw new Error(`${WHERE} ${this.name}: adapter ${describe(this.mergedName)} is merged into the weight; call unmerge() before mixing adapters in a batch`);
    }
    checkGroups(`${WHERE} ${this.name}.predictMixed`, groups, rows.shape[0]);
    for (const n of groups.names) if (this.adapterKind(n) === undefined) invalid(WHERE, 'adapter name', n, `one of ${describe(this.adapterNames())}`);
    const loraIdx = groups.names.flatMap((n, j) => (this.adapters.has(n) ? [j] : []));
    const fullIdx = groups.names.flatMap((n, j) => (this.fullAdapters.has(n) ? [j] : []));
    const loraGroups: RowGroups = { names: loraIdx.map((j) => groups.names[j]), rows: loraIdx.map((j) => groups.rows[j]) };
    const n0 = rows.shape[0];
    checkAllocation(`${WHERE} ${this.name}.predictMixed`, outputAndTemporaries(`the output [${n0}, ${this.outFeatures}]`, n0 * this.outFeatures, FORWARD_TEMPORARIES + 3 * fullIdx.length));
    return tf.tidy(() => {
      const base = linearForward(rows, this.base, null, { dropout: null, path: 'autodiff', needsInputGrad: false });
      let y = tf.add(base, mixedLowRankDelta(rows, loraGroups, loraGroups.names.map((n) => this.adapter(n)), this.outFeatures)) as tf.Tensor2D;
      const n = rows.shape[0];
      for (const j of fullIdx) {
        const full = this.fullAdapters.get(groups.names[j]) as FullAdapter;
        const mask = new Float32Array(n);
        for (const i of groups.rows[j]) mask[i] = 1;
        const m = tf.tensor2d(mask, [n, 1]);
        const own = denseForward(rows, full.weight, full.bias, 'autodiff', false);
        y = tf.add(tf.mul(y, tf.sub(1, m)), tf.mul(own, m)) as tf.Tensor2D;
      }
      return y;
    });
  }

  // ---- merging -------------------------------------------------------------------------

  /**
   * Fold the active adapter into the weight (W ← W + s·A·B) so the forward pass does no
   * LoRA matmul; a full copy replaces the weight and bias instead. Merging a merged layer
   * is a no-op: the delta is never added twice.
   */
  merge(): void {
    this.assertChangeable('merge');
    if (this.mergedName !== null) return;
    if (this.activeName === null) throw new Error(`${WHERE} ${this.name}: no adapter is active, so there is nothing to merge`);
    const full = this.fullAdapters.get(this.activeName);
    const name = this.activeName;
    // The unmerged weight stays (for an exact unmerge), so the merged one is a second copy.
    checkAllocation(`${WHERE} ${this.name}.merge`, [
      { what: 'the merged weight', elements: this.inFeatures * this.outFeatures },
      ...(packsMatMulWeights() ? [{ what: "XNNPACK's packed copy of it", elements: this.inFeatures * this.outFeatures }] : []),
      ...(full?.bias !== undefined ? [{ what: 'the merged bias', elements: this.outFeatures }] : []),
    ]);
    const next: FrozenLinear = tf.tidy(() =>
      full !== undefined
        ? { weight: tf.clone(full.weight), bias: full.bias === undefined ? undefined : tf.clone(full.bias) }
        : { weight: tf.add(this.base.weight, deltaWeight(this.adapter())) as tf.Tensor2D, bias: this.base.bias },
    );
    // As PEFT's safe_merge: a NaN or an overflow would poison the base for every adapter.
    if (!allFinite(next.bias !== undefined && next.bias !== this.base.bias ? [next.weight, next.bias] : [next.weight])) {
      next.weight.dispose();
      if (next.bias !== this.base.bias) next.bias?.dispose();
      throw new Error(`${WHERE} ${this.name}: merging adapter ${describe(name)} would put NaN or ±Infinity into the weight (its factors or its scale hold non-finite or overflowing values); the layer is unchanged`);
    }
    // The unmerged base is kept, so unmerge() restores it exactly (no W + ΔW − ΔW rounding);
    // its transposed cache is not needed while merged.
    this.base.weightT?.dispose();
    this.base.weightT = undefined;
    this.beforeMerge = this.base;
    this.base = { weight: tf.keep(next.weight), bias: next.bias === undefined || next.bias === this.base.bias ? next.bias : tf.keep(next.bias) };
    this.mergedName = name;
  }

  /** Restore the weight as it was before merge(), bit for bit. No-op when unmerged. */
  unmerge(): void {
    this.assertChangeable('unmerge');
    if (this.mergedName === null || this.beforeMerge === null) return;
    const merged = this.base;
    this.base = this.beforeMerge;
    this.beforeMerge = null;
    this.mergedName = null;
    merged.weight.dispose();
    merged.weightT?.dispose();
    if (merged.bias !== this.base.bias) merged.bias?.dispose();
  }

  /** Free every tensor the layer holds. Using it afterwards throws. */
  dispose(): void {
    if (this.disposed) return;
    assertNotTraining(`${WHERE} ${this.name}`, this, 'dispose the layer');
    if (this.beforeMerge !== null) {
      if (this.beforeMerge.bias !== this.base.bias) this.beforeMerge.bias?.dispose();
      this.beforeMerge.weight.dispose();
      this.beforeMerge.weightT?.dispose();
    }
    disposeBase(this.base);
    for (const a of this.adapters.values()) disposeAdapter(a);
    for (const f of this.fullAdapters.values()) disposeFullAdapter(f);
    this.adapters.clear();
    this.fullAdapters.clear();
    this.order.length = 0;
    this.disposed = true;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private checkNewName(name: string): void {
    this.assertChangeable('add an adapter');
    checkAdapterName(`${WHERE} ${this.name}`, 'name', name);
    if (this.adapterKind(name) !== undefined) invalid(WHERE, 'name', name, 'a name not already used by an adapter of this layer');
  }

  private create(name: string, config: ResolvedLoRAConfig, initial: AdapterFactors | undefined): LoRAAdapter {
    const maxRank = Math.min(this.inFeatures, this.outFeatures);
    if (config.rank > maxRank) {
      warn(`${WHERE} ${this.name}: rank ${config.rank} exceeds min(in, out) = ${maxRank} (${this.inFeatures} → ${this.outFeatures}); it adds parameters but no capacity`);
    }
    return createAdapter(name, config, this.inFeatures, this.outFeatures, initial);
  }

  private insert(name: string, config: ResolvedLoRAConfig, initial: AdapterFactors | undefined): LoRAAdapter {
    const adapter = this.create(name, config, initial);
    this.adapters.set(name, adapter);
    this.order.push(name);
    if (this.activeName === null && this.mergedName === null) this.activeName = name;
    return adapter;
  }

  private checkInput(x: tf.Tensor): void {
    checkLiveTensor(WHERE, 'x', x, `a live tensor of shape [..., ${this.inFeatures}]`);
    if (x.rank < 1 || x.shape[x.rank - 1] !== this.inFeatures) {
      invalid(WHERE, 'x', x, `a tensor of shape [..., ${this.inFeatures}] (last dimension = inFeatures)`);
    }
  }

  private assertLive(): void {
    if (this.disposed) throw new Error(`${WHERE} ${this.name}: this layer has been disposed`);
  }

  private assertChangeable(what: string): void {
    this.assertLive();
    assertNotTraining(`${WHERE} ${this.name}`, this, what);
  }
}

/** s·A·B, the adapter's weight update `[in, out]`. */
export function deltaWeight(adapter: Pick<LoRAAdapter, 'A' | 'B' | 'scale'>): tf.Tensor2D {
  if (adapter === null || typeof adapter !== 'object') invalid('deltaWeight', 'adapter', adapter, 'an adapter { A, B, scale } (from layer.adapter())');
  checkFloatTensor('deltaWeight', 'A', adapter.A, [null, null]);
  checkFloatTensor('deltaWeight', 'B', adapter.B, [adapter.A.shape[1], null]);
  if (typeof adapter.scale !== 'number' || !Number.isFinite(adapter.scale)) invalid('deltaWeight', 'scale', adapter.scale, 'a finite number');
  return tf.tidy(() => tf.mul(tf.matMul(adapter.A, adapter.B), adapter.scale));
}

function disposeBase(base: FrozenLinear): void {
  base.weight.dispose();
  base.weightT?.dispose();
  base.bias?.dispose();
}

/** The tensors a frozen linear layer holds: W, b, and the transposed copy of W the fused backward pass caches. */
export function linearTensors(inFeatures: number, outFeatures: number, withTranspose: boolean, label = 'base', withBias = true): PlannedTensor[] {
  const w = inFeatures * outFeatures;
  const packed = packsMatMulWeights();
  return [
    { what: `${label} weight [${inFeatures}, ${outFeatures}]`, elements: w },
    ...(packed ? [{ what: `XNNPACK's packed copy of it`, elements: w }] : []),
    ...(withBias ? [{ what: `${label} bias [${outFeatures}]`, elements: outFeatures }] : []),
    ...(withTranspose ? [{ what: `its transposed copy [${outFeatures}, ${inFeatures}]`, elements: w }] : []),
    ...(withTranspose && packed ? [{ what: `XNNPACK's packed copy of that`, elements: w }] : []),
  ];
}

/** The tensors of one adapter: A `[in, r]` and B `[r, out]`. */
export function adapterTensors(inFeatures: number, outFeatures: number, rank: number, label = 'adapter'): PlannedTensor[] {
  return [
    { what: `${label} A [${inFeatures}, ${rank}]`, elements: inFeatures * rank },
    { what: `${label} B [${rank}, ${outFeatures}]`, elements: rank * outFeatures },
  ];
}

/** Rows grouped by adapter must be distinct integer row indices of the batch, each in one group. */
function checkGroups(where: string, groups: RowGroups, n: number): void {
  if (groups === null || typeof groups !== 'object' || !Array.isArray(groups.names) || !Array.isArray(groups.rows) || groups.names.length !== groups.rows.length) {
    invalid(where, 'groups', groups, 'row groups { names, rows } (from groupRows), one row list per name');
  }
  const seen = new Uint8Array(n);
  groups.rows.forEach((list, j) => {
    if (!(list instanceof Int32Array)) invalid(where, `groups.rows[${j}]`, list, 'an Int32Array of row indices');
    for (const i of list) {
      if (i < 0 || i >= n) invalid(where, `groups.rows[${j}]`, list, `row indices in [0, ${n})`);
      if (seen[i] === 1) invalid(where, `groups.rows[${j}]`, list, `each row in one group only (row ${i} is in two)`);
      seen[i] = 1;
    }
  });
}
