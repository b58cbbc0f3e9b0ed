/**
 * Hostile and careless file-system input (issue 10): reads that never end, bytes that are
 * views into larger buffers, saves into odd places, configs and weights that would load as
 * something silently wrong. Every refusal must be prompt, name the file (or argument), be in
 * the library's words (AdapterLoadError / FileError / Error with the argument), allocate
 * nothing, leave the models exactly as they were (outputs, adapters), leave no file behind
 * (`.tmp-*`, `.old-*`, created folders), and leave tf able to run ops.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  AdapterLoadError,
  LoRAMLP,
  MLP,
  addLoRA,
  adapterNames,
  decodeSafetensors,
  deserializeAdapter,
  encodeSafetensors,
  initBackend,
  loraLayers,
  mlpFromTorchSafetensors,
  mlpToTorchSafetensors,
} from '../../src/index.js';
import {
  FileError,
  MAX_ADAPTER_BYTES,
  MAX_CONFIG_BYTES,
  fileSystem,
  loadAdapter,
  loadAdapters,
  loadLoRAModel,
  saveAdapter,
  saveAdapters,
} from '../../src/node/index.js';
import { MAX_MODEL_JSON_BYTES, MODEL_JSON, WEIGHTS_BIN } from '../../src/node/file-handler.js';
import { trainLike, tree } from '../helpers.js';

const DIMS = [8, 12, 6, 4];
const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** A refusal must come at once: no read of a FIFO, a device or gigabytes. */
const PROMPT_MS = 2000;

let root: string;
let base: MLP;
let model: LoRAMLP;
let layersBase: tfl.LayersModel;
let lora: tfl.LayersModel;
let x: tf.Tensor2D;
let xl: tf.Tensor2D;
/** Saved once: the LoRAMLP's default adapter, the Layers model's adapter, a file:// model. */
let goodDir: string;
let goodLayersDir: string;
let goodModelDir: string;
let tensorsAtStart: number;
let caseNo = 0;

function fresh(label: string): string {
  const dir = join(root, `${++caseNo}-${label.replace(/[^\w.-]+/g, '_')}`);
  mkdirSync(dir);
  return dir;
}

function values(t: tf.Tensor): number[] {
  const v = Array.from(t.dataSync());
  t.dispose();
  return v;
}

/** Everything a refused call must leave as it was. */
function snapshot() {
  const tensors = tf.memory().numTensors;
  return {
    tensors,
    mlp: { names: model.adapterNames(), active: model.activeAdapter, out: values(model.predict(x)) },
    layers: { names: adapterNames(lora), out: values(lora.predict(xl) as tf.Tensor) },
    base: values(layersBase.predict(xl) as tf.Tensor),
  };
}

function tfStillRuns(): void {
  const before = tf.memory().numTensors;
  const v = tf.tidy(() => {
    const a = tf.tensor1d([1, 2, 3]);
    return tf.matMul(a.reshape([1, 3]), a.reshape([3, 1]));
  });
  expect(v.dataSync()[0]).toBe(14);
  v.dispose();
  expect(tf.memory().numTensors).toBe(before);
}

function strays(dir: string): string[] {
  return Object.keys(tree(dir)).filter((k) => /\.tmp-|\.old-/.test(k));
}

type ErrorClass = abstract new (...args: never[]) => Error;

/** `fn` must throw `cls` matching `message` within PROMPT_MS, changing nothing. */
function expectRefused(fn: () => unknown, cls: ErrorClass, message: RegExp | string): Error {
  const before = snapshot();
  const t0 = performance.now();
  try {
    fn();
  } catch (err) {
    return checkRefusal(err, performance.now() - t0, before, cls, message);
  }
  return checkRefusal(undefined, performance.now() - t0, before, cls, message);
}

/** {@link expectRefused} for a promise. */
async function expectRejected(fn: () => Promise<unknown>, cls: ErrorClass, message: RegExp | string): Promise<Error> {
  const before = snapshot();
  const t0 = performance.now();
  try {
    await fn();
  } catch (err) {
    return checkRefusal(err, performance.now() - t0, before, cls, message);
  }
  return checkRefusal(undefined, performance.now() - t0, before, cls, message);
}

function checkRefusal(caught: unknown, took: number, before: ReturnType<typeof snapshot>, cls: ErrorClass, message: RegExp | string): Error {
  expect(caught, `expected a ${cls.name}`).toBeInstanceOf(cls);
  expect((caught as Error).message).toMatch(message);
  expect(took).toBeLessThan(PROMPT_MS);
  expect(snapshot()).toEqual(before);
  tfStillRuns();
  return caught as Error;
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A copy of folder `from` (regular files only) with `file` replaced by `make(path)`. */
function variant(from: string, label: string, file: string, make: (path: string) => void): string {
  const dir = fresh(label);
  for (const f of [ADAPTER_CONFIG, ADAPTER_WEIGHTS, MODEL_JSON, WEIGHTS_BIN]) {
    if (f !== file && existsSync(join(from, f))) writeFileSync(join(dir, f), readFileSync(join(from, f)));
  }
  make(join(dir, file));
  return dir;
}

/** Each entry's kind, size, mode and mtime (not its content: a sparse file is gigabytes). */
function listing(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((e) => {
        const s = lstatSync(join(dir, e));
        return [e, `${s.mode.toString(8)} ${s.size} ${s.mtimeMs}`];
      }),
  );
}

