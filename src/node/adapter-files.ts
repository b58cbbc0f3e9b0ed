import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LoRAMLP } from '../core/lora-mlp.js';
import { adapterNames } from '../layers/add-lora.js';
import { type PreparedLayersAdapter, commitLayersAdapter, deserializeLoRAModel, disposePreparedLayers, prepareLayersAdapter, serializeLayersAdapter } from '../formats/peft-layers.js';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  AdapterLoadError,
  type LoadAdapterOptions,
  type PreparedAdapter,
  type SaveAdapterOptions,
  adapterConfigText,
  commitAdapter,
  disposePrepared,
  prepareAdapter,
  serializeAdapter,
} from '../formats/peft.js';
import type { EncodeDtype } from '../formats/safetensors.js';
import { type WriteHooks, readRegularFile, replaceFiles, replaceFilesIn, statKind } from './safe-files.js';

/** PEFT's pickled weights file, which lora-tfjs never reads. */
const PICKLED_WEIGHTS = 'adapter_model.bin';

/** The largest adapter weights file read (typed arrays and wasm's heap stop near here). */
export const MAX_ADAPTER_BYTES = 2 ** 31 - 1;
/** The largest adapter_config.json read. */
export const MAX_CONFIG_BYTES = 16 * 2 ** 20;

/**
 * Write adapter `adapterName` (default: the active one) to `dir` as PEFT does:
 * `adapter_model.safetensors` + `adapter_config.json`. Each file is replaced atomically
 * (weights first, then config); nothing else in `dir` changes. A crash between the two
 * renames leaves a pair that `loadAdapter` refuses (the weights record their config's digest).
 */
export function saveAdapter(model: LoRAMLP | tfl.LayersModel, dir: string, options: SaveAdapterOptions = {}, hooks?: WriteHooks): { weightsBytes: number } {
  if (typeof dir !== 'string' || dir === '' || dir.includes('\0')) throw new Error(`saveAdapter: dir = ${JSON.stringify(dir)} is invalid; expected a folder path`);
  const adapter = serialize(model, options);
  replaceFiles(
    'saveAdapter',
    dir,
    [
      [ADAPTER_WEIGHTS, adapter.weights],
      [ADAPTER_CONFIG, adapterConfigText(adapter.config)],
    ],
    hooks,
  );
  return { weightsBytes: adapter.weights.length };
}

/** Options of {@link saveAdapters}. */
export interface SaveAdaptersOptions {
  /** Which adapters (default: all). */
  names?: readonly string[];
  /** See {@link SaveAdapterOptions.prefix}. */
  prefix?: string;
  /** See {@link SaveAdapterOptions.dtype}. */
  dtype?: EncodeDtype;
}

/**
 * Write several adapters in PEFT's multi-adapter layout (what `save_pretrained(dir)` writes
 * for a model with several adapters): `default` in `dir/`, every other adapter in
 * `dir/<name>/`. Every adapter is serialized before any file is written. Returns the
 * folder of each adapter.
 */
export function saveAdapters(model: LoRAMLP | tfl.LayersModel, dir: string, options: SaveAdaptersOptions = {}): Record<string, string> {
  const where = 'saveAdapters';
  if (typeof dir !== 'string' || dir === '' || dir.includes('\0')) throw new Error(`${where}: dir = ${JSON.stringify(dir)} is invalid; expected a folder path`);
  if (options === null || typeof options !== 'object') throw new Error(`${where}: options = ${String(options)} is invalid; expected an options object`);
  const names = options.names ?? (model instanceof tfl.LayersModel ? adapterNames(model) : model.adapterNames());
  if (!Array.isArray(names) || names.length === 0 || new Set(names).size !== names.length) {
    throw new Error(`${where}: names = ${JSON.stringify(names)} is invalid; expected a non-empty list of distinct adapter names`);
  }
  for (const n of names) {
    if (typeof n !== 'string' || !isFolderName(n)) {
      throw new Error(`${where}: adapter name ${JSON.stringify(n)} cannot be a folder name; expected a name without / \\ : * ? " < > | or NUL, not starting with "." or with spaces at either end`);
    }
  }
  const serialized = names.map((n) => ({ name: n, adapter: serialize(model, { adapterName: n, prefix: options.prefix, dtype: options.dtype }) }));
  // One two-phase write: every file of every folder is written before any is renamed, so a
  // failure (a read-only subfolder, a full disk) leaves all the folders as they were.
  const written: Record<string, string> = {};
  const writes = serialized.map(({ name, adapter }) => {
    const target = name === 'default' ? dir : join(dir, name);
    written[name] = target;
    return {
      dir: target,
      files: [
        [ADAPTER_WEIGHTS, adapter.weights],
        [ADAPTER_CONFIG, adapterConfigText(adapter.config)],
      ] as const,
    };
  });
  replaceFilesIn(where, writes);
  return written;
}

