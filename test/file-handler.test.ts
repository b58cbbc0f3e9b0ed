import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/index.js';
import { FileError, fileSystem, registerFileHandler } from '../src/node/index.js';
import { MAX_MODEL_JSON_BYTES } from '../src/node/file-handler.js';
import { expectNoLeak, tree } from './helpers.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');

let root: string;
let counter = 0;
/** A fresh folder path under the suite's temporary folder (not created). */
const fresh = (name: string): string => join(root, `${++counter}-${name}`);
const url = (dir: string): string => `file://${dir}`;
const modelUrl = (dir: string): string => `file://${join(dir, 'model.json')}`;

function sequential(units = 3): tf.Sequential {
  return tf.sequential({
    layers: [tf.layers.dense({ units: 5, inputShape: [4], activation: 'relu' }), tf.layers.dense({ units })],
  });
}

function twoInputs(): tf.LayersModel {
  const a = tf.input({ shape: [3], name: 'a' });
  const b = tf.input({ shape: [2], name: 'b' });
  const h = tf.layers.dense({ units: 4, activation: 'tanh' }).apply(a) as tf.SymbolicTensor;
  const joined = tf.layers.concatenate().apply([h, b]) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 2 }).apply(joined) as tf.SymbolicTensor;
  return tf.model({ inputs: [a, b], outputs: out });
}

/** The model's output values on `inputs`, every tensor freed. */
function outputs(model: tf.LayersModel, inputs: tf.Tensor | tf.Tensor[]): number[] {
  const y = model.predict(inputs) as tf.Tensor;
  const v = Array.from(y.dataSync());
  y.dispose();
  return v;
}

/** What `model.save` hands an IO handler. */
async function artifactsOf(model: tf.LayersModel, config?: tf.io.SaveConfig): Promise<tf.io.ModelArtifacts> {
  let captured: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      captured = a;
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(a) };
    }),
    config,
  );
  return captured!;
}

const readJSON = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf8'));

/** Saves a small model to a new folder; returns the folder and the model's outputs on `x`. */
async function savedModel(name: string): Promise<{ dir: string; expected: number[] }> {
  const dir = fresh(name);
  const model = sequential();
  const x = tf.tensor2d([[1, -2, 3, 0.5]]);
  await model.save(url(dir));
  const expected = outputs(model, x);
  x.dispose();
  model.dispose();
  return { dir, expected };
}

async function loadedOutputs(dir: string): Promise<number[]> {
  const loaded = await tf.loadLayersModel(modelUrl(dir));
  const x = tf.tensor2d([[1, -2, 3, 0.5]]);
  const v = outputs(loaded, x);
  x.dispose();
  loaded.dispose();
  return v;
}