/** Things a reader must never read: each with the words the refusal uses. */
function hostile(limit: number) {
  return [
    { kind: 'a FIFO', make: (p: string) => execFileSync('mkfifo', [p]), words: 'is a FIFO' },
    { kind: 'a link to /dev/zero', make: (p: string) => symlinkSync('/dev/zero', p), words: 'is a device' },
    { kind: 'a folder', make: (p: string) => mkdirSync(p), words: 'is a folder' },
    {
      kind: 'a sparse file over the limit',
      make: (p: string) => {
        writeFileSync(p, '');
        truncateSync(p, limit + 1);
      },
      words: `is ${(limit + 1).toLocaleString('en-US')} bytes`,
    },
  ];
}

beforeAll(async () => {
  await initBackend('wasm');
  tensorsAtStart = tf.memory().numTensors;
  root = mkdtempSync(join(tmpdir(), 'lora-robust-files-'));
  base = new MLP(DIMS, { seed: 2 });
  model = LoRAMLP.fromBase(base, { rank: 2, alpha: 4, seed: 1 });
  model.addAdapter('task_B', { rank: 1, seed: 2 });
  trainLike(model, 'default', 1);
  trainLike(model, 'task_B', 2);
  model.setActiveAdapter('default');
  x = tf.randomNormal([5, DIMS[0]], 0, 1, 'float32', 3) as tf.Tensor2D;

  layersBase = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [4], units: 6, activation: 'relu', name: 'hidden', kernelInitializer: tfl.initializers.glorotNormal({ seed: 1 }) }),
      tfl.layers.dense({ units: 3, name: 'head', kernelInitializer: tfl.initializers.glorotNormal({ seed: 2 }) }),
    ],
  });
  lora = addLoRA(layersBase, { targetModules: ['hidden'], rank: 2, alpha: 4 });
  let seed = 5;
  for (const { layer } of loraLayers(lora)) {
    for (const v of layer.adapterVariables('default')) {
      const r = tf.randomNormal(v.shape as number[], 0, 0.3, 'float32', seed++);
      v.write(r);
      r.dispose();
    }
  }
  xl = tf.randomNormal([5, 4], 0, 1, 'float32', 4) as tf.Tensor2D;

  goodDir = join(root, 'good');
  saveAdapter(model, goodDir, { adapterName: 'default' });
  goodLayersDir = join(root, 'good-layers');
  saveAdapter(lora, goodLayersDir);
  goodModelDir = join(root, 'good-model');
  await layersBase.save(`file://${goodModelDir}`);
});

afterEach(() => {
  expect(strays(root)).toEqual([]);
  tfStillRuns();
});

afterAll(() => {
  tf.dispose([x, xl]);
  model.dispose();
  base.dispose();
  lora.dispose();
  layersBase.dispose();
  rmSync(root, { recursive: true, force: true });
  expect(tf.memory().numTensors).toBe(tensorsAtStart);
});

// ---- 1. reads that never end ---------------------------------------------------------------

