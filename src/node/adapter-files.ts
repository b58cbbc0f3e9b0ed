import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { LoRAMLP } from '../core/lora-mlp.js';
import { AdapterLoadError, type LoadAdapterOptions, deserializeAdapter, serializeAdapter } from '../formats/peft.js';

/** PEFT's file names. */
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
export const ADAPTER_CONFIG = 'adapter_config.json';

/**
 * Write adapter `adapterName` (default: the active one) to `dir` as PEFT does:
 * `adapter_model.safetensors` + `adapter_config.json`. The directory is written whole and
 * swapped in, so a failure never leaves a half-written adapter in place of a good one.
 */
export function saveAdapter(model: LoRAMLP, dir: string, options: { adapterName?: string } = {}): { weightsBytes: number } {
  const adapter = serializeAdapter(model, options.adapterName);
  writeDirectoryAtomic(dir, {
    [ADAPTER_WEIGHTS]: adapter.weights,
    [ADAPTER_CONFIG]: JSON.stringify(adapter.config, null, 2) + '\n',
  });
  return { weightsBytes: adapter.weights.length };
}

/** Read a PEFT adapter from `dir` into the model (see `deserializeAdapter`). */
export function loadAdapter(model: LoRAMLP, dir: string, options: LoadAdapterOptions = {}): string {
  const read = (file: string) => {
    const path = join(dir, file);
    if (!existsSync(path)) throw new AdapterLoadError(`${path} does not exist`);
    return readFileSync(path);
  };
  const weights = read(ADAPTER_WEIGHTS);
  const config = read(ADAPTER_CONFIG).toString('utf8');
  return deserializeAdapter(model, { weights: new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength), config }, options);
}

/**
 * Make `dir` hold exactly `files` (plus any other files it already had), atomically:
 * everything is written into a sibling temporary directory, then swapped in with renames.
 */
export function writeDirectoryAtomic(dir: string, files: Record<string, string | Uint8Array>): void {
  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new Error(`saveAdapter: dir = "${dir}" is a file; expected a directory path`);
  const stamp = `${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const tmp = join(parent, `.${basename(dir)}.tmp-${stamp}`);
  const old = join(parent, `.${basename(dir)}.old-${stamp}`);
  try {
    mkdirSync(tmp);
    if (existsSync(dir)) {
      for (const f of readdirSync(dir)) if (!(f in files) && statSync(join(dir, f)).isFile()) copyFileSync(join(dir, f), join(tmp, f));
    }
    for (const [name, content] of Object.entries(files)) writeFileSync(join(tmp, name), content);
    if (existsSync(dir)) renameSync(dir, old);
    renameSync(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(dir) && existsSync(old)) renameSync(old, dir);
    throw err;
  }
  rmSync(old, { recursive: true, force: true });
}
