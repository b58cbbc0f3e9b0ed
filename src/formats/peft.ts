import * as tf from '@tensorflow/tfjs-core';
import type { AdapterFactors, LoRAConfig } from '../core/lora-adapter.js';
import type { LoRAMLP } from '../core/lora-mlp.js';
import { type EncodableTensor, type SafetensorsContent, decodeSafetensors, encodeSafetensors } from './safetensors.js';

/**
 * HuggingFace PEFT's adapter layout, as bytes and JSON (no file I/O: works in a browser).
 *
 * Module names: layer i of a `LoRAMLP` is `fc{i+1}` (`fc1`, `fc2`, `fc3`, … as the
 * reference's PyTorch `LoRAModel`), so tensor keys are
 * `base_model.model.fc1.lora_A.weight` `[r, in]` and `base_model.model.fc1.lora_B.weight`
 * `[out, r]` — PyTorch's layout, the transpose of ours (A `[in, r]`, B `[r, out]`).
 */

/** The fields of PEFT's LoraConfig that lora-tfjs writes and reads. */
export interface PeftLoraConfig {
  peft_type: 'LORA';
  r: number;
  lora_alpha: number;
  use_rslora: boolean;
  target_modules: string[];
  lora_dropout: number;
  bias: 'none';
  /** lora-tfjs's addition: each module's base layer size, [in, out]. */
  lora_tfjs_base_layers: Record<string, [number, number]>;
  [key: string]: unknown;
}

/** An adapter as PEFT stores it: `adapter_model.safetensors` and `adapter_config.json`. */
export interface PeftAdapter {
  weights: Uint8Array;
  config: PeftLoraConfig;
}

/** Options of {@link deserializeAdapter} / `loadAdapter`. */
export interface LoadAdapterOptions {
  /** Name to give the adapter in the model (default `"default"`); an existing one is replaced. */
  adapterName?: string;
  /** Receives warnings, e.g. config fields lora-tfjs does not know (default: console.warn). */
  onWarning?: (message: string) => void;
}

/** The module name of layer `index`. */
export function moduleName(index: number): string {
  return `fc${index + 1}`;
}

const keyA = (module: string) => `base_model.model.${module}.lora_A.weight`;
const keyB = (module: string) => `base_model.model.${module}.lora_B.weight`;

/** Fields of PEFT's LoraConfig (and PeftConfig) that may appear; anything else warns. */
const KNOWN_FIELDS = new Set([
  'peft_type', 'task_type', 'base_model_name_or_path', 'revision', 'inference_mode', 'auto_mapping', 'r',
  'target_modules', 'exclude_modules', 'lora_alpha', 'lora_dropout', 'fan_in_fan_out', 'bias', 'use_rslora',
  'modules_to_save', 'init_lora_weights', 'layers_to_transform', 'layers_pattern', 'rank_pattern', 'alpha_pattern',
  'megatron_config', 'megatron_core', 'loftq_config', 'use_dora', 'layer_replication', 'runtime_config', 'lora_bias',
  'eva_config', 'corda_config', 'trainable_token_indices', 'target_parameters', 'use_qalora', 'qalora_group_size',
  'peft_version', 'alora_invocation_tokens', 'arrow_config', 'ensure_weight_tying', 'lora_tfjs_base_layers',
]);

/** An adapter file or config that cannot be loaded into this model. */
export class AdapterLoadError extends Error {
  constructor(message: string) {
    super(`loadAdapter: ${message}`);
    this.name = 'AdapterLoadError';
  }
}

