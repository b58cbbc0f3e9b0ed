import * as tf from '@tensorflow/tfjs-core';
import type { AdapterFactors, FullWeights } from '../core/lora-adapter.js';
import type { LayerPlan, LoRAMLP } from '../core/lora-mlp.js';
import { ALL_LINEAR, type ModuleRole, type ModuleSelector, type Pattern, exactPattern, patternValue, resolveRoles } from '../core/targets.js';
import { describe } from '../util/validate.js';
import { type WarningHandler, warn } from '../util/warnings.js';
import { VERSION } from '../version.js';
import { parseOrderedJson } from './ordered-json.js';
import { type EncodableTensor, type EncodeDtype, type SafetensorsContent, decodeSafetensors, encodeSafetensors, floatToHalf } from './safetensors.js';
import { sha256Hex } from './sha256.js';

/**
 * HuggingFace PEFT's adapter layout, as bytes and JSON (no file I/O: works in a browser).
 *
 * A layer's module name (`LoRAMLP.names`: `fc1`, `mlp.fc1`, `0`, …, behind an optional
 * `prefix`) gives its tensor keys: `base_model.model.<name>.lora_A.weight` `[r, in]` and
 * `…lora_B.weight` `[out, r]` for a LoRA layer — PyTorch's layout, the transpose of ours
 * (A `[in, r]`, B `[r, out]`) — and `base_model.model.<name>.weight` `[out, in]` /
 * `….bias` for a layer trained in full (`modules_to_save`).
 *
 * `adapter_config.json` holds PEFT's own fields only (so PEFT loads it without a
 * warning); lora-tfjs's facts go into the safetensors `__metadata__`: the base layers'
 * sizes, the library version, and the SHA-256 of the config the weights were saved with,
 * which is how a config/weights pair from two different saves is detected.
 */

/** PEFT's file names: the weights and the config of one adapter, side by side in a folder (or a download). */
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
export const ADAPTER_CONFIG = 'adapter_config.json';

/** The fields of PEFT's LoraConfig that lora-tfjs writes (PEFT fills the others with defaults). */
export interface PeftLoraConfig {
  peft_type: 'LORA';
  r: number;
  lora_alpha: number;
  use_rslora: boolean;
  target_modules: string[] | string;
  lora_dropout: number;
  bias: 'none';
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  modules_to_save: string[] | null;
  [key: string]: unknown;
}

/** An adapter as PEFT stores it: `adapter_model.safetensors` and `adapter_config.json`. */
export interface PeftAdapter {
  weights: Uint8Array;
  config: PeftLoraConfig;
}

/** Options of {@link serializeAdapter} / `saveAdapter`. */
export interface SaveAdapterOptions {
  /** The adapter to write (default: the active one). */
  adapterName?: string;
  /** The model's module path inside the PyTorch model, e.g. `"mlp."`: prepended to every layer name. */
  prefix?: string;
  /** Tensor dtype in the file: F32 (default), or F16 / BF16 (rounded to nearest even, as PyTorch). */
  dtype?: EncodeDtype;
}

/** Options of {@link deserializeAdapter} / `loadAdapter`. */
export interface LoadAdapterOptions {
  /** Name to give the adapter in the model (default `"default"`); an existing one is replaced. */
  adapterName?: string;
  /** The model's module path inside the PyTorch model the adapter was made for, e.g. `"mlp."`. */
  prefix?: string;
  /** Receives warnings, e.g. config fields lora-tfjs does not know (default: the warning handler). */
  onWarning?: WarningHandler;
  /**
   * Refuse weights whose recorded config digest differs from the config (default true): the
   * sign of an interrupted save or of files from two saves. Pass false after editing
   * `adapter_config.json` by hand.
   */
  verifyPair?: boolean;
}

/** Metadata keys lora-tfjs writes into `adapter_model.safetensors`. */
export const PEFT_METADATA = {
  version: 'lora_tfjs_version',
  layers: 'lora_tfjs_layers',
  adapterName: 'lora_tfjs_adapter_name',
  configDigest: 'lora_tfjs_config_sha256',
} as const;

export const KEY_ROOT = 'base_model.model.';
/** The largest finite float16 (values up to 65519.99… round to it). */
const F16_MAX = 65504;
const keyA = (module: string) => `${KEY_ROOT}${module}.lora_A.weight`;
const keyB = (module: string) => `${KEY_ROOT}${module}.lora_B.weight`;
const keyWeight = (module: string) => `${KEY_ROOT}${module}.weight`;
const keyBias = (module: string) => `${KEY_ROOT}${module}.bias`;

