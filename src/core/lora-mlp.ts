import * as tf from '@tensorflow/tfjs-core';
import { type AdapterFactors, type FullWeights, type LoRAConfig, resolveLoRAConfig } from './lora-adapter.js';
import type { GradientPath } from './lora-forward.js';
import { LoRALinear, adapterTensors, linearTensors } from './lora-linear.js';
import { type PlannedTensor, checkAllocation } from '../runtime/memory-budget.js';
import { assertNotTraining } from './training-lock.js';
import { MLP, checkModelInput } from './mlp.js';
import type { Model } from './model.js';
import { layerSeed } from './model.js';
import { type ParameterCounts, sumCounts } from './params.js';
import { type ModuleRole, type TargetSpec, patternValue, resolveRoles } from './targets.js';
import { Rng, randomUniform } from '../util/random.js';
import { withRows } from './rows.js';
import { type RowGroups, groupRows } from './mixed-batch.js';
import { checkAdapterName, checkDims, checkFloatTensor, checkInteger, checkModuleNames, checkNoNullFields, checkOneOf, checkOptions, describe, invalid } from '../util/validate.js';

/**
 * What one adapter of a `LoRAMLP` is: the LoRA hyper-parameters plus, in PEFT's
 * vocabulary, which layers it covers (default: all) and per-layer ranks and alphas.
 */
export interface AdapterOptions extends LoRAConfig, TargetSpec {}

/** Options of {@link LoRAMLP}: the first adapter plus how the random base is drawn. */
export interface LoRAMLPOptions extends AdapterOptions {
  /**
   * Random frozen base: `normal` = N(0, 1) as the reference (unscaled, so activations grow
   * ~√width per layer); `kaiming` = U(−1/√in, 1/√in) as PyTorch's nn.Linear.
   */
  baseInit?: 'normal' | 'kaiming';
  /** Name of the first adapter (default `"default"`). */
  adapterName?: string;
  /** Create no adapter (add them with `addAdapter`). */
  noAdapter?: boolean;
  /** Module name of each layer (default `fc1`, `fc2`, …), as in adapter files. */
  names?: readonly string[];
  /** Frozen base weights (copied) instead of random ones: W `[in, out]` and optional b `[out]` per layer. */
  weights?: ReadonlyArray<{ weight: tf.Tensor2D; bias?: tf.Tensor1D }>;
}

/** Options of {@link LoRAMLP.fromBase}. */
export interface FromBaseOptions extends AdapterOptions {
  /** Name of the first adapter (default `"default"`). */
  adapterName?: string;
  /** Freeze the base and add no adapter (add them with `addAdapter` or `loadAdapter`). */
  noAdapter?: boolean;
}

/** One layer's part of an adapter: low-rank, a full trainable copy, or nothing. */
export type LayerPlan =
  | { kind: 'lora'; config: LoRAConfig; initial?: AdapterFactors }
  | { kind: 'full'; initial?: FullWeights }
  | null;

/** Given weights per layer (copied): factors for LoRA layers, weights for full copies, null elsewhere. */
export type AdapterInitial = ReadonlyArray<AdapterFactors | FullWeights | null | undefined>;

const WHERE = 'LoRAMLP';

/**
 * The reference's `LoRAModel`: a frozen MLP (ReLU between layers) with LoRA adapters.
 * Build it on random weights (`new LoRAMLP(dims, …)`, as the reference) or, the real
 * workflow, on a trained network (`LoRAMLP.fromBase(mlp, …)`).
 *
 * An adapter covers every layer by default, or the layers its `targetModules` select
 * (PEFT's rules), with per-layer ranks and alphas from `rankPattern` / `alphaPattern`;
 * `modulesToSave` layers train in full. Layers an adapter does not cover run as the
 * frozen base while it is active.
 */
export class LoRAMLP implements Model {
  readonly dims: readonly number[];
  readonly layers: readonly LoRALinear[];
  /** Module name of each layer (`fc1`, …): the names adapter files use. */
  readonly names: readonly string[];