describe('reads that never end are refused at once, naming the file', () => {
  for (const file of [ADAPTER_CONFIG, ADAPTER_WEIGHTS]) {
    const limit = file === ADAPTER_CONFIG ? MAX_CONFIG_BYTES : MAX_ADAPTER_BYTES;
    for (const { kind, make, words } of hostile(limit)) {
      it(`${file} is ${kind}: loadAdapter, loadAdapters and loadLoRAModel refuse it promptly`, () => {
        const dir = variant(goodDir, `${file}-${kind}`, file, make);
        const layersDir = variant(goodLayersDir, `layers-${file}-${kind}`, file, make);
        try {
          const named = new RegExp(`^loadAdapter: ${esc(join(dir, file))} ${esc(words)}`);
          const before = listing(dir);
          expectRefused(() => loadAdapter(model, dir), AdapterLoadError, named);
          expectRefused(() => loadAdapter(model, dir, { adapterName: 'other' }), AdapterLoadError, named);
          expectRefused(() => loadAdapters(model, dir), AdapterLoadError, named);
          expectRefused(() => loadAdapter(lora, layersDir), AdapterLoadError, new RegExp(`${esc(join(layersDir, file))} ${esc(words)}`));
          let made: tfl.LayersModel | undefined;
          expectRefused(() => (made = loadLoRAModel(layersBase, layersDir)), AdapterLoadError, new RegExp(`${esc(join(layersDir, file))} ${esc(words)}`));
          expect(made).toBeUndefined();
          expect(listing(dir)).toEqual(before);
        } finally {
          rmSync(dir, { recursive: true, force: true });
          rmSync(layersDir, { recursive: true, force: true });
        }
      });
    }
  }

  it('the adapter folder itself is a FIFO, a link to /dev/zero or a file: refused, naming it', () => {
    const dir = fresh('dir-itself');
    const cases: Array<[string, (p: string) => void, string]> = [
      ['fifo', (p) => execFileSync('mkfifo', [p]), 'is a FIFO; expected the folder that holds adapter_config.json'],
      ['zero', (p) => symlinkSync('/dev/zero', p), 'is a device; expected the folder'],
      ['file', (p) => writeFileSync(p, '{}'), 'is a file; expected the folder'],
    ];
    for (const [name, make, words] of cases) {
      const p = join(dir, name);
      make(p);
      const message = new RegExp(`^loadAdapter: ${esc(p)} ${esc(words)}`);
      expectRefused(() => loadAdapter(model, p), AdapterLoadError, message);
      expectRefused(() => loadAdapters(model, p), AdapterLoadError, message);
      expectRefused(() => loadLoRAModel(layersBase, p), AdapterLoadError, message);
    }
    expectRefused(() => loadAdapter(model, ''), AdapterLoadError, 'loadAdapter: dir = "" is invalid; expected a folder path');
    expectRefused(() => loadAdapters(model, ''), AdapterLoadError, 'loadAdapter: dir = "" is invalid; expected a folder path');
    expectRefused(() => loadAdapter(model, 42 as never), AdapterLoadError, 'loadAdapter: dir = 42 is invalid; expected a folder path');
    rmSync(dir, { recursive: true, force: true });
  });

  for (const file of [MODEL_JSON, WEIGHTS_BIN]) {
    const limit = file === MODEL_JSON ? MAX_MODEL_JSON_BYTES : 2 ** 31 - 1;
    for (const { kind, make, words } of hostile(limit)) {
      it(`file:// ${file} is ${kind}: tf.loadLayersModel rejects promptly, naming the file`, async () => {
        const dir = variant(goodModelDir, `model-${file}-${kind}`, file, make);
        try {
          const before = listing(dir);
          let loaded: tfl.LayersModel | undefined;
          await expectRejected(async () => (loaded = await tfl.loadLayersModel(`file://${join(dir, MODEL_JSON)}`)), FileError, new RegExp(`^fileSystem\\.load: (the weights file )?${esc(join(dir, file))} ${esc(words)}`));
          expect(loaded).toBeUndefined();
          expect(listing(dir)).toEqual(before);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });
    }
  }

  it("file:// binary form [topology.pb, weights-manifest.json] with a FIFO or /dev/zero: rejected promptly", async () => {
    const dir = fresh('binary');
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify([{ paths: ['w.bin'], weights: [] }]));
    execFileSync('mkfifo', [join(dir, 'topology.pb')]);
    await expectRejected(() => fileSystem([join(dir, 'topology.pb'), join(dir, 'manifest.json')]).load!(), FileError, new RegExp(`${esc(join(dir, 'topology.pb'))} is a FIFO`));
    symlinkSync('/dev/zero', join(dir, 'zero.json'));
    writeFileSync(join(dir, 'topology2.pb'), 'x');
    await expectRejected(() => fileSystem([join(dir, 'topology2.pb'), join(dir, 'zero.json')]).load!(), FileError, new RegExp(`${esc(join(dir, 'zero.json'))} is a device`));
    rmSync(dir, { recursive: true, force: true });
  });
});

// ---- 2. bytes that are views into larger buffers ---------------------------------------------

/** `bytes` inside a larger pooled Buffer, garbage on both sides. */
function inPool(bytes: Uint8Array, before = 13, after = 29): Buffer {
  const pool = Buffer.alloc(before + bytes.length + after, 0xa5);
  pool.set(bytes, before);
  return pool.subarray(before, before + bytes.length);
}

describe('bytes given as views (Node Buffers, subarrays) count for exactly their bytes', () => {
  it('deserializeAdapter with the weights file as a Buffer view loads the same adapter', () => {
    const weights = inPool(new Uint8Array(readFileSync(join(goodDir, ADAPTER_WEIGHTS))));
    expect(weights.byteOffset).not.toBe(0);
    const config = readFileSync(join(goodDir, ADAPTER_CONFIG), 'utf8');
    const tensors = tf.memory().numTensors;
    const copy = LoRAMLP.fromBase(base, { noAdapter: true });
    expect(deserializeAdapter(copy, { weights, config }, { adapterName: 'viewed' })).toBe('viewed');
    copy.setActiveAdapter('viewed');
    expect(values(copy.predict(x))).toEqual(values(model.predict(x)));
    copy.dispose();
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it('mlpFromTorchSafetensors with a Buffer view reads the same weights', () => {
    const bytes = inPool(mlpToTorchSafetensors(base), 7, 41);
    const back = mlpFromTorchSafetensors(bytes);
    expect(values(back.predict(x))).toEqual(values(base.predict(x)));
    back.dispose();
  });

  it('file:// save with weightData as a Buffer view writes exactly the view; it loads back', async () => {
    const dir = fresh('weight-view');
    const data = new Float32Array([1.5, -2, 3.25, 4, 0.5, -6]);
    const view = inPool(new Uint8Array(data.buffer), 16, 40);
    const artifacts = {
      modelTopology: { note: 'not a layers model' },
      weightSpecs: [{ name: 'w', shape: [2, 3], dtype: 'float32' as const }],
      weightData: view as unknown as ArrayBuffer,
    };
    await fileSystem(dir).save!(artifacts);
    expect(Array.from(new Float32Array(new Uint8Array(readFileSync(join(dir, WEIGHTS_BIN))).buffer))).toEqual(Array.from(data));
    const loaded = await fileSystem(join(dir, MODEL_JSON)).load!();
    expect(Array.from(new Float32Array(loaded.weightData as ArrayBuffer))).toEqual(Array.from(data));
    await expect(fileSystem(dir).save!({ ...artifacts, weightData: [1, 2] as unknown as ArrayBuffer })).rejects.toThrow(/fileSystem\.save: weightData\[0\] is the number 1; expected an ArrayBuffer \(or a list of them\); nothing was written/);
    expect(Array.from(new Float32Array(new Uint8Array(readFileSync(join(dir, WEIGHTS_BIN))).buffer))).toEqual(Array.from(data));
  });
});

// ---- 3. saving into odd places ---------------------------------------------------------------

function without(t: Record<string, string>, ...names: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(t).filter(([k]) => !names.includes(k)));
}

function inFolder<T>(dir: string, fn: () => T): T {
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    return fn();
  } finally {
    process.chdir(cwd);
  }
}