/** An adapter file or config that cannot be loaded into this model. */
export class AdapterLoadError extends Error {
  constructor(message: string) {
    super(`loadAdapter: ${message}`);
    this.name = 'AdapterLoadError';
  }
}

/** The module name of layer `index` of a model built without names (`fc1`, `fc2`, …). */
export function moduleName(index: number): string {
  return `fc${index + 1}`;
}

/** The JSON object as canonical text (keys sorted at every level): what the digest covers. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value as object).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The text lora-tfjs writes as `adapter_config.json`. */
export function adapterConfigText(config: PeftLoraConfig): string {
  return JSON.stringify(config, null, 2) + '\n';
}

// ---- saving --------------------------------------------------------------------------------

/**
 * Adapter `adapterName` (default: the active one) of `model` in PEFT's layout: the weights
 * file's bytes and the config. Per-layer ranks and alphas become `rank_pattern` /
 * `alpha_pattern`; full copies become `modules_to_save`.
 */
export function serializeAdapter(model: LoRAMLP, options: SaveAdapterOptions | string = {}): PeftAdapter {
  const where = 'serializeAdapter';
  const opts: SaveAdapterOptions = typeof options === 'string' ? { adapterName: options } : options;
  if (opts === null || typeof opts !== 'object') throw new Error(`${where}: options = ${describe(opts)} is invalid; expected an options object`);
  const prefix = checkPrefix(where, opts.prefix);
  const dtype = opts.dtype ?? 'F32';
  if (!['F32', 'F16', 'BF16'].includes(dtype)) throw new Error(`${where}: dtype = ${describe(dtype)} is invalid; expected "F32", "F16" or "BF16"`);
  const name = opts.adapterName ?? model.activeAdapter ?? (model.adapterNames().length === 1 ? model.adapterNames()[0] : null);
  if (name === null) throw new Error(`${where}: no adapter is active; pass { adapterName } (one of ${describe(model.adapterNames())})`);
  const roles = model.adapterLayers(name); // validates the name
  const torchNames = model.names.map((n) => prefix + n);
  const lora = roles.flatMap((r, i) => (r === 'lora' ? [i] : []));
  const full = roles.flatMap((r, i) => (r === 'full' ? [i] : []));
  if (lora.length === 0) {
    throw new Error(`${where}: adapter ${describe(name)} has no LoRA layer (only full copies of ${describe(full.map((i) => torchNames[i]))}); PEFT cannot load an adapter that targets no module`);
  }
  const configs = lora.map((i) => model.layers[i].adapter(name).config);
  for (const field of ['useRsLora', 'dropout'] as const) {
    const values = new Set(configs.map((c) => c[field]));
    if (values.size > 1) throw new Error(`${where}: adapter ${describe(name)} has different ${field} values per layer (${describe([...values])}); PEFT's config holds one`);
  }
  const ranks = configs.map((c) => c.rank);
  const alphas = configs.map((c) => c.alpha);
  const r = mostCommon(ranks);
  const alpha = mostCommon(alphas);
  const loraNames = lora.map((i) => torchNames[i]);

  const tensors: Record<string, EncodableTensor> = {};
  const put = tensorWriter(where, name, dtype, tensors);
  for (const i of lora) {
    const a = model.layers[i].adapter(name);
    put(keyA(torchNames[i]), a.A, [1, 0]);
    put(keyB(torchNames[i]), a.B, [1, 0]);
  }
  for (const i of full) {
    const f = model.layers[i].fullAdapter(name);
    put(keyWeight(torchNames[i]), f.weight, [1, 0]);
    if (f.bias !== undefined) put(keyBias(torchNames[i]), f.bias);
  }
  const config = peftConfig({ r, alpha, dropout: configs[0].dropout, useRsLora: configs[0].useRsLora, targets: loraNames, ranks, alphas, modulesToSave: full.map((i) => torchNames[i]) });
  const layers = Object.fromEntries(model.layers.map((l, i) => [torchNames[i], [l.inFeatures, l.outFeatures]]));
  return { weights: adapterWeights(tensors, config, layers, name), config };
}