  private readonly order: string[] = [];
  private activeName: string | null = null;

  constructor(dims: readonly number[], options: LoRAMLPOptions = {}) {
    if (options === null || typeof options !== 'object') invalid(WHERE, 'options', options, 'an options object');
    checkNoNullFields(WHERE, options);
    checkDims(WHERE, dims);
    const seed = checkInteger(WHERE, 'seed', options.seed ?? 0);
    const baseInit = checkOneOf(WHERE, 'baseInit', options.baseInit ?? 'normal', ['normal', 'kaiming'] as const);
    const names = checkModuleNames(WHERE, options.names, dims.length - 1);
    if (options.noAdapter !== undefined && typeof options.noAdapter !== 'boolean') invalid(WHERE, 'noAdapter', options.noAdapter, 'a boolean');
    const adapterName = options.noAdapter ? 'default' : checkAdapterName(WHERE, 'adapterName', options.adapterName ?? 'default');
    const given = options.weights;
    if (given !== undefined) {
      if (!Array.isArray(given) || given.length !== dims.length - 1) invalid(WHERE, 'weights', given, `one { weight, bias } per layer (${dims.length - 1})`);
      given.forEach((w, i) => {
        if (w === null || typeof w !== 'object') invalid(WHERE, `weights[${i}]`, w, 'an object { weight, bias }');
        checkFloatTensor(WHERE, `weights[${i}].weight`, w.weight, [dims[i], dims[i + 1]]);
        if (w.bias !== undefined) checkFloatTensor(WHERE, `weights[${i}].bias`, w.bias, [dims[i + 1]]);
      });
    }
    // Check the whole first adapter before allocating anything.
    const plan = options.noAdapter ? null : planAdapter(WHERE, names, dims, options);
    checkAllocation(`${WHERE} ${describe(dims)}`, [
      ...dims.slice(1).flatMap((out, i) => linearTensors(dims[i], out, true, names[i], given === undefined || given[i].bias !== undefined)),
      ...(plan === null ? [] : planTensors(plan, names, dims)),
    ]);
    this.dims = [...dims];
    this.names = names;
    const layers: LoRALinear[] = [];
    try {
      dims.slice(1).forEach((out, i) => {
        const inF = dims[i];
        const weight =
          given !== undefined
            ? given[i].weight
            : baseInit === 'kaiming'
              ? randomUniform<tf.Rank.R2>([inF, out], new Rng(layerSeed(seed, 100 + i)), 1 / Math.sqrt(inF))
              : undefined;
        try {
          layers.push(new LoRALinear({ inFeatures: inF, outFeatures: out, weight, bias: given?.[i].bias, weightSeed: layerSeed(seed, 100 + i), name: names[i], noAdapter: true }));
        } finally {
          if (given === undefined) weight?.dispose();
        }
      });
    } catch (err) {
      // A layer refused after the model-level check (e.g. memory taken meanwhile): free the others.
      for (const l of layers) l.dispose();
      throw err;
    }
    this.layers = layers;
    if (plan !== null) this.insert(adapterName, plan);
  }

  /**
   * Freeze a trained MLP's weights and biases (copied) and add a fresh adapter: pretrain,
   * freeze, adapt. The layers keep the MLP's module names.
   */
  static fromBase(base: MLP, options: FromBaseOptions = {}): LoRAMLP {
    if (!(base instanceof MLP)) invalid('LoRAMLP.fromBase', 'base', base, 'an MLP');
    if (options === null || typeof options !== 'object') invalid('LoRAMLP.fromBase', 'options', options, 'an options object');
    return new LoRAMLP(base.dims, {
      ...options,
      names: base.names,
      weights: base.layers.map((d) => ({ weight: d.W, bias: d.b })),
    });
  }

  /** Gradient path of every layer (see `GradientPath`). */
  set gradientPath(path: GradientPath) {
    checkOneOf(WHERE, 'gradientPath', path, ['auto', 'fused', 'autodiff'] as const);
    for (const l of this.layers) l.gradientPath = path;
  }

