import * as tf from '@tensorflow/tfjs-core';
import { statSync } from 'node:fs';
import { dirname, join, posix, resolve, win32 } from 'node:path';
import { FileError, type WriteHooks, readRegularFile, replaceFiles, statKind } from './safe-files.js';

/**
 * A `file://` model handler for Node without `@tensorflow/tfjs-node`.
 *
 * Writes and reads tfjs-node's own layout (its `io/file_system`), so a model saved here
 * loads with tfjs-node and the other way round: a folder holding
 *
 * - `model.json`: `{ modelTopology, weightsManifest: [{ paths: ['weights.bin'], weights }],
 *   format, generatedBy, convertedBy }` plus `trainingConfig`, `signature`,
 *   `userDefinedMetadata`, `modelInitializer`, `initializerSignature` when the model has them;
 * - `weights.bin`: every weight's bytes, concatenated in the order of the specs.
 *
 * Unlike tfjs-node: both files are replaced atomically (weights first, then model.json), so
 * a failed save leaves the previous model as it was; reads are bounded and refuse FIFOs and
 * devices; a weights file of the wrong length and a manifest path leaving the folder are
 * refused; a model.json without `weightsManifest` is refused (tfjs-node would hand back a
 * model without weights, which tfjs-layers silently initialises at random).
 *
 * The router is registered only when no other `file://` handler exists (tfjs-node's wins),
 * and it steps aside at routing time when another one has been registered since (tfjs-node
 * imported after lora-tfjs), so `model.save('file://…')` never finds two handlers.
 */

/** The URL scheme routed here. */
export const FILE_SCHEME = 'file://';
/** tfjs-node's file names. */
export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';
/** The largest model.json (or weights-manifest JSON) read. */
export const MAX_MODEL_JSON_BYTES = 64 * 2 ** 20;
/** The largest total of weight bytes (and binary topology) read: typed arrays and wasm's heap stop near here. */
export const MAX_WEIGHTS_BYTES = 2 ** 31 - 1;

/** Bytes per value of an unquantized weight, as tfjs-core's `decodeWeights` reads them. */
const DTYPE_BYTES: Readonly<Record<string, number>> = { float32: 4, int32: 4, bool: 1, complex64: 8 };
/** Bytes per value of a quantized weight, by quantization dtype. */
const QUANTIZED_BYTES: Readonly<Record<string, number>> = { uint8: 1, uint16: 2, float16: 2 };
/** A string weight: each value is a 4-byte length, then that many bytes. */
const STRING_LENGTH_BYTES = 4;

const count = (n: number): string => n.toLocaleString('en-US');

function stripScheme(path: string): string {
  return path.startsWith(FILE_SCHEME) ? path.slice(FILE_SCHEME.length) : path;
}

/** The handler `fileSystem` returns. */
class NodeFileHandler implements tf.io.IOHandler {
  /** Resolved paths: one folder (saving) or model.json (loading), or [topology.pb, weights-manifest.json]. */
  readonly path: string | string[];
  private readonly hooks: WriteHooks;

  constructor(path: string | string[], hooks: WriteHooks = {}) {
    const what = 'a folder path (to save into) or the path of a model.json (to load), or [topology.pb, weights-manifest.json]';
    if (Array.isArray(path)) {
      if (path.length !== 2 || !path.every((p) => typeof p === 'string' && stripScheme(p) !== '')) {
        throw new Error(`fileSystem: path = ${JSON.stringify(path)} is invalid; a list of paths must hold exactly two: [topology.pb, weights-manifest.json] (tfjs-node's binary-topology form)`);
      }
      this.path = path.map((p) => resolve(stripScheme(p)));
    } else {
      if (typeof path !== 'string' || stripScheme(path) === '') throw new Error(`fileSystem: path = ${JSON.stringify(path)} is invalid; expected ${what}`);
      this.path = resolve(stripScheme(path));
    }
    this.hooks = hooks;
  }

  async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
    const where = 'fileSystem.save';
    if (Array.isArray(this.path)) throw new FileError(`${where}: cannot save to several paths (${JSON.stringify(this.path)}); expected one folder path`);
    return saveModel(where, this.path, artifacts, this.hooks);
  }

  async load(): Promise<tf.io.ModelArtifacts> {
    const where = 'fileSystem.load';
    return Array.isArray(this.path) ? loadBinaryModel(where, this.path[0], this.path[1]) : loadJSONModel(where, this.path);
  }
}