describe('saving into odd places: it works or refuses in words, all or nothing, nothing left behind', () => {
  it('dir = "": refused as an argument, nothing created in the working folder', async () => {
    const dir = fresh('empty-arg');
    const before = tree(dir);
    inFolder(dir, () => {
      expectRefused(() => saveAdapter(model, ''), Error, /^saveAdapter: dir = "" is invalid; expected a folder path$/);
      expectRefused(() => saveAdapters(model, ''), Error, /^saveAdapters: dir = "" is invalid; expected a folder path$/);
      expectRefused(() => saveAdapter(model, undefined as never), Error, /^saveAdapter: dir = undefined is invalid; expected a folder path$/);
      expectRefused(() => saveAdapter(model, 'a\0b'), Error, /^saveAdapter: dir = "a\\u0000b" is invalid; expected a folder path$/);
    });
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      await expectRejected(() => layersBase.save('file://'), Error, /^fileSystem: path = "file:\/\/" is invalid; expected a folder path/);
    } finally {
      process.chdir(cwd);
    }
    expect(tree(dir)).toEqual(before);
  });

  it('dir = ".": a legitimate folder; only the two files are written, subfolders and other files stay', async () => {
    const dir = fresh('dot');
    mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true });
    writeFileSync(join(dir, 'sub', 'deeper', 'keep.bin'), new Uint8Array([1, 2, 3]));
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    const before = tree(dir);
    inFolder(dir, () => saveAdapter(model, '.'));
    expect(without(tree(dir), ADAPTER_CONFIG, ADAPTER_WEIGHTS)).toEqual(before);
    expect(readFileSync(join(dir, ADAPTER_WEIGHTS))).toEqual(readFileSync(join(goodDir, ADAPTER_WEIGHTS)));
    const copy = LoRAMLP.fromBase(base, { noAdapter: true });
    expect(inFolder(dir, () => loadAdapter(copy, '.'))).toBe('default');
    expect(values(copy.predict(x))).toEqual(values(model.predict(x)));
    copy.dispose();
    // saveAdapters('.'): default in ".", task_B in "./task_B".
    expect(inFolder(dir, () => saveAdapters(model, '.'))).toEqual({ default: '.', task_B: 'task_B' });
    expect(Object.keys(without(tree(dir), ADAPTER_CONFIG, ADAPTER_WEIGHTS, 'task_B', `task_B/${ADAPTER_CONFIG}`, `task_B/${ADAPTER_WEIGHTS}`))).toEqual(Object.keys(before));
    // file:// with ".": model.json and weights.bin only.
    const m = fresh('dot-model');
    const cwd = process.cwd();
    process.chdir(m);
    try {
      await layersBase.save('file://.');
    } finally {
      process.chdir(cwd);
    }
    expect(Object.keys(tree(m))).toEqual([MODEL_JSON, WEIGHTS_BIN]);
  });

  it('a file where the folder goes, or in its path: FileError naming it, the file untouched', async () => {
    const dir = fresh('file-as-dir');
    const file = join(dir, 'a-file');
    writeFileSync(file, 'precious');
    const before = tree(dir);
    expectRefused(() => saveAdapter(model, file), FileError, `saveAdapter: cannot write into ${file}: it is a file, not a folder; nothing was written`);
    expectRefused(() => saveAdapters(model, file), FileError, `saveAdapters: cannot write into ${file}: it is a file, not a folder; nothing was written`);
    expectRefused(() => saveAdapter(model, join(file, 'below')), FileError, `saveAdapter: cannot create the folder ${join(file, 'below')}: a part of the path is a file, not a folder (ENOTDIR); nothing was written`);
    await expectRejected(() => layersBase.save(`file://${file}`), FileError, `fileSystem.save: cannot write into ${file}: it is a file, not a folder; nothing was written`);
    await expectRejected(() => layersBase.save(`file://${join(file, 'x', 'y')}`), FileError, /^fileSystem\.save: cannot create the folder .*a-file\/x\/y \(at .*a-file\/x\): a part of the path is a file, not a folder \(ENOTDIR\); nothing was written$/);
    expect(tree(dir)).toEqual(before);
  });

  for (const file of [ADAPTER_WEIGHTS, ADAPTER_CONFIG]) {
    it(`${file} is a folder: refused before either file is written; the folder and its content stay`, () => {
      const dir = fresh(`${file}-folder`);
      mkdirSync(join(dir, file));
      writeFileSync(join(dir, file, 'inside.txt'), 'kept');
      const before = tree(dir);
      expectRefused(() => saveAdapter(model, dir), FileError, `saveAdapter: cannot write ${join(dir, file)}: it is a folder; remove it or choose another folder; nothing was written`);
      expectRefused(() => saveAdapters(model, dir), FileError, `saveAdapters: cannot write ${join(dir, file)}: it is a folder; remove it or choose another folder; nothing was written`);
      expect(tree(dir)).toEqual(before);
    });
  }

  for (const file of [WEIGHTS_BIN, MODEL_JSON]) {
    it(`file:// save where ${file} is a folder: rejected, nothing written`, async () => {
      const dir = fresh(`model-${file}-folder`);
      mkdirSync(join(dir, file));
      const before = tree(dir);
      await expectRejected(() => layersBase.save(`file://${dir}`), FileError, `fileSystem.save: cannot write ${join(dir, file)}: it is a folder; remove it or choose another folder; nothing was written`);
      expect(tree(dir)).toEqual(before);
    });
  }

  it('saveAdapters is all or nothing: a blocked adapter subfolder means no adapter is written', () => {
    const dir = fresh('multi-blocked');
    writeFileSync(join(dir, 'task_B'), 'a file where the task_B folder goes');
    const before = tree(dir);
    expectRefused(() => saveAdapters(model, dir), FileError, `saveAdapters: cannot write into ${join(dir, 'task_B')}: it is a file, not a folder; nothing was written`);
    expect(tree(dir)).toEqual(before);
  });

  it('a symlinked folder stays a link; the files go into its target, whose other content stays', async () => {
    const dir = fresh('symlinked');
    const real = join(dir, 'real');
    mkdirSync(join(real, 'sub'), { recursive: true });
    writeFileSync(join(real, 'sub', 'keep.txt'), 'kept');
    const link = join(dir, 'link');
    symlinkSync(real, link);
    const before = tree(real);
    saveAdapter(model, link);
    saveAdapters(model, link);
    await layersBase.save(`file://${link}`);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(tree(dir).link).toBe(`link -> ${real}`);
    const after = tree(real);
    const ours = [ADAPTER_CONFIG, ADAPTER_WEIGHTS, MODEL_JSON, WEIGHTS_BIN, 'task_B', `task_B/${ADAPTER_CONFIG}`, `task_B/${ADAPTER_WEIGHTS}`];
    expect(without(after, ...ours)).toEqual(before);
    expect(Object.keys(after).sort()).toEqual([...Object.keys(before), ...ours].sort());
    const copy = LoRAMLP.fromBase(base, { noAdapter: true });
    expect(loadAdapters(copy, link).sort()).toEqual(['default', 'task_B']);
    copy.setActiveAdapter('default');
    expect(values(copy.predict(x))).toEqual(values(model.predict(x)));
    copy.dispose();
    // A link to nothing: refused, the link left as it was.
    const dangling = join(dir, 'dangling');
    symlinkSync(join(dir, 'nowhere'), dangling);
    expectRefused(() => saveAdapter(model, dangling), FileError, `saveAdapter: cannot write into ${dangling}: it is a symbolic link to ${join(dir, 'nowhere')}, which does not exist; nothing was written`);
    expect(tree(dir).dangling).toBe(`link -> ${join(dir, 'nowhere')}`);
    expect(existsSync(join(dir, 'nowhere'))).toBe(false);
  });

  it("existing subfolders (PEFT's other adapters, anything else) survive every save", async () => {
    const dir = fresh('subfolders');
    saveAdapters(model, dir, { names: ['task_B'] });
    mkdirSync(join(dir, 'empty'));
    mkdirSync(join(dir, 'data', 'deeper'), { recursive: true });
    writeFileSync(join(dir, 'data', 'deeper', 'keep.bin'), new Uint8Array([9, 8, 7]));
    const before = tree(dir);
    saveAdapter(model, dir);
    saveAdapter(model, dir, { adapterName: 'task_B' });
    await layersBase.save(`file://${dir}`);
    expect(without(tree(dir), ADAPTER_CONFIG, ADAPTER_WEIGHTS, MODEL_JSON, WEIGHTS_BIN)).toEqual(before);
  });

  it('a folder that cannot be created (under /proc) is refused at once, not retried forever', async () => {
    // Node's recursive mkdir loops forever where a parent cannot be created (e.g. under /proc).
    expect(existsSync('/proc/self'), 'this test needs Linux /proc').toBe(true);
    const target = '/proc/lora-tfjs-no-such/adapter';
    expectRefused(() => saveAdapter(model, target), FileError, `saveAdapter: cannot create the folder ${target} (at /proc/lora-tfjs-no-such): no such file or folder (ENOENT); nothing was written`);
    expectRefused(() => saveAdapters(model, target), FileError, /^saveAdapters: cannot create the folder .*\(ENOENT\); nothing was written$/);
    await expectRejected(() => layersBase.save(`file://${target}`), FileError, /^fileSystem\.save: cannot create the folder .*\(ENOENT\); nothing was written$/);
    expect(existsSync('/proc/lora-tfjs-no-such')).toBe(false);
  });

  it('a read-only folder: refused with EACCES, nothing written, no temporary file or folder left (as a user who cannot write)', async () => {
    const ro = fresh('read-only');
    writeFileSync(join(ro, 'old.txt'), 'old');
    chmodSync(ro, 0o555);
    const multi = fresh('multi-read-only-sub');
    mkdirSync(join(multi, 'task_B'));
    writeFileSync(join(multi, 'task_B', 'keep.txt'), 'keep');
    chmodSync(join(multi, 'task_B'), 0o555);
    chmodSync(multi, 0o777);
    const before = { ro: tree(ro), multi: tree(multi) };
    try {
      const expected = {
        saveAdapter: `saveAdapter: cannot write into ${ro}: permission denied (EACCES); nothing was written`,
        saveAdapters: `saveAdapters: cannot write into ${join(multi, 'task_B')}: permission denied (EACCES); nothing was written`,
        fileSave: `fileSystem.save: cannot write into ${ro}: permission denied (EACCES); nothing was written`,
      };
      if (process.getuid?.() !== 0) {
        expectRefused(() => saveAdapter(model, ro), FileError, expected.saveAdapter);
        expectRefused(() => saveAdapters(model, multi), FileError, expected.saveAdapters);
        await expectRejected(() => fileSystem(ro).save!({ modelTopology: {}, weightSpecs: [], weightData: new ArrayBuffer(0) }), FileError, expected.fileSave);
      } else {
        // Root is not denied by permission bits: a save into a 0o555 folder succeeds (and
        // only writes its files). The refusal is checked in a child process that setpriv
        // strips of CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, to which permission bits apply.
        const asRoot = fresh('read-only-as-root');
        writeFileSync(join(asRoot, 'old.txt'), 'old');
        chmodSync(asRoot, 0o555);
        const rootBefore = tree(asRoot);
        saveAdapter(model, asRoot);
        expect(without(tree(asRoot), ADAPTER_CONFIG, ADAPTER_WEIGHTS)).toEqual(rootBefore);
        chmodSync(asRoot, 0o755);
        const setpriv = spawnSync('setpriv', ['--version']);
        expect(setpriv.error, 'running as root: setpriv is needed to test a folder this user cannot write').toBeUndefined();
        chmodSync(root, 0o755); // the child reads its script from here
        const script = join(root, 'as-nobody.mts');
        writeFileSync(
          script,
          `const lib = { ...(await import(${JSON.stringify(join(REPO, 'src', 'index.ts'))})), ...(await import(${JSON.stringify(join(REPO, 'src', 'node', 'index.ts'))})) };
await lib.initBackend('cpu');
const m = new lib.LoRAMLP([4, 3], { rank: 1 });
m.addAdapter('task_B', { rank: 1 });
const out = {};
const run = async (k, f) => { try { await f(); out[k] = 'ok'; } catch (e) { out[k] = { name: e.name, message: e.message }; } };
await run('saveAdapter', () => lib.saveAdapter(m, ${JSON.stringify(ro)}));
await run('saveAdapters', () => lib.saveAdapters(m, ${JSON.stringify(multi)}));
await run('fileSave', () => lib.fileSystem(${JSON.stringify(ro)}).save({ modelTopology: {}, weightSpecs: [], weightData: new ArrayBuffer(0) }));
console.log('RESULT ' + JSON.stringify(out));
`,
        );
        // Still root (so it reads the checkout wherever CI cloned it), but without the
        // capabilities that let root ignore permission bits.
        const child = spawnSync('setpriv', ['--bounding-set=-dac_override,-dac_read_search', '--', process.execPath, '--import', 'tsx', script], {
          cwd: REPO,
          encoding: 'utf8',
          timeout: 60_000,
          env: { ...process.env, HOME: tmpdir() },
        });
        const line = child.stdout.split('\n').find((l) => l.startsWith('RESULT '));
        expect(line, `child failed: ${child.stderr.slice(0, 2000)}`).toBeDefined();
        const got = JSON.parse(line!.slice('RESULT '.length));
        for (const [k, message] of Object.entries(expected)) expect(got[k], k).toEqual({ name: 'FileError', message });
        rmSync(script);
      }
      expect({ ro: tree(ro), multi: tree(multi) }).toEqual(before);
    } finally {
      chmodSync(ro, 0o755);
      chmodSync(join(multi, 'task_B'), 0o755);
    }
  });
});