beforeAll(async () => {
  await initBackend();
  root = mkdtempSync(join(tmpdir(), 'lora-file-handler-'));
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('file:// round trips', () => {
  it('a sequential model: same outputs, exactly', async () => {
    await expectNoLeak(async () => {
      const dir = fresh('sequential');
      const model = sequential();
      const x = tf.randomNormal([6, 4], 0, 1, 'float32', 7);
      const result = await model.save(url(dir));
      expect(result.modelArtifactsInfo.modelTopologyType).toBe('JSON');
      expect(result.modelArtifactsInfo.weightDataBytes).toBe((4 * 5 + 5 + 5 * 3 + 3) * 4);
      const loaded = await tf.loadLayersModel(modelUrl(dir));
      expect(outputs(loaded, x)).toEqual(outputs(model, x));
      expect(loaded.getWeights().map((w) => Array.from(w.dataSync()))).toEqual(model.getWeights().map((w) => Array.from(w.dataSync())));
      x.dispose();
      model.dispose();
      loaded.dispose();
    });
  });

  it('a functional model with two inputs: same outputs, exactly', async () => {
    await expectNoLeak(async () => {
      const dir = fresh('functional');
      const model = twoInputs();
      const a = tf.randomNormal([5, 3], 0, 1, 'float32', 1);
      const b = tf.randomNormal([5, 2], 0, 1, 'float32', 2);
      await model.save(url(dir));
      const loaded = await tf.loadLayersModel(modelUrl(dir));
      expect(loaded.inputs.map((i) => i.shape)).toEqual([
        [null, 3],
        [null, 2],
      ]);
      expect(outputs(loaded, [a, b])).toEqual(outputs(model, [a, b]));
      tf.dispose([a, b]);
      model.dispose();
      loaded.dispose();
    });
  });

  it('includeOptimizer: trainingConfig and optimizer state round trip; training on continues identically', async () => {
    const start = tf.memory().numTensors;
    let layersLeak = 0;
    {
      const dir = fresh('optimizer');
      const model = sequential(2);
      model.compile({ optimizer: 'adam', loss: 'meanSquaredError' });
      const xs = tf.randomNormal([8, 4], 0, 1, 'float32', 3);
      const ys = tf.randomNormal([8, 2], 0, 1, 'float32', 4);
      await model.fit(xs, ys, { epochs: 2, batchSize: 4, shuffle: false, verbose: 0 });
      // tfjs-layers 4.22's save({ includeOptimizer: true }) leaves one tensor behind whichever
      // handler saves (the iteration count from optimizer.getWeights(), never disposed):
      // measured with an in-memory handler, the file handler must add nothing to it.
      let before = tf.memory().numTensors;
      await artifactsOf(model, { includeOptimizer: true });
      layersLeak = tf.memory().numTensors - before;
      expect(layersLeak).toBe(1);
      before = tf.memory().numTensors;
      await model.save(url(dir), { includeOptimizer: true });
      expect(tf.memory().numTensors - before).toBe(layersLeak);

      const json = readJSON(join(dir, 'model.json'));
      const trainingConfig = json.trainingConfig as { loss: string; optimizer_config: { class_name: string } };
      expect(trainingConfig.loss).toBe('mean_squared_error'); // tfjs-layers writes the Keras name
      expect(trainingConfig.optimizer_config.class_name).toBe('Adam');
      const specs = (json.weightsManifest as Array<{ weights: tf.io.WeightsManifestEntry[] }>)[0].weights;
      expect(specs.filter((s) => s.group === 'optimizer').length).toBeGreaterThan(1);

      const loaded = await tf.loadLayersModel(modelUrl(dir));
      expect(loaded.optimizer?.getClassName()).toBe('Adam');
      const state = async (m: tf.LayersModel) => {
        const ws = await m.optimizer.getWeights();
        const v = ws.map((w) => [w.name, Array.from(w.tensor.dataSync())]);
        ws[0].tensor.dispose(); // the iteration count is a fresh scalar; the rest are the optimizer's variables
        return v;
      };
      expect(await state(loaded)).toEqual(await state(model));

      // One more epoch on each: same state, same step, same weights.
      await model.fit(xs, ys, { epochs: 1, batchSize: 4, shuffle: false, verbose: 0 });
      await loaded.fit(xs, ys, { epochs: 1, batchSize: 4, shuffle: false, verbose: 0 });
      expect(outputs(loaded, xs)).toEqual(outputs(model, xs));

      tf.dispose([xs, ys]);
      model.dispose();
      // The loaded model's optimizer was built from trainingConfig, so the model does not own it.
      loaded.optimizer.dispose();
      loaded.dispose();
    }
    expect(tf.memory().numTensors).toBe(start + 2 * layersLeak);
  });

  it('fileSystem(path) as an explicit handler, with and without file://', async () => {
    await expectNoLeak(async () => {
      const dir = fresh('explicit');
      const model = sequential();
      const x = tf.ones([2, 4]);
      await model.save(fileSystem(dir));
      const a = await tf.loadLayersModel(fileSystem(join(dir, 'model.json')));
      const b = await tf.loadLayersModel(fileSystem(modelUrl(dir)));
      expect(outputs(a, x)).toEqual(outputs(model, x));
      expect(outputs(b, x)).toEqual(outputs(model, x));
      tf.dispose([x]);
      [model, a, b].forEach((m) => m.dispose());
    });
  });

  it('a relative path resolves against the working folder; ~ is not expanded', async () => {
    await expectNoLeak(async () => {
      const cwd = process.cwd();
      const dir = fresh('relative');
      mkdirSync(dir);
      process.chdir(dir);
      try {
        const model = sequential();
        await model.save('file://~/m');
        model.dispose();
        expect(existsSync(join(dir, '~', 'm', 'model.json'))).toBe(true);
        const loaded = await tf.loadLayersModel('file://~/m/model.json');
        loaded.dispose();
      } finally {
        process.chdir(cwd);
      }
    });
  });
});

describe("tfjs-node's layout", () => {
  it('model.json fields and order, weightsManifest, and weights.bin = the weight data, as long as the specs say', async () => {
    await expectNoLeak(async () => {
      const dir = fresh('layout');
      const model = twoInputs();
      model.setUserDefinedMetadata({ note: 'hello', n: 3 });
      const artifacts = await artifactsOf(model);
      await model.save(url(dir));
      expect(readdirSync(dir).sort()).toEqual(['model.json', 'weights.bin']);

      const json = readJSON(join(dir, 'model.json'));
      // tfjs-node's order: modelTopology, weightsManifest, format, generatedBy, convertedBy, then the optional fields.
      expect(Object.keys(json)).toEqual(['modelTopology', 'weightsManifest', 'format', 'generatedBy', 'convertedBy', 'userDefinedMetadata']);
      expect(json.format).toBe('layers-model');
      expect(json.generatedBy).toMatch(/^TensorFlow\.js tfjs-layers v4\.22\.0$/);
      expect(json.convertedBy).toBeNull();
      expect(json.userDefinedMetadata).toEqual({ note: 'hello', n: 3 });
      expect(json.modelTopology).toEqual(JSON.parse(JSON.stringify(artifacts.modelTopology)));
      expect(json.weightsManifest).toEqual([{ paths: ['weights.bin'], weights: artifacts.weightSpecs }]);

      const specs = artifacts.weightSpecs!;
      const sum = specs.reduce((a, s) => a + s.shape.reduce((p, d) => p * d, 1) * 4, 0);
      const bin = readFileSync(join(dir, 'weights.bin'));
      expect(bin.length).toBe(sum);
      expect(Buffer.compare(bin, Buffer.from(tf.io.CompositeArrayBuffer.join(artifacts.weightData!)))).toBe(0);
      model.dispose();
    });
  });

  it('signature, modelInitializer and initializerSignature are kept when present', async () => {
    await expectNoLeak(async () => {
      const dir = fresh('extras');
      const specs: tf.io.WeightsManifestEntry[] = [{ name: 'w', shape: [2], dtype: 'float32' }];
      const artifacts: tf.io.ModelArtifacts = {
        modelTopology: { node: [] },
        format: 'graph-model',
        generatedBy: 'test',
        convertedBy: 'test converter',
        weightSpecs: specs,
        weightData: new Float32Array([1.5, -2]).buffer,
        signature: { inputs: {} },
        modelInitializer: { node: [] },
        initializerSignature: { outputs: {} },
      };
      await fileSystem(dir).save!(artifacts);
      const json = readJSON(join(dir, 'model.json'));
      expect(Object.keys(json)).toEqual(['modelTopology', 'weightsManifest', 'format', 'generatedBy', 'convertedBy', 'signature', 'modelInitializer', 'initializerSignature']);
      const back = await fileSystem(join(dir, 'model.json')).load!();
      expect(back.signature).toEqual({ inputs: {} });
      expect(back.modelInitializer).toEqual({ node: [] });
      expect(back.initializerSignature).toEqual({ outputs: {} });
      expect(Array.from(new Float32Array(back.weightData as ArrayBuffer))).toEqual([1.5, -2]);
    });
  });

  it('weights in several files (shards and groups, one in a subfolder) are read in manifest order', async () => {
    await expectNoLeak(async () => {
      const { dir, expected } = await savedModel('shards');
      const json = readJSON(join(dir, 'model.json')) as { weightsManifest: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }> };
      const specs = json.weightsManifest[0].weights;
      const bin = readFileSync(join(dir, 'weights.bin'));
      // Group 1: the first layer's kernel and bias in two shards; group 2: the second layer, in a subfolder.
      const first = (4 * 5 + 5) * 4;
      mkdirSync(join(dir, 'more'));
      writeFileSync(join(dir, 'g1-shard1of2.bin'), bin.subarray(0, 33));
      writeFileSync(join(dir, 'g1-shard2of2.bin'), bin.subarray(33, first));
      writeFileSync(join(dir, 'more', 'g2.bin'), bin.subarray(first));
      json.weightsManifest = [
        { paths: ['g1-shard1of2.bin', 'g1-shard2of2.bin'], weights: specs.slice(0, 2) },
        { paths: ['more/g2.bin'], weights: specs.slice(2) },
      ];
      writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
      rmSync(join(dir, 'weights.bin'));
      expect(await loadedOutputs(dir)).toEqual(expected);
    });
  });

  it('string, quantized and bool weights are sized as tfjs-core decodes them', async () => {
    await expectNoLeak(async () => {
      const dir = fresh('dtypes');
      const s = tf.tensor(['a', 'bcd', ''], [3], 'string');
      const flag = tf.tensor([true, false], [2], 'bool');
      const { data, specs } = await tf.io.encodeWeights({ s, flag });
      // A uint8-quantized float32 weight and a float16 one, appended by hand.
      const q = new Uint8Array([0, 1, 2, 255]);
      const h = new Uint16Array([0x3c00, 0xc000]); // 1, -2 in float16
      const all = tf.io.CompositeArrayBuffer.join([data, q.slice().buffer, h.slice().buffer]);
      const allSpecs: tf.io.WeightsManifestEntry[] = [
        ...specs,
        { name: 'q', shape: [4], dtype: 'float32', quantization: { dtype: 'uint8', min: -1, scale: 0.5 } },
        { name: 'h', shape: [2], dtype: 'float32', quantization: { dtype: 'float16' } },
      ];
      await fileSystem(dir).save!({ modelTopology: {}, weightSpecs: allSpecs, weightData: all });
      expect(statSync(join(dir, 'weights.bin')).size).toBe(all.byteLength);
      const back = await fileSystem(join(dir, 'model.json')).load!();
      const decoded = tf.io.decodeWeights(back.weightData!, back.weightSpecs!);
      expect(decoded.s.dtype).toBe('string');
      expect(await decoded.s.array()).toEqual(['a', 'bcd', '']);
      expect(Array.from(decoded.flag.dataSync())).toEqual([1, 0]);
      expect(Array.from(decoded.q.dataSync())).toEqual([-1, -0.5, 0, 126.5]);
      expect(Array.from(decoded.h.dataSync())).toEqual([1, -2]);
      tf.dispose([s, flag, ...Object.values(decoded)]);

      // One byte short inside the string weight's data: found while walking its lengths.
      const bin = readFileSync(join(dir, 'weights.bin'));
      writeFileSync(join(dir, 'weights.bin'), bin.subarray(0, 9));
      await expect(fileSystem(join(dir, 'model.json')).load!()).rejects.toThrow(/string weight "s".*runs past the end|is 9 bytes.*need exactly/);
    });
  });

  it('the binary-topology form [topology.pb, weights-manifest.json] loads; saving to two paths is refused', async () => {
    await expectNoLeak(async () => {
      const dir = fresh('binary');
      mkdirSync(dir);
      writeFileSync(join(dir, 'model.pb'), Buffer.from([8, 1, 2, 3]));
      writeFileSync(join(dir, 'manifest.json'), JSON.stringify([{ paths: ['w.bin'], weights: [{ name: 'w', shape: [2], dtype: 'int32' }] }]));
      writeFileSync(join(dir, 'w.bin'), Buffer.from(new Int32Array([7, -9]).buffer));
      const handler = fileSystem([url(join(dir, 'model.pb')), url(join(dir, 'manifest.json'))]);
      const back = await handler.load!();
      expect(Array.from(new Uint8Array(back.modelTopology as ArrayBuffer))).toEqual([8, 1, 2, 3]);
      expect(Array.from(new Int32Array(back.weightData as ArrayBuffer))).toEqual([7, -9]);
      await expect(handler.save!({ modelTopology: {} })).rejects.toThrow(/cannot save to several paths/);
      expect(() => fileSystem([join(dir, 'model.pb')])).toThrow(/exactly two/);
    });
  });
});

describe('saving leaves everything else, and a failed save leaves the old model', () => {
  it('other files, folders and links in the folder stay as they were; no temporary files remain', async () => {
    await expectNoLeak(async () => {
      const dir = fresh('others');
      mkdirSync(join(dir, 'sub'), { recursive: true });
      writeFileSync(join(dir, 'notes.txt'), 'keep me');
      writeFileSync(join(dir, 'sub', 'data.csv'), '1,2,3');
      writeFileSync(join(root, 'outside.txt'), 'outside');
      symlinkSync(join(root, 'outside.txt'), join(dir, 'link.txt'));
      const before = tree(dir);
      const model = sequential();
      await model.save(url(dir));
      await model.save(url(dir)); // and again, over the first
      model.dispose();
      const after = tree(dir);
      expect(Object.keys(after).sort()).toEqual([...Object.keys(before), 'model.json', 'weights.bin'].sort());
      for (const [k, v] of Object.entries(before)) expect(after[k]).toBe(v);
      expect(readFileSync(join(root, 'outside.txt'), 'utf8')).toBe('outside');
    });
  });

  it('creates missing folders, parents included', async () => {
    await expectNoLeak(async () => {
      const dir = join(fresh('nested'), 'a', 'b');
      const model = sequential();
      await model.save(url(dir));
      model.dispose();
      expect(readdirSync(dir).sort()).toEqual(['model.json', 'weights.bin']);
    });
  });

  it('artifacts that cannot be written as JSON: refused before any write, the old model loads', async () => {
    await expectNoLeak(async () => {
      const { dir, expected } = await savedModel('failed-json');
      const before = tree(dir);
      const other = sequential(3);
      const artifacts = await artifactsOf(other);
      other.dispose();
      artifacts.userDefinedMetadata = { count: 10n as unknown as number }; // a BigInt: JSON.stringify throws
      await expect(fileSystem(dir).save!(artifacts)).rejects.toThrow(FileError);
      await expect(fileSystem(dir).save!(artifacts)).rejects.toThrow(/cannot be written as JSON.*nothing was written/);
      expect(tree(dir)).toEqual(before);
      expect(await loadedOutputs(dir)).toEqual(expected);
      // Nor a model without a topology, which tfjs-node would write and no loader could use.
      await expect(fileSystem(dir).save!({ weightSpecs: [], weightData: new ArrayBuffer(0) })).rejects.toThrow(/no modelTopology; expected a JSON topology object; nothing was written/);
      expect(tree(dir)).toEqual(before);
    });
  });

  it('weight data that disagrees with its specs: refused before any write', async () => {
    await expectNoLeak(async () => {
      const { dir, expected } = await savedModel('failed-size');
      const before = tree(dir);
      const other = sequential(3);
      const artifacts = await artifactsOf(other);
      other.dispose();
      artifacts.weightData = (artifacts.weightData as ArrayBuffer).slice(4);
      await expect(fileSystem(dir).save!(artifacts)).rejects.toThrow(/weight data is 168 bytes but the weight specs describe 172; expected them to agree; nothing was written/);
      expect(tree(dir)).toEqual(before);
      expect(await loadedOutputs(dir)).toEqual(expected);
    });
  });

  it('a failure while writing (model.json cannot be replaced): the old model loads, no temporary files remain', async () => {
    await expectNoLeak(async () => {
      const { dir } = await savedModel('failed-write');
      // model.json turned into a folder: replaceFiles refuses before writing anything.
      rmSync(join(dir, 'model.json'));
      mkdirSync(join(dir, 'model.json'));
      const before = tree(dir);
      const model = sequential();
      await expect(model.save(url(dir))).rejects.toThrow(/model\.json: it is a folder/);
      model.dispose();
      expect(tree(dir)).toEqual(before);
    });
  });

  it('a crash between the two renames (new weights.bin, old model.json) is caught by the size check when the sizes differ', async () => {
    await expectNoLeak(async () => {
      const { dir } = await savedModel('crash');
      const bigger = sequential(7);
      const crash = () => {
        throw new Error('simulated crash');
      };
      await expect(bigger.save(fileSystem(dir, { afterRename: (f) => f.endsWith('weights.bin') && crash() }))).rejects.toThrow('simulated crash');
      bigger.dispose();
      await expect(tf.loadLayersModel(modelUrl(dir))).rejects.toThrow(/weights\.bin is 268 bytes; expected exactly 172 bytes/);
    });
  });

  it('saving into a path that is a file is refused and leaves the file', async () => {
    await expectNoLeak(async () => {
      const path = fresh('a-file');
      writeFileSync(path, 'not a folder');
      const model = sequential();
      await expect(model.save(url(path))).rejects.toThrow(/it is a file, not a folder/);
      model.dispose();
      expect(readFileSync(path, 'utf8')).toBe('not a folder');
    });
  });
});

describe('loading: clear errors, no hang', () => {
  const load = (path: string) => tf.loadLayersModel(`file://${path}`);

  it('a missing folder and a missing model.json', async () => {
    await expectNoLeak(async () => {
      const missing = join(fresh('missing'), 'model.json');
      await expect(load(missing)).rejects.toThrow(FileError);
      await expect(load(missing)).rejects.toThrow(`${missing} does not exist (nor does the folder ${dirname(missing)}); expected the model.json file`);
      const dir = fresh('empty');
      mkdirSync(dir);
      await expect(load(join(dir, 'model.json'))).rejects.toThrow(`${join(dir, 'model.json')} does not exist; expected the model.json file`);
    });
  });

  it('a folder where model.json was expected (with a hint when it holds one)', async () => {
    await expectNoLeak(async () => {
      const { dir } = await savedModel('folder-given');
      await expect(load(dir)).rejects.toThrow(`${dir} is a folder; expected the path of the model.json file itself: load file://${join(dir, 'model.json')}`);
    });
  });

  it('a FIFO as model.json and as weights.bin: refused at once', async () => {
    await expectNoLeak(async () => {
      const dir = fresh('fifo');
      mkdirSync(dir);
      execFileSync('mkfifo', [join(dir, 'model.json')]);
      await expect(load(join(dir, 'model.json'))).rejects.toThrow(/model\.json is a FIFO; expected the model\.json as a regular file/);

      const { dir: saved } = await savedModel('fifo-weights');
      rmSync(join(saved, 'weights.bin'));
      execFileSync('mkfifo', [join(saved, 'weights.bin')]);
      await expect(load(join(saved, 'model.json'))).rejects.toThrow(/weights\.bin is a FIFO; expected the weights as a regular file/);
    });
  });

  it('invalid JSON, not UTF-8, not an object, no modelTopology, no weightsManifest, a bad manifest', async () => {
    await expectNoLeak(async () => {
      const dir = fresh('bad-json');
      mkdirSync(dir);
      const file = join(dir, 'model.json');
      const cases: Array<[string | Buffer, RegExp]> = [
        ['{"modelTopology": ', /model\.json is not valid JSON \(.*\); expected the model\.json written by model\.save/],
        [Buffer.from([0x7b, 0xff, 0x7d]), /model\.json is not UTF-8 text/],
        ['[1, 2]', /model\.json holds a list; expected a model\.json object with modelTopology and weightsManifest/],
        ['{"weightsManifest": []}', /model\.json has no modelTopology/],
        ['{"modelTopology": {}}', /model\.json has no weightsManifest; expected a model\.json with weightsManifest: \[\{ paths: \['weights\.bin'\]/],
        ['{"modelTopology": {}, "weightsManifest": {"paths": []}}', /the weightsManifest of .*model\.json is an object; expected a list of groups/],
        ['{"modelTopology": {}, "weightsManifest": [{"paths": "weights.bin", "weights": []}]}', /weightsManifest\[0\]\.paths .* is the string "weights\.bin"; expected a list/],
        [
          '{"modelTopology": {}, "weightsManifest": [{"paths": ["w.bin"], "weights": [{"name": "k", "shape": [2], "dtype": "float64"}]}]}',
          /weight spec 0 \("k"\) of weightsManifest\[0\]\.weights .* has dtype "float64"; expected one of float32, int32, bool, complex64, string/,
        ],
        [
          '{"modelTopology": {}, "weightsManifest": [{"paths": ["w.bin"], "weights": [{"name": "k", "shape": [-1], "dtype": "float32"}]}]}',
          /has shape \[-1\]; expected a list of non-negative integers/,
        ],
        [
          '{"modelTopology": {}, "weightsManifest": [{"paths": ["w.bin"], "weights": [{"name": "k", "shape": [2], "dtype": "float32", "quantization": {"dtype": "uint8"}}]}]}',
          /quantized as uint8 without numeric min and scale/,
        ],
      ];
      for (const [content, message] of cases) {
        writeFileSync(file, content);
        await expect(load(file)).rejects.toThrow(message);
      }
    });
  });

  it('a model.json over the size limit is refused before reading', async () => {
    await expectNoLeak(async () => {
      const dir = fresh('huge-json');
      mkdirSync(dir);
      const file = join(dir, 'model.json');
      writeFileSync(file, '');
      execFileSync('truncate', ['-s', String(MAX_MODEL_JSON_BYTES + 1), file]);
      await expect(load(file)).rejects.toThrow(/model\.json is 67,108,865 bytes, more than the 67,108,864-byte limit/);
    });
  });

  it('a truncated and an overlong weights.bin: the file, the bytes expected and found', async () => {
    await expectNoLeak(async () => {
      const { dir } = await savedModel('truncated');
      const bin = readFileSync(join(dir, 'weights.bin'));
      expect(bin.length).toBe(172);
      writeFileSync(join(dir, 'weights.bin'), bin.subarray(0, 100));
      await expect(load(join(dir, 'model.json'))).rejects.toThrow(
        `${join(dir, 'weights.bin')} is 100 bytes, but the weight specs of weightsManifest[0] in ${join(dir, 'model.json')} need exactly 172; the weights are truncated or belong to another model.json`,
      );
      writeFileSync(join(dir, 'weights.bin'), Buffer.concat([bin, Buffer.from([0])]));
      await expect(load(join(dir, 'model.json'))).rejects.toThrow(`the weights file ${join(dir, 'weights.bin')} is 173 bytes; expected exactly 172 bytes (the weight specs of weightsManifest[0]); it is longer than the manifest says`);
      writeFileSync(join(dir, 'weights.bin'), bin);
      await tf.loadLayersModel(modelUrl(dir)).then((m) => m.dispose());
    });
  });

  it('a missing weights file, and shards that together are short', async () => {
    await expectNoLeak(async () => {
      const { dir } = await savedModel('missing-weights');
      const bin = readFileSync(join(dir, 'weights.bin'));
      rmSync(join(dir, 'weights.bin'));
      await expect(load(join(dir, 'model.json'))).rejects.toThrow(`${join(dir, 'weights.bin')} does not exist; expected the weights file`);
      const json = readJSON(join(dir, 'model.json')) as { weightsManifest: Array<{ paths: string[] }> };
      json.weightsManifest[0].paths = ['a.bin', 'b.bin'];
      writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
      writeFileSync(join(dir, 'a.bin'), bin.subarray(0, 80));
      writeFileSync(join(dir, 'b.bin'), bin.subarray(80, 170));
      await expect(load(join(dir, 'model.json'))).rejects.toThrow(/the files \[.*a\.bin",".*b\.bin"\] of weightsManifest\[0\] are together 170 bytes \(.*a\.bin: 80, .*b\.bin: 90\), but the weight specs .* need exactly 172/);
      writeFileSync(join(dir, 'a.bin'), bin); // all 172 bytes in the first shard, 90 more in the second
      await expect(load(join(dir, 'model.json'))).rejects.toThrow(/b\.bin is 90 bytes; expected at most 0 bytes \(the weight specs of weightsManifest\[0\] need 172, of which 172 are in its earlier files\)/);
    });
  });

  it('manifest paths that leave the folder (.., absolute) are refused', async () => {
    await expectNoLeak(async () => {
      const { dir } = await savedModel('escape');
      writeFileSync(join(dirname(dir), 'x'), readFileSync(join(dir, 'weights.bin')));
      const json = readJSON(join(dir, 'model.json')) as { weightsManifest: Array<{ paths: string[] }> };
      for (const [path, message] of [
        ['../x', /weightsManifest\[0\]\.paths\[0\] in .*model\.json is "\.\.\/x", which leaves the folder of the model; expected a file name relative to the folder of .*model\.json/],
        ['sub/../../x', /is "sub\/\.\.\/\.\.\/x", which leaves the folder/],
        ['..\\x', /which leaves the folder/],
        [join(dirname(dir), 'x'), /is the absolute path ".*\/x"; expected a file name relative/],
        ['C:\\x', /is the absolute path/],
        ['', /is ""; expected a file name/],
      ] as const) {
        json.weightsManifest[0].paths = [path];
        writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
        await expect(load(join(dir, 'model.json'))).rejects.toThrow(message);
      }
    });
  });
});

describe('registration', () => {
  it('one handler for file:// each way; registerFileHandler() again registers nothing', async () => {
    await expectNoLeak(async () => {
      expect(tf.io.getSaveHandlers('file:///tmp/x')).toHaveLength(1);
      expect(tf.io.getLoadHandlers('file:///tmp/x/model.json')).toHaveLength(1);
      expect(registerFileHandler()).toBe(false);
      expect(registerFileHandler()).toBe(false);
      expect(tf.io.getSaveHandlers('file:///tmp/x')).toHaveLength(1);
      expect(tf.io.getLoadHandlers('file:///tmp/x/model.json')).toHaveLength(1);
      expect(tf.io.getLoadHandlers('indexeddb://x')).toHaveLength(0);
    });
  });

  it('steps aside when another file:// router is registered later (as tfjs-node would be)', async () => {
    await expectNoLeak(async () => {
      // A stand-in for tfjs-node's router, registered after ours, claiming only URLs under one prefix
      // (routers cannot be unregistered, so it must not change the other tests).
      const prefix = `file://${join(root, 'claimed-by-other')}`;
      const other: tf.io.IOHandler = { save: async () => ({ modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }) };
      const otherRouter = (u: string | string[]) => (typeof u === 'string' && u.startsWith(prefix) ? other : null) as tf.io.IOHandler;
      tf.io.registerSaveRouter(otherRouter);
      tf.io.registerLoadRouter(otherRouter);
      expect(tf.io.getSaveHandlers(`${prefix}/m`)).toEqual([other]);
      expect(tf.io.getLoadHandlers(`${prefix}/m/model.json`)).toEqual([other]);
      expect(tf.io.getSaveHandlers('file:///tmp/elsewhere')).toHaveLength(1);
      expect(tf.io.getSaveHandlers('file:///tmp/elsewhere')[0]).not.toBe(other);
      const model = sequential();
      await model.save(`${prefix}/m`); // reaches the other handler: no "multiple handlers" error
      model.dispose();
      expect(existsSync(join(root, 'claimed-by-other'))).toBe(false);
    });
  });
});

describe('in a plain Node process', () => {
  const script = `
import { createRequire } from 'node:module';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
const [lib, repo, dir] = process.argv.slice(2);
const require = createRequire(join(repo, 'package.json'));
const tf = require('@tensorflow/tfjs');
const lora = require(lib);
const backend = await lora.initBackend();
const model = tf.sequential({ layers: [tf.layers.dense({ units: 3, inputShape: [4], activation: 'relu' }), tf.layers.dense({ units: 2 })] });
const x = tf.randomNormal([5, 4], 0, 1, 'float32', 11);
await model.save('file://' + dir);
const loaded = await tf.loadLayersModel('file://' + join(dir, 'model.json'));
const a = Array.from(model.predict(x).dataSync());
const b = Array.from(loaded.predict(x).dataSync());
console.log(JSON.stringify({
  backend,
  equal: a.length === 10 && a.every((v, i) => v === b[i]),
  files: readdirSync(dir).sort(),
  weightsBytes: statSync(join(dir, 'weights.bin')).size,
  handlers: [tf.io.getSaveHandlers('file:///x').length, tf.io.getLoadHandlers('file:///x').length],
  registeredAgain: lora.registerFileHandler(),
}));
`;

  function run(lib: string, env: NodeJS.ProcessEnv = {}): Record<string, unknown> {
    const dir = fresh('child');
    mkdirSync(dir);
    const file = join(dir, 'main.mjs');
    writeFileSync(file, script);
    const out = spawnSync(process.execPath, [file, lib, repo, join(dir, 'model')], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
    expect(out.status, out.stderr).toBe(0);
    return JSON.parse(out.stdout.trim().split('\n').at(-1)!);
  }

  const expected = { equal: true, files: ['model.json', 'weights.bin'], weightsBytes: (4 * 3 + 3 + 3 * 2 + 2) * 4, handlers: [1, 1], registeredAgain: false };

  it('the current source, bundled to CommonJS, with only @tensorflow/tfjs beside it: save and load end to end', async () => {
    await expectNoLeak(async () => {
      // Bundled here rather than taken from dist/ (which `npx vitest run` does not rebuild):
      // esbuild, packages external, resolved from the repo's node_modules through NODE_PATH.
      const { build } = await import('esbuild');
      const bundle = join(fresh('bundle'), 'lora-tfjs.cjs');
      // The core and the node entry in one file; tfjs-core's registrations (#tfjs-registrations,
      // not our code) from dist/.
      await build({
        stdin: { contents: "export * from './src/index.ts'; export * from './src/node/index.ts';", resolveDir: repo, loader: 'ts' },
        bundle: true,
        platform: 'node',
        format: 'cjs',
        packages: 'external',
        alias: { '#tfjs-registrations': join(repo, 'dist', 'cjs', 'runtime', 'tfjs-registrations.node.cjs') },
        outfile: bundle,
        logLevel: 'silent',
      });
      expect(run(bundle, { NODE_PATH: join(repo, 'node_modules') })).toMatchObject(expected);
    });
  });
});