/**
 * A writer of float tensors into `tensors` in PyTorch's layout (`perm` transposes first),
 * refusing what `loadAdapter` (or PEFT's float16 model) would refuse or misread.
 */
export function tensorWriter(where: string, adapterName: string, dtype: EncodeDtype, tensors: Record<string, EncodableTensor>): (key: string, t: tf.Tensor, perm?: number[], shape?: number[]) => void {
  return (key, t, perm, shape) => {
    const v = perm === undefined ? t : tf.transpose(t, perm);
    const data = v.dataSync() as Float32Array;
    const outShape = shape ?? v.shape;
    if (v !== t) v.dispose();
    let peak = 0;
    for (const x of data) {
      if (!Number.isFinite(x)) throw new Error(`${where}: ${key.slice(KEY_ROOT.length)} of adapter ${describe(adapterName)} holds ${x}; a file must hold finite values`);
      peak = Math.max(peak, Math.abs(x));
    }
    if (dtype === 'F16' && (floatToHalf(peak) & 0x7fff) === 0x7c00) throw new Error(`${where}: ${key.slice(KEY_ROOT.length)} of adapter ${describe(adapterName)} holds |values| up to ${peak}, beyond float16's ${F16_MAX}; save as "F32" or "BF16"`);
    tensors[key] = { shape: outShape, data, dtype };
  };
}

/** The `adapter_config.json` lora-tfjs writes: PEFT's fields, per-layer values as exact patterns. */
export function peftConfig(f: { r: number; alpha: number; dropout: number; useRsLora: boolean; targets: string[]; ranks: number[]; alphas: number[]; modulesToSave: string[] }): PeftLoraConfig {
  return {
    peft_type: 'LORA',
    task_type: null,
    base_model_name_or_path: null,
    revision: null,
    inference_mode: true,
    r: f.r,
    target_modules: f.targets,
    exclude_modules: null,
    lora_alpha: f.alpha,
    lora_dropout: f.dropout,
    fan_in_fan_out: false,
    bias: 'none',
    use_rslora: f.useRsLora,
    modules_to_save: f.modulesToSave.length > 0 ? f.modulesToSave : null,
    init_lora_weights: true,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: exactPattern(f.targets, f.ranks, f.r),
    alpha_pattern: exactPattern(f.targets, f.alphas, f.alpha),
    use_dora: false,
    lora_bias: false,
  };
}

/** The weights file's bytes with lora-tfjs's metadata (base sizes, version, config digest). */
export function adapterWeights(tensors: Record<string, EncodableTensor>, config: PeftLoraConfig, layers: Record<string, number[]>, name: string): Uint8Array {
  return encodeSafetensors(tensors, {
    format: 'pt',
    [PEFT_METADATA.version]: VERSION,
    [PEFT_METADATA.layers]: JSON.stringify(layers),
    [PEFT_METADATA.adapterName]: name,
    [PEFT_METADATA.configDigest]: sha256Hex(canonicalJson(config)),
  });
}

// ---- loading -------------------------------------------------------------------------------

/** An adapter read and checked against a model, its tensors allocated, not yet added. */
export interface PreparedAdapter {
  readonly name: string;
  readonly plan: LayerPlan[];
  /** Whether loading replaces an adapter of that name. */
  readonly replaces: boolean;
}

/**
 * Check a PEFT adapter against the model and add it (or replace the adapter of that name).
 * Everything is validated before the model changes: a failed load leaves it as it was.
 */
export function deserializeAdapter(model: LoRAMLP, adapter: { weights: Uint8Array; config: unknown }, options: LoadAdapterOptions = {}): string {
  const prepared = prepareAdapter(model, adapter, options);
  commitAdapter(model, prepared);
  return prepared.name;
}

/** Add (or replace) a prepared adapter and free its staging tensors. */
export function commitAdapter(model: LoRAMLP, prepared: PreparedAdapter): void {
  try {
    if (prepared.replaces) model.replaceAdapterLayers(prepared.name, prepared.plan);
    else model.addAdapterLayers(prepared.name, prepared.plan);
  } finally {
    disposePrepared(prepared);
  }
}

/** Free a prepared adapter's staging tensors without adding it. */
export function disposePrepared(prepared: PreparedAdapter): void {
  for (const p of prepared.plan) {
    if (p?.kind === 'lora' && p.initial !== undefined) tf.dispose([p.initial.A, p.initial.B]);
    if (p?.kind === 'full' && p.initial !== undefined) tf.dispose([p.initial.weight, ...(p.initial.bias ? [p.initial.bias] : [])]);
  }
}