  get gradientPath(): GradientPath {
    return this.layers[0].gradientPath;
  }

  apply(x: tf.Tensor, options: { training?: boolean } = {}): tf.Tensor {
    checkOptions(`${WHERE}.apply`, 'options', options, 'an options object { training? }');
    if (options.training !== undefined && typeof options.training !== 'boolean') invalid(`${WHERE}.apply`, 'training', options.training, 'a boolean');
    checkModelInput(WHERE, x, this.dims[0]);
    return withRows(x, this.dims[this.dims.length - 1], (rows) =>
      tf.tidy(() => {
        let h: tf.Tensor = rows;
        this.layers.forEach((layer, i) => {
          // The first layer's input is data: its gradient is never needed.
          h = layer.apply(h, { training: options.training, needsInputGrad: i > 0 });
          if (i < this.layers.length - 1) h = tf.relu(h);
        });
        return h as tf.Tensor2D;
      }),
    );
  }

  /**
   * Inference. With `adapters` (one adapter name, or null for the base, per row of x), a
   * mixed batch: every row is computed with its own adapter in one pass over the base
   * weights, whichever adapter is active.
   */
  predict(x: tf.Tensor, options: { adapters?: readonly (string | null)[] } = {}): tf.Tensor {
    if (options === null || typeof options !== 'object') invalid('LoRAMLP.predict', 'options', options, 'an options object { adapters? }');
    if (options.adapters === undefined) return this.apply(x, { training: false });
    checkModelInput('LoRAMLP.predict', x, this.dims[0]);
    const rowCount = x.size / this.dims[0];
    const names = options.adapters;
    if (!Array.isArray(names) || names.length !== rowCount) {
      invalid('LoRAMLP.predict', 'adapters', names, `an array of ${rowCount} adapter names or nulls, one per row of x`);
    }
    const bad = names.findIndex((n) => n !== null && (typeof n !== 'string' || !this.order.includes(n)));
    if (bad >= 0) invalid('LoRAMLP.predict', `adapters[${bad}]`, names[bad], `an adapter name from ${describe(this.order)} or null`);
    if (this.merged) throw new Error('LoRAMLP.predict: an adapter is merged into the weights; call unmerge() before mixing adapters in a batch');
    const groups = groupRows(names);
    return withRows(x, this.dims[this.dims.length - 1], (rows) =>
      tf.tidy(() => {
        let h: tf.Tensor2D = rows;
        this.layers.forEach((layer, i) => {
          // Rows whose adapter does not cover this layer run it as the base.
          const own = groups.names.flatMap((n, j) => (layer.adapterKind(n) !== undefined ? [j] : []));
          const layerGroups: RowGroups = { names: own.map((j) => groups.names[j]), rows: own.map((j) => groups.rows[j]) };
          h = layer.predictMixed(h, layerGroups);
          if (i < this.layers.length - 1) h = tf.relu(h);
        });
        return h;
      }),
    );
  }

  trainableVariables(): tf.Variable[] {
    return this.layers.flatMap((l) => l.trainableVariables());
  }

  parameterCounts(): ParameterCounts {
    return sumCounts(this.layers.map((l) => l.parameterCounts()));
  }

  // ---- adapters ------------------------------------------------------------------------

  /**
   * Add an adapter called `name`: fresh, or with given weights per layer (`initial[i]` for
   * layer i, copied: `{ A, B }` for a LoRA layer, `{ weight, bias }` for a full copy, null
   * for a layer the adapter does not cover). Everything is checked before anything is
   * allocated. It becomes active when no adapter is.
   */
  addAdapter(name: string, config: AdapterOptions = {}, initial?: AdapterInitial): void {
    this.checkNewName(name);
    const plan = this.planWith(config, initial);
    this.checkPlanFits(plan);
    this.insert(name, plan);
  }