/**
 * A `file://` IO handler with tfjs-node's layout: `model.save(fileSystem('dir'))`,
 * `tf.loadLayersModel(fileSystem('dir/model.json'))`. `path` is a folder for saving (created
 * when missing) and the model.json for loading; a leading `file://` is stripped, `~` is not
 * expanded, relative paths are resolved against the working folder. A list of two paths
 * loads tfjs-node's binary form: [topology.pb, weights-manifest.json]. `hooks` is for tests.
 */
export function fileSystem(path: string | string[], hooks?: WriteHooks): tf.io.IOHandler {
  return new NodeFileHandler(path, hooks);
}

// --- saving ---------------------------------------------------------------------------

function saveModel(where: string, dir: string, artifacts: tf.io.ModelArtifacts, hooks: WriteHooks): tf.io.SaveResult {
  if (artifacts === null || typeof artifacts !== 'object') throw new Error(`${where}: modelArtifacts = ${String(artifacts)} is invalid; expected model artifacts`);
  if (artifacts.modelTopology == null || typeof artifacts.modelTopology !== 'object') {
    // tfjs-node would write a model.json without it, which no loader can use.
    throw new FileError(`${where}: the model artifacts have ${artifacts.modelTopology == null ? 'no modelTopology' : `a modelTopology that is ${describeJSON(artifacts.modelTopology)}`}; expected a JSON topology object; nothing was written`);
  }
  if (artifacts.modelTopology instanceof ArrayBuffer) {
    throw new FileError(`${where}: the model topology is binary (a GraphDef); saving a binary topology is not supported (nor is it by tfjs-node); nothing was written`);
  }
  if ((artifacts.weightSpecs == null) !== (artifacts.weightData == null)) {
    throw new FileError(`${where}: the model artifacts have ${artifacts.weightSpecs == null ? 'weight data but no weightSpecs' : 'weightSpecs but no weight data'}; expected both or neither; nothing was written`);
  }
  const specs = artifacts.weightSpecs ?? [];
  if (!Array.isArray(specs)) throw new FileError(`${where}: weightSpecs is a ${typeof specs}; expected a list of weight specs; nothing was written`);
  const data = weightBytes(where, artifacts.weightData);
  const sizes = specs.map((s, i) => specSize(where, s, i, 'the weight specs'));
  const needed = measure(where, specs, sizes, data, 'the weight specs');
  if (needed !== data.length) {
    throw new FileError(`${where}: the weight data is ${count(data.length)} bytes but the weight specs describe ${count(needed)}; expected them to agree; nothing was written`);
  }

  // tfjs-node's model.json, field for field and in its order; then the fields tfjs-core
  // writes for the other handlers (model initializer) when present.
  const modelJSON: tf.io.ModelJSON = {
    modelTopology: artifacts.modelTopology as {},
    weightsManifest: [{ paths: [WEIGHTS_BIN], weights: specs }],
    format: artifacts.format,
    generatedBy: artifacts.generatedBy,
    convertedBy: artifacts.convertedBy,
  };
  if (artifacts.trainingConfig != null) modelJSON.trainingConfig = artifacts.trainingConfig;
  if (artifacts.signature != null) modelJSON.signature = artifacts.signature;
  if (artifacts.userDefinedMetadata != null) modelJSON.userDefinedMetadata = artifacts.userDefinedMetadata;
  if (artifacts.modelInitializer != null) modelJSON.modelInitializer = artifacts.modelInitializer;
  if (artifacts.initializerSignature != null) modelJSON.initializerSignature = artifacts.initializerSignature;
  let text: string;
  try {
    text = JSON.stringify(modelJSON);
  } catch (err) {
    throw new FileError(`${where}: the model cannot be written as JSON (${(err as Error).message}); nothing was written`, err);
  }

  replaceFiles(
    where,
    dir,
    [
      [WEIGHTS_BIN, data],
      [MODEL_JSON, text],
    ],
    hooks,
  );
  return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
}

// --- loading --------------------------------------------------------------------------