/**
 * Read and check a PEFT adapter against the model, allocating its tensors but changing
 * nothing: every refusal happens here, with a message naming the field, key or file.
 */
export function prepareAdapter(model: LoRAMLP, adapter: { weights: Uint8Array; config: unknown }, options: LoadAdapterOptions = {}): PreparedAdapter {
  const { name, prefix, config, content } = readAdapter(adapter, options);
  const replaces = model.adapterNames().includes(name);
  if (replaces && model.mergedAdapter === name) throw new AdapterLoadError(`adapter ${describe(name)} is merged; call unmerge() before replacing it`);

  const torchNames = model.names.map((n) => prefix + n);
  checkBaseLayers(model, torchNames, content.metadata[PEFT_METADATA.layers], config.legacyBaseLayers);

  let roles: ModuleRole[];
  try {
    roles = resolveRoles('adapter_config.json', torchNames, { targetModules: config.targetModules, excludeModules: config.excludeModules ?? undefined, modulesToSave: config.modulesToSave ?? undefined });
  } catch (err) {
    throw new AdapterLoadError(`${(err as Error).message.replace(/targetModules/g, 'target_modules').replace(/excludeModules/g, 'exclude_modules').replace(/modulesToSave/g, 'modules_to_save')}${prefix === '' ? ' (pass { prefix } if this model sits inside a larger PyTorch model)' : ''}`);
  }
  const ranks = torchNames.map((n) => patternValue('adapter_config.json', 'rank_pattern', config.rankPattern, n, config.r));
  const alphas = torchNames.map((n) => patternValue('adapter_config.json', 'alpha_pattern', config.alphaPattern, n, config.alpha));
  roles.forEach((role, i) => {
    if (role === 'lora') checkScale(config, torchNames[i], ranks[i], alphas[i]);
  });

  // Every key the plan needs, and nothing else.
  const expected = new Map<string, { shape: number[]; layer: number }>();
  roles.forEach((role, i) => {
    const layer = model.layers[i];
    const n = torchNames[i];
    if (role === 'lora') {
      expected.set(keyA(n), { shape: [ranks[i], layer.inFeatures], layer: i });
      expected.set(keyB(n), { shape: [layer.outFeatures, ranks[i]], layer: i });
    } else if (role === 'full') {
      expected.set(keyWeight(n), { shape: [layer.outFeatures, layer.inFeatures], layer: i });
      if (layer.bias !== undefined) expected.set(keyBias(n), { shape: [layer.outFeatures], layer: i });
    }
  });
  const present = [...content.tensors.keys()];
  const missing = [...expected.keys()].filter((k) => !content.tensors.has(k));
  const unexpected = present.filter((k) => !expected.has(k));
  if (missing.length > 0 || unexpected.length > 0) {
    throw new AdapterLoadError(
      [
        missing.length > 0 ? `missing tensor keys: ${missing.join(', ')}` : '',
        unexpected.length > 0 ? `unexpected tensor keys: ${unexpected.slice(0, 20).join(', ')}${unexpected.length > 20 ? `, … (${unexpected.length} in all)` : ''}` : '',
        prefixHint(unexpected, torchNames, prefix),
      ]
        .filter(Boolean)
        .join('; '),
    );
  }
  for (const [key, { shape, layer: i }] of expected) {
    const t = content.tensors.get(key)!;
    if (t.shape.join() !== shape.join()) {
      const layer = model.layers[i];
      const at = roles[i] === 'lora' ? ` at r = ${ranks[i]}` : '';
      throw new AdapterLoadError(`${key.slice(KEY_ROOT.length)} has shape [${t.shape.join(', ')}] but the model's ${torchNames[i]} (${layer.inFeatures} → ${layer.outFeatures})${at} needs [${shape.join(', ')}]`);
    }
    checkFiniteTensor(key, t);
  }

  const plan: LayerPlan[] = [];
  try {
    roles.forEach((role, i) => {
      const layer = model.layers[i];
      const n = torchNames[i];
      if (role === null) {
        plan.push(null);
      } else if (role === 'lora') {
        const a = content.tensors.get(keyA(n))!;
        const b = content.tensors.get(keyB(n))!;
        const initial: AdapterFactors = tf.tidy(() => ({
          A: tf.transpose(tf.tensor2d(a.data, [ranks[i], layer.inFeatures])) as tf.Tensor2D,
          B: tf.transpose(tf.tensor2d(b.data, [layer.outFeatures, ranks[i]])) as tf.Tensor2D,
        }));
        plan.push({ kind: 'lora', config: { rank: ranks[i], alpha: alphas[i], useRsLora: config.useRsLora, dropout: config.dropout }, initial });
      } else {
        const w = content.tensors.get(keyWeight(n))!;
        const b = content.tensors.get(keyBias(n));
        const initial: FullWeights = {
          weight: tf.tidy(() => tf.transpose(tf.tensor2d(w.data, [layer.outFeatures, layer.inFeatures])) as tf.Tensor2D),
          bias: b === undefined ? undefined : tf.tensor1d(b.data),
        };
        plan.push({ kind: 'full', initial });
      }
    });
    const prepared: PreparedAdapter = { name, plan, replaces };
    try {
      model.checkAdapterLayers(plan);
    } catch (err) {
      throw new AdapterLoadError((err as Error).message);
    }
    return prepared;
  } catch (err) {
    disposePrepared({ name, plan, replaces });
    throw err;
  }
}

