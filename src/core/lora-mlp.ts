import * as tf from '@tensorflow/tfjs-core';
import { type AdapterFactors, type LoRAConfig, resolveLoRAConfig } from './lora-adapter.js';
import type { GradientPath } from './lora-forward.js';
import { LoRALinear } from './lora-linear.js';
import { MLP, checkModelInput } from './mlp.js';
import type { Model } from './model.js';
import { layerSeed } from './model.js';
import { type ParameterCounts, sumCounts } from './params.js';
import { Rng, randomUniform } from '../util/random.js';
import { withRows } from './rows.js';
import { groupRows } from './mixed-batch.js';
import { checkDims, checkInteger, checkOneOf, invalid } from '../util/validate.js';

/** Options of {@link LoRAMLP}: the adapter's config plus how the random base is drawn. */
export interface LoRAMLPOptions extends LoRAConfig {
  /**
   * Random frozen base: `normal` = N(0, 1) as the reference (unscaled, so activations grow
   * ~√width per layer); `kaiming` = U(−1/√in, 1/√in) as PyTorch's nn.Linear.
   */
  baseInit?: 'normal' | 'kaiming';
  /** Name of the first adapter (default `"default"`). */
  adapterName?: string;
}

/**
 * The reference's `LoRAModel`: a frozen MLP (ReLU between layers) with a LoRA adapter on
 * every layer. Build it on random weights (`new LoRAMLP(dims, …)`, as the reference) or,
 * the real workflow, on a trained network (`LoRAMLP.fromBase(mlp, …)`).
 */
export class LoRAMLP implements Model {
  readonly dims: readonly number[];
  readonly layers: readonly LoRALinear[];

  constructor(dims: readonly number[], options: LoRAMLPOptions = {}) {
    checkDims('LoRAMLP', dims);
    const seed = checkInteger('LoRAMLP', 'seed', options.seed ?? 0);
    const baseInit = checkOneOf('LoRAMLP', 'baseInit', options.baseInit ?? 'normal', ['normal', 'kaiming'] as const);
    // Check every layer's config before allocating any of them.
    LoRAMLP.checkConfig(dims, options);
    this.dims = [...dims];
    this.layers = dims.slice(1).map((out, i) => {
      const inF = dims[i];
      const weight =
        baseInit === 'kaiming'
          ? randomUniform<tf.Rank.R2>([inF, out], new Rng(layerSeed(seed, 100 + i)), 1 / Math.sqrt(inF))
          : undefined;
      const layer = new LoRALinear({
        ...options,
        inFeatures: inF,
        outFeatures: out,
        weight,
        seed: layerSeed(seed, i),
        weightSeed: layerSeed(seed, 100 + i),
      });
      weight?.dispose();
      return layer;
    });
  }

  /**
   * Freeze a trained MLP's weights and biases (copied) and add fresh adapters: pretrain,
   * freeze, adapt.
   */
  static fromBase(base: MLP, options: LoRAConfig & { adapterName?: string } = {}): LoRAMLP {
    if (!(base instanceof MLP)) invalid('LoRAMLP.fromBase', 'base', base, 'an MLP');
    LoRAMLP.checkConfig(base.dims, options);
    const seed = checkInteger('LoRAMLP.fromBase', 'seed', options.seed ?? 0);
    // Bypass the constructor, which would draw random base weights only to replace them.
    const model = Object.create(LoRAMLP.prototype) as LoRAMLP & { dims: number[]; layers: LoRALinear[] };
    model.dims = [...base.dims];
    model.layers = base.layers.map(
      (dense, i) =>
        new LoRALinear({
          ...options,
          inFeatures: dense.inFeatures,
          outFeatures: dense.outFeatures,
          weight: dense.W,
          bias: dense.b,
          seed: layerSeed(seed, i),
        }),
    );
    return model;
  }

  /** Check a config against every layer's sizes before anything is allocated. */
  private static checkConfig(dims: readonly number[], options: LoRAConfig): void {
    for (let i = 0; i + 1 < dims.length; i++) resolveLoRAConfig(`LoRAMLP (layer ${i})`, options, dims[i], dims[i + 1]);
  }

  /** Gradient path of every layer (see `GradientPath`). */
  set gradientPath(path: GradientPath) {
    for (const l of this.layers) l.gradientPath = path;
  }

  get gradientPath(): GradientPath {
    return this.layers[0].gradientPath;
  }