/** A model.json (tfjs-node's JSON form). */
function loadJSONModel(where: string, path: string): tf.io.ModelArtifacts {
  const json = readJSON(where, path, 'model.json', "the model.json written by model.save('file://<folder>')");
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new FileError(`${where}: ${path} holds ${describeJSON(json)}; expected a model.json object with modelTopology and weightsManifest`);
  }
  const modelJSON = json as Record<string, unknown>;
  if (modelJSON.modelTopology == null || typeof modelJSON.modelTopology !== 'object') {
    throw new FileError(`${where}: ${path} has ${modelJSON.modelTopology == null ? 'no modelTopology' : `a modelTopology that is ${describeJSON(modelJSON.modelTopology)}`}; expected a model.json whose modelTopology is an object`);
  }
  if (modelJSON.weightsManifest == null) {
    throw new FileError(`${where}: ${path} has no weightsManifest; expected a model.json with weightsManifest: [{ paths: ['${WEIGHTS_BIN}'], weights: [...] }]`);
  }
  const [specs, data] = loadWeights(where, modelJSON.weightsManifest, path);
  return tf.io.getModelArtifactsForJSONSync(modelJSON as unknown as tf.io.ModelJSON, specs, data);
}

/** tfjs-node's binary form: a GraphDef .pb and a weights-manifest JSON (weights beside it). */
function loadBinaryModel(where: string, topologyPath: string, manifestPath: string): tf.io.ModelArtifacts {
  expectRegularFile(where, topologyPath, 'model topology (.pb)');
  const topology = readRegularFile(where, topologyPath, MAX_WEIGHTS_BYTES);
  if (topology === null) throw new FileError(`${where}: the model topology ${topologyPath} does not exist`);
  const manifest = readJSON(where, manifestPath, 'weights manifest', 'a weights-manifest JSON ([{ paths, weights }])');
  const [weightSpecs, weightData] = loadWeights(where, manifest, manifestPath);
  return { modelTopology: exactBuffer(topology), weightSpecs, weightData };
}