  /** Add an adapter described layer by layer (what adapter files and combinations produce). */
  addAdapterLayers(name: string, plan: readonly LayerPlan[]): void {
    this.checkNewName(name);
    this.checkAdapterLayers(plan);
    this.checkPlanFits(plan);
    this.insert(name, plan);
  }

  /** Replace adapter `name` (not merged) by a new one; it stays active if it was. The model is unchanged on error. */
  replaceAdapter(name: string, config: AdapterOptions = {}, initial?: AdapterInitial): void {
    this.checkReplace(name);
    const plan = this.planWith(config, initial);
    this.checkPlanFits(plan);
    this.swap(name, plan);
  }

  /** Replace adapter `name` by one described layer by layer. */
  replaceAdapterLayers(name: string, plan: readonly LayerPlan[]): void {
    this.checkReplace(name);
    this.checkAdapterLayers(plan);
    this.checkPlanFits(plan);
    this.swap(name, plan);
  }

  /** What adapter `name` is on each layer: `lora`, `full` (a full copy) or null (not covered). */
  adapterLayers(name: string): ModuleRole[] {
    this.checkName(name);
    return this.layers.map((l) => l.adapterKind(name) ?? null);
  }

  /** Parameters of one adapter (its factors, and its full copies, in every layer it covers). */
  adapterParameterCount(name: string): number {
    this.checkName(name);
    return this.layers.reduce((n, l) => {
      const kind = l.adapterKind(name);
      if (kind === 'lora') return n + l.adapter(name).A.size + l.adapter(name).B.size;
      if (kind === 'full') return n + l.fullAdapter(name).weight.size + (l.fullAdapter(name).bias?.size ?? 0);
      return n;
    }, 0);
  }

  /** Use adapter `name` (on the layers it covers; the others run as the base); null runs the frozen base alone. */
  setActiveAdapter(name: string | null): void {
    assertNotTraining(WHERE, this, 'switch adapters');
    this.assertLayersLive();
    if (name !== null && !this.order.includes(name)) invalid(WHERE, 'adapter name', name, `null or one of ${describe(this.order)}`);
    const merged = this.mergedAdapter;
    if (merged !== null && name !== merged) {
      throw new Error(`${WHERE}: cannot switch to adapter ${describe(name)} while ${describe(merged)} is merged; call unmerge() first`);
    }
    this.activeName = name;
    this.syncActive();
  }

  get activeAdapter(): string | null {
    return this.activeName;
  }

  /** The adapter folded into the weights, or null. */
  get mergedAdapter(): string | null {
    return this.layers.find((l) => l.mergedAdapter !== null)?.mergedAdapter ?? null;
  }

  adapterNames(): string[] {
    return [...this.order];
  }

  /** Remove adapter `name` from every layer (it must not be merged). */
  deleteAdapter(name: string): void {
    assertNotTraining(WHERE, this, 'delete an adapter');
    this.checkName(name);
    this.assertNotMergedAnywhere(name, 'deleting it');
    for (const l of this.layers) if (l.adapterKind(name) !== undefined) l.deleteAdapter(name);
    this.order.splice(this.order.indexOf(name), 1);
    if (this.activeName === name) this.activeName = null;
  }

  /** Fold the active adapter into the weights of every layer it covers. */
  merge(): void {
    assertNotTraining(WHERE, this, 'merge');
    if (this.merged) return;
    if (this.activeName === null) throw new Error(`${WHERE}: no adapter is active, so there is nothing to merge`);
    this.syncActive();
    const done: LoRALinear[] = [];
    try {
      for (const l of this.layers) {
        if (l.activeAdapter === null) continue;
        l.merge();
        done.push(l);
      }
    } catch (err) {
      // unmerge restores each weight exactly, so a refused layer leaves the model as it was.
      for (const l of done) l.unmerge();
      throw err;
    }
  }

  /** Restore every weight exactly as it was before merge(). */
  unmerge(): void {
    assertNotTraining(WHERE, this, 'unmerge');
    for (const l of this.layers) l.unmerge();
  }

