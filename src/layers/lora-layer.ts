import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { type LoRAConfig, type ResolvedLoRAConfig, loraScale, resolveLoRAConfig } from '../core/lora-adapter.js';
import { type PlannedTensor, checkAllocation, elementsOf } from '../runtime/memory-budget.js';
import { allFinite } from '../util/finite.js';
import { Rng } from '../util/random.js';
import { describe, invalid } from '../util/validate.js';

/**
 * The state every LoRA-capable TensorFlow.js layer shares, kept apart from the forward
 * math of each layer type (PEFT's `LoraLayer`): the wrapped standard layer (frozen), the
 * adapters (LoRA factors or full trainable copies), which one is active, and how the
 * layer reports its weights to tfjs so that `model.fit` trains exactly the active adapter.
 *
 * Why the weights are reported by hand: tfjs's `Sequential.compile()` and
 * `model.trainable = …` flip the `trainable` flag of every weight in a layer's trainable
 * list. The frozen base weights therefore live in no list tfjs can flip (they belong to the
 * wrapped layer, which no model sees), and `trainableWeights` lists the active adapter only.
 */

/** One adapter of a layer as stored in the layer's config (and so in `model.json`). */
export type LayerAdapterSpec =
  | ({ name: string; kind: 'lora' } & ResolvedLoRAConfig)
  | { name: string; kind: 'full' };

/** A tfjs layer serialized as `{ className, config }`. */
export interface SerializedLayer {
  className: string;
  config: tf.serialization.ConfigDict;
}

/** Constructor arguments of a LoRA layer (what its `getConfig()` returns). */
export interface LoRALayerArgs {
  name?: string;
  trainable?: boolean;
  batchInputShape?: Array<number | null>;
  dtype?: tf.DataType;
  /** The wrapped standard layer. */
  base: SerializedLayer;
  adapters?: LayerAdapterSpec[];
  activeAdapter?: string | null;
}

/** The call options tfjs passes to `Layer.call`. */
export interface CallKwargs {
  training?: boolean;
  mask?: tf.Tensor | tf.Tensor[];
  [key: string]: unknown;
}

/** An adapter's variables: `[A, B]` for LoRA, copies of the base weights for a full copy. */
interface AdapterState {
  spec: LayerAdapterSpec;
  vars: tfl.LayerVariable[];
  /** Draws the seeds of the adapter's dropout masks. */
  rng: Rng;
}

/** Adapter names become weight names in `model.json`: tfjs accepts only these characters. */
const ADAPTER_NAME = /^[A-Za-z0-9][-A-Za-z0-9._]*$/;

export function checkAdapterName(where: string, name: unknown): string {
  if (typeof name !== 'string' || !ADAPTER_NAME.test(name)) {
    invalid(where, 'adapterName', name, 'a name of letters, digits, ".", "_" or "-" that starts with a letter or digit (it becomes part of the weight names tfjs saves)');
  }
  return name;
}

/**
 * A checked copy of an adapter spec (it may come from an edited model.json): a valid name,
 * a kind, and for LoRA a valid config (missing fields take the defaults).
 */
function checkSpec(where: string, spec: unknown): LayerAdapterSpec {
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) invalid(where, 'adapter spec', spec, '{ name, kind: "lora" | "full", … }');
  const s = spec as { name?: unknown; kind?: unknown };
  const name = checkAdapterName(where, s.name);
  if (s.kind === 'full') return { name, kind: 'full' };
  if (s.kind !== 'lora') invalid(where, `adapter ${describe(name)}'s kind`, s.kind, '"lora" or "full"');
  return { name, kind: 'lora', ...resolveLoRAConfig(`${where} (adapter ${name})`, s as LoRAConfig) };
}

type LayerFactory = (config: tf.serialization.ConfigDict) => tfl.layers.Layer;

/** The standard layer classes a LoRA layer can wrap, by tfjs class name. */
export const BASE_FACTORIES: Readonly<Record<string, LayerFactory>> = {
  Dense: (c) => tfl.layers.dense(c as never),
  Embedding: (c) => tfl.layers.embedding(c as never),
  Conv2D: (c) => tfl.layers.conv2d(c as never),
};

/** The standard class a layer is, or wraps (`Dense` for a `LoRADense`). */
export function baseClassOf(layer: tfl.layers.Layer): string {
  return layer instanceof LoRALayer ? layer.baseLayer().className : layer.getClassName();
}