/** The adapter `name` of `model` in PEFT's layout. */
export function serializeAdapter(model: LoRAMLP, name?: string): PeftAdapter {
  const adapterName = name ?? model.activeAdapter ?? 'default';
  const first = model.layers[0].adapter(adapterName); // validates the name
  const tensors: Record<string, EncodableTensor> = {};
  const baseLayers: Record<string, [number, number]> = {};
  model.layers.forEach((layer, i) => {
    const a = layer.adapter(adapterName);
    const module = moduleName(i);
    const [At, Bt] = tf.tidy(() => [tf.transpose(a.A), tf.transpose(a.B)]);
    tensors[keyA(module)] = { shape: At.shape, data: At.dataSync() as Float32Array };
    tensors[keyB(module)] = { shape: Bt.shape, data: Bt.dataSync() as Float32Array };
    tf.dispose([At, Bt]);
    baseLayers[module] = [layer.inFeatures, layer.outFeatures];
  });
  const c = first.config;
  return {
    weights: encodeSafetensors(tensors, { format: 'pt' }),
    config: {
      peft_type: 'LORA',
      r: c.rank,
      lora_alpha: c.alpha,
      use_rslora: c.useRsLora,
      target_modules: model.layers.map((_, i) => moduleName(i)),
      lora_dropout: c.dropout,
      bias: 'none',
      fan_in_fan_out: false,
      init_lora_weights: true,
      inference_mode: true,
      task_type: null,
      base_model_name_or_path: null,
      modules_to_save: null,
      lora_tfjs_base_layers: baseLayers,
    },
  };
}

/**
 * Check a PEFT adapter against the model and add it (or replace the adapter of that name).
 * Everything is validated before the model changes: a failed load leaves it as it was.
 */
export function deserializeAdapter(model: LoRAMLP, adapter: { weights: Uint8Array; config: unknown }, options: LoadAdapterOptions = {}): string {
  const name = options.adapterName ?? 'default';
  const warn = options.onWarning ?? ((m: string) => console.warn(m));
  const config = checkConfig(adapter.config, model, warn);
  let content: SafetensorsContent;
  try {
    content = decodeSafetensors(adapter.weights);
  } catch (err) {
    throw new AdapterLoadError((err as Error).message);
  }
  const modules = model.layers.map((_, i) => moduleName(i));
  const expected = new Set(modules.flatMap((m) => [keyA(m), keyB(m)]));
  const present = [...content.tensors.keys()];
  const missing = [...expected].filter((k) => !content.tensors.has(k));
  const unexpected = present.filter((k) => !expected.has(k));
  if (missing.length > 0 || unexpected.length > 0) {
    throw new AdapterLoadError(
      [missing.length > 0 ? `missing tensor keys: ${missing.join(', ')}` : '', unexpected.length > 0 ? `unexpected tensor keys: ${unexpected.join(', ')}` : '']
        .filter(Boolean)
        .join('; '),
    );
  }
  const r = config.r;
  model.layers.forEach((layer, i) => {
    const m = modules[i];
    const a = content.tensors.get(keyA(m))!;
    const b = content.tensors.get(keyB(m))!;
    const needA = [r, layer.inFeatures];
    const needB = [layer.outFeatures, r];
    if (a.shape.join() !== needA.join()) {
      throw new AdapterLoadError(`${m}.lora_A.weight has shape [${a.shape.join(', ')}] but the model's ${m} (${layer.inFeatures} → ${layer.outFeatures}) at r = ${r} needs [${needA.join(', ')}]`);
    }
    if (b.shape.join() !== needB.join()) {
      throw new AdapterLoadError(`${m}.lora_B.weight has shape [${b.shape.join(', ')}] but the model's ${m} (${layer.inFeatures} → ${layer.outFeatures}) at r = ${r} needs [${needB.join(', ')}]`);
    }
    for (const t of [a, b]) {
      if (!t.data.every(Number.isFinite)) throw new AdapterLoadError(`${m}: tensor values are not all finite`);
    }
  });
  const loraConfig: LoRAConfig = { rank: r, alpha: config.lora_alpha, useRsLora: config.use_rslora, dropout: config.lora_dropout };
  const factors: AdapterFactors[] = model.layers.map((layer, i) => {
    const a = content.tensors.get(keyA(modules[i]))!;
    const b = content.tensors.get(keyB(modules[i]))!;
    return tf.tidy(() => ({
      A: tf.transpose(tf.tensor2d(a.data, [r, layer.inFeatures])) as tf.Tensor2D,
      B: tf.transpose(tf.tensor2d(b.data, [layer.outFeatures, r])) as tf.Tensor2D,
    }));
  });
  try {
    if (model.adapterNames().includes(name)) model.replaceAdapter(name, loraConfig, factors);
    else model.addAdapter(name, loraConfig, factors);
  } finally {
    tf.dispose(factors.flatMap((f) => [f.A, f.B]));
  }
  return name;
}