// ---- 5. configs and weights that would load as something silently wrong ----------------------

/** A copy of `from` whose adapter_config.json is edited (as raw text when `edit` returns a string). */
function withConfig(from: string, label: string, edit: (c: Record<string, unknown>) => void | string): string {
  const dir = fresh(label);
  writeFileSync(join(dir, ADAPTER_WEIGHTS), readFileSync(join(from, ADAPTER_WEIGHTS)));
  const config = JSON.parse(readFileSync(join(from, ADAPTER_CONFIG), 'utf8'));
  const text = edit(config);
  writeFileSync(join(dir, ADAPTER_CONFIG), typeof text === 'string' ? text : JSON.stringify(config));
  return dir;
}

/** A copy of `from` whose weights are edited (same metadata, so the pair still belongs together). */
function withWeights(from: string, label: string, edit: (tensors: Map<string, { shape: number[]; data: Float32Array }>) => void): string {
  const dir = fresh(label);
  writeFileSync(join(dir, ADAPTER_CONFIG), readFileSync(join(from, ADAPTER_CONFIG)));
  const { tensors, metadata } = decodeSafetensors(readFileSync(join(from, ADAPTER_WEIGHTS)));
  edit(tensors);
  writeFileSync(join(dir, ADAPTER_WEIGHTS), encodeSafetensors(Object.fromEntries([...tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data }])), metadata));
  return dir;
}