  get merged(): boolean {
    return this.layers.some((l) => l.merged);
  }

  dispose(): void {
    assertNotTraining(WHERE, this, 'dispose the model');
    for (const l of this.layers) l.dispose();
  }

  // ---- internals -----------------------------------------------------------------------

  private checkName(name: string): void {
    this.assertLayersLive();
    if (!this.order.includes(name)) invalid(WHERE, 'adapter name', name, `one of ${describe(this.order)}`);
  }

  /** Every layer, checked before any changes (a layer may have been changed or disposed directly). */
  private assertLayersLive(): void {
    const gone = this.layers.findIndex((l) => l.isDisposed);
    if (gone >= 0) throw new Error(`${WHERE}: layer ${this.names[gone]} has been disposed; the model cannot be used any more`);
  }

  private assertNotMergedAnywhere(name: string, doing: string): void {
    const at = this.layers.findIndex((l) => l.mergedAdapter === name);
    if (at >= 0) throw new Error(`${WHERE}: adapter ${describe(name)} is merged (in ${this.names[at]}); call unmerge() before ${doing}`);
  }

  private checkNewName(name: string): void {
    assertNotTraining(WHERE, this, 'add an adapter');
    this.assertLayersLive();
    checkAdapterName(WHERE, 'name', name);
    if (this.order.includes(name)) invalid(WHERE, 'name', name, 'a name not already used by an adapter of this model');
    // A layer may hold the name already (added to it directly): refuse before any layer changes.
    const clash = this.layers.findIndex((l) => l.adapterKind(name) !== undefined);
    if (clash >= 0) invalid(WHERE, 'name', name, `a name no layer uses (layer ${this.names[clash]} already has an adapter ${describe(name)}, added to the layer directly)`);
  }

  private checkReplace(name: string): void {
    assertNotTraining(WHERE, this, 'replace an adapter');
    this.checkName(name);
    this.assertNotMergedAnywhere(name, 'replacing it');
  }

  /** A plan from PEFT-style options, with given weights attached (checked against the roles). */
  private planWith(config: AdapterOptions, initial?: AdapterInitial): LayerPlan[] {
    if (config === null || typeof config !== 'object') invalid(WHERE, 'config', config, 'an options object');
    const plan = planAdapter(WHERE, this.names, this.dims, config);
    if (initial === undefined) {
      this.checkAdapterLayers(plan); // every layer agrees before any changes
      return plan;
    }
    if (!Array.isArray(initial) || initial.length !== this.layers.length) {
      invalid(WHERE, 'initial', initial, `one entry per layer (${this.layers.length}): { A, B }, { weight, bias } or null`);
    }
    const withInitial = plan.map((p, i): LayerPlan => {
      const given = initial[i];
      if (p === null) {
        if (given != null) invalid(WHERE, `initial[${i}]`, given, `null (the adapter does not cover ${this.names[i]})`);
        return null;
      }
      if (given == null) return p;
      return p.kind === 'lora' ? { ...p, initial: given as AdapterFactors } : { kind: 'full', initial: given as FullWeights };
    });
    this.checkAdapterLayers(withInitial);
    return withInitial;
  }

  /** Check a layer-by-layer adapter against this model's layers; allocates nothing. */
  checkAdapterLayers(plan: readonly LayerPlan[]): void {
    if (!Array.isArray(plan) || plan.length !== this.layers.length) invalid(WHERE, 'plan', plan, `one entry per layer (${this.layers.length})`);
    if (plan.every((p) => p === null)) invalid(WHERE, 'plan', plan, 'an adapter that covers at least one layer');
    plan.forEach((p, i) => {
      if (p === null) return;
      if (p === undefined || typeof p !== 'object') invalid(WHERE, `plan[${i}]`, p, 'null, { kind: "lora", config } or { kind: "full" }');
      if (p.kind === 'lora') this.layers[i].checkAdapter(p.config, p.initial);
      else if (p.kind === 'full') this.layers[i].checkFull(p.initial);
      else invalid(WHERE, `plan[${i}].kind`, (p as { kind: unknown }).kind, '"lora", "full" or a null entry');
    });
  }