interface CheckedConfig {
  r: number;
  lora_alpha: number;
  use_rslora: boolean;
  lora_dropout: number;
}

function checkConfig(raw: unknown, model: LoRAMLP, warn: (m: string) => void): CheckedConfig {
  let c: Record<string, unknown>;
  if (typeof raw === 'string') {
    try {
      c = JSON.parse(raw) as Record<string, unknown>;
    } catch (err) {
      throw new AdapterLoadError(`adapter_config.json is not valid JSON (${(err as Error).message})`);
    }
  } else c = raw as Record<string, unknown>;
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new AdapterLoadError('adapter_config.json is not a JSON object');
  const bad = (field: string, expected: string): never => {
    throw new AdapterLoadError(`adapter_config.json: ${field} = ${JSON.stringify(c[field])} is invalid; expected ${expected}`);
  };
  if (c.peft_type !== 'LORA') bad('peft_type', '"LORA"');
  if (!Number.isInteger(c.r) || (c.r as number) < 1) bad('r', 'a positive integer');
  if (typeof c.lora_alpha !== 'number' || !Number.isFinite(c.lora_alpha) || c.lora_alpha <= 0) bad('lora_alpha', 'a finite number > 0');
  if (c.use_rslora !== undefined && typeof c.use_rslora !== 'boolean') bad('use_rslora', 'a boolean');
  const dropout = c.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1) bad('lora_dropout', 'a number in [0, 1)');
  if ((c.bias ?? 'none') !== 'none') bad('bias', '"none" (lora-tfjs adapters train no biases)');
  if (c.use_dora === true) bad('use_dora', 'false (DoRA is not supported)');
  if (c.lora_bias === true) bad('lora_bias', 'false (LoRA-B biases are not supported)');
  if (c.fan_in_fan_out === true) bad('fan_in_fan_out', 'false');
  for (const f of ['rank_pattern', 'alpha_pattern']) {
    const v = c[f];
    if (v !== undefined && v !== null && (typeof v !== 'object' || Object.keys(v as object).length > 0)) bad(f, 'empty (per-module ranks and alphas are not supported)');
  }
  const modules = model.layers.map((_, i) => moduleName(i));
  const targets = c.target_modules;
  if (!Array.isArray(targets) || targets.length !== modules.length || !modules.every((m) => targets.includes(m))) {
    bad('target_modules', `${JSON.stringify(modules)} (every layer of this model)`);
  }
  const base = c.lora_tfjs_base_layers as Record<string, unknown> | undefined;
  if (base !== undefined) {
    model.layers.forEach((layer, i) => {
      const sizes = base?.[modules[i]];
      if (!Array.isArray(sizes) || sizes[0] !== layer.inFeatures || sizes[1] !== layer.outFeatures) {
        throw new AdapterLoadError(`the adapter was made for ${modules[i]} of size ${JSON.stringify(sizes)} but this model's ${modules[i]} is [${layer.inFeatures}, ${layer.outFeatures}]`);
      }
    });
  }
  const unknown = Object.keys(c).filter((k) => !KNOWN_FIELDS.has(k));
  if (unknown.length > 0) warn(`loadAdapter: ignoring unknown adapter_config.json field(s): ${unknown.join(', ')}`);
  return { r: c.r as number, lora_alpha: c.lora_alpha as number, use_rslora: (c.use_rslora as boolean | undefined) ?? false, lora_dropout: dropout as number };
}