describe('configs and weights that would load as something silently wrong are refused, naming file and field', () => {
  const scale = 'is a finite, non-zero float32 (between about 1.2e-38 and 3.4e38)';
  const configCases: Array<[string, (c: Record<string, unknown>) => void | string, string | RegExp]> = [
    ['lora_alpha = 1e308 (alpha / r overflows float32)', (c) => void (c.lora_alpha = 1e308), `adapter_config.json: lora_alpha = 1e+308 is invalid; expected a value whose scale lora_alpha / r (5e+307 for fc1, where r = 2) ${scale}`],
    ['lora_alpha = 1e-300 (alpha / r is 0 in float32)', (c) => void (c.lora_alpha = 1e-300), `adapter_config.json: lora_alpha = 1e-300 is invalid; expected a value whose scale lora_alpha / r (5e-301 for fc1, where r = 2) ${scale}`],
    ['use_rslora with lora_alpha = 1e39', (c) => void Object.assign(c, { use_rslora: true, lora_alpha: 1e39 }), /adapter_config\.json: lora_alpha = 1e\+39 is invalid; expected a value whose scale lora_alpha \/ √r \(7\.07\d*e\+38 for fc1, where r = 2\)/],
    ['alpha_pattern overflowing for one layer', (c) => void (c.alpha_pattern = { fc2: 1e300 }), `adapter_config.json: alpha_pattern["fc2"] = 1e+300 is invalid; expected a value whose scale alpha_pattern["fc2"] / r (5e+299 for fc2, where r = 2) ${scale}`],
    ['lora_alpha = 1e999 in the JSON text (parses as Infinity)', (c) => JSON.stringify(c).replace(/"lora_alpha":\s*[\d.e+-]+/, '"lora_alpha": 1e999'), 'adapter_config.json: lora_alpha = Infinity is invalid; expected a finite number > 0'],
    ['lora_alpha = "Infinity"', (c) => void (c.lora_alpha = 'Infinity'), 'adapter_config.json: lora_alpha = "Infinity" is invalid; expected a finite number > 0'],
    ['lora_alpha = "NaN"', (c) => void (c.lora_alpha = 'NaN'), 'adapter_config.json: lora_alpha = "NaN" is invalid; expected a finite number > 0'],
    ['lora_alpha = -4', (c) => void (c.lora_alpha = -4), 'adapter_config.json: lora_alpha = -4 is invalid; expected a finite number > 0'],
    ['lora_alpha = null', (c) => void (c.lora_alpha = null), 'adapter_config.json: lora_alpha = null is invalid; expected a finite number > 0'],
    ['r = 0', (c) => void (c.r = 0), 'adapter_config.json: r = 0 is invalid; expected a positive integer'],
    ['r = -2', (c) => void (c.r = -2), 'adapter_config.json: r = -2 is invalid; expected a positive integer'],
    ['r = 2.5', (c) => void (c.r = 2.5), 'adapter_config.json: r = 2.5 is invalid; expected a positive integer'],
    ['r = "NaN"', (c) => void (c.r = 'NaN'), 'adapter_config.json: r = "NaN" is invalid; expected a positive integer'],
    ['r = "2" (a string)', (c) => void (c.r = '2'), 'adapter_config.json: r = "2" is invalid; expected a positive integer'],
    ['r = 1e9 (nothing allocated: the file does not hold that rank)', (c) => void Object.assign(c, { r: 1e9, rank_pattern: {} }), 'fc1.lora_A.weight has shape [2, 8] but the model\'s fc1 (8 → 12) at r = 1000000000 needs [1000000000, 8]'],
    ['rank_pattern = 0', (c) => void (c.rank_pattern = { fc1: 0 }), 'adapter_config.json: rank_pattern["fc1"] = 0 is invalid; expected a positive integer'],
  ];
  for (const [what, edit, message] of configCases) {
    it(what, () => {
      const dir = withConfig(goodDir, what, edit);
      const named = typeof message === 'string' ? `loadAdapter: ${dir}: ${message}` : new RegExp(`^loadAdapter: ${esc(dir)}: ${message.source}`);
      expectRefused(() => loadAdapter(model, dir, { verifyPair: false }), AdapterLoadError, named);
      expectRefused(() => loadAdapter(model, dir, { verifyPair: false, adapterName: 'task_B' }), AdapterLoadError, named);
      // Without verifyPair: false, the edited config no longer matches the weights' digest.
      expectRefused(() => loadAdapter(model, dir), AdapterLoadError, /adapter_model\.safetensors and adapter_config\.json do not belong together|is invalid/);
    });
  }

  it('the same configs on a Layers model: loadAdapter and loadLoRAModel refuse, naming the field', () => {
    const dir = withConfig(goodLayersDir, 'layers-alpha', (c) => void (c.lora_alpha = 1e308));
    const message = `loadAdapter: ${dir}: adapter_config.json: lora_alpha = 1e+308 is invalid; expected a value whose scale lora_alpha / r (5e+307 for hidden, where r = 2) ${scale}`;
    expectRefused(() => loadAdapter(lora, dir, { verifyPair: false }), AdapterLoadError, message);
    expectRefused(() => loadLoRAModel(layersBase, dir, { verifyPair: false }), AdapterLoadError, message);
    const r0 = withConfig(goodLayersDir, 'layers-r0', (c) => void (c.r = 0));
    expectRefused(() => loadLoRAModel(layersBase, r0, { verifyPair: false }), AdapterLoadError, `loadAdapter: ${r0}: adapter_config.json: r = 0 is invalid; expected a positive integer`);
  });

  const weightCases: Array<[string, number, string]> = [
    ['NaN in lora_A', Number.NaN, 'fc2.lora_A.weight: tensor values are not all finite: 1 of 24 are NaN or ±Infinity (the first, at index 3, is NaN); expected finite values'],
    ['Infinity in lora_A', Number.POSITIVE_INFINITY, 'fc2.lora_A.weight: tensor values are not all finite: 1 of 24 are NaN or ±Infinity (the first, at index 3, is Infinity); expected finite values'],
  ];
  for (const [what, value, message] of weightCases) {
    it(`${what}: refused, naming the file and tensor; the model unchanged`, () => {
      const dir = withWeights(goodDir, what, (t) => void (t.get('base_model.model.fc2.lora_A.weight')!.data[3] = value));
      expectRefused(() => loadAdapter(model, dir), AdapterLoadError, `loadAdapter: ${dir}: adapter_model.safetensors: ${message}`);
      expectRefused(() => loadAdapters(model, dir), AdapterLoadError, `loadAdapter: ${dir}: adapter_model.safetensors: ${message}`);
    });
  }

  it('-Infinity in lora_B of a Layers adapter: loadAdapter and loadLoRAModel refuse it', () => {
    const dir = withWeights(goodLayersDir, 'layers-inf', (t) => void (t.get('base_model.model.hidden.lora_B.weight')!.data.fill(Number.NEGATIVE_INFINITY)));
    const message = `loadAdapter: ${dir}: adapter_model.safetensors: hidden.lora_B.weight: tensor values are not all finite: 12 of 12 are NaN or ±Infinity (the first, at index 0, is -Infinity); expected finite values`;
    expectRefused(() => loadAdapter(lora, dir), AdapterLoadError, message);
    expectRefused(() => loadLoRAModel(layersBase, dir), AdapterLoadError, message);
  });

  it('F64 weights beyond float32 (they would become Infinity): refused, saying why', () => {
    const dir = fresh('f64-huge');
    writeFileSync(join(dir, ADAPTER_CONFIG), readFileSync(join(goodDir, ADAPTER_CONFIG)));
    const { tensors, metadata } = decodeSafetensors(readFileSync(join(goodDir, ADAPTER_WEIGHTS)));
    // Re-encode by hand with fc1.lora_B.weight as F64 holding 1e300.
    const names = [...tensors.keys()].sort();
    const header: Record<string, unknown> = { __metadata__: metadata };
    const chunks: Uint8Array[] = [];
    let at = 0;
    for (const n of names) {
      const t = tensors.get(n)!;
      let bytes: Uint8Array;
      if (n === 'base_model.model.fc1.lora_B.weight') {
        const f64 = new Float64Array(t.data);
        f64[5] = 1e300;
        bytes = new Uint8Array(f64.buffer);
        header[n] = { dtype: 'F64', shape: t.shape, data_offsets: [at, at + bytes.length] };
      } else {
        bytes = new Uint8Array(t.data.buffer.slice(0));
        header[n] = { dtype: 'F32', shape: t.shape, data_offsets: [at, at + bytes.length] };
      }
      chunks.push(bytes);
      at += bytes.length;
    }
    const h = new TextEncoder().encode(JSON.stringify(header));
    const file = new Uint8Array(8 + h.length + at);
    new DataView(file.buffer).setBigUint64(0, BigInt(h.length), true);
    file.set(h, 8);
    let o = 8 + h.length;
    for (const c of chunks) {
      file.set(c, o);
      o += c.length;
    }
    writeFileSync(join(dir, ADAPTER_WEIGHTS), file);
    expectRefused(() => loadAdapter(model, dir), AdapterLoadError, `loadAdapter: ${dir}: adapter_model.safetensors: fc1.lora_B.weight: tensor values are not all finite: 1 of 24 are NaN or ±Infinity (the first, at index 5, is Infinity); F64 values beyond float32's range become ±Infinity; expected finite values`);
  });

  it('a base network with a non-finite weight (mlpFromTorchSafetensors): refused, nothing allocated', () => {
    const { tensors } = decodeSafetensors(mlpToTorchSafetensors(base));
    tensors.get('fc2.bias')!.data[1] = Number.NaN;
    const bytes = encodeSafetensors(Object.fromEntries([...tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data }])));
    expectRefused(() => mlpFromTorchSafetensors(bytes), Error, 'mlpFromTorchSafetensors: fc2.bias = a tensor of shape [6] holding NaN at index 1 is invalid; expected finite values');
  });
});