  /** Refuse a plan whose new tensors do not fit, before any layer allocates its part. */
  private checkPlanFits(plan: readonly LayerPlan[]): void {
    checkAllocation(WHERE, planTensors(plan, this.names, this.dims));
  }

  /** Allocate a checked adapter on every layer it covers. */
  private insert(name: string, plan: readonly LayerPlan[]): void {
    plan.forEach((p, i) => {
      if (p === null) return;
      if (p.kind === 'lora') this.layers[i].addAdapter(name, { ...p.config, seed: layerSeed(p.config.seed ?? 0, i) }, p.initial);
      else this.layers[i].addFullAdapter(name, p.initial);
    });
    this.order.push(name);
    if (this.activeName === null && this.mergedAdapter === null) this.activeName = name;
    this.syncActive();
  }

  private swap(name: string, plan: readonly LayerPlan[]): void {
    plan.forEach((p, i) => {
      const layer = this.layers[i];
      const had = layer.adapterKind(name);
      if (had === 'lora' && p?.kind === 'lora') {
        layer.replaceAdapter(name, { ...p.config, seed: layerSeed(p.config.seed ?? 0, i) }, p.initial);
        return;
      }
      if (had !== undefined) layer.deleteAdapter(name);
      if (p?.kind === 'lora') layer.addAdapter(name, { ...p.config, seed: layerSeed(p.config.seed ?? 0, i) }, p.initial);
      else if (p?.kind === 'full') layer.addFullAdapter(name, p.initial);
    });
    this.syncActive();
  }

  /** Each layer runs the model's active adapter when it holds it, else its base. */
  private syncActive(): void {
    for (const l of this.layers) {
      if (l.merged) continue;
      const target = this.activeName !== null && l.adapterKind(this.activeName) !== undefined ? this.activeName : null;
      if (l.activeAdapter !== target) l.setActiveAdapter(target);
    }
  }
}

/** The tensors a plan allocates: A and B of each LoRA layer, W and b of each full copy. */
function planTensors(plan: readonly LayerPlan[], names: readonly string[], dims: readonly number[]): PlannedTensor[] {
  return plan.flatMap((p, i): PlannedTensor[] => {
    if (p === null) return [];
    if (p.kind === 'full') return linearTensors(dims[i], dims[i + 1], false, `${names[i]} full copy`);
    return adapterTensors(dims[i], dims[i + 1], p.config.rank ?? 4, names[i]);
  });
}

/**
 * The per-layer plan of a fresh adapter from PEFT-style options: which layers it covers
 * and with which rank and alpha. Checked completely; allocates nothing.
 */
export function planAdapter(where: string, names: readonly string[], dims: readonly number[], options: AdapterOptions): LayerPlan[] {
  const roles = resolveRoles(where, names, options);
  return roles.map((role, i): LayerPlan => {
    if (role === null) return null;
    if (role === 'full') return { kind: 'full' };
    const base: LoRAConfig = {
      rank: options.rank,
      alpha: options.alpha,
      dropout: options.dropout,
      useRsLora: options.useRsLora,
      init: options.init,
      seed: options.seed,
    };
    const config: LoRAConfig = {
      ...base,
      // An explicit null is refused by resolveLoRAConfig, not read as "the default".
      rank: patternValue(where, 'rankPattern', options.rankPattern, names[i], options.rank === undefined ? 4 : options.rank),
      alpha: patternValue(where, 'alphaPattern', options.alphaPattern, names[i], options.alpha === undefined ? 1 : options.alpha),
    };
    resolveLoRAConfig(`${where} (${names[i]}: ${dims[i]} → ${dims[i + 1]})`, config);
    return { kind: 'lora', config };
  });
}