/** Parsed JSON of the regular file at `path` (at most MAX_MODEL_JSON_BYTES). */
function readJSON(where: string, path: string, what: string, expected: string): unknown {
  expectRegularFile(where, path, what);
  const bytes = readRegularFile(where, path, MAX_MODEL_JSON_BYTES);
  if (bytes === null) throw new FileError(`${where}: ${path} does not exist; expected ${expected}`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FileError(`${where}: ${path} is not UTF-8 text; expected ${expected}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new FileError(`${where}: ${path} is not valid JSON (${(err as Error).message}); expected ${expected}`, err);
  }
}

/** Throws, in words, unless a regular file is at `path`. */
function expectRegularFile(where: string, path: string, what: string): void {
  const kind = statKind(path);
  if (kind === 'file') return;
  if (kind === null) {
    const dir = dirname(path);
    const missingDir = statKind(dir) === null;
    throw new FileError(`${where}: ${path} does not exist${missingDir ? ` (nor does the folder ${dir})` : ''}; expected the ${what} file`);
  }
  if (kind === 'folder') {
    const inside = join(path, MODEL_JSON);
    const hint = what === 'model.json' && statKind(inside) !== null ? `: load file://${inside}` : '';
    throw new FileError(`${where}: ${path} is a folder; expected the path of the ${what} file itself${hint}`);
  }
  throw new FileError(`${where}: ${path} is a ${kind}; expected the ${what} as a regular file`);
}

/**
 * The specs and bytes of every group of `manifest`, each group's files read in order and
 * resolved relative to the folder of `manifestFile`. Each file is read with the bytes its
 * group's specs leave for it as the limit, and each group must come out exactly as long as
 * its specs say.
 */
function loadWeights(where: string, manifest: unknown, manifestFile: string): [tf.io.WeightsManifestEntry[], ArrayBuffer] {
  const base = dirname(manifestFile);
  if (!Array.isArray(manifest)) {
    throw new FileError(`${where}: the weightsManifest of ${manifestFile} is ${describeJSON(manifest)}; expected a list of groups [{ paths: [...], weights: [...] }]`);
  }
  const groups = manifest.map((group, g) => {
    const at = `weightsManifest[${g}]`;
    if (group === null || typeof group !== 'object' || Array.isArray(group)) {
      throw new FileError(`${where}: ${at} in ${manifestFile} is ${describeJSON(group)}; expected { paths: [...], weights: [...] }`);
    }
    const { paths, weights } = group as { paths?: unknown; weights?: unknown };
    if (!Array.isArray(paths)) throw new FileError(`${where}: ${at}.paths in ${manifestFile} is ${describeJSON(paths)}; expected a list of weight file names`);
    if (!Array.isArray(weights)) throw new FileError(`${where}: ${at}.weights in ${manifestFile} is ${describeJSON(weights)}; expected a list of weight specs`);
    const files = paths.map((p, k) => weightFile(where, base, p, `${at}.paths[${k}]`, manifestFile));
    const specs = weights as tf.io.WeightsManifestEntry[];
    const sizes = specs.map((s, i) => specSize(where, s, i, `${at}.weights in ${manifestFile}`));
    const fixed = sizes.every((s): s is number => typeof s === 'number') ? sizes.reduce((a, b) => a + b, 0) : null;
    if (specs.length > 0 && files.length === 0) throw new FileError(`${where}: ${at} in ${manifestFile} lists ${specs.length} weights but no file (paths is empty)`);
    return { at, files, specs, sizes, fixed };
  });
  const declared = groups.reduce((a, g) => a + (g.fixed ?? 0), 0);
  if (declared > MAX_WEIGHTS_BYTES) {
    throw new FileError(`${where}: the weightsManifest of ${manifestFile} describes ${count(declared)} bytes of weights, more than the ${count(MAX_WEIGHTS_BYTES)}-byte limit`);
  }

  const chunks: Uint8Array[] = [];
  let total = 0;
  for (const group of groups) {
    const named = group.files.length === 1 ? group.files[0] : `the files ${JSON.stringify(group.files)} of ${group.at}`;
    const limit = group.fixed ?? MAX_WEIGHTS_BYTES - total;
    const parts: Uint8Array[] = [];
    let got = 0;
    for (const file of group.files) {
      const bytes = readWeightsFile(where, file, limit - got, group, got);
      parts.push(bytes);
      got += bytes.length;
    }
    const data = parts.length === 1 ? parts[0] : join8(parts, got);
    const needed = group.fixed ?? measure(where, group.specs, group.sizes, data, named);
    if (needed !== data.length) {
      const lengths = group.files.length === 1 ? '' : ` (${parts.map((p, i) => `${group.files[i]}: ${count(p.length)}`).join(', ')})`;
      throw new FileError(
        `${where}: ${named} ${group.files.length === 1 ? 'is' : 'are together'} ${count(data.length)} bytes${lengths}, but the weight specs of ${group.at} in ${manifestFile} need exactly ${count(needed)}; the weights are truncated or belong to another model.json`,
      );
    }
    chunks.push(data);
    total += data.length;
  }
  const specs = groups.flatMap((g) => g.specs);
  return [specs, exactBuffer(chunks.length === 1 ? chunks[0] : join8(chunks, total))];
}

/** The bytes of one weights file, refused (in words) when longer than `room`. */
function readWeightsFile(where: string, file: string, room: number, group: { fixed: number | null; at: string; files: readonly string[] }, before: number): Uint8Array {
  expectRegularFile(where, file, 'weights');
  let size: number;
  try {
    size = statSync(file).size;
  } catch (err) {
    throw new FileError(`${where}: cannot inspect the weights file ${file}: ${(err as Error).message}`, err);
  }
  if (size > room) {
    const expected =
      group.fixed === null
        ? `at most ${count(room)} bytes (the ${count(MAX_WEIGHTS_BYTES)}-byte limit on all weights)`
        : group.files.length === 1
          ? `exactly ${count(room)} bytes (the weight specs of ${group.at})`
          : `at most ${count(room)} bytes (the weight specs of ${group.at} need ${count(group.fixed)}, of which ${count(before)} are in its earlier files)`;
    throw new FileError(`${where}: the weights file ${file} is ${count(size)} bytes; expected ${expected}; it is longer than the manifest says`);
  }
  const bytes = readRegularFile(where, file, room);
  if (bytes === null) throw new FileError(`${where}: the weights file ${file} does not exist`);
  return bytes;
}

/** A manifest path, resolved inside `base`; refused when absolute or when it leaves `base`. */
function weightFile(where: string, base: string, path: unknown, at: string, manifestFile: string): string {
  const expected = `expected a file name relative to the folder of ${manifestFile}, such as "${WEIGHTS_BIN}"`;
  if (typeof path !== 'string' || path === '' || path.includes('\0')) throw new FileError(`${where}: ${at} in ${manifestFile} is ${JSON.stringify(path)}; ${expected}`);
  if (posix.isAbsolute(path) || win32.isAbsolute(path) || /^[A-Za-z]:/.test(path)) {
    throw new FileError(`${where}: ${at} in ${manifestFile} is the absolute path ${JSON.stringify(path)}; ${expected}`);
  }
  if (path.split(/[\\/]/).includes('..')) {
    throw new FileError(`${where}: ${at} in ${manifestFile} is ${JSON.stringify(path)}, which leaves the folder of the model; ${expected}`);
  }
  return join(base, path);
}

// --- weight sizes ---------------------------------------------------------------------

/**
 * The byte length of weight spec `spec` as tfjs-core's `decodeWeights` reads it, or the
 * number of values of a string weight (whose length is only known from its data).
 */
function specSize(where: string, spec: unknown, index: number, from: string): number | { strings: number } {
  const at = `weight spec ${index}${spec !== null && typeof spec === 'object' && typeof (spec as { name?: unknown }).name === 'string' ? ` (${JSON.stringify((spec as { name: string }).name)})` : ''} of ${from}`;
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) throw new FileError(`${where}: ${at} is ${describeJSON(spec)}; expected { name, shape, dtype }`);
  const s = spec as { name?: unknown; shape?: unknown; dtype?: unknown; quantization?: unknown };
  if (typeof s.name !== 'string') throw new FileError(`${where}: ${at} has name ${JSON.stringify(s.name)}; expected a string`);
  if (!Array.isArray(s.shape) || !s.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new FileError(`${where}: ${at} has shape ${JSON.stringify(s.shape)}; expected a list of non-negative integers`);
  }
  const size = s.shape.reduce((a: number, d: number) => a * d, 1);
  if (!Number.isSafeInteger(size * 8)) throw new FileError(`${where}: ${at} has shape ${JSON.stringify(s.shape)}, too many values to read`);
  const dtypes = [...Object.keys(DTYPE_BYTES), 'string'];
  if (typeof s.dtype !== 'string' || !dtypes.includes(s.dtype)) {
    throw new FileError(`${where}: ${at} has dtype ${JSON.stringify(s.dtype)}; expected one of ${dtypes.join(', ')}`);
  }
  if ('quantization' in s) {
    const q = s.quantization as { dtype?: unknown; min?: unknown; scale?: unknown } | null;
    if (q === null || typeof q !== 'object' || typeof q.dtype !== 'string' || !(q.dtype in QUANTIZED_BYTES)) {
      throw new FileError(`${where}: ${at} has quantization ${JSON.stringify(q)}; expected { dtype: one of ${Object.keys(QUANTIZED_BYTES).join(', ')}, ... }`);
    }
    if (q.dtype === 'float16' && s.dtype !== 'float32') throw new FileError(`${where}: ${at} is quantized as float16 but has dtype ${s.dtype}; float16 quantization is for float32 weights`);
    if (q.dtype !== 'float16') {
      if (s.dtype !== 'float32' && s.dtype !== 'int32') throw new FileError(`${where}: ${at} is quantized as ${q.dtype} but has dtype ${s.dtype}; ${q.dtype} quantization is for float32 and int32 weights`);
      if (typeof q.min !== 'number' || typeof q.scale !== 'number') throw new FileError(`${where}: ${at} is quantized as ${q.dtype} without numeric min and scale`);
    }
    return size * QUANTIZED_BYTES[q.dtype];
  }
  if (s.dtype === 'string') return { strings: size };
  return size * DTYPE_BYTES[s.dtype];
}