/**
 * The scale a layer gets from the config (lora_alpha / r, or / √r with use_rslora, or the
 * patterns' values) multiplies float32 tensors: one that rounds to Infinity or 0 there would
 * make every output ±Infinity/NaN, or switch the adapter off. Refused, naming the fields
 * that gave it, before any tensor is allocated.
 */
export function checkScale(config: CheckedConfig, module: string, rank: number, alpha: number): void {
  const scale = config.useRsLora ? alpha / Math.sqrt(rank) : alpha / rank;
  const f32 = Math.fround(scale);
  if (Number.isFinite(f32) && f32 !== 0) return;
  const from = (field: string, pattern: Pattern, global: string): string => {
    const entries: ReadonlyArray<readonly [string, number]> = Array.isArray(pattern) ? pattern : Object.entries(pattern);
    const hit = entries.find(([k, v]) => patternValue('adapter_config.json', field, [[k, v]], module, Number.NaN) === v);
    return hit === undefined ? global : `${field}[${JSON.stringify(hit[0])}]`;
  };
  const alphaField = from('alpha_pattern', config.alphaPattern, 'lora_alpha');
  const rankField = from('rank_pattern', config.rankPattern, 'r');
  throw new AdapterLoadError(
    `adapter_config.json: ${alphaField} = ${alpha} is invalid; expected a value whose scale ${alphaField} / ${config.useRsLora ? `√${rankField}` : rankField} ` +
      `(${scale} for ${module}, where ${rankField} = ${rank}) is a finite, non-zero float32 (between about 1.2e-38 and 3.4e38)`,
  );
}

/** Every value of a loaded tensor must be finite: a NaN adapter silently poisons every output. */
export function checkFiniteTensor(key: string, t: { dtype: string; data: Float32Array }): void {
  const d = t.data;
  let bad = 0;
  let first = -1;
  for (let i = 0; i < d.length; i++) {
    if (!Number.isFinite(d[i])) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad === 0) return;
  const widened = t.dtype === 'F64' ? "; F64 values beyond float32's range become ±Infinity" : '';
  throw new AdapterLoadError(
    `adapter_model.safetensors: ${key.startsWith(KEY_ROOT) ? key.slice(KEY_ROOT.length) : key}: tensor values are not all finite: ${bad} of ${d.length} are NaN or ±Infinity (the first, at index ${first}, is ${d[first]})${widened}; expected finite values`,
  );
}

