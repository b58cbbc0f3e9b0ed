import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  LoRAMLP,
  MLP,
  addLoRA,
  decodeSafetensors,
  deserializeAdapter,
  deserializeLoRAModel,
  encodeSafetensors,
  initBackend,
  loraLayers,
  serializeAdapter,
  serializeLayersAdapter,
} from '../src/index.js';
import { Rng, randomNormal } from '../src/util/random.js';
import { type Matrix, layersMlp, matmul, maxRelDiff, seeded, toMatrix, transpose } from './helpers.js';

// PEFT's layout, pinned element by element against files written by hand (not by our own
// writer, whose round trip would hide a factor stored and read back untransposed):
//   nn.Linear  lora_A.weight [r, in], lora_B.weight [out, r], weight [out, in]
//   nn.Conv2d  lora_A.weight [r, in, kh, kw], lora_B.weight [out, r, 1, 1]
// Ours: A [in, r], B [r, out], W [in, out]; Conv2D A [kh, kw, in, r], B [r, out].
// Every shape has r ≠ in ≠ out and every entry is distinct, so a transpose cannot hide.

const key = (module: string, suffix: string) => `base_model.model.${module}.${suffix}`;

/** lora_A.weight [r, in] of layer `l`: entry [j][i] = (1000·l + 100·j + i + 1) / 256 (exact in float32). */
const fileA = (l: number, r: number, inF: number): Matrix => Array.from({ length: r }, (_, j) => Array.from({ length: inF }, (_, i) => (1000 * l + 100 * j + i + 1) / 256));
/** lora_B.weight [out, r] of layer `l`: entry [o][j] = −(100·l + 10·o + j + 1) / 256. */
const fileB = (l: number, outF: number, r: number): Matrix => Array.from({ length: outF }, (_, o) => Array.from({ length: r }, (_, j) => -(100 * l + 10 * o + j + 1) / 256));

const flat = (m: Matrix) => Float32Array.from(m.flat());

/** A PEFT adapter_config.json as PEFT writes it for these fields, by hand. */
const configText = (r: number, alpha: number, targets: string[], modulesToSave: string[] | null = null) =>
  JSON.stringify({ peft_type: 'LORA', r, lora_alpha: alpha, target_modules: targets, lora_dropout: 0.0, bias: 'none', use_rslora: false, modules_to_save: modulesToSave, fan_in_fan_out: false, init_lora_weights: true });

/** Every entry of `got` (a tensor) equals `want` exactly, with the same shape. */
function expectEntries(got: tf.Tensor, want: Matrix, what: string): void {
  const g = toMatrix(got);
  expect([g.length, g[0].length], `${what} shape`).toEqual([want.length, want[0].length]);
  g.forEach((row, a) => row.forEach((v, b) => expect(v, `${what}[${a}][${b}]`).toBe(Math.fround(want[a][b]))));
}

/** A decoded file tensor of `shape` holds `want` (row-major) exactly. */
function expectStored(file: ReturnType<typeof decodeSafetensors>, k: string, shape: number[], want: number[]): void {
  const t = file.tensors.get(k);
  expect(t, k).toBeDefined();
  expect(t!.shape, `${k} shape`).toEqual(shape);
  expect(t!.data.length, `${k} size`).toBe(want.length);
  want.forEach((v, n) => expect(t!.data[n], `${k} flat[${n}]`).toBe(Math.fround(v)));
}

/** Our-layout values with distinct entries: [a][b] = sign·(100·a + b + 1 + offset) / 256. */
const ours = (rows: number, cols: number, offset: number, sign = 1): Matrix => Array.from({ length: rows }, (_, a) => Array.from({ length: cols }, (_, b) => (sign * (100 * a + b + 1 + offset)) / 256));