/** Bytes the specs take from the start of `data` (string weights are walked through `data`). */
function measure(where: string, specs: readonly unknown[], sizes: ReadonlyArray<number | { strings: number }>, data: Uint8Array, from: string): number {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  sizes.forEach((size, i) => {
    if (typeof size === 'number') {
      at += size;
      return;
    }
    for (let k = 0; k < size.strings; k++) {
      if (at + STRING_LENGTH_BYTES > data.length) {
        const name = (specs[i] as { name: string }).name;
        throw new FileError(`${where}: the string weight ${JSON.stringify(name)} of ${from} runs past the end of its data (${count(data.length)} bytes, value ${k} of ${size.strings}); the weights are truncated`);
      }
      // tfjs-core writes each length as a Uint32Array element: little-endian on every Node platform.
      at += STRING_LENGTH_BYTES + view.getUint32(at, true);
    }
  });
  return at;
}

// --- bytes ----------------------------------------------------------------------------

function join8(parts: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** An ArrayBuffer holding exactly `bytes` (no copy when it already does). */
function exactBuffer(bytes: Uint8Array): ArrayBuffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
  // Uint8Array's own slice: a Node Buffer's slice() is a view sharing its pool.
  return Uint8Array.prototype.slice.call(bytes).buffer as ArrayBuffer;
}