/** A PEFT adapter's options, config and weights read and checked (no model involved yet). */
export function readAdapter(adapter: { weights: Uint8Array; config: unknown }, options: LoadAdapterOptions): { name: string; prefix: string; config: CheckedConfig; content: SafetensorsContent } {
  if (options === null || typeof options !== 'object') throw new AdapterLoadError(`options = ${describe(options)} is invalid; expected an options object`);
  if (adapter === null || typeof adapter !== 'object') throw new AdapterLoadError(`adapter = ${describe(adapter)} is invalid; expected { weights, config }`);
  const name = options.adapterName ?? 'default';
  if (typeof name !== 'string' || name === '') throw new AdapterLoadError(`adapterName = ${describe(name)} is invalid; expected a non-empty string`);
  const prefix = checkPrefix('loadAdapter', options.prefix, (m) => new AdapterLoadError(m));
  const onWarning = options.onWarning;
  if (onWarning !== undefined && typeof onWarning !== 'function') throw new AdapterLoadError(`onWarning = ${describe(onWarning)} is invalid; expected a function`);
  if (options.verifyPair !== undefined && typeof options.verifyPair !== 'boolean') throw new AdapterLoadError(`verifyPair = ${describe(options.verifyPair)} is invalid; expected a boolean`);

  const config = checkConfig(adapter.config, (m) => warn(m, onWarning));
  let content: SafetensorsContent;
  try {
    content = decodeSafetensors(adapter.weights);
  } catch (err) {
    throw new AdapterLoadError(`adapter_model.safetensors: ${(err as Error).message}`);
  }
  const recorded = content.metadata[PEFT_METADATA.configDigest];
  if (recorded !== undefined && options.verifyPair !== false) {
    const actual = sha256Hex(canonicalJson(config.raw));
    if (actual !== recorded) {
      throw new AdapterLoadError(
        `adapter_model.safetensors and adapter_config.json do not belong together: the weights were saved with a config whose SHA-256 is ${recorded.slice(0, 12)}…, ` +
          `this config's is ${actual.slice(0, 12)}… (a save interrupted between its two renames, or one file copied from another save). ` +
          'Save the adapter again; if you edited adapter_config.json by hand, pass { verifyPair: false }',
      );
    }
  }

  return { name, prefix, config, content };
}

// ---- the config ----------------------------------------------------------------------------

export interface CheckedConfig {
  /** The config object as given, for the digest. */
  raw: Record<string, unknown>;
  r: number;
  alpha: number;
  useRsLora: boolean;
  dropout: number;
  targetModules: ModuleSelector;
  excludeModules: ModuleSelector | null;
  modulesToSave: string[] | null;
  rankPattern: Pattern;
  alphaPattern: Pattern;
  legacyBaseLayers: Record<string, unknown> | undefined;
}

/** Fields of PEFT 0.21's LoraConfig (and PeftConfig) that lora-tfjs reads or may ignore. */
const KNOWN_FIELDS = new Set([
  'peft_type', 'task_type', 'base_model_name_or_path', 'revision', 'inference_mode', 'auto_mapping', 'peft_version', 'r',
  'target_modules', 'exclude_modules', 'lora_alpha', 'lora_dropout', 'fan_in_fan_out', 'bias', 'use_rslora',
  'modules_to_save', 'init_lora_weights', 'layers_to_transform', 'layers_pattern', 'rank_pattern', 'alpha_pattern',
  'megatron_config', 'megatron_core', 'trainable_token_indices', 'loftq_config', 'eva_config', 'corda_config',
  'lora_ga_config', 'use_dora', 'velora_config', 'alora_invocation_tokens', 'use_qalora', 'qalora_group_size',
  'monteclora_config', 'layer_replication', 'runtime_config', 'lora_bias', 'target_parameters', 'use_bdlora',
  'arrow_config', 'kasa_config', 'ensure_weight_tying',
  // Written by lora-tfjs before the base sizes moved into the weights' metadata.
  'lora_tfjs_base_layers',
]);

/**
 * Fields that, when set, make the adapter something other than plain LoRA on these layers:
 * refused, naming what they are. Null, false, `{}` and `[]` mean "not used".
 */
const VARIANT_FIELDS: Record<string, string> = {
  use_dora: 'DoRA (weight-decomposed LoRA) is not supported',
  use_qalora: 'QALoRA is not supported',
  use_bdlora: 'block-diagonal LoRA (BD-LoRA) is not supported',
  kasa_config: 'KaSA is not supported',
  velora_config: 'VeLoRA is not supported',
  monteclora_config: 'MonteCLoRA is not supported',
  arrow_config: 'Arrow routing is not supported',
  alora_invocation_tokens: 'activated LoRA (aLoRA) is not supported',
  lora_ga_config: 'LoRA-GA changes the base weights at initialisation, which lora-tfjs cannot reproduce',
  corda_config: 'CorDA changes the base weights at initialisation, which lora-tfjs cannot reproduce',
  loftq_config: 'LoftQ changes (quantises) the base weights, which lora-tfjs cannot reproduce',
  megatron_config: 'Megatron tensor-parallel layers are not supported',
  layer_replication: 'layer replication changes the base model',
  trainable_token_indices: 'trainable tokens are not supported',
  target_parameters: 'LoRA on bare parameters (target_parameters) is not supported',
  layers_to_transform: 'selecting layers by index (layers_to_transform) is not supported; list the modules in target_modules',
  layers_pattern: 'selecting layers by index (layers_pattern) is not supported; list the modules in target_modules',
  lora_bias: 'a trained bias on lora_B (lora_bias) is not supported',
  fan_in_fan_out: 'fan_in_fan_out (Conv1D-style [in, out] base weights) does not apply to these layers',
};