/**
 * Read a PEFT adapter from `dir` into the model (see `deserializeAdapter`); returns its name.
 * A Layers model must already have LoRA layers where the adapter goes (else use
 * `loadLoRAModel`, which returns a new model with them).
 */
export function loadAdapter(model: LoRAMLP | tfl.LayersModel, dir: string, options: LoadAdapterOptions = {}): string {
  const prepared = prepareFromFolder(model, dir, options, true);
  commit(model, prepared);
  return prepared.name;
}

/**
 * Read every adapter of a PEFT multi-adapter folder: `dir/` as `default` (when it holds an
 * adapter) and each `dir/<name>/` that holds one. All are read and checked before the model
 * changes; adapters already in the model under those names are replaced. Returns the names.
 */
export function loadAdapters(model: LoRAMLP | tfl.LayersModel, dir: string, options: Omit<LoadAdapterOptions, 'adapterName'> = {}): string[] {
  if (options !== null && typeof options === 'object' && 'adapterName' in options) {
    throw new AdapterLoadError('loadAdapters names each adapter after its folder; adapterName is not an option here (use loadAdapter for one adapter)');
  }
  checkFolder(dir);
  const found = listAdapterFolders(dir);
  if (found.length === 0) throw new AdapterLoadError(`${dir} holds no adapter (no ${ADAPTER_CONFIG} in it or in its subfolders)`);
  const prepared: Prepared[] = [];
  try {
    for (const { name, path } of found) prepared.push(prepareFromFolder(model, path, { ...options, adapterName: name }, false));
  } catch (err) {
    prepared.forEach(dispose);
    throw err;
  }
  // Checked against the model one by one; committing cannot fail now but for a name clash
  // between prepared adapters, which folder names rule out.
  for (const p of prepared) commit(model, p);
  return prepared.map((p) => p.name);
}

/**
 * PEFT's `PeftModel.from_pretrained(model, dir)` for a tfjs Layers model: a new model whose
 * layers targeted by the adapter in `dir` are LoRA layers holding its weights (active).
 * The input model is left as it was.
 */
export function loadLoRAModel(model: tfl.LayersModel, dir: string, options: LoadAdapterOptions = {}): tfl.LayersModel {
  if (!(model instanceof tfl.LayersModel)) throw new AdapterLoadError('loadLoRAModel: model is not a tf.LayersModel (for a LoRAMLP, use loadAdapter)');
  const adapter = readFolder(dir, true);
  return inFolder(dir, () => deserializeLoRAModel(model, adapter, options));
}

type Prepared = PreparedAdapter | PreparedLayersAdapter;

function serialize(model: LoRAMLP | tfl.LayersModel, options: SaveAdapterOptions) {
  return model instanceof tfl.LayersModel ? serializeLayersAdapter(model, options) : serializeAdapter(model, options);
}

function commit(model: LoRAMLP | tfl.LayersModel, prepared: Prepared): void {
  if (model instanceof tfl.LayersModel) {
    try {
      commitLayersAdapter(model, prepared as PreparedLayersAdapter);
    } finally {
      disposePreparedLayers(prepared as PreparedLayersAdapter);
    }
  } else commitAdapter(model, prepared as PreparedAdapter);
}

function dispose(prepared: Prepared): void {
  if ('layers' in prepared && prepared.layers instanceof Map) disposePreparedLayers(prepared as PreparedLayersAdapter);
  else disposePrepared(prepared as PreparedAdapter);
}

function prepareFromFolder(model: LoRAMLP | tfl.LayersModel, dir: string, options: LoadAdapterOptions, single: boolean): Prepared {
  const adapter = readFolder(dir, single);
  return inFolder(dir, () => (model instanceof tfl.LayersModel ? prepareLayersAdapter(model, adapter, options) : prepareAdapter(model, adapter, options)));
}

/** Run `fn`; an AdapterLoadError from it names the folder (`loadAdapter: <dir>: adapter_config.json: r = …`). */
function inFolder<T>(dir: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof AdapterLoadError) throw new AdapterLoadError(`${dir}: ${err.message.replace(/^loadAdapter: /, '')}`);
    throw err;
  }
}