/**
 * The weight data as one byte array: an ArrayBuffer, or a list of them (tfjs's WeightData).
 * A typed-array view (a Node Buffer, a subarray) counts for exactly its bytes: tfjs-core's
 * CompositeArrayBuffer would take the whole buffer behind it.
 */
function weightBytes(where: string, weightData: unknown): Uint8Array {
  if (weightData == null) return new Uint8Array(0);
  const parts = Array.isArray(weightData) ? weightData : [weightData];
  const bytes = parts.map((p, i) => {
    if (p instanceof ArrayBuffer) return new Uint8Array(p);
    if (ArrayBuffer.isView(p)) return new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
    const at = Array.isArray(weightData) ? `weightData[${i}]` : 'weightData';
    throw new FileError(`${where}: ${at} is ${describeJSON(p)}; expected an ArrayBuffer (or a list of them); nothing was written`);
  });
  if (bytes.length === 1) return bytes[0];
  return join8(bytes, bytes.reduce((a, b) => a + b.length, 0));
}

function describeJSON(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'missing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  const text = JSON.stringify(v);
  return `${typeof v === 'string' ? 'the string' : `the ${typeof v}`} ${text.length > 40 ? `${text.slice(0, 40)}…` : text}`;
}

// --- routing --------------------------------------------------------------------------

type Route = 'save' | 'load';
/** tfjs's router type; it is declared to return a handler, but null means "not mine". */
type IORouter = Parameters<typeof tf.io.registerSaveRouter>[0];
const probing: Record<Route, boolean> = { save: false, load: false };

/**
 * The `file://` router: null for other URLs, and null when another router also handles the
 * URL (tfjs-node registered after this module), so tfjs never finds two handlers.
 */
function router(route: Route): (url: string | string[]) => tf.io.IOHandler | null {
  return (url) => {
    if (probing[route]) return null;
    const ours = Array.isArray(url) ? url.length > 0 && url.every((u) => typeof u === 'string' && u.startsWith(FILE_SCHEME)) : typeof url === 'string' && url.startsWith(FILE_SCHEME);
    if (!ours) return null;
    probing[route] = true;
    let others: number;
    try {
      others = (route === 'save' ? tf.io.getSaveHandlers(url) : tf.io.getLoadHandlers(url)).length;
    } finally {
      probing[route] = false;
    }
    return others > 0 ? null : fileSystem(url);
  };
}

/**
 * Register the `file://` router for saving and for loading, each only when no `file://`
 * handler exists yet (with tfjs-node loaded, its own stays in charge). Returns whether it
 * registered anything: false on a second call. Called when this module is imported.
 */
export function registerFileHandler(): boolean {
  const probe = `${FILE_SCHEME}lora-tfjs-probe`;
  let registered = false;
  if (tf.io.getSaveHandlers(probe).length === 0) {
    tf.io.registerSaveRouter(router('save') as unknown as IORouter);
    registered = true;
  }
  if (tf.io.getLoadHandlers(probe).length === 0) {
    tf.io.registerLoadRouter(router('load') as unknown as IORouter);
    registered = true;
  }
  return registered;
}

registerFileHandler();