/** `init_lora_weights` values whose initialisation rewrites the base weights. */
const BASE_CHANGING_INITS = /^(pissa(_niter_\d+)?|olora|corda|loftq|lora_ga|mica)$/i;

function isSet(v: unknown): boolean {
  if (v === undefined || v === null || v === false) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v as object).length > 0;
  return true;
}

export function checkConfig(raw: unknown, onWarning: (m: string) => void): CheckedConfig {
  let c: Record<string, unknown>;
  let keysOf = (o: object): string[] => Object.keys(o);
  if (typeof raw === 'string') {
    try {
      const parsed = parseOrderedJson(raw);
      c = parsed.value as Record<string, unknown>;
      keysOf = parsed.keysOf;
    } catch (err) {
      throw new AdapterLoadError(`adapter_config.json is not valid JSON (${(err as Error).message})`);
    }
  } else c = raw as Record<string, unknown>;
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new AdapterLoadError('adapter_config.json is not a JSON object');
  const bad = (field: string, expected: string): never => {
    throw new AdapterLoadError(`adapter_config.json: ${field} = ${short(c[field])} is invalid; expected ${expected}`);
  };
  if (c.peft_type !== 'LORA') bad('peft_type', '"LORA"');
  for (const [field, why] of Object.entries(VARIANT_FIELDS)) if (isSet(c[field])) bad(field, `null or false (${why})`);
  if ((c.bias ?? 'none') !== 'none') bad('bias', '"none" (lora-tfjs adapters train no biases)');
  const init = c.init_lora_weights;
  if (typeof init === 'string' && BASE_CHANGING_INITS.test(init)) {
    bad('init_lora_weights', `true, false, "gaussian", "eva" or "orthogonal" (${JSON.stringify(init)} rewrites the base weights; convert the adapter to plain LoRA in PEFT first, see path_initial_model_for_weight_conversion)`);
  }
  if (!Number.isInteger(c.r) || (c.r as number) < 1) bad('r', 'a positive integer');
  if (typeof c.lora_alpha !== 'number' || !Number.isFinite(c.lora_alpha) || c.lora_alpha <= 0) bad('lora_alpha', 'a finite number > 0');
  if (c.use_rslora !== undefined && typeof c.use_rslora !== 'boolean') bad('use_rslora', 'a boolean');
  const dropout = c.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) bad('lora_dropout', 'a number in [0, 1)');

  const selector = (field: string, required: boolean): ModuleSelector | null => {
    const v = c[field];
    if (v === undefined || v === null) {
      if (required) bad(field, 'a list of module names or a regular expression (lora-tfjs has no default targets for a PyTorch model)');
      return null;
    }
    if (typeof v === 'string') return v.toLowerCase() === ALL_LINEAR ? ALL_LINEAR : v;
    if (!Array.isArray(v) || !v.every((e) => typeof e === 'string')) bad(field, 'a list of module names or a regular expression string');
    return v as string[];
  };
  const targetModules = selector('target_modules', true) as ModuleSelector;
  const excludeModules = selector('exclude_modules', false);
  const mts = c.modules_to_save;
  if (mts !== undefined && mts !== null && (!Array.isArray(mts) || !mts.every((e) => typeof e === 'string'))) bad('modules_to_save', 'null or a list of module names');

  const pattern = (field: string, integer: boolean): Pattern => {
    const v = c[field];
    if (v === undefined || v === null) return [];
    if (typeof v !== 'object' || Array.isArray(v)) bad(field, 'an object { module pattern: value }');
    return keysOf(v as object).map((k) => {
      const value = (v as Record<string, unknown>)[k];
      const ok = typeof value === 'number' && Number.isFinite(value) && value > 0 && (!integer || Number.isInteger(value));
      if (!ok) throw new AdapterLoadError(`adapter_config.json: ${field}[${JSON.stringify(k)}] = ${short(value)} is invalid; expected ${integer ? 'a positive integer' : 'a finite number > 0'}`);
      return [k, value as number] as const;
    });
  };
  const rankPattern = pattern('rank_pattern', true);
  const alphaPattern = pattern('alpha_pattern', false);

  const unknown = Object.keys(c).filter((k) => !KNOWN_FIELDS.has(k));
  if (unknown.length > 0) onWarning(`loadAdapter: ignoring unknown adapter_config.json field(s): ${unknown.slice(0, 20).join(', ')}`);
  const legacy = c.lora_tfjs_base_layers;
  return {
    raw: c,
    r: c.r as number,
    alpha: c.lora_alpha as number,
    useRsLora: (c.use_rslora as boolean | undefined) ?? false,
    dropout: dropout as number,
    targetModules,
    excludeModules,
    modulesToSave: (mts as string[] | null | undefined) ?? null,
    rankPattern,
    alphaPattern,
    legacyBaseLayers: legacy !== null && typeof legacy === 'object' ? (legacy as Record<string, unknown>) : undefined,
  };
}