/** The config of the standard layer a layer is, or wraps. */
export function baseConfigOf(layer: tfl.layers.Layer): tf.serialization.ConfigDict {
  return layer instanceof LoRALayer ? layer.baseLayer().config : layer.getConfig();
}

/** A layer's kernel shape in tfjs layout (`embeddings` for an Embedding), or its wrapped layer's. */
export function kernelShapeOf(layer: tfl.layers.Layer): number[] {
  if (layer instanceof LoRALayer) return layer.kernelShape();
  const f = layer as unknown as { kernel?: tfl.LayerVariable; embeddings?: tfl.LayerVariable };
  return ((f.kernel ?? f.embeddings)?.shape ?? []) as number[];
}

export abstract class LoRALayer extends tfl.layers.Layer {
  /** The wrapped standard layer: its weights are the frozen base. */
  protected readonly base: tfl.layers.Layer;
  protected readonly baseClassName: string;
  private readonly states = new Map<string, AdapterState>();
  private active: string | null;
  private readonly pending: LayerAdapterSpec[];

  constructor(args: LoRALayerArgs) {
    const baseConfig = { ...args.base.config };
    super({
      name: args.name ?? (baseConfig.name as string | undefined),
      trainable: args.trainable ?? true,
      batchInputShape: args.batchInputShape ?? (baseConfig.batchInputShape as Array<number | null> | undefined),
      dtype: args.dtype ?? (baseConfig.dtype as tf.DataType | undefined),
    } as never);
    const factory = BASE_FACTORIES[args.base.className];
    if (factory === undefined) throw new Error(`${this.getClassName()}: base.className = ${describe(args.base.className)} is not supported; expected one of ${Object.keys(BASE_FACTORIES).join(', ')}`);
    // The wrapped layer takes the outer name so that its weights are saved under the same
    // names as the original layer's (`dense_1/kernel`): a base model's weights load into it.
    delete baseConfig.batchInputShape;
    delete baseConfig.inputShape;
    this.baseClassName = args.base.className;
    this.base = factory({ ...baseConfig, name: this.name, trainable: false });
    const adapters: unknown = args.adapters ?? [];
    if (!Array.isArray(adapters)) invalid(`${this.getClassName()} ${String(this.name)}`, 'adapters', adapters, 'an array of adapter specs');
    // Checked before any weight exists (the specs may come from an edited model.json).
    this.pending = (adapters as unknown[]).map((spec) => checkSpec(`${this.getClassName()} ${this.name}`, spec));
    const names = this.pending.map((p) => p.name);
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice !== undefined) throw new Error(`${this.getClassName()} ${this.name}: adapters lists ${describe(twice)} twice`);
    this.active = args.activeAdapter === undefined ? (this.pending[0]?.name ?? null) : args.activeAdapter;
    // Checked before any weight exists: a bad config (e.g. an edited model.json) leaks nothing.
    if (this.active !== null && !this.pending.some((p) => p.name === this.active)) {
      throw new Error(`${this.getClassName()} ${this.name}: activeAdapter = ${describe(this.active)} is not one of its adapters ${describe(this.pending.map((p) => p.name))}`);
    }
    this.supportsMasking = (this.base as unknown as { supportsMasking: boolean }).supportsMasking;
  }

  // ---- building ------------------------------------------------------------------------

  override setFastWeightInitDuringBuild(value: boolean): void {
    // A model rebuilt from a config overwrites every weight: skip random initialisation.
    super.setFastWeightInitDuringBuild(value);
    this.base.setFastWeightInitDuringBuild(value);
  }

  override build(inputShape: tfl.Shape | tfl.Shape[]): void {
    this.base.build(inputShape);
    for (const w of this.base.weights) w.trainable = false;
    this.checkBase(inputShape);
    // Sizes come from a config (maybe an edited model.json): refuse what cannot fit first,
    // freeing the base weights just built (the layer is unusable after a failed build).
    try {
      checkAllocation(`${this.getClassName()} ${this.name}`, this.pending.flatMap((spec) => this.plannedTensors(spec)));
    } catch (e) {
      for (const w of this.base.weights) w.dispose();
      throw e;
    }
    for (const spec of this.pending) this.createAdapter(spec);
    this.pending.length = 0;
    if (this.active !== null && !this.states.has(this.active)) {
      throw new Error(`${this.getClassName()} ${this.name}: activeAdapter = ${describe(this.active)} is not one of its adapters ${describe(this.adapterNames())}`);
    }
    this.built = true;
  }

  /** Refuse base configurations the adapter math does not cover (e.g. channels-first). */
  protected checkBase(_inputShape: tfl.Shape | tfl.Shape[]): void {}

  /** Shapes of A and B for an adapter of rank r. */
  protected abstract factorShapes(rank: number): [number[], number[]];

  /** Initial A and B for a new adapter (B or A zero, so the output starts unchanged). */
  protected abstract initialFactors(config: ResolvedLoRAConfig, rng: Rng): [tf.Tensor, tf.Tensor];

  /** The base weights' LayerVariables, in the wrapped layer's order. */
  protected baseVariables(): tfl.LayerVariable[] {
    return this.base.weights;
  }

  private createAdapter(spec: LayerAdapterSpec): void {
    const prefix = this.weightPrefix();
    const rng = new Rng(spec.kind === 'lora' ? spec.seed : 0);
    let vars: tfl.LayerVariable[];
    if (spec.kind === 'lora') {
      const [A0, B0] = this.initialFactors(spec, rng);
      vars = [variable(A0, `${prefix}lora_A.${spec.name}`, true), variable(B0, `${prefix}lora_B.${spec.name}`, true)];
      A0.dispose();
      B0.dispose();
    } else {
      vars = this.baseVariables().map((w) => {
        const short = w.originalName.slice(w.originalName.lastIndexOf('/') + 1);
        return variable(w.read(), `${prefix}modules_to_save.${spec.name}.${short}`, true);
      });
    }
    this.states.set(spec.name, { spec, vars, rng });
    this._trainableWeights.push(...vars); // so that Container.trainable = … reaches them
  }

  /** `layer/` as the base weights are named, so adapters added later sit beside them. */
  private weightPrefix(): string {
    const first = this.baseVariables()[0];
    const name = first?.originalName ?? `${this.name}/x`;
    return name.slice(0, name.lastIndexOf('/') + 1);
  }

  // ---- adapters ------------------------------------------------------------------------

  /** Names of the adapters held, in the order they were added. */
  adapterNames(): string[] {
    return [...this.states.keys(), ...this.pending.map((s) => s.name)];
  }

  /** The adapter forward passes and training use, or null (base only). */
  get activeAdapter(): string | null {
    return this.active;
  }

  /** The spec of an adapter (rank, alpha, … or a full copy). */
  adapterSpec(name: string): LayerAdapterSpec {
    return this.state(name).spec;
  }

  /** Add an adapter (not made active: use the model-wide `setActiveAdapter`). */
  addAdapter(spec: LayerAdapterSpec): void {
    const checked = this.checkNewAdapter(spec);
    if (!this.built) {
      this.pending.push(checked);
    } else {
      checkAllocation(`${this.getClassName()} ${this.name}`, this.plannedTensors(checked));
      this.createAdapter(checked);
    }
  }

  /**
   * The tensors an adapter of this (built) layer holds: A and B, or a full copy of the base
   * weights (which shares the base's buffers until training first updates it).
   */
  plannedTensors(spec: LayerAdapterSpec): PlannedTensor[] {
    const at = `layer ${this.name}'s`;
    if (spec.kind === 'full') {
      return this.baseVariables().map((w, i) => ({ what: `${at} modules_to_save.${spec.name}.${this.baseWeightNames()[i]}`, elements: elementsOf(w.shape as number[]) }));
    }
    const [a, b] = this.factorShapes(spec.rank);
    return [
      { what: `${at} lora_A.${spec.name} [${a.join(', ')}]`, elements: elementsOf(a) },
      { what: `${at} lora_B.${spec.name} [${b.join(', ')}]`, elements: elementsOf(b) },
    ];
  }

  /**
   * Make a full copy (modules_to_save) equal the base weights again. A copy created while a
   * rebuilt model builds starts from the rebuilt base (zeros, before the real weights are
   * copied in); this gives it the real base. The buffers are shared, not copied.
   */
  syncFullCopy(name: string): void {
    const state = this.state(name);
    if (state.spec.kind !== 'full') throw new Error(`${this.getClassName()} ${this.name}: adapter ${describe(name)} is a LoRA adapter, not a full copy`);
    const base = this.baseVariables();
    state.vars.forEach((v, i) => v.write(base[i].read()));
  }

  /** Check (without changing anything) that `spec` can be added; returns the checked spec. */
  checkNewAdapter(spec: LayerAdapterSpec): LayerAdapterSpec {
    const checked = checkSpec(`${this.getClassName()} ${this.name}`, spec);
    if (this.adapterNames().includes(checked.name)) {
      throw new Error(`${this.getClassName()} ${this.name}: it already has an adapter named ${describe(checked.name)}; delete it first or choose another adapterName`);
    }
    return checked;
  }

  /**
   * Make `name` this layer's active adapter, or null for the base alone. Prefer the
   * model-wide `setActiveAdapter(model, name)`, which also updates a compiled model.
   */
  setActiveAdapter(name: string | null): void {
    if (name !== null) this.state(name);
    this.active = name;
  }

  /** Remove an adapter and free its variables. */
  deleteAdapter(name: string): void {
    const state = this.state(name);
    for (const v of state.vars) v.dispose();
    this.states.delete(name);
    this._trainableWeights = this._trainableWeights.filter((w) => !state.vars.includes(w));
    if (this.active === name) this.active = null;
  }

  /** The variables of an adapter: `[A, B]`, or the full copy's weights. */
  adapterVariables(name: string): tfl.LayerVariable[] {
    return [...this.state(name).vars];
  }

  private state(name: string): AdapterState {
    const s = this.states.get(name);
    if (s === undefined) {
      if (this.pending.some((p) => p.name === name)) throw new Error(`${this.getClassName()} ${this.name}: the layer is not built yet, so adapter ${describe(name)} has no weights`);
      throw new Error(`${this.getClassName()} ${this.name}: no adapter named ${describe(name)}; it has ${describe(this.adapterNames())}`);
    }
    return s;
  }

  // ---- what tfjs sees ----------------------------------------------------------------

  override get trainableWeights(): tfl.LayerVariable[] {
    if (!this.trainable || this.active === null) return [];
    const state = this.states.get(this.active);
    return state === undefined ? [] : state.vars.filter((w) => w.trainable);
  }

  override set trainableWeights(_weights: tfl.LayerVariable[]) {
    // tfjs assigns the lists only in layers that manage them itself; ours are derived.
  }

  override get nonTrainableWeights(): tfl.LayerVariable[] {
    const trainable = new Set(this.trainableWeights);
    const all = [...this.baseVariables(), ...[...this.states.values()].flatMap((s) => s.vars)];
    return all.filter((w) => !trainable.has(w));
  }

  override set nonTrainableWeights(_weights: tfl.LayerVariable[]) {}

  override computeOutputShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape | tfl.Shape[] {
    return this.base.computeOutputShape(inputShape);
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor | tf.Tensor[] {
    return this.base.computeMask(inputs, mask);
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: CallKwargs): tf.Tensor | tf.Tensor[] {
    return tf.tidy(() => {
      this.invokeCallHook(inputs, kwargs as never);
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      const state = this.active === null ? undefined : this.states.get(this.active);
      if (state === undefined) return this.base.call(x, kwargs as never);
      if (state.spec.kind === 'full') return this.withBaseWeights(state.vars, () => this.base.call(x, kwargs as never));
      const spec = state.spec;
      const dropout = kwargs.training === true && spec.dropout > 0 ? { rate: spec.dropout, seed: state.rng.int(2 ** 31) } : null;
      return this.loraCall(x, { A: state.vars[0].read(), B: state.vars[1].read(), scale: loraScale(spec), dropout });
    });
  }

  /** The layer's output with the active LoRA adapter. */
  protected abstract loraCall(x: tf.Tensor, adapter: ActiveFactors): tf.Tensor;

  /** Run `f` with the wrapped layer's weights swapped for `vars` (a full copy). */
  private withBaseWeights<T>(vars: tfl.LayerVariable[], f: () => T): T {
    const fields = this.baseWeightFields();
    const target = this.base as unknown as Record<string, tfl.LayerVariable | null>;
    const saved = fields.map((k) => target[k]);
    fields.forEach((k, i) => (target[k] = vars[i]));
    try {
      return f();
    } finally {
      fields.forEach((k, i) => (target[k] = saved[i]));
    }
  }

  /** Field names of the wrapped layer's weights, in `baseVariables()` order. */
  protected abstract baseWeightFields(): string[];

  // ---- merging -------------------------------------------------------------------------

  /** ΔW of a LoRA adapter in the base kernel's layout (scaled). */
  protected abstract delta(A: tf.Tensor, B: tf.Tensor, scale: number): tf.Tensor;

  /**
   * The base weights with adapter `name` folded in (a full copy's weights, for a full
   * adapter; the base itself for null), as new tensors in `baseVariables()` order.
   */
  mergedWeights(name: string | null, where?: string): tf.Tensor[] {
    return tf.tidy(() => {
      const base = this.baseVariables().map((w) => w.read());
      if (name === null) return base.map((t) => t.clone());
      const state = this.state(name);
      const who = where === undefined ? `${this.getClassName()} ${this.name}` : `${where}: layer ${this.name}`;
      if (state.spec.kind === 'full') {
        // PEFT swaps a modules_to_save copy in as it is; a diverged (NaN) copy is refused.
        if (!allFinite(state.vars.map((v) => v.read()))) throw new Error(`${who}: adapter ${describe(name)} (a full copy, modules_to_save) holds non-finite values; refusing to merge it (nothing was changed)`);
        return state.vars.map((v) => v.read().clone());
      }
      // As PEFT's safe_merge: the delta, then the merged weight, must be finite.
      const d = this.delta(state.vars[0].read(), state.vars[1].read(), loraScale(state.spec));
      if (!allFinite([d])) {
        throw new Error(`${who}: adapter ${describe(name)} holds non-finite values; refusing to merge it, as PEFT's safe_merge does (nothing was changed)`);
      }
      const merged = tf.add(base[0], d);
      if (!allFinite([merged]) && allFinite([base[0]])) {
        throw new Error(`${who}: merging adapter ${describe(name)} overflows float32 (W + ΔW has values beyond ±3.4e38); refusing to merge it (nothing was changed)`);
      }
      return base.map((t, i) => (i === 0 ? merged : t.clone()));
    });
  }

  /** The wrapped layer's class and config (named as this layer): what it unloads to. */
  baseLayer(): SerializedLayer {
    const config: tf.serialization.ConfigDict = { ...this.base.getConfig(), name: this.name, trainable: true };
    const shape = (this as unknown as { batchInputShape?: Array<number | null> }).batchInputShape;
    if (shape != null) config.batchInputShape = shape as never;
    return { className: this.baseClassName, config };
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config = super.getConfig();
    delete config.batchInputShape;
    const shape = (this as unknown as { batchInputShape?: Array<number | null> }).batchInputShape;
    const specs = [...[...this.states.values()].map((s) => s.spec), ...this.pending];
    return {
      ...config,
      ...(shape != null ? { batchInputShape: shape } : {}),
      base: { className: this.baseClassName, config: { ...this.base.getConfig(), name: this.name } } as never,
      adapters: specs.map((s) => ({ ...s })) as never,
      activeAdapter: this.active,
    };
  }

  /** The base weights' names within the layer (`kernel`, `bias`), in `mergedWeights` order. */
  baseWeightNames(): string[] {
    return this.baseVariables().map((w) => w.originalName.slice(w.originalName.lastIndexOf('/') + 1));
  }

  /** Shape of the base kernel (`embeddings` for an Embedding). */
  kernelShape(): number[] {
    return this.baseVariables()[0].shape as number[];
  }

  /** Number of values in the base weights. */
  baseParameterCount(): number {
    return this.baseVariables().reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
  }
}

/** The active adapter's factors as a forward pass reads them. */
export interface ActiveFactors {
  A: tf.Tensor;
  B: tf.Tensor;
  scale: number;
  dropout: { rate: number; seed: number } | null;
}

function variable(value: tf.Tensor, name: string, trainable: boolean): tfl.LayerVariable {
  // The variable shares `value`'s buffer (a full copy starts as the base's): safe, because
  // tf.Variable.assign replaces a variable's buffer and never writes into it.
  const v = new tfl.LayerVariable(value, 'float32', name.slice(name.lastIndexOf('/') + 1), trainable);
  // tfjs prefixes the name with the current name scope; adapters added outside a build
  // must be named exactly as the ones a reloaded model creates while building.
  (v as { originalName: string }).originalName = name;
  return v;
}