describe.each(['wasm', 'cpu'] as const)('PEFT tensor layout, element by element, on %s', (backend) => {
  beforeAll(async () => {
    expect(await initBackend(backend)).toBe(backend);
  });

  const leakFree = async (fn: () => Array<{ dispose(): void }>) => {
    const before = tf.memory().numTensors;
    for (const m of fn()) m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  };

  describe('LoRAMLP (src/formats/peft.ts)', () => {
    // fc1 5 → 7, fc2 7 → 3 at r = 2.
    const DIMS = [5, 7, 3];
    const R = 2;

    it('loads a hand-written file: A[i][j] = lora_A[j][i], B[j][o] = lora_B[o][j], and each layer computes x·W + b + s·(x·lora_Aᵀ)·lora_Bᵀ', async () => {
      await leakFree(() => {
        const base = new MLP(DIMS, { seed: 4 });
        const model = LoRAMLP.fromBase(base, { noAdapter: true });
        const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
        const files = model.layers.map((l, i) => ({ A: fileA(i, R, l.inFeatures), B: fileB(i, l.outFeatures, R) }));
        model.names.forEach((n, i) => {
          tensors[key(n, 'lora_A.weight')] = { shape: [R, model.layers[i].inFeatures], data: flat(files[i].A) };
          tensors[key(n, 'lora_B.weight')] = { shape: [model.layers[i].outFeatures, R], data: flat(files[i].B) };
        });
        const alpha = 3;
        deserializeAdapter(model, { weights: encodeSafetensors(tensors, { format: 'pt' }), config: configText(R, alpha, ['fc1', 'fc2']) });
        const s = alpha / R;
        let h: Matrix = Array.from({ length: 4 }, (_, r) => Array.from({ length: DIMS[0] }, (_, c) => Math.sin(3 * r + c + 0.5)));
        const x = tf.tensor2d(h);
        model.layers.forEach((l, i) => {
          const a = l.adapter('default');
          expect(a.scale).toBe(s);
          expectEntries(a.A, transpose(files[i].A), `${l.name} A`); // [in, r]
          expectEntries(a.B, transpose(files[i].B), `${l.name} B`); // [r, out]
          // PyTorch's arithmetic on the file's tensors, in plain JS, against this layer alone.
          const W = toMatrix(l.weight);
          const b = Array.from(l.bias!.dataSync());
          const lora = matmul(matmul(h, transpose(files[i].A)), transpose(files[i].B));
          const want = matmul(h, W).map((row, r) => row.map((v, o) => v + b[o] + s * lora[r][o]));
          const hIn = tf.tensor2d(h);
          const got = l.predict(hIn);
          const wantT = tf.tensor2d(want);
          expect(maxRelDiff(got, wantT), l.name).toBeLessThan(1e-5);
          tf.dispose([hIn, got, wantT]);
          h = i < model.layers.length - 1 ? want.map((row) => row.map((v) => Math.max(0, v))) : want;
          expect(h.flat().filter((v) => v !== 0).length, `${l.name} output`).toBeGreaterThan(h.flat().length / 4); // the ReLU leaves something to check
        });
        // The whole model too (ReLU between the layers).
        const y = model.predict(x);
        const want = tf.tensor2d(h);
        expect(maxRelDiff(y, want)).toBeLessThan(1e-5);
        tf.dispose([x, y, want]);
        return [model, base];
      });
    });

    it('loads a hand-written full copy (modules_to_save): weight[i][o] = file weight[o][i]', async () => {
      await leakFree(() => {
        const base = new MLP(DIMS, { seed: 4 });
        const model = LoRAMLP.fromBase(base, { noAdapter: true });
        const [inF, outF] = [DIMS[1], DIMS[2]];
        const weight = Array.from({ length: outF }, (_, o) => Array.from({ length: inF }, (_, i) => (10 * o - i + 0.5) / 64)); // [out, in]
        const bias = Array.from({ length: outF }, (_, o) => (o + 1) / 8);
        const weights = encodeSafetensors(
          {
            [key('fc1', 'lora_A.weight')]: { shape: [R, DIMS[0]], data: flat(fileA(0, R, DIMS[0])) },
            [key('fc1', 'lora_B.weight')]: { shape: [DIMS[1], R], data: flat(fileB(0, DIMS[1], R)) },
            [key('fc2', 'weight')]: { shape: [outF, inF], data: flat(weight) },
            [key('fc2', 'bias')]: { shape: [outF], data: Float32Array.from(bias) },
          },
          { format: 'pt' },
        );
        deserializeAdapter(model, { weights, config: configText(R, 2, ['fc1'], ['fc2']) });
        const full = model.layers[1].fullAdapter('default');
        expectEntries(full.weight, transpose(weight), 'fc2 weight');
        expect(Array.from(full.bias!.dataSync())).toEqual(bias);
        return [model, base];
      });
    });

    it('writes lora_A.weight[j][i] = A[i][j] ([r, in]) and lora_B.weight[o][j] = B[j][o] ([out, r]) for every entry', async () => {
      await leakFree(() => {
        const base = new MLP(DIMS, { seed: 4 });
        const model = LoRAMLP.fromBase(base, { rank: R, alpha: 3 });
        const values = model.layers.map((l, i) => ({ A: ours(l.inFeatures, R, 1000 * i), B: ours(R, l.outFeatures, 1000 * i + 500, -1) }));
        model.layers.forEach((l, i) => {
          for (const [v, m] of [[l.A, values[i].A], [l.B, values[i].B]] as const) {
            const t = tf.tensor2d(m);
            v.assign(t);
            t.dispose();
          }
        });
        const file = decodeSafetensors(serializeAdapter(model).weights);
        expect(file.tensors.size).toBe(4);
        model.layers.forEach((l, i) => {
          const { A, B } = values[i];
          const [inF, outF] = [l.inFeatures, l.outFeatures];
          // Written out from the PyTorch side: row j of lora_A is column j of A, row o of lora_B is column o of B.
          expectStored(file, key(l.name, 'lora_A.weight'), [R, inF], Array.from({ length: R * inF }, (_, n) => A[n % inF][Math.floor(n / inF)]));
          expectStored(file, key(l.name, 'lora_B.weight'), [outF, R], Array.from({ length: outF * R }, (_, n) => B[n % R][Math.floor(n / R)]));
        });
        return [model, base];
      });
    });
  });

  describe('tfjs Layers models (src/formats/peft-layers.ts)', () => {
    const R = 2;
    // fc1 6 → 5 (relu), fc2 5 → 4 (tanh), head 4 → 3.
    const DENSE = [
      { name: 'fc1', in: 6, out: 5, act: (v: number) => Math.max(0, v) },
      { name: 'fc2', in: 5, out: 4, act: Math.tanh },
      { name: 'head', in: 4, out: 3, act: (v: number) => v },
    ];

    it('Dense: a hand-written file loads with A[i][j] = lora_A[j][i], B[j][o] = lora_B[o][j], and the model computes PyTorch’s arithmetic on it', async () => {
      await leakFree(() => {
        const base = layersMlp();
        const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
        DENSE.forEach((d, l) => {
          tensors[key(d.name, 'lora_A.weight')] = { shape: [R, d.in], data: flat(fileA(l, R, d.in)) };
          tensors[key(d.name, 'lora_B.weight')] = { shape: [d.out, R], data: flat(fileB(l, d.out, R)) };
        });
        const alpha = 3;
        const adapted = deserializeLoRAModel(base, { weights: encodeSafetensors(tensors, { format: 'pt' }), config: configText(R, alpha, DENSE.map((d) => d.name)) });
        const layers = loraLayers(adapted);
        expect(layers.map((l) => l.path)).toEqual(DENSE.map((d) => d.name));
        DENSE.forEach((d, l) => {
          const [A, B] = layers[l].layer.adapterVariables('default').map((v) => v.read());
          expectEntries(A, transpose(fileA(l, R, d.in)), `${d.name} A`);
          expectEntries(B, transpose(fileB(l, d.out, R)), `${d.name} B`);
        });
        // act(x·W + b + s·(x·lora_Aᵀ)·lora_Bᵀ) per layer, in plain JS, on the base's kernels.
        const s = alpha / R;
        let h: Matrix = Array.from({ length: 3 }, (_, r) => Array.from({ length: 6 }, (_, c) => Math.cos(2 * r + c)));
        const x = tf.tensor2d(h);
        DENSE.forEach((d, l) => {
          const [W, b] = base.getLayer(d.name).getWeights().map((t) => t.arraySync()) as [Matrix, number[]];
          const lora = matmul(matmul(h, transpose(fileA(l, R, d.in))), transpose(fileB(l, d.out, R)));
          h = matmul(h, W).map((row, r) => row.map((v, o) => d.act(v + b[o] + s * lora[r][o])));
        });
        const y = tf.tidy(() => adapted.predict(x) as tf.Tensor);
        const want = tf.tensor2d(h);
        expect(maxRelDiff(y, want)).toBeLessThan(1e-5);
        // The adapter matters: the base alone computes something else.
        const plain = tf.tidy(() => base.predict(x) as tf.Tensor);
        expect(maxRelDiff(plain, want)).toBeGreaterThan(1e-2);
        tf.dispose([x, y, want, plain]);
        return [adapted, base];
      });
    });

    it('Dense: writes lora_A.weight[j][i] = A[i][j] and lora_B.weight[o][j] = B[j][o] for every entry', async () => {
      await leakFree(() => {
        const base = layersMlp();
        const adapted = addLoRA(base, { rank: R, alpha: 3 });
        const layers = loraLayers(adapted);
        const values = DENSE.map((d, l) => ({ A: ours(d.in, R, 1000 * l), B: ours(R, d.out, 1000 * l + 500, -1) }));
        layers.forEach(({ layer }, l) => {
          layer.adapterVariables('default').forEach((v, k) => {
            const t = tf.tensor2d(k === 0 ? values[l].A : values[l].B);
            v.write(t);
            t.dispose();
          });
        });
        const file = decodeSafetensors(serializeLayersAdapter(adapted).weights);
        expect(file.tensors.size).toBe(6);
        DENSE.forEach((d, l) => {
          const { A, B } = values[l];
          expectStored(file, key(d.name, 'lora_A.weight'), [R, d.in], Array.from({ length: R * d.in }, (_, n) => A[n % d.in][Math.floor(n / d.in)]));
          expectStored(file, key(d.name, 'lora_B.weight'), [d.out, R], Array.from({ length: d.out * R }, (_, n) => B[n % R][Math.floor(n / R)]));
        });
        return [adapted, base];
      });
    });

    // Conv2D 3 → 4 channels, kernel 3 × 2 (valid, stride 1) on 5 × 4 images.
    const [KH, KW, CIN, COUT, H, WD] = [3, 2, 3, 4, 5, 4];
    const convModel = () => tfl.sequential({ layers: [tfl.layers.conv2d({ inputShape: [H, WD, CIN], filters: COUT, kernelSize: [KH, KW], padding: 'valid', name: 'conv', ...seeded(8) })] });
    /** lora_A.weight [r, in, kh, kw]: entry [j][c][y][x] = (1000·j + 100·c + 10·y + x + 1) / 4096. */
    const convA = (j: number, c: number, y: number, x: number) => (1000 * j + 100 * c + 10 * y + x + 1) / 4096;
    /** lora_B.weight [out, r, 1, 1]: entry [o][j] = −(10·o + j + 1) / 256. */
    const convB = (o: number, j: number) => -(10 * o + j + 1) / 256;
    const convFileA = () => Float32Array.from({ length: R * CIN * KH * KW }, (_, n) => convA(Math.floor(n / (CIN * KH * KW)), Math.floor(n / (KH * KW)) % CIN, Math.floor(n / KW) % KH, n % KW));
    const convFileB = () => Float32Array.from({ length: COUT * R }, (_, n) => convB(Math.floor(n / R), n % R));

    it('Conv2D: a hand-written file loads with A[y][x][c][j] = lora_A[j][c][y][x], B[j][o] = lora_B[o][j][0][0], and the model computes it', async () => {
      await leakFree(() => {
        const base = convModel();
        const alpha = 6;
        const weights = encodeSafetensors(
          {
            [key('conv', 'lora_A.weight')]: { shape: [R, CIN, KH, KW], data: convFileA() },
            [key('conv', 'lora_B.weight')]: { shape: [COUT, R, 1, 1], data: convFileB() },
          },
          { format: 'pt' },
        );
        const adapted = deserializeLoRAModel(base, { weights, config: configText(R, alpha, ['conv']) });
        const [A, B] = loraLayers(adapted)[0].layer.adapterVariables('default').map((v) => v.read());
        expect(A.shape).toEqual([KH, KW, CIN, R]);
        const Aa = A.arraySync() as number[][][][];
        for (let y = 0; y < KH; y++) for (let x = 0; x < KW; x++) for (let c = 0; c < CIN; c++) for (let j = 0; j < R; j++) expect(Aa[y][x][c][j], `A[${y}][${x}][${c}][${j}]`).toBe(Math.fround(convA(j, c, y, x)));
        expectEntries(B, Array.from({ length: R }, (_, j) => Array.from({ length: COUT }, (_, o) => convB(o, j))), 'conv B');
        // conv(x, W) + b + s·Σ_j conv(x, lora_A[j])·lora_B[o][j], in plain JS (valid padding, stride 1).
        const img = randomNormal<tf.Rank.R4>([2, H, WD, CIN], new Rng(3));
        const xs = img.arraySync();
        const [W, b] = base.layers[0].getWeights().map((t) => t.arraySync()) as [number[][][][], number[]];
        const s = alpha / R;
        const want = xs.map((im) =>
          Array.from({ length: H - KH + 1 }, (_, oy) =>
            Array.from({ length: WD - KW + 1 }, (_, ox) =>
              Array.from({ length: COUT }, (_, o) => {
                let acc = b[o];
                const xa = new Array<number>(R).fill(0);
                for (let y = 0; y < KH; y++) {
                  for (let x = 0; x < KW; x++) {
                    for (let c = 0; c < CIN; c++) {
                      const v = im[oy + y][ox + x][c];
                      acc += v * W[y][x][c][o];
                      for (let j = 0; j < R; j++) xa[j] += v * convA(j, c, y, x);
                    }
                  }
                }
                return acc + s * xa.reduce((t, v, j) => t + v * convB(o, j), 0);
              }),
            ),
          ),
        );
        const got = tf.tidy(() => adapted.predict(img) as tf.Tensor);
        const wantT = tf.tensor(want);
        expect(got.shape).toEqual(wantT.shape);
        expect(maxRelDiff(got, wantT)).toBeLessThan(1e-5);
        tf.dispose([img, got, wantT]);
        return [adapted, base];
      });
    });

    it('Conv2D: writes lora_A.weight [r, in, kh, kw] and lora_B.weight [out, r, 1, 1] for every entry', async () => {
      await leakFree(() => {
        const base = convModel();
        const adapted = addLoRA(base, { targetModules: ['conv'], rank: R, alpha: 6 });
        const [vA, vB] = loraLayers(adapted)[0].layer.adapterVariables('default');
        // Ours: A [kh, kw, in, r] holding convA(j, c, y, x) at [y][x][c][j]; B [r, out] holding convB(o, j) at [j][o].
        const A = tf.tensor4d(Float32Array.from({ length: KH * KW * CIN * R }, (_, n) => convA(n % R, Math.floor(n / R) % CIN, Math.floor(n / (R * CIN * KW)), Math.floor(n / (R * CIN)) % KW)), [KH, KW, CIN, R]);
        const B = tf.tensor2d(Array.from({ length: R }, (_, j) => Array.from({ length: COUT }, (_, o) => convB(o, j))));
        vA.write(A);
        vB.write(B);
        tf.dispose([A, B]);
        const file = decodeSafetensors(serializeLayersAdapter(adapted).weights);
        expectStored(file, key('conv', 'lora_A.weight'), [R, CIN, KH, KW], Array.from(convFileA()));
        expectStored(file, key('conv', 'lora_B.weight'), [COUT, R, 1, 1], Array.from(convFileB()));
        return [adapted, base];
      });
    });
  });
});
