import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  LoRAMLP,
  MLP,
  combineAdapters,
  decodeSafetensors,
  deserializeAdapter,
  encodeSafetensors,
  initBackend,
  lowRankShiftTask,
  maxAbsDiff,
  serializeAdapter,
  setWarningHandler,
  train,
  type LowRankShiftTask,
} from '../src/index.js';
import { loadAdapter, saveAdapter } from '../src/node/index.js';
import { maxRelDiff, rawFile, trainLike } from './helpers.js';

const DIMS = [12, 16, 10, 6];


/** Every value the model holds, to prove a failed operation changed nothing. */
function snapshot(model: LoRAMLP): string {
  return JSON.stringify({
    names: model.adapterNames(),
    active: model.activeAdapter,
    values: model.layers.map((l) => [Array.from(l.weight.dataSync()), ...l.adapterNames().flatMap((n) => [Array.from(l.adapter(n).A.dataSync()), Array.from(l.adapter(n).B.dataSync()), l.adapter(n).config])]),
  });
}

describe('adapters as files, sets, combinations and mixed batches', () => {
  let base: MLP;
  let dir: string;
  let tensorsAtStart: number;
  beforeAll(async () => {
    await initBackend('wasm');
    tensorsAtStart = tf.memory().numTensors;
    base = new MLP(DIMS, { seed: 3 });
    dir = mkdtempSync(join(tmpdir(), 'lora-adapters-'));
  });
  afterAll(() => {
    base.dispose();
    rmSync(dir, { recursive: true, force: true });
    expect(tf.memory().numTensors).toBe(tensorsAtStart); // every test freed what it made
  });

  describe('save and load (PEFT layout)', () => {
    it('writes PEFT keys, PyTorch shapes, F32, format "pt" and the config fields', () => {
      const model = LoRAMLP.fromBase(base, { rank: 3, alpha: 6, dropout: 0.1, seed: 1 });
      trainLike(model, 'default', 1);
      const target = join(dir, 'layout');
      const { weightsBytes } = saveAdapter(model, target);
      expect(readdirSync(target).sort()).toEqual([ADAPTER_CONFIG, ADAPTER_WEIGHTS]);
      const file = decodeSafetensors(new Uint8Array(readFileSync(join(target, ADAPTER_WEIGHTS))));
      expect(weightsBytes).toBe(readFileSync(join(target, ADAPTER_WEIGHTS)).length);
      expect(file.metadata.format).toBe('pt');
      expect(JSON.parse(file.metadata.lora_tfjs_layers)).toEqual({ fc1: [12, 16], fc2: [16, 10], fc3: [10, 6] });
      expect(file.metadata.lora_tfjs_adapter_name).toBe('default');
      expect([...file.tensors.keys()].sort()).toEqual(
        ['fc1', 'fc2', 'fc3'].flatMap((m) => [`base_model.model.${m}.lora_A.weight`, `base_model.model.${m}.lora_B.weight`]).sort(),
      );
      expect(file.tensors.get('base_model.model.fc1.lora_A.weight')!.shape).toEqual([3, 12]); // [r, in]
      expect(file.tensors.get('base_model.model.fc3.lora_B.weight')!.shape).toEqual([6, 3]); // [out, r]
      expect(file.tensors.get('base_model.model.fc2.lora_A.weight')!.dtype).toBe('F32');
      // Stored transposed: lora_A.weight[j][i] = A[i][j].
      const A = model.layers[0].A.arraySync();
      const stored = file.tensors.get('base_model.model.fc1.lora_A.weight')!.data;
      expect(stored[1 * 12 + 5]).toBe(A[5][1]);
      const config = JSON.parse(readFileSync(join(target, ADAPTER_CONFIG), 'utf8'));
      expect(config).toMatchObject({ peft_type: 'LORA', r: 3, lora_alpha: 6, use_rslora: false, target_modules: ['fc1', 'fc2', 'fc3'], lora_dropout: 0.1, bias: 'none' });
      // Only PEFT's own fields, so PEFT loads it without a warning; our facts are in the weights' metadata.
      expect(Object.keys(config).filter((k) => k.startsWith('lora_tfjs'))).toEqual([]);
      expect(config).toMatchObject({ rank_pattern: {}, alpha_pattern: {}, modules_to_save: null, use_dora: false, lora_bias: false });
      model.dispose();
    });

    it('round-trips: a saved adapter loads into a fresh model and reproduces its outputs to 1e-6', () => {
      const model = LoRAMLP.fromBase(base, { rank: 4, alpha: 2, useRsLora: true, seed: 2 });
      trainLike(model, 'default', 2);
      saveAdapter(model, join(dir, 'trip'));
      const fresh = LoRAMLP.fromBase(base, { rank: 1, seed: 9 }); // a different fresh adapter, replaced by the load
      expect(loadAdapter(fresh, join(dir, 'trip'))).toBe('default');
      expect(fresh.layers[0].adapter('default').config).toMatchObject({ rank: 4, alpha: 2, useRsLora: true });
      const x = tf.randomNormal([7, 12], 0, 1, 'float32', 4);
      const a = model.predict(x);
      const b = fresh.predict(x);
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-6);
      const plain = base.predict(x);
      expect(maxAbsDiff(a, plain)).toBeGreaterThan(1e-3); // the adapter matters
      tf.dispose([x, a, b, plain]);
      // Loading under another name adds a second adapter.
      loadAdapter(fresh, join(dir, 'trip'), { adapterName: 'copy' });
      expect(fresh.adapterNames()).toEqual(['default', 'copy']);
      model.dispose();
      fresh.dispose();
    });

    it('ignores unknown config fields with a warning, and loads F16 / BF16 files as float32', () => {
      const model = LoRAMLP.fromBase(base, { rank: 2, seed: 3 });
      trainLike(model, 'default', 3);
      const { weights, config } = serializeAdapter(model);
      const warnings: string[] = [];
      const target = LoRAMLP.fromBase(base, { rank: 2 });
      // An edited config: the weights' digest no longer matches, so say the edit was on purpose.
      deserializeAdapter(target, { weights, config: { ...config, some_future_field: 1, another: 'x' } }, { onWarning: (m) => warnings.push(m), verifyPair: false });
      expect(warnings).toEqual(['loadAdapter: ignoring unknown adapter_config.json field(s): some_future_field, another']);
      // The same adapter as F16 and as BF16 (what PyTorch users often save).
      const decoded = decodeSafetensors(weights);
      for (const dtype of ['F16', 'BF16'] as const) {
        const header: Record<string, unknown> = {};
        const chunks: number[] = [];
        for (const [key, t] of [...decoded.tensors.entries()].sort()) {
          header[key] = { dtype, shape: t.shape, data_offsets: [chunks.length * 2, (chunks.length + t.data.length) * 2] };
          for (const v of t.data) chunks.push(dtype === 'F16' ? toHalf(v) : toBf16(v));
        }
        const file = rawFile(header, new Uint8Array(new Uint16Array(chunks).buffer));
        deserializeAdapter(target, { weights: file, config }, { adapterName: dtype });
        const x = tf.randomNormal([3, 12], 0, 1, 'float32', 5);
        target.setActiveAdapter(dtype);
        const y16 = target.predict(x);
        const y32 = model.predict(x);
        expect(maxRelDiff(y16, y32)).toBeLessThan(dtype === 'F16' ? 5e-3 : 2e-2);
        tf.dispose([x, y16, y32]);
      }
      model.dispose();
      target.dispose();
    });

    it('loads a config as PEFT 0.18 writes it (every field it saves) without a warning', () => {
      const model = LoRAMLP.fromBase(base, { rank: 2, seed: 8 });
      trainLike(model, 'default', 8);
      const { weights } = serializeAdapter(model);
      // The fields and defaults of a real PEFT 0.18.1 adapter_config.json, for this model.
      const peftConfig = {
        alora_invocation_tokens: null, alpha_pattern: {}, arrow_config: null, auto_mapping: null,
        base_model_name_or_path: null, bias: 'none', corda_config: null, ensure_weight_tying: false,
        eva_config: null, exclude_modules: null, fan_in_fan_out: false, inference_mode: true,
        init_lora_weights: true, layer_replication: null, layers_pattern: null, layers_to_transform: null,
        loftq_config: {}, lora_alpha: 1, lora_bias: false, lora_dropout: 0.0, megatron_config: null,
        megatron_core: 'megatron.core', modules_to_save: null, peft_type: 'LORA', peft_version: '0.18.1',
        qalora_group_size: 16, r: 2, rank_pattern: {}, revision: null, target_modules: ['fc3', 'fc1', 'fc2'],
        target_parameters: null, task_type: null, trainable_token_indices: null, use_dora: false,
        use_qalora: false, use_rslora: false,
      };
      const warnings: string[] = [];
      const target = LoRAMLP.fromBase(base, { rank: 1 });
      // PEFT writes no lora-tfjs metadata, so the weights carry no config digest.
      const peftWeights = encodeSafetensors(Object.fromEntries([...decodeSafetensors(weights).tensors].map(([k, v]) => [k, { shape: v.shape, data: v.data }])), { format: 'pt' });
      deserializeAdapter(target, { weights: peftWeights, config: JSON.stringify(peftConfig) }, { onWarning: (m) => warnings.push(m) });
      expect(warnings).toEqual([]);
      const x = tf.randomNormal([4, 12], 0, 1, 'float32', 6);
      const a = model.predict(x);
      const b = target.predict(x);
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-6);
      tf.dispose([x, a, b]);
      model.dispose();
      target.dispose();
    });

    it('refuses a bad file or config with a clear error and leaves the model exactly as it was', () => {
      const source = LoRAMLP.fromBase(base, { rank: 2, seed: 4 });
      trainLike(source, 'default', 4);
      const { weights, config } = serializeAdapter(source);
      const model = LoRAMLP.fromBase(base, { rank: 3, seed: 5 });
      trainLike(model, 'default', 5);
      model.addAdapter('other', { rank: 1 });
      const before = snapshot(model);
      const tensorsBefore = tf.memory().numTensors;
      const decoded = decodeSafetensors(weights);
      const plain = encodeSafetensors(Object.fromEntries([...decoded.tensors].map(([k, v]) => [k, { shape: v.shape, data: v.data }])), { format: 'pt' });
      const tensorsOf = (edit: (m: Map<string, { shape: number[]; data: Float32Array }>) => void) => {
        const m = new Map([...decoded.tensors].map(([k, v]) => [k, { shape: [...v.shape], data: v.data.slice() }]));
        edit(m);
        return encodeSafetensors(Object.fromEntries(m), { format: 'pt' }); // no digest: these test the other checks
      };
      const cases: Array<[string, { weights: Uint8Array; config: unknown }, RegExp]> = [
        ['a truncated file', { weights: weights.subarray(0, 6), config }, /file is 6 bytes/],
        ['trailing bytes', { weights: new Uint8Array([...weights, 0, 0, 0, 0]), config }, /the data ends at byte \d+ of the data section but the file has \d+ bytes of data/],
        ['a missing key', { weights: tensorsOf((m) => m.delete('base_model.model.fc2.lora_B.weight')), config }, /missing tensor keys: base_model\.model\.fc2\.lora_B\.weight/],
        [
          'an unexpected key',
          { weights: tensorsOf((m) => m.set('base_model.model.fc9.lora_A.weight', { shape: [1], data: new Float32Array(1) })), config },
          /unexpected tensor keys: base_model\.model\.fc9\.lora_A\.weight/,
        ],
        [
          'a shape that does not fit the model',
          { weights: tensorsOf((m) => m.set('base_model.model.fc2.lora_A.weight', { shape: [2, 15], data: new Float32Array(30) })), config },
          /fc2\.lora_A\.weight has shape \[2, 15\] but the model's fc2 \(16 → 10\) at r = 2 needs \[2, 16\]/,
        ],
        ['a rank that disagrees with the tensors', { weights: plain, config: { ...config, r: 3 } }, /fc1\.lora_A\.weight has shape \[2, 12\] but the model's fc1 \(12 → 16\) at r = 3 needs \[3, 12\]/],
        ['a config from another save', { weights, config: { ...config, lora_alpha: 7 } }, /do not belong together: the weights were saved with a config whose SHA-256 is [0-9a-f]{12}…/],
        ['another base (as an earlier version recorded it)', { weights: plain, config: { ...config, lora_tfjs_base_layers: { fc1: [12, 16], fc2: [16, 11], fc3: [10, 6] } } }, /made for fc2 of size \[16,11\] but this model's fc2 is \[16, 10\]/],
        ['not LoRA', { weights, config: { ...config, peft_type: 'IA3' } }, /peft_type = "IA3" is invalid; expected "LORA"/],
        ['DoRA', { weights, config: { ...config, use_dora: true } }, /use_dora = true is invalid/],
        ['LoRA-B biases', { weights, config: { ...config, lora_bias: true } }, /lora_bias = true is invalid/],
        ['targets that leave keys over', { weights: plain, config: { ...config, target_modules: ['fc1', 'fc2'] } }, /unexpected tensor keys: base_model\.model\.fc3\.lora_A\.weight, base_model\.model\.fc3\.lora_B\.weight/],
        ['targets that match nothing', { weights: plain, config: { ...config, target_modules: ['q_proj'] } }, /target_modules = \["q_proj"\] match no layer; the layers are \["fc1", "fc2", "fc3"\]/],
        ['no targets', { weights: plain, config: { ...config, target_modules: null } }, /target_modules = null is invalid; expected a list of module names or a regular expression/],
        ['trained biases', { weights, config: { ...config, bias: 'all' } }, /bias = "all" is invalid/],
        ['a base-changing initialisation', { weights, config: { ...config, init_lora_weights: 'pissa' } }, /init_lora_weights = "pissa" is invalid; .*rewrites the base weights/],
        ['a variant (KaSA)', { weights, config: { ...config, kasa_config: { k: 1 } } }, /kasa_config = \{"k":1\} is invalid; expected null or false \(KaSA is not supported\)/],
        ['a config that is not JSON', { weights, config: '{oops' }, /adapter_config\.json is not valid JSON/],
        ['NaN weights', { weights: tensorsOf((m) => m.get('base_model.model.fc1.lora_B.weight')!.data.fill(NaN)), config }, /fc1\.lora_B\.weight: tensor values are not all finite/],
      ];
      for (const [what, input, message] of cases) {
        expect(() => deserializeAdapter(model, input, { onWarning: () => undefined }), what).toThrow(message);
        expect(snapshot(model), what).toBe(before);
        expect(tf.memory().numTensors, what).toBe(tensorsBefore);
      }
      expect(() => loadAdapter(model, join(dir, 'does-not-exist'))).toThrow(/does-not-exist does not exist/);
      model.merge();
      expect(() => deserializeAdapter(model, { weights, config })).toThrow(/merged; call unmerge\(\) before replacing it/);
      model.unmerge();
      source.dispose();
      model.dispose();
    });

  });

  describe('PEFT files, element by element', () => {
    it('stores every factor transposed (lora_A [r, in], lora_B [out, r], full weight [out, in]) and a fresh model computes what the file says', () => {
      // Square layers (8 → 8) too, where a missing transpose keeps the shape.
      const sq = new MLP([5, 8, 8, 3], { seed: 9 });
      const model = LoRAMLP.fromBase(sq, { rank: 2, alpha: 3, targetModules: ['fc1', 'fc2', 'fc3'], seed: 1 });
      model.addAdapter('full', { rank: 2, targetModules: ['fc1'], modulesToSave: ['fc2'] });
      // Known, asymmetric values: entry (i, j) of every factor is distinct.
      const fill = (v: tf.Variable, offset: number) => {
        const [a, b] = v.shape;
        const t = tf.tensor(Array.from({ length: a * (b ?? 1) }, (_, k) => offset + Math.floor(k / (b ?? 1)) * 0.1 + (k % (b ?? 1)) * 0.01), v.shape);
        v.assign(t);
        t.dispose();
      };
      model.layers.forEach((l, i) => {
        fill(l.adapter('default').A, i);
        fill(l.adapter('default').B, -i - 0.5);
      });
      fill(model.layers[1].fullAdapter('full').weight, 2);
      fill(model.layers[1].fullAdapter('full').bias!, 3);
      for (const name of ['default', 'full']) {
        const { weights, config } = serializeAdapter(model, name);
        const file = decodeSafetensors(weights);
        model.layers.forEach((l, i) => {
          const m = `base_model.model.fc${i + 1}`;
          const kind = l.adapterKind(name);
          const checkT = (key: string, v: tf.Tensor) => {
            const stored = file.tensors.get(key)!;
            const arr = v.arraySync() as number[][];
            expect(stored.shape, key).toEqual([arr[0].length, arr.length]);
            arr.forEach((row, r) => row.forEach((x, c) => expect(stored.data[c * arr.length + r], `${key}[${c}][${r}]`).toBe(Math.fround(x))));
          };
          if (kind === 'lora') {
            checkT(`${m}.lora_A.weight`, l.adapter(name).A);
            checkT(`${m}.lora_B.weight`, l.adapter(name).B);
          } else if (kind === 'full') {
            checkT(`${m}.weight`, l.fullAdapter(name).weight);
            expect(Array.from(file.tensors.get(`${m}.bias`)!.data)).toEqual(Array.from(l.fullAdapter(name).bias!.dataSync()));
          }
        });
        // PyTorch's arithmetic on the file's tensors (y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ), in plain JS, against a model that loaded it.
        const fresh = LoRAMLP.fromBase(sq, { noAdapter: true });
        deserializeAdapter(fresh, { weights, config });
        const x = Array.from({ length: 3 }, (_, r) => Array.from({ length: 5 }, (_, c) => Math.sin(r * 5 + c)));
        let h = x;
        fresh.layers.forEach((l, i) => {
          const m = `base_model.model.fc${i + 1}`;
          const W = l.weight.arraySync() as number[][]; // [in, out]
          const b = Array.from(l.bias!.dataSync());
          const get = (k: string) => file.tensors.get(`${m}.${k}`);
          const full = get('weight');
          const y = h.map((row) =>
            Array.from({ length: l.outFeatures }, (_, o) => {
              if (full !== undefined) return row.reduce((acc, v, k) => acc + v * full.data[o * l.inFeatures + k], get('bias')!.data[o]);
              let acc = b[o] + row.reduce((a2, v, k) => a2 + v * W[k][o], 0);
              const A = get('lora_A.weight');
              const B = get('lora_B.weight');
              if (A && B) {
                const r = A.shape[0];
                const xa = Array.from({ length: r }, (_, j) => row.reduce((a2, v, k) => a2 + v * A.data[j * l.inFeatures + k], 0));
                acc += (config.lora_alpha / r) * xa.reduce((a2, v, j) => a2 + v * B.data[o * r + j], 0);
              }
              return acc;
            }),
          );
          h = i < fresh.layers.length - 1 ? y.map((row) => row.map((v) => Math.max(0, v))) : y;
        });
        const xt = tf.tensor2d(x);
        const got = fresh.predict(xt);
        const want = tf.tensor2d(h);
        expect(maxRelDiff(got, want), name).toBeLessThan(1e-5);
        tf.dispose([xt, got, want]);
        fresh.dispose();
      }
      model.dispose();
      sq.dispose();
    });

    it('writes alpha_pattern against lora_alpha (not r), keeps dropout, and verifies a reformatted config', () => {
      const model = LoRAMLP.fromBase(base, { rank: 8, alpha: 16, alphaPattern: { fc3: 8 }, dropout: 0.2, seed: 3 });
      trainLike(model, 'default', 4);
      const { weights, config } = serializeAdapter(model);
      expect(config).toMatchObject({ r: 8, lora_alpha: 16, alpha_pattern: { fc3: 8 }, rank_pattern: {}, lora_dropout: 0.2 });
      // Keys in another order, no whitespace: the same config, so the digest still matches.
      const reordered = JSON.stringify(Object.fromEntries(Object.entries(config).reverse()));
      const fresh = LoRAMLP.fromBase(base, { noAdapter: true });
      deserializeAdapter(fresh, { weights, config: reordered });
      expect(fresh.layers.map((l) => [l.adapter('default').config.alpha, l.adapter('default').config.dropout])).toEqual([[16, 0.2], [16, 0.2], [8, 0.2]]);
      fresh.dispose();
      model.dispose();
    });

    it('refuses to write what it could not read back: non-finite values, float16 overflow; odd names still round-trip', () => {
      const model = LoRAMLP.fromBase(base, { rank: 2, seed: 5 });
      const big = tf.fill([2, 16], 7e4);
      model.layers[0].adapter('default').B.assign(big as tf.Tensor2D);
      big.dispose();
      expect(() => serializeAdapter(model, { dtype: 'F16' })).toThrow("serializeAdapter: fc1.lora_B.weight of adapter \"default\" holds |values| up to 70000, beyond float16's 65504; save as \"F32\" or \"BF16\"");
      expect(() => serializeAdapter(model, { dtype: 'BF16' })).not.toThrow();
      const nan = tf.fill([2, 16], NaN);
      model.layers[0].adapter('default').B.assign(nan as tf.Tensor2D);
      nan.dispose();
      expect(() => serializeAdapter(model)).toThrow('serializeAdapter: fc1.lora_B.weight of adapter "default" holds NaN; a file must hold finite values');
      model.dispose();
      // A layer called "__proto__" with its own rank: a key like any other.
      const odd = new MLP([4, 5, 3, 2], { seed: 1, names: ['__proto__', 'constructor', 'toString'] });
      const m2 = LoRAMLP.fromBase(odd, { rank: 1, rankPattern: { __proto__: 2 } as Record<string, number> });
      expect(m2.layers.map((l) => l.rank)).toEqual([1, 1, 1]); // a literal {__proto__: 2} sets the prototype, not a key
      m2.deleteAdapter('default');
      m2.addAdapter('default', { rank: 1, rankPattern: Object.fromEntries([['__proto__', 2]]) });
      expect(m2.layers.map((l) => l.rank)).toEqual([2, 1, 1]);
      trainLike(m2, 'default', 6);
      const { weights, config } = serializeAdapter(m2);
      expect(Object.keys(config.rank_pattern)).toEqual(['__proto__']);
      const back = LoRAMLP.fromBase(odd, { noAdapter: true });
      deserializeAdapter(back, { weights, config: JSON.stringify(config) });
      expect(back.layers.map((l) => l.rank)).toEqual([2, 1, 1]);
      back.dispose();
      m2.dispose();
      odd.dispose();
    });

    it('loads a hostile pattern quickly and refuses bad options in its own words', () => {
      const names = ['model.layers.0.mlp.down_projection', 'model.layers.0.mlp.up_projection', 'model.layers.0.mlp.gate_projection'];
      const mlp = new MLP([4, 6, 5, 3], { names });
      const model = LoRAMLP.fromBase(mlp, { noAdapter: true });
      const t0 = performance.now();
      expect(() => deserializeAdapter(model, { weights: encodeSafetensors({}), config: { peft_type: 'LORA', r: 1, lora_alpha: 1, target_modules: '(.*.*)*z' } })).toThrow(/target_modules = "\(\.\*\.\*\)\*z" match no layer/);
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(() => deserializeAdapter(model, { weights: encodeSafetensors({}), config: { peft_type: 'LORA', r: 1, lora_alpha: 1, target_modules: '(a)\\1' } })).toThrow(/backreferences are not supported/);
      expect(() => deserializeAdapter(model, { weights: encodeSafetensors({}), config: {} }, { onWarning: 5 as never })).toThrow('loadAdapter: onWarning = 5 is invalid; expected a function');
      const other = new MLP([4, 6, 5, 3], { seed: 2 });
      const src = LoRAMLP.fromBase(other, { rank: 1, prefix: undefined } as never);
      const { weights, config } = serializeAdapter(src);
      expect(() => deserializeAdapter(model, { weights, config })).toThrow(/this model's layers are \[.*\]$|this model's layers are \[.*\]; /);
      src.dispose();
      other.dispose();
      model.dispose();
      mlp.dispose();
    });
  });

  describe('several named adapters on one frozen base', () => {
    let task: LowRankShiftTask;
    beforeAll(() => {
      task = lowRankShiftTask({ dims: DIMS, shiftRank: 1, samples: 128, tasks: 2, seed: 8 });
    });
    afterAll(() => task.dispose());

    it('add, select, disable, delete, list; each trains alone; counts per adapter; merge the active one', async () => {
      const model = LoRAMLP.fromBase(task.base, { rank: 2, adapterName: 'a', seed: 1 });
      model.addAdapter('b', { rank: 3, seed: 2 });
      expect(model.adapterNames()).toEqual(['a', 'b']);
      expect(model.activeAdapter).toBe('a');
      expect(model.adapterParameterCount('a')).toBe(2 * (12 + 16) + 2 * (16 + 10) + 2 * (10 + 6));
      expect(model.adapterParameterCount('b')).toBe(3 * (12 + 16) + 3 * (16 + 10) + 3 * (10 + 6));
      expect(model.parameterCounts().lora).toBe(model.adapterParameterCount('a') + model.adapterParameterCount('b'));
      await train(model, { x: task.x, y: task.tasks[0].y, steps: 30, learningRate: 1e-2 });
      const aValues = model.layers.map((l) => Array.from(l.adapter('a').B.dataSync()));
      const baseValues = model.layers.map((l) => Array.from(l.weight.dataSync()));
      model.setActiveAdapter('b');
      expect(model.parameterCounts().trainable).toBe(model.adapterParameterCount('b'));
      await train(model, { x: task.x, y: task.tasks[1].y, steps: 30, learningRate: 1e-2 });
      model.layers.forEach((l, i) => {
        expect(Array.from(l.adapter('a').B.dataSync())).toEqual(aValues[i]); // training b never touches a
        expect(Array.from(l.weight.dataSync())).toEqual(baseValues[i]); // nor the base
      });
      model.setActiveAdapter(null); // disable all: the base alone
      const off = model.predict(task.xTest);
      const ref = task.base.predict(task.xTest);
      expect(maxAbsDiff(off, ref)).toBe(0);
      model.setActiveAdapter('b');
      const onB = model.predict(task.xTest);
      model.merge();
      const merged = model.predict(task.xTest);
      expect(maxRelDiff(merged, onB)).toBeLessThan(1e-5);
      expect(() => model.setActiveAdapter('a')).toThrow(/while "b" is merged/);
      expect(() => model.deleteAdapter('b')).toThrow('LoRAMLP: adapter "b" is merged (in fc1); call unmerge() before deleting it');
      expect(model.adapterNames()).toEqual(['a', 'b']);
      model.unmerge();
      model.deleteAdapter('a');
      expect(model.adapterNames()).toEqual(['b']);
      expect(() => model.setActiveAdapter('a')).toThrow('adapter name = "a" is invalid');
      tf.dispose([off, ref, onB, merged]);
      model.dispose();
    });
  });

  describe('combination', () => {
    it('cat: the new delta equals the weighted sum of the source deltas (PEFT\'s linear does not)', () => {
      const model = LoRAMLP.fromBase(base, { rank: 2, alpha: 4, adapterName: 'p', seed: 1 });
      model.addAdapter('q', { rank: 3, alpha: 1, seed: 2 });
      trainLike(model, 'p', 1);
      trainLike(model, 'q', 2);
      const w = { p: 0.7, q: -1.3 };
      const result = combineAdapters(model, [{ name: 'p', weight: w.p }, { name: 'q', weight: w.q }], 'mix');
      expect(result).toMatchObject({ name: 'mix', rank: 5, method: 'cat' });
      model.layers.forEach((l) => {
        const delta = (n: string) => tf.tidy(() => tf.mul(tf.matMul(l.adapter(n).A, l.adapter(n).B), l.adapter(n).scale));
        const [dp, dq, dmix] = [delta('p'), delta('q'), delta('mix')];
        const wanted = tf.tidy(() => tf.add(tf.mul(dp, w.p), tf.mul(dq, w.q)));
        expect(maxRelDiff(dmix, wanted)).toBeLessThan(1e-5);
        // PEFT's "linear": A = Σ√(w·s)·Aᵢ, B = Σ√(w·s)·Bᵢ (equal ranks required: use p twice).
        const peftLinear = tf.tidy(() => {
          const a = l.adapter('p');
          const c1 = Math.sqrt(0.3 * a.scale);
          const c2 = Math.sqrt(0.7 * a.scale);
          return tf.matMul(tf.add(tf.mul(a.A, c1), tf.mul(a.A, c2)), tf.add(tf.mul(a.B, c1), tf.mul(a.B, c2)));
        });
        const weightedSum = tf.tidy(() => tf.add(tf.mul(dp, 0.3), tf.mul(dp, 0.7)));
        expect(maxRelDiff(peftLinear, weightedSum)).toBeGreaterThan(0.1); // cross terms: (√.3+√.7)² ≠ 1
        tf.dispose([dp, dq, dmix, wanted, peftLinear, weightedSum]);
      });
      // Outputs follow: the combined adapter's output change is the weighted sum's.
      model.dispose();
    });

    it('svd: truncates to the chosen rank with the optimal error, and is exact at full rank', () => {
      const model = LoRAMLP.fromBase(base, { rank: 3, adapterName: 'p', seed: 3 });
      model.addAdapter('q', { rank: 3, seed: 4 });
      trainLike(model, 'p', 3);
      trainLike(model, 'q', 4);
      const sources = [{ name: 'p', weight: 1 }, { name: 'q', weight: 0.5 }];
      const exact = combineAdapters(model, sources, 'exact', { method: 'svd', rank: 6 });
      const cut = combineAdapters(model, sources, 'cut', { method: 'svd', rank: 2 });
      // cat with ranks summing past a layer's min(in, out) works, with the layer's warning.
      const warnings: string[] = [];
      const previous = setWarningHandler((m) => warnings.push(m));
      const big = combineAdapters(model, [...sources, sources[0]], 'big');
      setWarningHandler(previous);
      expect(big.ranks).toEqual([9, 9, 9]);
      expect(warnings).toEqual(['LoRALinear fc3: rank 9 exceeds min(in, out) = 6 (10 → 6); it adds parameters but no capacity']);
      model.deleteAdapter('big');
      expect(() => combineAdapters(model, sources, 'x', { method: 'svd', rank: 0 })).toThrow('combineAdapters: rank = undefined is invalid'.replace('undefined', '0'));
      model.layers.forEach((l, i) => {
        const delta = (n: string) => tf.tidy(() => tf.mul(tf.matMul(l.adapter(n).A, l.adapter(n).B), l.adapter(n).scale));
        const target = tf.tidy(() => tf.add(delta('p'), tf.mul(delta('q'), 0.5)));
        const dExact = delta('exact');
        const dCut = delta('cut');
        expect(maxRelDiff(dExact, target)).toBeLessThan(1e-4);
        expect(exact.relativeError[i]).toBeLessThan(1e-6);
        // Measured error of the rank-2 cut equals the dropped singular values' share.
        const measured = tf.tidy(() => tf.div(tf.norm(tf.sub(dCut, target)), tf.norm(target)).dataSync()[0]);
        expect(measured).toBeCloseTo(cut.relativeError[i], 4);
        expect(cut.relativeError[i]).toBeGreaterThan(0.01);
        tf.dispose([target, dExact, dCut]);
      });
      expect(model.layers[0].adapter('cut').config.rank).toBe(2);
      model.dispose();
    });
  });

  describe('mixed-adapter batches', () => {
    it('computes each row with its own adapter (or the base), equal to running each row alone', () => {
      const model = LoRAMLP.fromBase(base, { rank: 2, adapterName: 'a', seed: 1 });
      model.addAdapter('b', { rank: 4, seed: 2 });
      trainLike(model, 'a', 1);
      trainLike(model, 'b', 2);
      const x = tf.randomNormal([6, 12], 0, 1, 'float32', 7);
      const names = ['b', null, 'a', 'a', 'b', null];
      const before = tf.memory().numTensors;
      const mixed = model.predict(x, { adapters: names });
      expect(tf.memory().numTensors).toBe(before + 1);
      expect(model.activeAdapter).toBe('a'); // untouched
      names.forEach((n, i) => {
        model.setActiveAdapter(n);
        const row = x.slice([i, 0], [1, 12]);
        const alone = model.predict(row);
        const got = mixed.slice([i, 0], [1, 6]);
        expect(maxAbsDiff(got, alone), `row ${i} (${n})`).toBeLessThan(1e-6);
        tf.dispose([row, alone, got]);
      });
      model.setActiveAdapter('a');
      expect(() => model.predict(x, { adapters: ['a'] })).toThrow('LoRAMLP.predict: adapters = ["a"] is invalid; expected an array of 6 adapter names or nulls, one per row of x');
      expect(() => model.predict(x, { adapters: ['a', 'a', 'a', 'zz', null, null] })).toThrow('LoRAMLP.predict: adapters[3] = "zz" is invalid; expected an adapter name from ["a", "b"] or null');
      expect(() => model.predict(x, { adapters: ['a', undefined as never, 'a', 'a', null, null] })).toThrow('LoRAMLP.predict: adapters[1] = undefined is invalid');
      expect(() => model.predict(x, null as never)).toThrow('LoRAMLP.predict: options = null is invalid; expected an options object { adapters? }');
      model.merge();
      expect(() => model.predict(x, { adapters: names })).toThrow(/call unmerge\(\) before mixing adapters/);
      model.unmerge();
      tf.dispose([x, mixed]);
      model.dispose();
    });
  });
});

function toHalf(v: number): number {
  const f = new Float32Array([v]);
  const bits = new Uint32Array(f.buffer)[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = ((bits >>> 23) & 0xff) - 127 + 15;
  const mant = bits & 0x7fffff;
  if (exp <= 0) return sign;
  if (exp >= 31) return sign | 0x7c00;
  return sign | (exp << 10) | Math.round(mant / 8192);
}

function toBf16(v: number): number {
  const bits = new Uint32Array(new Float32Array([v]).buffer)[0];
  return Math.round(bits / 65536) & 0xffff;
}