  apply(x: tf.Tensor, options: { training?: boolean } = {}): tf.Tensor {
    checkModelInput('LoRAMLP', x, this.dims[0]);
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
    if (options.adapters === undefined) return this.apply(x, { training: false });
    checkModelInput('LoRAMLP', x, this.dims[0]);
    const rowCount = x.size / this.dims[0];
    const names = options.adapters;
    if (!Array.isArray(names) || names.length !== rowCount) {
      invalid('LoRAMLP.predict', 'adapters', names, `an array of ${rowCount} adapter names or nulls, one per row of x`);
    }
    const known = this.adapterNames();
    const unknown = names.find((n) => n !== null && !known.includes(n as string));
    if (unknown !== undefined) invalid('LoRAMLP.predict', 'adapters', unknown, `adapter names from ${JSON.stringify(known)} or null`);
    if (this.merged) throw new Error('LoRAMLP.predict: an adapter is merged into the weights; call unmerge() before mixing adapters in a batch');
    const groups = groupRows(names);
    return withRows(x, this.dims[this.dims.length - 1], (rows) =>
      tf.tidy(() => {
        let h: tf.Tensor2D = rows;
        this.layers.forEach((layer, i) => {
          h = layer.predictMixed(h, groups);
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
   * Add an adapter called `name` to every layer: fresh, or with given factors per layer
   * (`initial[i]` for layer i, copied). Everything is checked before anything is allocated.
   */
  addAdapter(name: string, config: LoRAConfig = {}, initial?: readonly AdapterFactors[]): void {
    if (typeof name !== 'string' || name === '') invalid('LoRAMLP', 'name', name, 'a non-empty string');
    if (this.layers[0].adapterNames().includes(name)) {
      invalid('LoRAMLP', 'name', name, 'a name not already used by an adapter of this model');
    }
    this.checkAdapter(config, initial);
    const seed = config.seed ?? 0;
    this.layers.forEach((l, i) => l.addAdapter(name, { ...config, seed: layerSeed(seed, i) }, initial?.[i]));
  }

  /** Replace adapter `name` in every layer (checked first; the model is unchanged on error). */
  replaceAdapter(name: string, config: LoRAConfig = {}, initial?: readonly AdapterFactors[]): void {
    this.layers[0].adapter(name); // validates the name
    if (this.layers[0].mergedAdapter === name) throw new Error(`LoRAMLP: adapter ${JSON.stringify(name)} is merged; call unmerge() before replacing it`);
    this.checkAdapter(config, initial);
    const seed = config.seed ?? 0;
    this.layers.forEach((l, i) => l.replaceAdapter(name, { ...config, seed: layerSeed(seed, i) }, initial?.[i]));
  }

  private checkAdapter(config: LoRAConfig, initial?: readonly AdapterFactors[]): void {
    LoRAMLP.checkConfig(this.dims, config);
    if (initial !== undefined) {
      if (!Array.isArray(initial) || initial.length !== this.layers.length) {
        invalid('LoRAMLP', 'initial', initial, `one { A, B } per layer (${this.layers.length})`);
      }
      this.layers.forEach((l, i) => l.checkAdapter(config, initial[i]));
    }
  }

  /** Parameter counts of one adapter (its A and B in every layer). */
  adapterParameterCount(name: string): number {
    return this.layers.reduce((n, l) => n + l.adapter(name).A.size + l.adapter(name).B.size, 0);
  }

  /** Use adapter `name` in every layer; null runs the frozen base alone. */
  setActiveAdapter(name: string | null): void {
    this.layers[0].setActiveAdapter(name); // validates before any layer changes
    for (const l of this.layers) l.setActiveAdapter(name);
  }

  get activeAdapter(): string | null {
    return this.layers[0].activeAdapter;
  }

  adapterNames(): string[] {
    return this.layers[0].adapterNames();
  }

  /** Remove adapter `name` from every layer (it must not be merged). */
  deleteAdapter(name: string): void {
    this.layers[0].adapter(name); // validates the name before any layer changes
    if (this.layers[0].mergedAdapter === name) {
      throw new Error(`LoRAMLP: adapter ${JSON.stringify(name)} is merged; call unmerge() before deleting it`);
    }
    for (const l of this.layers) l.deleteAdapter(name);
  }

  /** Fold the active adapter into every layer's weight. */
  merge(): void {
    for (const l of this.layers) l.merge();
  }

  unmerge(): void {
    for (const l of this.layers) l.unmerge();
  }

  get merged(): boolean {
    return this.layers.some((l) => l.merged);
  }

  dispose(): void {
    for (const l of this.layers) l.dispose();
  }
}