/** The weights and config text of the adapter in `dir`, checked as files. */
function readFolder(dir: string, single: boolean): { weights: Uint8Array; config: string } {
  checkFolder(dir);
  const weights = read(join(dir, ADAPTER_WEIGHTS), MAX_ADAPTER_BYTES);
  if (weights === null) {
    if (statKind(join(dir, PICKLED_WEIGHTS)) !== null) {
      throw new AdapterLoadError(
        `${dir} holds ${PICKLED_WEIGHTS} (pickled PyTorch weights, which lora-tfjs never unpickles) and no ${ADAPTER_WEIGHTS}; re-save it in Python with model.save_pretrained(dir, safe_serialization=True)`,
      );
    }
    const nested = single ? listAdapterFolders(dir).filter((f) => f.path !== dir) : [];
    if (nested.length > 0) {
      throw new AdapterLoadError(
        `${dir} holds no ${ADAPTER_WEIGHTS}, but its subfolders hold adapters ${JSON.stringify(nested.map((f) => f.name))} (PEFT's multi-adapter layout): use loadAdapters(model, dir), or loadAdapter(model, ${JSON.stringify(join(dir, nested[0].name))})`,
      );
    }
    throw new AdapterLoadError(`${join(dir, ADAPTER_WEIGHTS)} does not exist`);
  }
  const configBytes = read(join(dir, ADAPTER_CONFIG), MAX_CONFIG_BYTES);
  if (configBytes === null) throw new AdapterLoadError(`${join(dir, ADAPTER_CONFIG)} does not exist (it must sit beside ${ADAPTER_WEIGHTS})`);
  let config: string;
  try {
    config = new TextDecoder('utf-8', { fatal: true }).decode(configBytes);
  } catch {
    throw new AdapterLoadError(`${join(dir, ADAPTER_CONFIG)} is not UTF-8 text`);
  }
  return { weights, config };
}

/** `dir` must name an existing folder. */
function checkFolder(dir: unknown): asserts dir is string {
  if (typeof dir !== 'string' || dir === '' || dir.includes('\0')) throw new AdapterLoadError(`dir = ${JSON.stringify(dir)} is invalid; expected a folder path`);
  let kind: ReturnType<typeof statKind>;
  try {
    kind = statKind(dir);
  } catch (err) {
    throw new AdapterLoadError((err as Error).message);
  }
  if (kind === null) throw new AdapterLoadError(`${dir} does not exist`);
  if (kind !== 'folder') throw new AdapterLoadError(`${dir} is a ${kind}; expected the folder that holds ${ADAPTER_CONFIG} and ${ADAPTER_WEIGHTS}`);
}

function read(path: string, max: number): Uint8Array | null {
  try {
    return readRegularFile('loadAdapter', path, max);
  } catch (err) {
    throw new AdapterLoadError((err as Error).message.replace(/^loadAdapter: /, ''));
  }
}

/**
 * `dir` itself (as `default`) and its subfolders (named after them, whatever their names),
 * each when it holds an adapter. A folder with only one of the two files is an error, not
 * skipped: it is an interrupted save or a partial copy, and skipping it would load less than
 * the folder holds without a word.
 */
function listAdapterFolders(dir: string): Array<{ name: string; path: string }> {
  const out: Array<{ name: string; path: string }> = [];
  const consider = (name: string, path: string) => {
    const hasConfig = statKind(join(path, ADAPTER_CONFIG)) !== null;
    const hasWeights = statKind(join(path, ADAPTER_WEIGHTS)) !== null || statKind(join(path, PICKLED_WEIGHTS)) !== null;
    if (hasConfig && hasWeights) out.push({ name, path });
    else if (hasConfig || hasWeights) {
      throw new AdapterLoadError(`${path} holds ${hasConfig ? ADAPTER_CONFIG : ADAPTER_WEIGHTS} without ${hasConfig ? ADAPTER_WEIGHTS : ADAPTER_CONFIG} (an interrupted save or a partial copy?); complete or remove it`);
    }
  };
  consider('default', dir);
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch (err) {
    throw new AdapterLoadError(`cannot list ${dir}: ${(err as Error).message}`);
  }
  for (const e of entries) {
    const path = join(dir, e);
    if (statKind(path) !== 'folder') continue;
    if (e === 'default' && out.some((f) => f.name === 'default')) {
      if (statKind(join(path, ADAPTER_CONFIG)) !== null) throw new AdapterLoadError(`${dir} holds an adapter and a subfolder "default" with another one; which is "default" is ambiguous: rename one`);
      continue;
    }
    consider(e, path);
  }
  return out;
}

/** A name usable as one folder on every platform: no separators, not hidden, not "." or "..". */
function isFolderName(name: string): boolean {
  return name.length > 0 && name.length <= 255 && !/[/\\\0:*?"<>|]/.test(name) && !name.startsWith('.') && name.trim() === name;
}