/** The base sizes lora-tfjs recorded (metadata, or the config of earlier files) must be this model's. */
function checkBaseLayers(model: LoRAMLP, torchNames: readonly string[], recorded: string | undefined, legacy: Record<string, unknown> | undefined): void {
  let sizes: Record<string, unknown> | undefined = legacy;
  if (recorded !== undefined) {
    try {
      sizes = JSON.parse(recorded) as Record<string, unknown>;
    } catch {
      throw new AdapterLoadError(`adapter_model.safetensors: metadata ${PEFT_METADATA.layers} is not valid JSON`);
    }
  }
  if (sizes === undefined || sizes === null || typeof sizes !== 'object') return;
  model.layers.forEach((layer, i) => {
    const name = torchNames[i];
    if (!(name in sizes!)) return;
    const s = sizes![name];
    if (!Array.isArray(s) || s[0] !== layer.inFeatures || s[1] !== layer.outFeatures) {
      throw new AdapterLoadError(`the adapter was made for ${name} of size ${JSON.stringify(s)} but this model's ${name} is [${layer.inFeatures}, ${layer.outFeatures}]`);
    }
  });
  const foreign = Object.keys(sizes).filter((n) => !torchNames.includes(n));
  if (foreign.length > 0 && foreign.length === Object.keys(sizes).length) {
    const hint = prefixHint(Object.keys(sizes).map((n) => `${KEY_ROOT}${n}.x`), torchNames, '');
    throw new AdapterLoadError(`the adapter was made for a model with layers ${describe(Object.keys(sizes).slice(0, 20))}, but this model's layers are ${describe([...torchNames])}${hint === '' ? '' : `; ${hint}`}`);
  }
}

/** When the keys look like this model's names under some module path, say which prefix to pass. */
function prefixHint(keys: readonly string[], torchNames: readonly string[], prefix: string): string {
  for (const key of keys) {
    const path = key.startsWith(KEY_ROOT) ? key.slice(KEY_ROOT.length) : key;
    for (const n of torchNames) {
      const local = n.slice(prefix.length);
      const at = path.indexOf(`.${local}.`);
      if (at > 0) return `the keys look like this model's layers under ${JSON.stringify(path.slice(0, at + 1))}: pass { prefix: ${JSON.stringify(path.slice(0, at + 1))} }`;
    }
  }
  return '';
}

export function checkPrefix(where: string, prefix: unknown, error: (m: string) => Error = (m) => new Error(`${where}: ${m}`)): string {
  if (prefix === undefined) return '';
  if (typeof prefix !== 'string' || (prefix !== '' && (!prefix.endsWith('.') || prefix.startsWith('.') || prefix.includes('..')))) {
    throw error(`prefix = ${describe(prefix)} is invalid; expected a module path ending in "." (e.g. "mlp.") or ""`);
  }
  return prefix;
}

export function mostCommon(values: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0];
  for (const [v, n] of counts) if (n > (counts.get(best) ?? 0)) best = v;
  return best;
}

function short(v: unknown): string {
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v); // JSON would say null
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
